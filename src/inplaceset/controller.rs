//! The InPlaceSet reconciler: read (the set, its pods from the watch cache),
//! decide (plan + lifecycle step, pure), act (minimal pod writes), report
//! (status, only when it changed and spaced out while only counters move;
//! events on the set's transitions, never one per pod).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{self, PodTemplateSpec, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, warn};

use super::lifecycle::{Decision, Intent, PodFacts, Target, Timing, Toward, Waiting, step};
use super::plan::{Revisions, SetSpec, plan};
use super::status::{Inputs, Observed, compute};
use super::{disruption, pods, revision};
use crate::api::count::resolve;
use crate::api::names::{condition, gate_reason};
use crate::api::pod::Pod;
use crate::api::{InPlaceSet, InPlaceSetStatus, UpdateMode};
use crate::runtime::backoff::Backoff;
use crate::runtime::cache::{Caches, OwnerIndex};
use crate::runtime::coalesce::{Coalesce, conditions_moved};
use crate::runtime::health::CacheSync;
use crate::runtime::own_writes::OwnWrites;
use crate::runtime::refusals::{Refusals, is_refusal};
use crate::runtime::{Telemetry, patch_as, post_as, run_until_stopped};
use crate::traffic::{gate, service};

/// The field manager of the InPlaceSet status and of every pod write.
const MANAGER: &str = "cafe-operator-inplaceset";
/// How many pod writes one reconcile has in flight at once.
const WRITE_CONCURRENCY: usize = 16;
/// How long a created pod may be missing from the watch cache before it is
/// assumed lost (and created again).
const CREATION_EXPECTATION: Duration = Duration::from_secs(60);
/// How long a pod written to is not acted on again while the cache still
/// shows the version it was written from.
const STALE_CACHE_WINDOW: Duration = Duration::from_secs(10);
/// How often a set's status is written while only its counters move. Every
/// change a reader waits for (a resting point, a condition, a generation or
/// revision) is written at once; counts in between may lag this long. At 1 s,
/// a 1,000-pod release over 10 cells spent 0.65-0.79 status writes per pod.
const STATUS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("reconcile did not finish within {0:?}; retrying")]
    Timeout(Duration),
    #[error("spec: {0}")]
    InvalidSpec(String),
    #[error("the pod cache stopped")]
    CacheStopped,
}

pub struct Context {
    pub client: Client,
    telemetry: Telemetry,
    pub pods: Store<Pod>,
    /// The pods of each set, by its uid.
    pods_by_set: OwnerIndex,
    /// Whether `pods` has listed once (a reconcile must not plan from an empty cache).
    pods_synced: CacheSync,
    /// Counters-only status changes are written at most every `STATUS_EVERY`.
    status_writes: Coalesce<String>,
    pub services: Store<Service>,
    services_synced: CacheSync,
    /// PodDisruptionBudgets, and the pods this process took out of traffic
    /// under them that the cache may not show yet.
    budgets: Store<PodDisruptionBudget>,
    budgets_synced: CacheSync,
    ledger: disruption::Ledger,
    /// Every set, to count the pods a budget selects in other cells too.
    sets: Store<InPlaceSet>,
    pub recorder: Recorder,
    /// Pods created per set (by uid) that the watch cache has not shown yet:
    /// without this, a fast second reconcile would create them again.
    created: Mutex<HashMap<String, Vec<(String, Instant)>>>,
    /// Consecutive failures per set, for the error backoff.
    backoff: Backoff<ObjectRef<InPlaceSet>>,
    /// Per set (by uid): the API server refused its last creation; no pod
    /// is created again before the hold-off ends, whatever event wakes the set.
    refusals: Refusals<String>,
    /// Pods written to: until the cache shows our write, the pod is not acted
    /// on again (the gate would be written twice).
    acted_on: OwnWrites,
    /// When each drained pod (by uid) was first seen drained: the settle time
    /// runs from there. Lost on restart, so a new leader waits it again.
    drained: Mutex<HashMap<String, HashMap<String, i64>>>,
}

