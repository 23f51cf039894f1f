//! Creating the pods a set is short of: slow start, expectations, and a
//! hold-off after the API server refuses a creation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::warn;

use super::MANAGER;
use super::apply::open_gate;
use super::context::Context;
use super::lifecycle::Toward;
use super::pods;
use super::templates::Templates;
use crate::api::InPlaceSet;
use crate::api::names::condition;
use crate::api::pod::Pod;
use crate::runtime::post_as;
use crate::runtime::writes::refusals::{Refusal, is_refusal};

/// At most this many pods are created per reconcile; the next reconcile
/// creates more, so one huge set never holds a worker or ignores a shutdown.
const CREATIONS_PER_RECONCILE: usize = 256;
/// The slow start's largest batch of creations at once (each a POST and its
/// gate's opening). Once a template's pods are created fast, the scheduler
/// sets the pace, as for a ReplicaSet (whose batches double without a cap);
/// the API server sheds what it cannot take with 429, which is retried, not
/// held off as a refusal.
const CREATION_BURST: usize = 64;

/// Creates what the plan asks for (less what is still on its way), on the
/// update revision first, then the stable one, and opens each new pod's
/// gate at once (the lifecycle's `admit`), before kubelet writes its first
/// status. Each creation is expected under its name before the request is
/// sent. Slow start, as a ReplicaSet's: 1, 2, 4, ... creations at once, and
/// none after a refused one, so a template the API server refuses costs one
/// refused request per try, not one per pod. Returns whether more remain.
async fn create_pods(
    ctx: &Context,
    api: &Api<v1::Pod>,
    set: &InPlaceSet,
    templates: &Templates,
    (the_plan, owned): (&super::plan::Plan, &[Arc<Pod>]),
    time: &Time,
) -> (Result<(), kube::Error>, bool) {
    let uid = set.uid().unwrap_or_default();
    let mut kinds = to_create(ctx.pending_creations(&uid, owned), the_plan);
    let more = kinds.len() > CREATIONS_PER_RECONCILE;
    kinds.truncate(CREATIONS_PER_RECONCILE);
    if kinds.is_empty() {
        return (Ok(()), false);
    }
    let mut first_error = None;
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rest = kinds.as_slice();
    let mut size = 1;
    while !rest.is_empty() && first_error.is_none() {
        let (chunk, later) = rest.split_at(size.min(rest.len()));
        rest = later;
        size = (size * 2).min(CREATION_BURST);
        for (name, revision, result) in create_batch(ctx, api, set, templates, chunk, time).await {
            match result {
                Ok(()) => names.entry(revision).or_default().push(name),
                Err(e) => {
                    // Refused: not coming. (A transport error may hide a
                    // creation; the expectation then simply expires.)
                    if matches!(&e, kube::Error::Api(_)) {
                        ctx.creation_failed(&uid, &name);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    for (revision, names) in names {
        ctx.event(
            set,
            EventType::Normal,
            "CreatedPods",
            format!(
                "created {} pod(s) on revision {revision}: {}",
                names.len(),
                names.join(", ")
            ),
        )
        .await;
    }
    (first_error.map_or(Ok(()), Err), more || !rest.is_empty())
}

/// The pods to create, by the template they are made from (update first),
/// less the `pending` creations the cache does not show yet.
fn to_create(mut pending: usize, the_plan: &super::plan::Plan) -> Vec<Toward> {
    let mut kinds = Vec::new();
    for (count, toward) in [
        (the_plan.create, Toward::Update),
        (the_plan.create_stable, Toward::Stable),
    ] {
        let on_the_way = pending.min(count);
        pending -= on_the_way;
        kinds.extend(std::iter::repeat_n(toward, count - on_the_way));
    }
    kinds
}

/// Creates one pod per entry of `chunk` at once, each expected under its
/// name before it is sent, and opens each created pod's gate. Returns each
/// pod's name, revision and outcome.
async fn create_batch(
    ctx: &Context,
    api: &Api<v1::Pod>,
    set: &InPlaceSet,
    templates: &Templates,
    chunk: &[Toward],
    time: &Time,
) -> Vec<(String, String, Result<(), kube::Error>)> {
    let uid = set.uid().unwrap_or_default();
    let pp = &post_as(MANAGER);
    let mut batch = Vec::new();
    for toward in chunk {
        let (template, target) = templates.toward(*toward);
        let name = pods::pod_name(&set.name_any(), entropy());
        ctx.expect_created(&uid, name.clone());
        let pod = pods::new_pod(set, template, &target.revision, &target.shape, name);
        batch.push(async move {
            let name = pod.name_any();
            let result = api.create(pp, &pod).await.map(drop);
            if result.is_ok() {
                // Remembered, so that a reconcile reading the pod from
                // before the gate does not open it twice; not opened (an
                // error), the next reconcile opens it.
                if let Ok(opened) = open_gate(api, &name, time).await
                    && let (Some(uid), Some(rv)) = (opened.uid(), opened.resource_version())
                {
                    ctx.acted_on.remember(uid, rv);
                }
            }
            (name, target.revision.clone(), result)
        });
    }
    futures::future::join_all(batch).await
}

/// Entropy for pod names: the clock and a counter, mixed.
fn entropy() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut x = nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(std::process::id());
    // splitmix64 finaliser: nearby inputs give unrelated names.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What creating the missing pods came to.
#[derive(Default)]
pub(super) struct Creation {
    /// More pods remain to create than one reconcile creates.
    pub more: bool,
    /// The API server refuses the set's pods: its words, until the hold-off ends.
    pub refusal: Option<Refusal>,
    /// Creations are held back this long after a refusal.
    pub wait: Option<Duration>,
    /// A failure that is not a refusal (the reconcile retries with backoff).
    pub error: Option<kube::Error>,
}

/// Creates what the plan asks for, unless a refused creation holds creations
/// back: whatever wakes the set (its pods' events would otherwise retry it at
/// once) waits for the hold-off, and the status shows the API server's words
/// (ReplicaFailure, Stalled). Pause stops updates, not scaling: lost pods are
/// replaced and replicas honoured.
pub(super) async fn create_missing(
    ctx: &Context,
    set: &InPlaceSet,
    templates: &Templates,
    (the_plan, owned): (&super::plan::Plan, &[Arc<Pod>]),
    time: &Time,
) -> Creation {
    let uid = set.uid().unwrap_or_default();
    let mut refusal = ctx.refusals.get(&uid);
    let to_create = the_plan.create + the_plan.create_stable > 0;
    if let Some(r) = ctx.refusals.holding(&uid).filter(|_| to_create) {
        return Creation {
            wait: Some(r.wait()),
            refusal,
            ..Creation::default()
        };
    }
    // Nothing to create leaves no refusal standing either.
    let (mut created, mut more) = (Ok(()), false);
    if to_create {
        let api = Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
        (created, more) = create_pods(ctx, &api, set, templates, (the_plan, owned), time).await;
    }
    let mut creation = Creation {
        more,
        ..Creation::default()
    };
    match created {
        Ok(()) => {
            if refusal.take().is_some() {
                ctx.refusals.cleared(&uid);
            }
        }
        Err(e) if is_refusal(&e) => {
            let r = ctx
                .refusals
                .refused(uid.clone(), (condition::FAILED_CREATE, "pods"), &e);
            warn!(set = %set.name_any(), error = %e, retry_in = ?r.wait(), "pod creation refused");
            creation.wait = Some(r.wait());
            refusal = Some(r);
        }
        Err(e) => creation.error = Some(e),
    }
    creation.refusal = refusal;
    creation
}
