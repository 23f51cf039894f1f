//! The CafeDeployments the stories release, and CAFE's example `demo`
//! (10 pods over cell-a and cell-b behind the Service `demo`): create it,
//! release an image, confirm its groups, wait for where it stands.

use std::collections::BTreeMap;

use cafe_operator::api::{CafeDeployment, Phase};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::kubectl::kubectl_annotate_confirm;
use crate::support::namespace::TestNs;
use crate::support::pods::{image, pod_ready, pods_on_nodes};

/// A CafeDeployment manifest: `replicas` pods of nginx:1.25 labelled
/// `app: <app>` over `cells`, with the given strategy and traffic.
pub fn cafedeployment(
    name: &str,
    app: &str,
    replicas: i64,
    cells: &[&str],
    strategy: serde_json::Value,
    traffic: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "CafeDeployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
            "topology": {"values": cells},
            "strategy": strategy,
            "traffic": traffic
        }
    })
}

/// Every live pod of app=demo with the cell of its node.
pub(crate) async fn pods_by_cell(ns: &TestNs) -> Vec<(Pod, String)> {
    pods_on_nodes(ns, "demo", "cafe.sofastack.io/cell").await
}

/// The UIDs of every live pod of app=demo (to prove pods were kept).
pub(crate) async fn pod_uids(ns: &TestNs) -> Vec<String> {
    pods_by_cell(ns)
        .await
        .iter()
        .filter_map(|(p, _)| p.uid())
        .collect()
}

/// uid -> IP of every live pod of app=demo (to prove updates kept both).
pub(crate) async fn pod_identities(ns: &TestNs) -> BTreeMap<String, String> {
    pods_by_cell(ns)
        .await
        .into_iter()
        .map(|(p, _)| {
            (
                p.uid().unwrap_or_default(),
                p.status.and_then(|s| s.pod_ip).unwrap_or_default(),
            )
        })
        .collect()
}

/// The revision demo is releasing (or released last).
pub(crate) async fn update_revision(cds: &Api<CafeDeployment>) -> String {
    cds.get("demo")
        .await
        .expect("cd")
        .status
        .and_then(|s| s.update_revision)
        .expect("status.updateRevision")
}

pub(crate) async fn phase(cds: &Api<CafeDeployment>) -> Option<Phase> {
    cds.get("demo").await.ok()?.status?.phase
}

/// Waits for the phase, then returns new-image pods per cell.
pub(crate) async fn settle(
    ns: &TestNs,
    want: Phase,
    new_per_cell: usize,
) -> BTreeMap<String, usize> {
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(
        &format!("phase {want:?} with {new_per_cell} new pods per cell"),
        180,
        || async {
            if phase(&cds).await != Some(want) {
                return None;
            }
            let pods = pods_by_cell(ns).await;
            let mut per_cell: BTreeMap<String, usize> = BTreeMap::new();
            for (p, cell) in &pods {
                if image(p) == "nginx:1.26" && pod_ready(p) {
                    *per_cell.entry(cell.clone()).or_default() += 1;
                }
            }
            let ok = pods.len() == 10
                && ["cell-a", "cell-b"]
                    .iter()
                    .all(|c| per_cell.get(*c).copied().unwrap_or(0) == new_per_cell);
            ok.then_some(per_cell)
        },
    )
    .await
}

/// A Service selecting the demo's pods, so that every release drains through
/// real EndpointSlices.
pub(crate) async fn demo_service(ns: &TestNs) {
    ns.create::<Service>(json!({
        "metadata": {"name": "demo"},
        "spec": {"selector": {"app": "demo"}, "ports": [{"port": 80}]}
    }))
    .await;
}

/// Creates CAFE's example: 10 pods over cell-a and cell-b, Beta, batchSize 4,
/// with confirmation, behind the Service `demo`. The pods are then created
/// group by group.
pub(crate) async fn create_demo_paused_at_each_group(ns: &TestNs) {
    create_demo_with(ns, json!({})).await;
}

/// `create_demo_paused_at_each_group` with `more` strategy fields.
pub(crate) async fn create_demo_with(ns: &TestNs, more: serde_json::Value) {
    let mut strategy =
        json!({"upgradeType": "Beta", "batchSize": 4, "needWaitingForConfirm": true});
    if let (Some(s), Some(more)) = (strategy.as_object_mut(), more.as_object()) {
        s.extend(more.clone());
    }
    demo_service(ns).await;
    ns.create::<CafeDeployment>(cafedeployment(
        "demo",
        "demo",
        10,
        &["cell-a", "cell-b"],
        strategy,
        json!({"components": ["service"]}),
    ))
    .await;
}

/// CAFE's example, created and confirmed until all 10 pods are Ready (5 per
/// cell) and the release Healthy.
pub(crate) async fn create_demo(ns: &TestNs) {
    create_demo_paused_at_each_group(ns).await;
    confirm_until_healthy(ns).await;
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait("10 pods, 5 per cell, Healthy", 180, || async {
        if phase(&cds).await != Some(Phase::Healthy) {
            return None;
        }
        let per_cell = per_cell(ns).await;
        (per_cell.get("cell-a") == Some(&5) && per_cell.get("cell-b") == Some(&5)).then_some(())
    })
    .await;
}

/// Ready live pods per cell.
pub(crate) async fn per_cell(ns: &TestNs) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (p, cell) in pods_by_cell(ns).await {
        if pod_ready(&p) {
            *out.entry(cell).or_default() += 1;
        }
    }
    out
}

/// Waits until all 10 pods run `wanted`, Ready, and the release is Healthy.
pub(crate) async fn wait_all_on(ns: &TestNs, wanted: &str) {
    wait_n_on(ns, 10, wanted).await;
}

/// Waits until exactly `n` pods run `wanted`, Ready, and the release is Healthy.
pub(crate) async fn wait_n_on(ns: &TestNs, n: usize, wanted: &str) {
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(
        &format!("all {n} pods Ready on {wanted}, Healthy"),
        180,
        || async {
            let s = cds.get("demo").await.ok()?.status?;
            let pods = pods_by_cell(ns).await;
            let ok =
                pods.len() == n && pods.iter().all(|(p, _)| image(p) == wanted && pod_ready(p));
            (ok && s.phase == Some(Phase::Healthy)).then_some(())
        },
    )
    .await;
}

/// Releases a new image by patching the first container's image, as
/// `kubectl patch --type json` would (a merge patch would replace the whole
/// containers list: probes and hooks gone, a change that cannot be in place).
pub(crate) async fn release_image(cds: &Api<CafeDeployment>, image: &str) {
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}
    ]))
    .expect("a JSON patch");
    cds.patch("demo", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .expect("release");
}

/// Confirms every wait until the release is Healthy.
pub(crate) async fn confirm_until_healthy(ns: &TestNs) {
    confirm_until_healthy_with(ns, || async { kubectl_annotate_confirm(&ns.name) }).await;
}

/// Calls `confirm` at every wait until the release is Healthy.
pub(crate) async fn confirm_until_healthy_with<F, Fut>(ns: &TestNs, confirm: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(
        "the release to finish, confirming each wait",
        240,
        || async {
            match phase(&cds).await {
                Some(Phase::Healthy) => Some(()),
                Some(Phase::WaitingForConfirm) => {
                    confirm().await;
                    None
                }
                _ => None,
            }
        },
    )
    .await;
}