fn template_labels(set: &InPlaceSet) -> BTreeMap<String, String> {
    set.spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

/// The set's two templates and their revisions.
struct Templates<'a> {
    update: (&'a PodTemplateSpec, Target),
    stable: Option<(&'a PodTemplateSpec, Target)>,
}

impl<'a> Templates<'a> {
    /// `stable`: the set's stable template, resolved (`stableTemplate`, or
    /// `stableTemplatePatch` applied to the template).
    fn new(set: &'a InPlaceSet, stable: Option<&'a PodTemplateSpec>) -> Self {
        let target = |t: &PodTemplateSpec| Target {
            revision: revision::revision(t),
            shape: revision::shape(t),
        };
        let update = (&set.spec.template, target(&set.spec.template));
        let stable = stable
            .map(|t| (t, target(t)))
            .filter(|(_, s)| s.revision != update.1.revision);
        Self { update, stable }
    }

    fn toward(&self, toward: Toward) -> &(&'a PodTemplateSpec, Target) {
        match (toward, &self.stable) {
            (Toward::Stable, Some(stable)) => stable,
            _ => &self.update,
        }
    }

    fn target_of(&self, intent: Intent) -> &Target {
        match intent {
            Intent::Update(toward) => &self.toward(toward).1,
            _ => &self.update.1,
        }
    }

    /// The template a pod on `revision` was made from, when it is one of ours.
    fn of_revision(&self, revision: Option<&str>) -> Option<&'a PodTemplateSpec> {
        [Some(&self.update), self.stable.as_ref()]
            .into_iter()
            .flatten()
            .find(|(_, t)| Some(t.revision.as_str()) == revision)
            .map(|(template, _)| *template)
    }

    fn revisions(&self) -> Revisions {
        Revisions {
            update: self.update.1.revision.clone(),
            update_shape: self.update.1.shape.clone(),
            stable: self
                .stable
                .as_ref()
                .map(|(_, t)| (t.revision.clone(), t.shape.clone())),
        }
    }
}

fn now() -> (i64, Time) {
    let ts = k8s_openapi::jiff::Timestamp::now();
    (ts.as_second(), Time(ts))
}

impl Context {
    /// Pods created earlier that the cache does not show yet.
    fn pending_creations(&self, uid: &str, seen: &[Arc<Pod>]) -> usize {
        let Ok(mut created) = self.created.lock() else {
            return 0;
        };
        let entry = created.entry(uid.to_string()).or_default();
        entry.retain(|(name, at)| {
            at.elapsed() < CREATION_EXPECTATION && !seen.iter().any(|p| p.name_any() == *name)
        });
        entry.len()
    }

    fn creation_failed(&self, uid: &str, name: &str) {
        if let Ok(mut created) = self.created.lock()
            && let Some(entry) = created.get_mut(uid)
        {
            entry.retain(|(n, _)| n != name);
        }
    }

    /// Fills in since when each drained pod of set `uid` has been seen
    /// drained; pods no longer drained (or gone) are forgotten.
    fn note_drained(&self, uid: &str, facts: &mut [PodFacts], now: i64) {
        let Ok(mut drained) = self.drained.lock() else {
            return;
        };
        let before = drained.remove(uid).unwrap_or_default();
        let mut now_drained = HashMap::new();
        for f in facts.iter_mut() {
            if f.gate.open == Some(false) && f.still_registered().is_empty() {
                let since = before.get(&f.name).copied().unwrap_or(now);
                f.drained_since = Some(since);
                now_drained.insert(f.name.clone(), since);
            }
        }
        if !now_drained.is_empty() {
            drained.insert(uid.to_string(), now_drained);
        }
    }

    /// The uids of our pods that `budget` selects and that are out of
    /// traffic: the pods of every set in `namespace` whose template the
    /// budget selects (O(pods under the budget), only when one exists).
    fn out_of_traffic_under(&self, budget: &PodDisruptionBudget, namespace: &str) -> Vec<String> {
        self.sets
            .state()
            .into_iter()
            .filter(|s| s.namespace().as_deref() == Some(namespace))
            .filter(|s| disruption::selects(budget, &template_labels(s)))
            .flat_map(|s| {
                let uid = s.uid().unwrap_or_default();
                self.pods_by_set.owned(&self.pods, namespace, &uid)
            })
            .filter(|p| disruption::out_of_traffic(&pods::facts(p)))
            .filter_map(|p| p.uid())
            .collect()
    }

    fn expect_created(&self, uid: &str, name: String) {
        if let Ok(mut created) = self.created.lock() {
            created
                .entry(uid.to_string())
                .or_default()
                .push((name, Instant::now()));
        }
    }

    async fn event(&self, set: &InPlaceSet, type_: EventType, reason: &str, note: String) {
        crate::runtime::publish_event(&self.recorder, &set.object_ref(&()), type_, reason, note)
            .await;
    }
}

/// A pod the operator moved: what it did (for the log) and the
/// resourceVersion the write produced.
type Moved = (String, Option<String>);

/// Applies one pod's decision. A gate write returns the pod as it is now:
/// when that pod is drained already (no component registered, no Service
/// selecting it), its spec patch or deletion follows at once, on that
/// version, instead of after the watch brings it back.
async fn act(
    api: &Api<Pod>,
    templates: &Templates<'_>,
    (pod, facts): (&Pod, &PodFacts),
    (intent, decision): (Intent, &Decision),
    timing: &Timing,
    (now, time): (i64, &Time),
) -> Result<Option<Moved>, kube::Error> {
    let Some((moved, written)) =
        apply(api, templates, pod, facts, (intent, decision), time).await?
    else {
        return Ok(None);
    };
    let (Decision::GateOff(_), Some(written)) = (decision, written) else {
        return Ok(Some(moved));
    };
    let mut drained = pods::facts(&written);
    drained.routed_by_service = facts.routed_by_service;
    let then = step(&drained, intent, templates.target_of(intent), timing, now);
    if !matches!(then, Decision::PatchInPlace | Decision::Delete) {
        return Ok(Some(moved));
    }
    match apply(api, templates, &written, &drained, (intent, &then), time).await {
        Ok(Some(((note, version), _))) => Ok(Some((format!("{}; {note}", moved.0), version))),
        Ok(None) => Ok(Some(moved)),
        Err(e) => {
            // The gate is written; the next reconcile takes the next step.
            warn!(pod = %facts.name, error = %e, "after the gate closed");
            Ok(Some(moved))
        }
    }
}

/// Applies one decision: what it did, and the pod the write returned (for
/// the gate writes).
async fn apply(
    api: &Api<Pod>,
    templates: &Templates<'_>,
    pod: &Pod,
    facts: &PodFacts,
    (intent, decision): (Intent, &Decision),
    time: &Time,
) -> Result<Option<(Moved, Option<Pod>)>, kube::Error> {
    let name = facts.name.as_str();
    match decision {
        Decision::Steady
        | Decision::Wait(_)
        | Decision::DrainTimedOut(_)
        | Decision::UnreadyTimedOut => Ok(None),
        Decision::GateOff(reason) => {
            let components = facts.still_registered();
            let message = format!("out of traffic: {reason}");
            let patch = gate::patch(false, reason, &message, time);
            let written = api
                .patch_status(name, &patch_as(MANAGER), &Patch::Strategic(&patch))
                .await?;
            let note = format!(
                "pod {name}: traffic gate closed ({reason}); waiting for {} to deregister it",
                if components.is_empty() {
                    "no component".to_string()
                } else {
                    components.join(", ")
                }
            );
            Ok(Some(((note, written.resource_version()), Some(written))))
        }
        Decision::PatchInPlace => {
            // The cached pod is drained; the patch carries its resourceVersion
            // as a precondition, so it applies only to exactly that drained
            // version (no read needed). A kubelet status write in between (its
            // Ready turning False after the gate closed, say) makes the API
            // server refuse it: then one fresh read, and the patch is sent
            // again only if that pod is still drained for this update and
            // on the same revision. Anything else (a component re-registering
            // it, say) waits for the next reconcile to decide again.
            let Intent::Update(toward) = intent else {
                return Ok(None);
            };
            let (template, target) = templates.toward(toward);
            let target = &target.revision;
            let previous = templates.of_revision(facts.revision.as_deref());
            let done = |written: Pod| {
                let note = format!("pod {name}: drained; updating in place to revision {target}");
                Some(((note, written.resource_version()), None))
            };
            let patch = pods::in_place_patch(pod, template, previous, target);
            let params = patch_as(MANAGER);
            match api.patch(name, &params, &Patch::Strategic(&patch)).await {
                Ok(written) => return Ok(done(written)),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e),
            }
            let fresh = match api.get(name).await {
                Ok(fresh) => fresh,
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                Err(e) => return Err(e),
            };
            if fresh.uid() != pod.uid() || !pods::facts(&fresh).still_drained_as(facts) {
                return Ok(None);
            }
            let patch = pods::in_place_patch(&fresh, template, previous, target);
            match api.patch(name, &params, &Patch::Strategic(&patch)).await {
                Ok(written) => Ok(done(written)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                Err(e) => Err(e),
            }
        }
        Decision::GateOn => {
            let written = open_gate(api, name, time).await?;
            let note = format!(
                "pod {name}: ready on revision {}; traffic gate open",
                facts.revision.clone().unwrap_or_default()
            );
            Ok(Some(((note, written.resource_version()), None)))
        }
        Decision::Delete => {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &dp).await {
                Ok(deleted) => Ok(Some((
                    (
                        format!("pod {name}: drained; deleted"),
                        // A pod kept by finalizers comes back with its new version.
                        deleted.left().and_then(|p| p.resource_version()),
                    ),
                    None,
                ))),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}

/// Opens a pod's traffic gate (condition True, reason Serving).
async fn open_gate<K>(api: &Api<K>, name: &str, time: &Time) -> Result<K, kube::Error>
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let patch = gate::patch(true, gate_reason::SERVING, "in traffic", time);
    api.patch_status(name, &patch_as(MANAGER), &Patch::Strategic(&patch))
        .await
}

/// At most this many pods are created per reconcile; the next reconcile
/// creates more, so one huge set never holds a worker or ignores a shutdown.
const CREATIONS_PER_RECONCILE: usize = 256;

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
    templates: &Templates<'_>,
    (the_plan, owned): (&super::plan::Plan, &[Arc<Pod>]),
    time: &Time,
) -> (Result<(), kube::Error>, bool) {
    let uid = set.uid().unwrap_or_default();
    let mut pending = ctx.pending_creations(&uid, owned);
    let mut kinds = Vec::new();
    for (count, toward) in [
        (the_plan.create, Toward::Update),
        (the_plan.create_stable, Toward::Stable),
    ] {
        let on_the_way = pending.min(count);
        pending -= on_the_way;
        kinds.extend(std::iter::repeat_n(toward, count - on_the_way));
    }
    let more = kinds.len() > CREATIONS_PER_RECONCILE;
    kinds.truncate(CREATIONS_PER_RECONCILE);
    if kinds.is_empty() {
        return (Ok(()), false);
    }
    let pp = &post_as(MANAGER);
    let mut first_error = None;
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rest = kinds.as_slice();
    let mut size = 1;
    while !rest.is_empty() && first_error.is_none() {
        let (chunk, later) = rest.split_at(size.min(rest.len()));
        rest = later;
        size = (size * 2).min(WRITE_CONCURRENCY);
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
        for (name, revision, result) in futures::future::join_all(batch).await {
            match result {
                Ok(_) => names.entry(revision).or_default().push(name),
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

async fn reconcile_once(set: Arc<InPlaceSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    for cache in [&ctx.pods_synced, &ctx.services_synced, &ctx.budgets_synced] {
        cache.wait().await.map_err(|()| Error::CacheStopped)?;
    }
    if set.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes the pods; their drain is the components' part.
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let (now, time) = now();

    let stable_template = set
        .spec
        .resolved_stable_template()
        .map_err(Error::InvalidSpec)?;
    let templates = Templates::new(&set, stable_template.as_ref());
    let mut owned: Vec<Arc<Pod>> = ctx.pods_by_set.owned(&ctx.pods, &namespace, &uid);
    owned.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let services: Vec<Arc<Service>> = ctx
        .services
        .state()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace.as_str()))
        .collect();
    let mut facts: Vec<PodFacts> = owned
        .iter()
        .map(|p| {
            let mut f = pods::facts(p);
            f.routed_by_service = services.iter().any(|s| service::selects(s, p.labels()));
            f
        })
        .collect();
    ctx.note_drained(&uid, &mut facts, now);

    let replicas = usize::try_from(set.spec.replicas).unwrap_or(0);
    let strategy = &set.spec.strategy;
    let partition = resolve(&strategy.partition, replicas, false)
        .map_err(|e| Error::InvalidSpec(format!("strategy.partition {e}")))?;
    let max_unavailable = resolve(&strategy.max_unavailable, replicas, true)
        .map_err(|e| Error::InvalidSpec(format!("strategy.maxUnavailable {e}")))?;
    let template_labels = template_labels(&set);
    let mut spec = SetSpec {
        replicas,
        partition,
        max_unavailable,
        paused: strategy.paused,
        pace_creation: strategy.pace_creation,
        recreate: strategy.update_mode == UpdateMode::ReCreate,
        min_ready_seconds: i64::from(set.spec.min_ready_seconds),
        disruptions_allowed: None,
    };
    let timing = Timing {
        drain_timeout_seconds: i64::from(set.spec.traffic.drain_timeout_seconds),
        settle_seconds: i64::from(set.spec.traffic.settle_seconds),
        held_until: ctx.telemetry.health.changes_held_until(),
    };
    // The PodDisruptionBudgets over the pods: read, planned within and
    // claimed under one lock, so sets sharing a budget never both take its
    // last room (the cache shows a gate write only later).
    let budgets: Vec<Arc<PodDisruptionBudget>> = ctx
        .budgets
        .state()
        .into_iter()
        .filter(|b| b.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|b| disruption::selects(b, &template_labels))
        .collect();
    let (the_plan, intents, decisions, disruption_hold) = {
        let mut ledger = if budgets.is_empty() {
            None
        } else {
            ctx.ledger.lock()
        };
        let mut disruption_hold = None;
        if let Some(claims) = ledger.as_mut() {
            let readings: Vec<disruption::Reading> = budgets
                .iter()
                .map(|b| {
                    let out = ctx.out_of_traffic_under(b, &namespace);
                    let pending =
                        disruption::pending_claims(claims, &b.uid().unwrap_or_default(), &out);
                    disruption::Reading::of(b, out.len() + pending)
                })
                .collect();
            if let Some((room, hold)) = disruption::tightest(&readings) {
                spec.disruptions_allowed = Some(room);
                disruption_hold = Some(hold);
            }
        }
        let the_plan = plan(&facts, &spec, &templates.revisions(), now);
        let intents: Vec<Intent> = facts.iter().map(|f| the_plan.intent(&f.name)).collect();
        let decisions: Vec<Decision> = facts
            .iter()
            .zip(&intents)
            .map(|(f, i)| step(f, *i, templates.target_of(*i), &timing, now))
            .collect();
        if let Some(claims) = ledger.as_mut() {
            let taken: Vec<String> = owned
                .iter()
                .zip(facts.iter().zip(&decisions))
                .filter(|(_, (f, d))| {
                    matches!(d, Decision::GateOff(_)) && !disruption::out_of_traffic(f)
                })
                .filter_map(|(p, _)| p.uid())
                .collect();
            for b in &budgets {
                disruption::claim(claims, &b.uid().unwrap_or_default(), taken.iter().cloned());
            }
        }
        (the_plan, intents, decisions, disruption_hold)
    };
    let disruption_hold = disruption_hold.filter(|_| the_plan.held_by_disruption_budget);

    // Act on the pods, a bounded number of writes at a time.
    let work: Vec<(&Arc<Pod>, &PodFacts, Intent, &Decision)> = owned
        .iter()
        .zip(&facts)
        .zip(intents.iter().zip(&decisions))
        .filter(|(_, (_, d))| !matches!(d, Decision::Steady | Decision::Wait(_)))
        .filter(|((p, _), _)| !ctx.acted_on.stale(p.as_ref()))
        .map(|((p, f), (i, d))| (p, f, *i, d))
        .collect();
    // A sliding window, not chunks: one slow write never holds back the
    // next pods' (each step of a release waits on the last one's writes).
    let mut writes = Vec::with_capacity(work.len());
    for (pod, f, i, d) in work {
        let write = act(&api, &templates, (pod, f), (i, d), &timing, (now, &time));
        writes.push(async move { (pod, write.await) });
    }
    let results: Vec<_> = futures::stream::iter(writes)
        .buffer_unordered(WRITE_CONCURRENCY)
        .map(|(pod, result)| {
            if let (Ok(Some((_, Some(written)))), Some(uid)) = (&result, pod.uid()) {
                ctx.acted_on.remember(uid, written.clone());
            }
            result
        })
        .collect()
        .await;
    // Pod moves are logged, not published: an event per pod write would
    // cost the API server as much as the writes themselves.
    let mut first_error = None;
    for result in results {
        match result {
            Ok(Some((note, _))) => debug!(set = %set.name_any(), "{note}"),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }

    // Pause stops updates, not scaling: lost pods are replaced and replicas
    // honoured. A refused creation holds creations back for a while, whatever
    // wakes the set (its pods' events would otherwise retry it at once), and
    // shows in the status (ReplicaFailure, Stalled) with the API server's words.
    let mut more = false;
    let mut refusal = ctx.refusals.get(&uid);
    let mut creation_wait = None;
    let to_create = the_plan.create + the_plan.create_stable > 0;
    if let Some(r) = ctx.refusals.holding(&uid).filter(|_| to_create) {
        creation_wait = Some(r.wait());
    } else {
        // Nothing to create leaves no refusal standing either.
        let mut created = Ok(());
        if to_create {
            (created, more) = create_pods(
                &ctx,
                &Api::namespaced(ctx.client.clone(), &namespace),
                &set,
                &templates,
                (&the_plan, &owned),
                &time,
            )
            .await;
        }
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
                creation_wait = Some(r.wait());
                refusal = Some(r);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }

    // Status, written only when it changed.
    let observed: Vec<Observed> = facts
        .iter()
        .zip(&decisions)
        .map(|(pod, decision)| Observed { pod, decision })
        .collect();
    let previous = set.status.clone().unwrap_or_default();
    let mut unsafe_services: Vec<String> = services
        .iter()
        .filter(|s| service::publishes_not_ready(s) && service::selects(s, &template_labels))
        .map(|s| s.name_any())
        .collect();
    unsafe_services.sort();
    let status = compute(&Inputs {
        observed: &observed,
        spec: &spec,
        revision: &templates.update.1.revision,
        stable_revision: templates.stable.as_ref().map(|(_, t)| t.revision.as_str()),
        generation: set.metadata.generation,
        selector: crate::api::selector_string(&set.spec.selector),
        progress_deadline_seconds: i64::from(set.spec.progress_deadline_seconds),
        previous: &previous,
        now,
        now_time: time,
        unsafe_services: &unsafe_services,
        failed_create: refusal.as_ref().map(|r| r.message.as_str()),
        disruption_hold: disruption_hold.as_deref(),
    });
    let mut status_wait = None;
    if status != previous {
        status_wait = ctx
            .status_writes
            .due(&uid, urgent(&previous, &status, &spec));
    }
    if status != previous && status_wait.is_none() {
        // No event into a namespace being deleted: it would be refused too.
        if !refusal.as_ref().is_some_and(|r| r.terminating) {
            report_stall_transition(&ctx, &set, &previous, &status).await;
        }
        let sets: Api<InPlaceSet> = Api::namespaced(ctx.client.clone(), &namespace);
        let body = json!({
            "apiVersion": "cafe.sofastack.io/v1alpha1",
            "kind": "InPlaceSet",
            "status": status,
        });
        sets.patch_status(
            &set.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
        ctx.status_writes.wrote(uid.clone());
    }
    if let Some(e) = first_error {
        return Err(e.into());
    }
    ctx.backoff.succeeded(&ObjectRef::from_obj(&*set));
    if more {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let wake = [status_wait, creation_wait].into_iter().flatten().fold(
        next_wake(&facts, &decisions, &spec, &set, &timing, now),
        Duration::min,
    );
    Ok(Action::requeue(wake))
}

/// Whether a status change must be written at once: anything but counters
/// moving mid-way. A set that reached its resting point (every pod there and
/// available, its share on the update revision) is written at once, so the
/// CafeDeployment sees a group complete without delay.
fn urgent(previous: &InPlaceSetStatus, status: &InPlaceSetStatus, spec: &SetSpec) -> bool {
    let replicas = i32::try_from(spec.replicas).unwrap_or(i32::MAX);
    let share = i32::try_from(spec.replicas.saturating_sub(spec.partition)).unwrap_or(0);
    let resting = status.replicas == replicas
        && status.available_replicas == replicas
        && status.updated_available_replicas >= share;
    resting
        || previous.observed_generation != status.observed_generation
        || previous.current_revision != status.current_revision
        || previous.update_revision != status.update_revision
        || previous.stable_revision != status.stable_revision
        || previous.selector != status.selector
        || previous.unschedulable_since.is_some() != status.unschedulable_since.is_some()
        // The CafeDeployment's one budget counts a cell's unavailable pods
        // beyond its share at once.
        || beyond_share(previous, spec) != beyond_share(status, spec)
        || conditions_moved(&previous.conditions, &status.conditions)
}

/// Unavailable pods beyond the set's share of the budget (0 within it).
fn beyond_share(status: &InPlaceSetStatus, spec: &SetSpec) -> usize {
    let unavailable = status.replicas.saturating_sub(status.available_replicas);
    usize::try_from(unavailable)
        .unwrap_or(0)
        .saturating_sub(spec.max_unavailable)
}

/// A Warning event when the set becomes stalled (once, not every reconcile).
async fn report_stall_transition(
    ctx: &Context,
    set: &InPlaceSet,
    previous: &InPlaceSetStatus,
    status: &InPlaceSetStatus,
) {
    let stalled = |s: &InPlaceSetStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == condition::STALLED && c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    if let (None, Some((reason, message))) = (stalled(previous), stalled(status)) {
        ctx.event(set, EventType::Warning, &reason, message).await;
    }
}

/// Watches drive most reconciles; time-based ones (minReadySeconds, drain
/// timeout, progress deadline) need a wake-up of their own.
fn next_wake(
    facts: &[PodFacts],
    decisions: &[Decision],
    spec: &SetSpec,
    set: &InPlaceSet,
    timing: &Timing,
    now: i64,
) -> Duration {
    let mut deadlines = Vec::new();
    for (f, d) in facts.iter().zip(decisions) {
        if f.ready
            && !f.available(spec.min_ready_seconds, now)
            && let Some(since) = f.ready_since
        {
            deadlines.push(since + spec.min_ready_seconds);
        }
        if let Decision::Wait(Waiting::Settling) = d {
            let settled = f
                .drained_since
                .map_or(now, |since| since + timing.settle_seconds);
            deadlines.push(settled.max(timing.held_until));
        }
        if let Decision::Wait(_) = d {
            let since = f.gate.since.max(f.created);
            deadlines.push(since + i64::from(set.spec.traffic.drain_timeout_seconds) + 1);
            deadlines.push(since + i64::from(set.spec.progress_deadline_seconds) + 1);
        }
    }
    let wake = match deadlines.into_iter().filter(|d| *d > now).min() {
        Some(at) => Duration::from_secs(u64::try_from(at - now).unwrap_or(1)),
        None => Duration::from_secs(300),
    };
    // A set short of its pods looks again soon, whatever else it waits for:
    // a pod it counted while it left (a drain finishing under a scale from
    // zero and back) or a creation expected and never seen must not leave it
    // short until an unrelated event.
    let live = facts.iter().filter(|f| !f.terminating).count();
    if live < spec.replicas {
        wake.min(SHORT_OF_PODS_LOOK)
    } else {
        wake
    }
}

/// How soon a set with fewer live pods than replicas looks again.
const SHORT_OF_PODS_LOOK: Duration = Duration::from_secs(2);

async fn reconcile(obj: Arc<InPlaceSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let telemetry = ctx.telemetry.clone();
    telemetry
        .reconcile("inplaceset", reconcile_once(obj, ctx), Error::Timeout)
        .await
}

fn error_policy(set: Arc<InPlaceSet>, error: &Error, ctx: Arc<Context>) -> Action {
    // 0.5s, 1s, 2s, ... up to 5 minutes, with jitter: an invalid spec or a
    // failing API call never turns into a hot loop.
    let delay = ctx.backoff.failed(ObjectRef::from_obj(&*set));
    warn!(set = %set.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the InPlaceSet controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    caches: &Caches,
    concurrency: u16,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // Subscribe first: the watches are driven once every controller has.
    let set_events = caches.sets.subscribe();
    let pod_events = caches.pods.subscribe();
    let service_events = caches.services.subscribe();
    let budget_events = caches.disruption_budgets.subscribe();
    let sets_store = caches.sets.store.clone();
    let ctx = Arc::new(Context {
        client: client.clone(),
        telemetry,
        pods: caches.pods.store.clone(),
        pods_by_set: caches.pods_by_set.clone(),
        pods_synced: caches.pods.synced.clone(),
        status_writes: Coalesce::new(STATUS_EVERY),
        services: caches.services.store.clone(),
        services_synced: caches.services.synced.clone(),
        budgets: caches.disruption_budgets.store.clone(),
        budgets_synced: caches.disruption_budgets.synced.clone(),
        ledger: disruption::Ledger::default(),
        sets: sets_store.clone(),
        recorder: Recorder::new(client, "cafe-operator".into()),
        created: Mutex::new(HashMap::new()),
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(300)),
        refusals: Refusals::new(Duration::from_secs(1)),
        acted_on: OwnWrites::new(STALE_CACHE_WINDOW),
        drained: Mutex::new(HashMap::new()),
    });
    let synced = [
        caches.sets.synced.clone(),
        caches.pods.synced.clone(),
        caches.services.synced.clone(),
        caches.disruption_budgets.synced.clone(),
    ];
    let budgets_sets_store = sets_store.clone();
    let controller = Controller::for_shared_stream(set_events, sets_store.clone());
    let shutdown = shutdown.shared();
    let run = controller
        .owns_shared_stream(pod_events)
        // A Service that starts or stops publishing not-ready addresses changes
        // the TrafficUnsafe condition of the sets whose pods it selects.
        .watches_shared_stream(service_events, move |svc: Arc<Service>| {
            let namespace = svc.namespace();
            sets_store
                .state()
                .into_iter()
                .filter(|s| s.namespace() == namespace)
                .filter(|s| service::selects(&svc, &template_labels(s)))
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        // A budget's room changes as the disruption controller recounts: the
        // sets whose pods it selects look again.
        .watches_shared_stream(budget_events, {
            let sets_store = budgets_sets_store;
            move |budget: Arc<PodDisruptionBudget>| {
                let namespace = budget.namespace();
                sets_store
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == namespace)
                    .filter(|s| disruption::selects(&budget, &template_labels(s)))
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            }
        })
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "controller");
            }
        });
    run_until_stopped(run, shutdown, &synced).await;
}
