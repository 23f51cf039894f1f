//! What every e2e test needs: a client for the cluster in `KUBECONFIG`, a
//! namespace of its own, bounded waits that explain themselves on timeout.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// A namespace owned by one test; deleted when the test ends.
pub struct TestNs {
    pub client: Client,
    pub name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub async fn client() -> Client {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!(
            "KUBECONFIG is not set. The e2e tests need a cluster: run `make test`, or \
             `make cluster-up` and `export KUBECONFIG=$PWD/.cluster/kubeconfig`"
        );
    }
    match Client::try_default().await {
        Ok(c) => c,
        Err(e) => panic!("cannot build a client from KUBECONFIG: {e}"),
    }
}

/// Runs `tests/cluster/members.sh` (the member clusters dc-2 and dc-3) and
/// returns its output; fails the caller with its error.
pub fn members_sh(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/members.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("run tests/cluster/members.sh");
    assert!(
        out.status.success(),
        "members.sh {args:?} failed (are the members up? tests/cluster/members.sh up): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The admin kubeconfig of member `name` (dc-2, dc-3).
pub fn member_kubeconfig(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(".cluster-{name}/kubeconfig"))
}

/// An admin client for member `name`.
pub async fn member_client(name: &str) -> Client {
    let path = member_kubeconfig(name);
    let config = kube::config::Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "member {name} is not running ({e}): start the members with tests/cluster/members.sh up"
        )
    });
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("member config");
    Client::try_from(config).expect("member client")
}

/// Registers member `name` (running `cell`) for `ns`'s stories: the same
/// namespace in the member, a Secret in `ns` with a kubeconfig for the host's
/// least-privilege identity there, and the MemberCluster (replacing one left
/// by an earlier story; `spec` adds to its spec). Returns an admin client of
/// the member.
pub async fn register_member(
    ns: &TestNs,
    name: &str,
    cell: &str,
    spec: serde_json::Value,
) -> Client {
    use k8s_openapi::api::core::v1::Secret;
    let client = member_client(name).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let body: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns.name}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &body)
        .await
        .unwrap_or_else(|e| panic!("create namespace {} in {name}: {e}", ns.name));
    let secret_name = format!("kubeconfig-{name}");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": secret_name},
        "stringData": {"kubeconfig": members_sh(&["kubeconfig", name])}
    }))
    .expect("secret");
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("kubeconfig Secret");
    register(ns, name, cell, spec).await;
    client
}

/// Registers member `name` (running `cell`) by the kubeconfig Secret
/// `kubeconfig-<name>` in `ns`, replacing an earlier registration.
pub async fn register(ns: &TestNs, name: &str, cell: &str, spec: serde_json::Value) {
    use cafe_operator::api::MemberCluster;
    let secret_name = format!("kubeconfig-{name}");
    let registry: Api<MemberCluster> = Api::all(ns.client.clone());
    let _ = registry.delete(name, &DeleteParams::default()).await;
    // The previous story's operator, which would take its finalizer off
    // once nothing used the member, is gone: take it off by hand.
    unregister_by_hand(&registry, name).await;
    ns.wait("the previous registration to go", 30, || async {
        registry.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
    let mut body = json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": name, "labels": {"cafe.sofastack.io/e2e": "true"}},
        "spec": {"kubeconfigSecretRef": {"namespace": ns.name, "name": secret_name},
                 "cells": [cell]}
    });
    for (k, v) in spec.as_object().into_iter().flatten() {
        body["spec"][k] = v.clone();
    }
    let body: MemberCluster = serde_json::from_value(body).expect("member");
    registry
        .create(&PostParams::default(), &body)
        .await
        .expect("MemberCluster");
}

