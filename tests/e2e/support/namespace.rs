//! What every e2e test needs: a client for the cluster in `KUBECONFIG`, a
//! namespace of its own (removed with what the test's operator left in it),
//! bounded waits that explain themselves on timeout.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
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
