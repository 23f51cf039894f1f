//! The benchmark's cluster: its own kwok nodes and cells, the objects it
//! releases, the waits, and one operator process per part.

use std::time::{Duration, Instant};

use cafe_operator::api::names::UPGRADE_CONFIRMED_ANNOTATION;
use cafe_operator::api::{CafeDeployment, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::{Args, IMAGE_1, NODE_LABEL, WAIT};

pub(crate) fn cell(i: usize) -> String {
    format!("bench-cell-{i}")
}

/// Two kwok nodes per cell, room for many pods, their own pod CIDRs.
pub(crate) async fn create_nodes(client: &Client, cells: usize) -> Vec<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut names = Vec::new();
    for c in 0..cells {
        for n in 0..2 {
            let i = c * 2 + n;
            let name = format!("bench-{}-{n}", cell(c));
            let node: Node = serde_json::from_value(json!({
                "metadata": {
                    "name": name,
                    "labels": {
                        "type": "kwok", NODE_LABEL: "true",
                        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                        "cafe.sofastack.io/cell": cell(c),
                    },
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                },
                "spec": {"podCIDR": format!("10.{}.0.0/16", 128 + i),
                         "podCIDRs": [format!("10.{}.0.0/16", 128 + i)]},
                "status": {
                    "allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "20000"},
                    "capacity": {"cpu": "1000", "memory": "4Ti", "pods": "20000"},
                },
            }))
            .expect("node literal");
            if let Err(e) = nodes.create(&PostParams::default(), &node).await {
                let exists = matches!(&e, kube::Error::Api(s) if s.code == 409);
                assert!(exists, "cannot create node {name}: {e}");
            }
            names.push(name);
        }
    }
    let lp = ListParams::default().labels(&format!("{NODE_LABEL}=true"));
    wait_until("the bench nodes to be Ready", 120, || async {
        let list = nodes.list(&lp).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        (ready == names.len()).then_some(())
    })
    .await;
    names
}

pub(crate) async fn delete_nodes(client: &Client, names: &[String]) {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in names {
        let _ = nodes.delete(name, &DeleteParams::default()).await;
    }
}

/// Polls every 100 ms; panics after `seconds` naming what it waited for.
pub(crate) async fn wait_until<T, F, Fut>(what: &str, seconds: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes the namespace and waits until it is gone (its pods with it).
pub(crate) async fn remove(ns: TestNs) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ns.client.clone());
    let name = ns.name.clone();
    drop(ns);
    wait_until(&format!("namespace {name} to be deleted"), 600, || async {
        match namespaces.get_opt(&name).await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
}

pub(crate) fn cafedeployment(
    name: &str,
    args: &Args,
    replicas: usize,
    group: usize,
    traffic: Value,
) -> Value {
    let cells: Vec<String> = (0..args.cells).map(cell).collect();
    json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "CafeDeployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": IMAGE_1}]}},
            "topology": {"values": cells},
            "strategy": {"upgradeType": "Batch", "batchSize": group},
            "traffic": traffic,
        }
    })
}

/// The Deployment `bench` of `replicas` pods of `template`, at most `group`
/// unavailable and none surged: the budget a CafeDeployment's group has.
pub(crate) fn deployment(replicas: usize, group: usize, template: Value) -> Value {
    deployment_named("bench", replicas, group, template)
}

/// The Deployment `name` (its pods labelled `app: name` by `template`), as
/// [`deployment`].
pub(crate) fn deployment_named(
    name: &str,
    replicas: usize,
    group: usize,
    template: Value,
) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 0, "maxUnavailable": group}},
            "template": template,
        }
    })
}

/// A release: the first container's image changed and nothing else. A JSON
/// patch, not a merge patch: a merge patch replaces the whole `containers`
/// list, and the real nodes' template would lose its probe, ports and
/// preStop hook (no longer an in-place change, and a Deployment's new pods
/// ready at once).
pub(crate) fn set_image(image: &str) -> Patch<Value> {
    json_patch(vec![image_op(image)])
}

/// The JSON patch operation that sets the first container's image.
pub(crate) fn image_op(image: &str) -> Value {
    container_image_op(0, image)
}

/// The JSON patch operation that sets the image of container `index`.
pub(crate) fn container_image_op(index: usize, image: &str) -> Value {
    json!({"op": "replace", "path": format!("/spec/template/spec/containers/{index}/image"),
           "value": image})
}

pub(crate) fn json_patch(ops: Vec<Value>) -> Patch<Value> {
    Patch::Json(serde_json::from_value(Value::Array(ops)).expect("a JSON patch"))
}

/// All `replicas` pods ready and available on the current template, as the
/// CafeDeployment reports it.
pub(crate) fn cd_done(cd: &CafeDeployment, replicas: usize) -> bool {
    let Some(s) = &cd.status else { return false };
    let n = i32::try_from(replicas).unwrap_or(i32::MAX);
    s.observed_generation == cd.metadata.generation
        && s.replicas == n
        && s.updated_ready_replicas == n
        && s.available_replicas == n
        && s.current_revision.is_some()
        && s.current_revision == s.update_revision
}

pub(crate) fn deployment_done(d: &Deployment, replicas: usize) -> bool {
    let Some(s) = &d.status else { return false };
    let n = i32::try_from(replicas).unwrap_or(i32::MAX);
    s.observed_generation == d.metadata.generation
        && s.replicas == Some(n)
        && s.updated_replicas == Some(n)
        && s.ready_replicas == Some(n)
        && s.available_replicas == Some(n)
}

pub(crate) async fn wait_cd(api: &Api<CafeDeployment>, name: &str, replicas: usize) -> Duration {
    let start = Instant::now();
    wait_until(
        &format!("CafeDeployment {name} to be done"),
        WAIT,
        || async {
            let cd = api.get(name).await.ok()?;
            cd_done(&cd, replicas).then_some(())
        },
    )
    .await;
    start.elapsed()
}

/// The CafeDeployment `name` waits for a confirmation (as of its latest generation).
pub(crate) async fn awaiting_confirmation(api: &Api<CafeDeployment>, name: &str) -> bool {
    let Ok(cd) = api.get(name).await else {
        return false;
    };
    cd.status.is_some_and(|s| {
        s.observed_generation == cd.metadata.generation
            && s.release.is_some_and(|r| r.awaiting_confirmation.is_some())
            && s.phase == Some(Phase::WaitingForConfirm)
    })
}

/// Confirms the group the CafeDeployment `name` waits on, as
/// `kubectl cafe confirm` does.
pub(crate) async fn confirm(api: &Api<CafeDeployment>, name: &str) {
    let patch = json!({"metadata": {"annotations": {UPGRADE_CONFIRMED_ANNOTATION: "true"}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("confirm");
}

/// Waits until the CafeDeployment `name` no longer waits for a confirmation.
pub(crate) async fn confirmed(api: &Api<CafeDeployment>, name: &str) {
    wait_until("the confirmation to be taken", 120, || async {
        let cd = api.get(name).await.ok()?;
        (cd.status?.phase != Some(Phase::WaitingForConfirm)).then_some(())
    })
    .await;
}

pub(crate) static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// An operator watching `ns`, its metrics on a local port.
pub(crate) fn operator(ns: &str) -> (Operator, u16) {
    let base = 18_480 + (std::process::id() % 1000) as u16 * 4;
    let port = base + NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bind = format!("127.0.0.1:{port}");
    let op = Operator::launch(ns, &["--metrics-bind-address", &bind], &[]);
    (op, port)
}