/// Takes the operator's finalizer off MemberCluster `name` (what a person
/// does when the member is lost for good); the others are kept.
pub async fn unregister_by_hand(registry: &Api<cafe_operator::api::MemberCluster>, name: &str) {
    use cafe_operator::api::names::MEMBER_IN_USE_FINALIZER;
    let Ok(Some(member)) = registry.get_opt(name).await else {
        return;
    };
    let Some(ops) =
        cafe_operator::api::finalizer_removed(&member.metadata, MEMBER_IN_USE_FINALIZER)
    else {
        return;
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("a JSON patch");
    let _ = registry
        .patch(
            name,
            &Default::default(),
            &kube::api::Patch::Json::<()>(patch),
        )
        .await;
}

impl TestNs {
    /// Creates `e2e-<story>-<unique>` and waits for its default ServiceAccount.
    pub async fn new(story: &str) -> Self {
        let client = client().await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("e2e-{story}-{:x}{n}", nanos % 0xfffff);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"cafe.sofastack.io/e2e": "true"}}
        }))
        .expect("namespace literal");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        let this = Self { client, name };
        let sas: Api<ServiceAccount> = this.api();
        this.wait("the default ServiceAccount", 60, || async {
            sas.get_opt("default").await.ok().flatten()
        })
        .await;
        this
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates an object from a JSON literal in this namespace.
    pub async fn create<K>(&self, body: serde_json::Value) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + Debug,
        <K as Resource>::DynamicType: Default,
    {
        let obj: K = serde_json::from_value(body).expect("object literal");
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create in {}: {e}", self.name))
    }

    /// Polls `probe` every 200 ms until it yields a value; after `seconds`,
    /// fails the test with what it waited for, the pods and the events.
    pub async fn wait<T, F, Fut>(&self, what: &str, seconds: u64, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {seconds}s waiting for {what} in namespace {}\n{}",
                    self.name,
                    self.report().await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The namespace's pods and events, for failure messages.
    pub async fn report(&self) -> String {
        let mut out = String::from("pods:\n");
        if let Ok(pods) = self.api::<Pod>().list(&ListParams::default()).await {
            for p in pods {
                let status = p.status.unwrap_or_default();
                let conditions: Vec<String> = status
                    .conditions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| format!("{}={}", c.type_, c.status))
                    .collect();
                out.push_str(&format!(
                    "  {} phase={:?} ip={:?} node={:?} conditions=[{}] finalizers={:?}\n",
                    p.metadata.name.unwrap_or_default(),
                    status.phase,
                    status.pod_ip,
                    p.spec.and_then(|s| s.node_name),
                    conditions.join(" "),
                    p.metadata.finalizers.unwrap_or_default(),
                ));
            }
        }
        out.push_str("events:\n");
        if let Ok(events) = self.api::<Event>().list(&ListParams::default()).await {
            for e in events {
                out.push_str(&format!(
                    "  {} {}/{}: {} {}\n",
                    e.type_.unwrap_or_default(),
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                ));
            }
        }
        out
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        // Runs after the test's runtime is gone (also when the test panicked),
        // so it deletes through a client and a runtime of its own.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(client) = Client::try_default().await else {
                    return;
                };
                // The test's operator and components are gone: remove their
                // finalizers, or the namespace would stay Terminating forever.
                // Again after the delete, for a write that was still in flight.
                let pods: Api<Pod> = Api::namespaced(client.clone(), &name);
                let cds: Api<cafe_operator::api::CafeDeployment> =
                    Api::namespaced(client.clone(), &name);
                let namespaces: Api<Namespace> = Api::all(client);
                for round in 0..3 {
                    strip_traffic_finalizers(&pods).await;
                    strip_member_finalizers(&cds).await;
                    if round == 0 {
                        let _ = namespaces.delete(&name, &DeleteParams::background()).await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        })
        .join();
    }
}

/// A multi-cluster story's CafeDeployments hold a finalizer until their
/// sets in the members are gone; its operator is gone now.
async fn strip_member_finalizers(cds: &Api<cafe_operator::api::CafeDeployment>) {
    for cd in cds
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        if !cd.finalizers().is_empty() {
            let patch = json!({"metadata": {"finalizers": null}});
            let _ = cds
                .patch(
                    &cd.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
        }
    }
}

async fn strip_traffic_finalizers(pods: &Api<Pod>) {
    for p in pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let keep: Vec<String> = p
            .finalizers()
            .iter()
            .filter(|f| !f.starts_with("traffic.cafe.sofastack.io/"))
            .cloned()
            .collect();
        if keep.len() != p.finalizers().len() {
            let patch = json!({"metadata": {"finalizers": keep}});
            let _ = pods
                .patch(
                    &p.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
        }
    }
}

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
