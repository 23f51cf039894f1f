//! Reading pods: their conditions, image and restarts, the nodes they run
//! on, a watch that counts them; and the conditions of their InPlaceSets.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
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

pub(crate) fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

pub(crate) fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

/// A watch of every version of every pod of `ns` from now on: after each
/// event, (pods seen, pods for which `flag` holds in their latest version).
pub(crate) async fn count_pods(
    ns: &TestNs,
    flag: fn(&Pod) -> bool,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<(usize, usize)>>>,
    tokio::task::JoinHandle<()>,
) {
    let pods: Api<Pod> = ns.api();
    let counts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = counts.clone();
    let watch = tokio::spawn(async move {
        let mut seen: BTreeMap<String, bool> = BTreeMap::new();
        let mut s = watcher(pods, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(p)) = s.next().await {
            seen.insert(p.name_any(), flag(&p));
            let flagged = seen.values().filter(|f| **f).count();
            if let Ok(mut c) = log.lock() {
                c.push((seen.len(), flagged));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    (counts, watch)
}
