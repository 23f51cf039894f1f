//! Every example in `examples/` does what its comments say when applied with
//! `kubectl apply`, as a user would: the pods land where the topology puts
//! them and a release of a new image completes in place.

use std::collections::BTreeMap;
use std::process::Command;

use cafe_operator::api::{CafeDeployment, Phase};
use kube::{Api, ResourceExt};

use crate::support::component::ExampleComponent;
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::support::pods::{image, pod_ready, pods_on_nodes, restarts};

fn apply(ns: &TestNs, example: &str) {
    let path = format!("{}/examples/{example}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("kubectl")
        .args(["-n", &ns.name, "apply", "--server-side", "-f", &path])
        .output()
        .expect("kubectl on PATH");
    assert!(
        out.status.success(),
        "kubectl apply -f {example}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (confirming any wait) until `name` is Healthy with every pod Ready
/// on `wanted`; returns Ready pods per value of `node_label`.
async fn healthy_on(
    ns: &TestNs,
    name: &str,
    wanted: &str,
    node_label: &str,
) -> BTreeMap<String, usize> {
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(
        &format!("{name} Healthy, all pods Ready on {wanted}"),
        240,
        || async {
            let cd = cds.get(name).await.ok()?;
            match cd.status.as_ref().and_then(|s| s.phase) {
                Some(Phase::WaitingForConfirm) => {
                    confirm(&ns.name, name);
                    return None;
                }
                Some(Phase::Healthy) => {}
                _ => return None,
            }
            let pods = pods_on_nodes(ns, name, node_label).await;
            let ok = pods.len() == usize::try_from(cd.spec.replicas).unwrap_or(0)
                && pods.iter().all(|(p, _)| pod_ready(p) && image(p) == wanted);
            ok.then(|| {
                let mut per: BTreeMap<String, usize> = BTreeMap::new();
                for (_, value) in pods {
                    *per.entry(value).or_default() += 1;
                }
                per
            })
        },
    )
    .await
}

/// `kubectl annotate ... upgrade-confirmed=true --overwrite`, as a user would.
fn confirm(ns: &str, name: &str) {
    let _ = Command::new("kubectl")
        .args([
            "-n",
            ns,
            "annotate",
            "cafedeployment",
            name,
            "cafe.sofastack.io/upgrade-confirmed=true",
            "--overwrite",
        ])
        .output();
}

/// Applies the example, checks where its pods landed, then releases nginx:1.26
/// and checks every pod was updated in place exactly once.
async fn example_story(
    story: &str,
    example: &str,
    name: &str,
    node_label: &str,
    expected: &[(&str, usize)],
) {
    let ns = TestNs::new(story).await;
    let _op = Operator::start(&ns.name);
    let _rpc = (example == "traffic-service-rpc.yaml").then(|| ExampleComponent::start(&ns.name));
    apply(&ns, example);
    let per = healthy_on(&ns, name, "nginx:1.25", node_label).await;
    let expected: BTreeMap<String, usize> =
        expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(per, expected, "{example}: pods per {node_label}");
    let uids: Vec<String> = pods_on_nodes(&ns, name, node_label)
        .await
        .iter()
        .map(|(p, _)| p.uid().unwrap_or_default())
        .collect();

    let cds: Api<CafeDeployment> = ns.api();
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:1.26"}]}}}});
    cds.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("release nginx:1.26");
    healthy_on(&ns, name, "nginx:1.26", node_label).await;
    for (p, _) in pods_on_nodes(&ns, name, node_label).await {
        assert!(
            uids.contains(&p.uid().unwrap_or_default()),
            "updated in place"
        );
        assert_eq!(restarts(&p), 1, "{} updated exactly once", p.name_any());
        if example == "traffic-service-rpc.yaml" {
            let mut held = p.finalizers().to_vec();
            held.sort();
            assert_eq!(
                held,
                [
                    "traffic.cafe.sofastack.io/rpc",
                    "traffic.cafe.sofastack.io/service"
                ],
                "{} is back in both components",
                p.name_any()
            );
        }
    }
}

const CELL: &str = "cafe.sofastack.io/cell";
const ZONE: &str = "topology.kubernetes.io/zone";

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn example_basic_beta_spreads_over_two_cells_and_releases() {
    example_story(
        "ex-basic",
        "basic-beta.yaml",
        "basic",
        CELL,
        &[("cell-a", 3), ("cell-b", 3)],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn example_zone_topology_spreads_over_zones_and_releases() {
    example_story(
        "ex-zones",
        "zone-topology.yaml",
        "zones",
        ZONE,
        &[("cell-a", 3), ("cell-b", 3), ("cell-c", 3)],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn example_pinned_cells_honours_the_pins_and_releases() {
    // cell-a: 50% of 10, cell-b: 2, cell-c: the rest.
    example_story(
        "ex-pinned",
        "pinned-cells.yaml",
        "pinned",
        CELL,
        &[("cell-a", 5), ("cell-b", 2), ("cell-c", 3)],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn example_traffic_with_service_and_rpc_releases_losslessly() {
    example_story(
        "ex-traffic",
        "traffic-service-rpc.yaml",
        "shop",
        CELL,
        &[("cell-a", 2), ("cell-b", 2)],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn example_auto_reschedule_spreads_over_three_cells_and_releases() {
    example_story(
        "ex-elastic",
        "auto-reschedule.yaml",
        "elastic",
        CELL,
        &[("cell-a", 2), ("cell-b", 2), ("cell-c", 2)],
    )
    .await;
}
