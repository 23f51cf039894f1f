//! Reading pods (and the conditions of their InPlaceSets).

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::support::namespace::TestNs;

/// Waits until the InPlaceSet `name` reports condition `type_` with `status`.
pub async fn wait_set_condition(
    ns: &TestNs,
    name: &str,
    type_: &str,
    status: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let sets: Api<cafe_operator::api::InPlaceSet> = ns.api();
    ns.wait(
        &format!("{type_}={status} on InPlaceSet {name}"),
        60,
        || async {
            let s = sets.get(name).await.ok()?.status?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == type_ && c.status == status)
        },
    )
    .await
}

/// The status of condition `type_` on a pod, if present.
pub fn pod_condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready").as_deref() == Some("True")
}

/// Live pods of `app`, each with the value of `node_label` on its node.
pub async fn pods_on_nodes(ns: &TestNs, app: &str, node_label: &str) -> Vec<(Pod, String)> {
    let pods: Api<Pod> = ns.api();
    let nodes: Api<Node> = Api::all(ns.client.clone());
    let mut out = Vec::new();
    let listed = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    for p in listed {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let value = nodes
            .get(&node)
            .await
            .ok()
            .and_then(|n| n.labels().get(node_label).cloned())
            .unwrap_or_default();
        out.push((p, value));
    }
    out
}
