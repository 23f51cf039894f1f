//! The imperative shell around the controllers: the client, start-up checks.

pub mod cache;
pub mod client;
pub mod health;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod prometheus;
pub mod serve;
pub mod writes;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};

/// Why a reconcile failed, for every controller: the API server's answer, a
/// reconcile that ran past `RECONCILE_TIMEOUT`, or a cache that stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("reconcile did not finish within {0:?}; retrying")]
    Timeout(std::time::Duration),
    /// Which cache (e.g. "the pod cache").
    #[error("{0} stopped")]
    CacheStopped(&'static str),
}

/// What the controllers report to `/metrics` and `/readyz`.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: metrics::Metrics,
    pub health: health::Health,
}

/// No reconcile may hang an object forever (a request the API server never
/// answers would): past this, it fails and is retried with backoff.
pub const RECONCILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Telemetry {
    /// Runs one reconcile of `controller`, bounded by `RECONCILE_TIMEOUT`
    /// (then `timed_out` is its error) and counted in the metrics.
    pub async fn reconcile<T, E>(
        &self,
        controller: &'static str,
        reconcile: impl Future<Output = Result<T, E>>,
        timed_out: impl FnOnce(std::time::Duration) -> E,
    ) -> Result<T, E> {
        let bounded = async {
            tokio::time::timeout(RECONCILE_TIMEOUT, reconcile)
                .await
                .unwrap_or_else(|_| Err(timed_out(RECONCILE_TIMEOUT)))
        };
        self.metrics.measure(controller, bounded).await
    }
}

/// Runs a controller until it ends. A stop that comes before its caches
/// synced ends it at once: kube's graceful shutdown stops polling the watch
/// streams and then waits for the store to become ready, which it never
/// does; and a controller whose caches never synced has reconciled nothing.
pub async fn run_until_stopped(
    run: impl Future<Output = ()>,
    stop: impl Future<Output = ()>,
    caches: &[health::CacheSync],
) {
    let unsynced_stop = async {
        stop.await;
        if caches.iter().all(health::CacheSync::is_synced) {
            // Synced: the graceful shutdown finishes the running reconciles.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = run => {}
        () = unsynced_stop => {}
    }
}

/// Why the operator cannot start, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot reach the Kubernetes API server: {0}. Set KUBECONFIG (for the local cluster: \
         export KUBECONFIG=$PWD/.cluster/kubeconfig) or run inside a cluster"
    )]
    Connect(#[source] kube::Error),
    #[error(
        "the CRD {0} is not installed: install it with \
         `cafe-operator crd | kubectl apply --server-side -f -` or `helm install`"
    )]
    MissingCrd(String),
    #[error("cannot read CRD {0}: {1}")]
    ReadCrd(String, #[source] kube::Error),
}

/// What the start-up check found.
pub struct Preflight {
    pub client: Client,
    pub counters: client::ApiCounters,
    /// The MemberCluster and ReleaseFreeze CRDs are installed: cells may live
    /// in member clusters, releases may be frozen.
    pub members: bool,
}

/// Connects to the cluster and checks that the CafeDeployment and InPlaceSet
/// CRDs are installed (the MemberCluster CRD is optional: without it every
/// cell is local).
pub async fn preflight() -> Result<Preflight, StartError> {
    let (client, counters) = client::counted_client()
        .await
        .map_err(StartError::Connect)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut members = true;
    for crd in crate::api::crds() {
        let name = crd.metadata.name.unwrap_or_default();
        // Without these, every cell is local and nothing can freeze releases.
        let optional = matches!(
            crd.spec.names.kind.as_str(),
            "MemberCluster" | "ReleaseFreeze"
        );
        match crds.get_opt(&name).await {
            Ok(Some(_)) => {}
            Ok(None) if optional => members = false,
            // An older chart's RBAC reads only the two required CRDs.
            Err(kube::Error::Api(s)) if optional && s.code == 403 => {
                tracing::warn!(crd = %name, "may not read this CRD: member clusters and release freezes are off");
                members = false;
            }
            Ok(None) => return Err(StartError::MissingCrd(name)),
            Err(e) => return Err(StartError::ReadCrd(name, e)),
        }
    }
    Ok(Preflight {
        client,
        counters,
        members,
    })
}

/// Patch parameters under `manager`: every write names its writer in the
/// object's managedFields (`kubectl get --show-managed-fields`), never
/// `unknown`.
pub fn patch_as(manager: &str) -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(manager.to_string()),
        ..Default::default()
    }
}

/// Creation parameters under `manager` (see [`patch_as`]).
pub fn post_as(manager: &str) -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(manager.to_string()),
        ..Default::default()
    }
}

/// An API for `K` in the watched namespace, or in all namespaces.
pub fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Publishes an event on `reference`; the reason doubles as the action. A
/// failure is logged, never fatal: events inform, they do not decide.
pub async fn publish_event(
    recorder: &kube::runtime::events::Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: kube::runtime::events::EventType,
    reason: &str,
    note: String,
) {
    publish_event_as(recorder, reference, type_, reason, reason, note).await;
}

/// `publish_event` with its own `action`: the Recorder folds events of the
/// same reason and action into one series (keeping the first note), so an
/// event whose note must stay readable per occurrence (one per analysed
/// group) names what it is about in its action.
pub async fn publish_event_as(
    recorder: &kube::runtime::events::Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: kube::runtime::events::EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.chars().take(128).collect(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, "cannot publish event {reason}");
    }
}
