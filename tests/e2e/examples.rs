//! Every example in `examples/` does what its comments say when applied with
//! `kubectl apply`, as a user would: the pods land where the topology puts
//! them and a release of a new image completes in place.

use std::collections::BTreeMap;
use std::process::Command;

use cafe_operator::api::{CafeDeployment, Phase};
use k8s_openapi::api::core::v1::Service;
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

/// `examples/production-pod.yaml` on the real nodes: the app's image
/// (cafe.local/shop, ~200 MB, in the cluster's registry only, never imported)
/// is pulled, all 6 pods (init container, app, proxy sidecar) become Ready,
/// the proxy answers with the ConfigMap's line, and a release of shop:v2
/// pulls the new image and completes in place.
#[tokio::test]
#[ignore = "needs the local control plane's real nodes and registry: make test"]
async fn example_production_pod_pulls_from_the_registry_and_releases() {
    let ns = TestNs::new("ex-production").await;
    let _op = Operator::start(&ns.name);
    apply(&ns, "production-pod.yaml");
    let per = healthy_on(&ns, "shop", "cafe.local/shop:v1", CELL).await;
    let expected: BTreeMap<String, usize> = [("cell-a".to_string(), 3), ("cell-b".to_string(), 3)]
        .into_iter()
        .collect();
    assert_eq!(per, expected, "production-pod.yaml: pods per cell");
    let pods = pods_on_nodes(&ns, "shop", CELL).await;
    for (p, _) in &pods {
        let status = p.status.as_ref().expect("a status");
        let init = status
            .init_container_statuses
            .as_deref()
            .unwrap_or_default();
        assert!(
            init.iter().all(|c| c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)),
            "{}: the init container ran to completion: {init:?}",
            p.name_any()
        );
    }
    // Through the Service (port 80 -> the proxy's 15001 -> the app's 8080).
    let services: Api<Service> = ns.api();
    let ip = services
        .get("shop")
        .await
        .expect("the example's Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    let target = format!("{ip}:80");
    let target = target.as_str();
    ns.wait(
        "an answer through the Service, the proxy and the app",
        60,
        || async move {
            let answer = http_get(target, "/").await?;
            (answer.contains("version=v1")
                && answer.contains("config=greeting=hello from the shop"))
            .then_some(())
        },
    )
    .await;
    let uids: Vec<String> = pods
        .iter()
        .map(|(p, _)| p.uid().unwrap_or_default())
        .collect();

    let cds: Api<CafeDeployment> = ns.api();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "cafe.local/shop:v2"}
    ]))
    .expect("a JSON patch");
    cds.patch(
        "shop",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::<()>::Json(patch),
    )
    .await
    .expect("release cafe.local/shop:v2");
    healthy_on(&ns, "shop", "cafe.local/shop:v2", CELL).await;
    for (p, _) in pods_on_nodes(&ns, "shop", CELL).await {
        assert!(
            uids.contains(&p.uid().unwrap_or_default()),
            "updated in place"
        );
        assert_eq!(restarts(&p), 1, "{}: the app restarted once", p.name_any());
    }
}

/// The answer to `GET path` from `addr` (HTTP/1.0: the server closes), or
/// `None` when nothing answers within 2 s.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        Some(answer)
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}
