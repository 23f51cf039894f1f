//! The CafeDeployment reconciler, an imperative shell around the pure
//! decision (`decide`): observe (the object and its sets from the shared
//! caches, its revision history), decide, apply in a safe order — the
//! confirmation reset, then the status that records the release, then the
//! cells' InPlaceSets — each write conditional where a race could lose a
//! user's intent or act on a stale record.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::analysis as gate;
use super::build::REVISION_ANNOTATION;
use super::decide::{
    Effect, History, Note, Observation, Outcome, Refused, Restore, Revision, decide,
};
use super::history;
use super::hold::{self, Held};
use super::homes::{self, Seen};
use super::revision_history;
use crate::api::names::{
    CAFEDEPLOYMENT_UID_LABEL as OWNER_LABEL, CELL_LABEL, MEMBER_SETS_FINALIZER, REVISION_LABEL,
    UPGRADE_CONFIRMED_ANNOTATION, condition,
};
use crate::api::pod::Pod;
use crate::api::{
    AnalysisPhase, CafeDeployment, CafeDeploymentStatus, InPlaceSet, Phase, ReleaseFreeze,
    ReleaseStatus, WINDOW_OVERRIDE_ANNOTATION, finalizer_added, finalizer_removed, stamp,
};
use crate::inplaceset::revision;
use crate::release::analysis::{self as verdicts, Facts};
use crate::runtime::backoff::Backoff;
use crate::runtime::cache::{Caches, OwnerIndex};
use crate::runtime::coalesce::{Coalesce, conditions_moved};
use crate::runtime::health::CacheSync;
use crate::runtime::members::Members;
use crate::runtime::prometheus::Prometheus;
use crate::runtime::refusals::{Refusals, is_refusal};
use crate::runtime::{Telemetry, patch_as, post_as, run_until_stopped};
use crate::traffic::gate as traffic_gate;

const MANAGER: &str = "cafe-operator-cafedeployment";
/// How often the status is written while only its counts move.
const STATUS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("reconcile did not finish within {0:?}; retrying")]
    Timeout(Duration),
    #[error("the InPlaceSet cache stopped")]
    CacheStopped,
}

struct Context {
    client: Client,
    recorder: Recorder,
    telemetry: Telemetry,
    sets: Store<InPlaceSet>,
    sets_by_owner: OwnerIndex,
    /// The member clusters cells may live in.
    members: Members,
    /// Release freezes (none without the ReleaseFreeze CRD).
    freezes: Option<Store<ReleaseFreeze>>,
    revisions: Store<ControllerRevision>,
    revisions_by_owner: OwnerIndex,
    /// Pods, read only to name a group's pods in analysis queries.
    pods: Store<Pod>,
    pods_by_set: OwnerIndex,
    /// The analysis queries' client (an error: every query is an error measurement).
    prometheus: Result<Prometheus, String>,
    /// Sets, revisions and pods have listed once (pods name a group's pods
    /// in analysis queries: never from a cache that has not listed).
    synced: Vec<CacheSync>,
    status_writes: Coalesce<ObjectRef<CafeDeployment>>,
    /// The resourceVersion our last write produced, per CafeDeployment: a
    /// cached copy older than that is not decided on (it would reopen, close or
    /// re-confirm a group already recorded).
    written: Mutex<HashMap<ObjectRef<CafeDeployment>, u64>>,
    backoff: Backoff<ObjectRef<CafeDeployment>>,
    /// Writes of a CafeDeployment's objects the API server refused: held
    /// back whatever wakes the reconcile, and reported as Stalled.
    refusals: Refusals<ObjectRef<CafeDeployment>>,
    /// Per CafeDeployment, when the sign-off policies were last probed and
    /// whether they were in force.
    probes: Mutex<HashMap<ObjectRef<CafeDeployment>, (Instant, bool)>>,
}

/// How long a probe of the sign-off policies is trusted.
const PROBE_EVERY: Duration = Duration::from_secs(60);

fn rv_number(rv: Option<String>) -> Option<u64> {
    rv.and_then(|v| v.parse().ok())
}

impl Context {
    /// Records a refused write of one of `cd`'s objects (`what`), reported
    /// with `reason`.
    fn refused(&self, cd: &CafeDeployment, reason: &'static str, what: &str, e: &kube::Error) {
        let r = self
            .refusals
            .refused(ObjectRef::from_obj(cd), (reason, what), e);
        warn!(cafedeployment = %cd.name_any(), error = %e, retry_in = ?r.wait(), "{what} refused");
    }

    /// The refused write on record for `cd` as status reports it (none in a
    /// namespace being deleted), and whether it still holds writes back.
    fn refusal(&self, cd: &CafeDeployment) -> (Option<Refused>, bool) {
        let Some(r) = self.refusals.get(&ObjectRef::from_obj(cd)) else {
            return (None, false);
        };
        let shown = (!r.terminating).then(|| Refused {
            reason: r.reason,
            message: format!("the API server refuses to write {}: {}", r.what, r.message),
        });
        (shown, r.wait() > Duration::ZERO)
    }

    async fn event(&self, cd: &CafeDeployment, type_: EventType, reason: &str, note: String) {
        self.event_as(cd, type_, reason, reason, note).await;
    }

    async fn event_as(
        &self,
        cd: &CafeDeployment,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let reference = cd.object_ref(&());
        crate::runtime::publish_event_as(&self.recorder, &reference, type_, reason, action, note)
            .await;
    }

    /// Logs and publishes the decision's events.
    async fn publish(&self, cd: &CafeDeployment, notes: Vec<Note>) {
        for note in notes {
            info!(cafedeployment = %cd.name_any(), reason = %note.reason, "{}", note.message);
            let action = note.action.as_deref().unwrap_or(&note.reason);
            self.event_as(
                cd,
                event_type(note.warning),
                &note.reason,
                action,
                note.message.clone(),
            )
            .await;
        }
    }

    /// What holds `cd` besides its pause: a freeze, a deny window.
    fn held(&self, cd: &CafeDeployment, verified: bool, now: &Time) -> Held {
        let freezes = self
            .freezes
            .as_ref()
            .map(|store| store.state())
            .unwrap_or_default();
        hold::held(cd, &freezes, verified, now)
    }

    /// Whether the sign-off policies were in force for `cd` when last
    /// probed, and whether that answer is older than `PROBE_EVERY`.
    fn verified_on_record(&self, cd: &CafeDeployment) -> Option<(bool, bool)> {
        let probes = self.probes.lock().ok()?;
        let (at, verified) = probes.get(&ObjectRef::from_obj(cd))?;
        Some((*verified, at.elapsed() >= PROBE_EVERY))
    }

    /// The last answer, or a probe now when there is none (or it is stale
    /// and `fresh` is asked for).
    async fn verified(&self, cd: &CafeDeployment, fresh: bool) -> bool {
        match self.verified_on_record(cd) {
            Some((verified, stale)) if !(stale && fresh) => verified,
            _ => self.probe(cd).await,
        }
    }

    /// Asks the API server, in two dry-run writes, whether the sign-off
    /// policies are in force for `cd`: the stamping policy answers a probe
    /// annotation, and the validating one refuses a stamp written by hand.
    /// Nothing is stored (dry run). A probe that fails to connect keeps the
    /// last answer.
    async fn probe(&self, cd: &CafeDeployment) -> bool {
        let api: Api<CafeDeployment> =
            Api::namespaced(self.client.clone(), &cd.namespace().unwrap_or_default());
        let dry = PatchParams {
            dry_run: true,
            ..patch_as(MANAGER)
        };
        let name = cd.name_any();
        let stamped = api
            .patch(
                &name,
                &dry,
                &Patch::Merge(&json!({"metadata": {"annotations": {stamp::PROBE: "probe"}}})),
            )
            .await
            .map(|o| {
                o.annotations().get(stamp::PROBE).map(String::as_str) == Some(stamp::PROBE_ANSWER)
            });
        let forged = api
            .patch(
                &name,
                &dry,
                &Patch::Merge(
                    &json!({"metadata": {"annotations": {stamp::PAUSE: "cafe-operator-probe"}}}),
                ),
            )
            .await;
        let verified = match (stamped, forged) {
            (Ok(stamped), Err(kube::Error::Api(s))) if s.code == 403 || s.code == 422 => stamped,
            (Ok(_), Ok(_)) => false,
            _ => {
                return self
                    .probes
                    .lock()
                    .ok()
                    .and_then(|p| p.get(&ObjectRef::from_obj(cd)).map(|(_, v)| *v))
                    .unwrap_or(false);
            }
        };
        if let Ok(mut probes) = self.probes.lock() {
            probes.insert(ObjectRef::from_obj(cd), (Instant::now(), verified));
        }
        verified
    }

    /// Logs (one JSON line each, target `cafe_operator::history`) and
    /// publishes the history entries `status` has beyond `previous`, then
    /// appends them to their revisions' records.
    async fn record_history(
        &self,
        cd: &CafeDeployment,
        previous: &CafeDeploymentStatus,
        status: &CafeDeploymentStatus,
    ) {
        // Only a write that added entries has anything to log, publish or
        // append (this runs after every reconcile's status write or no-op).
        if !history::records_steps(previous, status) {
            return;
        }
        let last = previous.history.last().map_or(0, |e| e.seq);
        for e in status.history.iter().filter(|e| e.seq > last) {
            info!(
                target: "cafe_operator::history",
                namespace = %cd.namespace().unwrap_or_default(),
                cafedeployment = %cd.name_any(),
                seq = e.seq,
                action = e.action.as_str(),
                by = %e.by,
                revision = %e.revision,
                group = e.group,
                source = %e.source,
                at = %e.at.0,
                "{}", e.message
            );
            let group = e.group.map_or(String::new(), |g| format!(" group {g}"));
            let message = if e.message.is_empty() {
                String::new()
            } else {
                format!(": {}", e.message)
            };
            self.event_as(
                cd,
                EventType::Normal,
                e.action.as_str(),
                &format!("History/{}", e.seq),
                format!(
                    "{}{group} of {} by {}{message}",
                    e.action.as_str(),
                    e.revision,
                    e.by
                ),
            )
            .await;
        }
        let ns = cd.namespace().unwrap_or_default();
        let revisions =
            self.revisions_by_owner
                .owned(&self.revisions, &ns, &cd.uid().unwrap_or_default());
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        for (name, patch) in revision_history::appends(&revisions, &status.history) {
            // Refused (a policy, a size) or raced: the next recorded step tries again;
            // the status and the events hold the entries meanwhile.
            if let Err(e) = api
                .patch(&name, &patch_as(MANAGER), &Patch::Json::<()>(patch))
                .await
            {
                warn!(cafedeployment = %cd.name_any(), revision = %name, error = %e, "cannot append the history to the revision");
            }
        }
    }

    fn remember(&self, cd: &CafeDeployment, rv: Option<String>) {
        if let (Some(rv), Ok(mut w)) = (rv_number(rv), self.written.lock()) {
            w.insert(ObjectRef::from_obj(cd), rv);
        }
    }

    /// The cache has not caught up with our own last write to `cd`.
    fn behind(&self, cd: &CafeDeployment) -> bool {
        let Ok(w) = self.written.lock() else {
            return false;
        };
        match (
            w.get(&ObjectRef::from_obj(cd)),
            rv_number(cd.resource_version()),
        ) {
            (Some(ours), Some(cached)) => cached < *ours,
            _ => false,
        }
    }

    /// Writes the status when it changed, conditional on `rv`: a decision made
    /// from an outdated copy is refused (409) and made again. A change of
    /// counts only is written at most every `STATUS_EVERY`: `Ok(Err(wait))`
    /// says when to look again.
    async fn write_status(
        &self,
        cd: &CafeDeployment,
        previous: &CafeDeploymentStatus,
        status: CafeDeploymentStatus,
        rv: Option<String>,
    ) -> Result<Result<Option<String>, Duration>, Error> {
        if status == *previous {
            return Ok(Ok(rv));
        }
        let key = ObjectRef::from_obj(cd);
        if let Some(wait) = self.status_writes.due(&key, urgent(previous, &status)) {
            return Ok(Err(wait));
        }
        let api: Api<CafeDeployment> =
            Api::namespaced(self.client.clone(), &cd.namespace().unwrap_or_default());
        let body = json!({
            "apiVersion": "cafe.sofastack.io/v1alpha1",
            "kind": "CafeDeployment",
            "metadata": {"resourceVersion": rv},
            "status": status,
        });
        let written = api
            .patch_status(
                &cd.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await?;
        self.remember(cd, written.resource_version());
        self.status_writes.wrote(key);
        Ok(Ok(written.resource_version()))
    }
}

/// Whether a status change must be written at once: anything but counts
/// (and the messages that quote them) moving.
fn urgent(previous: &CafeDeploymentStatus, status: &CafeDeploymentStatus) -> bool {
    let record = |s: &CafeDeploymentStatus| {
        s.release.as_ref().map(|r| {
            (
                r.revision.clone(),
                r.rollback,
                r.group,
                r.opened,
                r.baseline.clone(),
                r.groups,
                r.awaiting_confirmation.clone(),
                r.opened_at.clone(),
                r.analysis.clone(),
            )
        })
    };
    previous.observed_generation != status.observed_generation
        || previous.phase != status.phase
        || previous.selector != status.selector
        || previous.current_revision != status.current_revision
        || previous.update_revision != status.update_revision
        || record(previous) != record(status)
        || previous.history != status.history
        || previous.window != status.window
        || conditions_moved(&previous.conditions, &status.conditions)
        || (status.updated_ready_replicas == status.replicas)
            != (previous.updated_ready_replicas == previous.replicas)
}

/// Makes sure the template has a ControllerRevision (numbered after the
/// newest) and keeps at most `historyLimit` older ones, never the stable one.
/// Returns the history: each kept revision's number and template, by name.
/// `holding`: a refused write holds creations back; the history is read only.
async fn record_revision(
    cd: &CafeDeployment,
    ctx: &Context,
    name: &str,
    holding: bool,
) -> Result<History, Error> {
    let ns = cd.namespace().unwrap_or_default();
    let uid = cd.uid().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let mut existing: Vec<Arc<ControllerRevision>> =
        ctx.revisions_by_owner.owned(&ctx.revisions, &ns, &uid);
    if !holding && !existing.iter().any(|r| r.name_any() == name) {
        let next = existing.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let mut rev = ControllerRevision {
            revision: next,
            data: Some(RawExtension(
                json!({"spec": {"template": cd.spec.template}}),
            )),
            ..ControllerRevision::default()
        };
        rev.metadata.name = Some(name.to_string());
        rev.metadata.labels = Some([(OWNER_LABEL.to_string(), uid.clone())].into());
        rev.metadata.owner_references = cd.controller_owner_ref(&()).map(|o| vec![o]);
        match api.create(&post_as(MANAGER), &rev).await {
            Ok(r) => existing.push(Arc::new(r)),
            // Made already (the cache has not shown it yet): it is this template.
            Err(kube::Error::Api(s)) if s.code == 409 => existing.push(Arc::new(rev)),
            // Too large, say: the status says so, the stable pods keep serving.
            Err(e) if is_refusal(&e) => ctx.refused(
                cd,
                condition::FAILED_CREATE,
                &format!("ControllerRevision {name}"),
                &e,
            ),
            Err(e) => return Err(e.into()),
        }
    }
    // Trim the oldest beyond historyLimit, never the current or the stable one.
    let stable = cd.status.as_ref().and_then(|s| s.current_revision.clone());
    existing.sort_by_key(|r| r.revision);
    let keep = usize::try_from(cd.spec.history_limit).unwrap_or(0) + 1;
    let excess = existing.len().saturating_sub(keep);
    let protected =
        |r: &Arc<ControllerRevision>| r.name_any() == name || Some(r.name_any()) == stable;
    let trimmed: Vec<String> = existing
        .iter()
        .filter(|r| !protected(r))
        .take(excess)
        .map(|r| r.name_any())
        .collect();
    for old in &trimmed {
        match api.delete(old, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(existing
        .iter()
        .filter(|r| !trimmed.contains(&r.name_any()))
        .filter_map(|r| {
            let t = r.data.as_ref()?.0.get("spec")?.get("template")?.clone();
            let revision = Revision {
                number: r.revision,
                template: serde_json::from_value(t).ok()?,
            };
            Some((r.name_any(), revision))
        })
        .collect())
}

/// Restores the template of a revision and records first, in status, that
/// the release that follows is a rollback (no Beta group, no confirmation
/// waits), so an operator that dies in between still releases it as one.
async fn restore(cd: &CafeDeployment, ctx: &Context, restore: Restore) -> Result<Action, Error> {
    let Restore {
        revision,
        template,
        why,
        analysis,
    } = restore;
    let previous = cd.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.phase = Some(Phase::RollingBack);
    let verified = ctx.verified(cd, true).await;
    let step = history::rolled_back(cd, verified, &revision, &why);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    status.history = history::append(&previous.history, vec![step], &now);
    status.release = Some(ReleaseStatus {
        revision,
        rollback: true,
        message: why.clone(),
        analysis,
        ..ReleaseStatus::default()
    });
    // Never held back: the phase changes, which is urgent.
    let _ = ctx
        .write_status(cd, &previous, status.clone(), cd.resource_version())
        .await?;
    ctx.record_history(cd, &previous, &status).await;
    ctx.event(
        cd,
        EventType::Normal,
        "RollingBack",
        format!("{why}, at once: no Beta group, no confirmation"),
    )
    .await;
    let mut ops = vec![json!({"op": "replace", "path": "/spec/template", "value": template})];
    if cd.spec.rollback_to.is_some() {
        ops.push(json!({"op": "remove", "path": "/spec/rollbackTo"}));
    }
    patch_spec(cd, ctx, serde_json::Value::Array(ops)).await
}

/// One JSON patch of the CafeDeployment (its spec, or its finalizers).
async fn patch_spec(
    cd: &CafeDeployment,
    ctx: &Context,
    ops: serde_json::Value,
) -> Result<Action, Error> {
    let cds: Api<CafeDeployment> =
        Api::namespaced(ctx.client.clone(), &cd.namespace().unwrap_or_default());
    let patch: json_patch::Patch =
        serde_json::from_value(ops).unwrap_or_else(|_| json_patch::Patch(Vec::new()));
    cds.patch(
        &cd.name_any(),
        &patch_as(MANAGER),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(Action::await_change())
}

/// The pods of the group the analysis measures: on the update revision, put
/// in traffic since the group opened (all of the revision's, if that time is
/// not on record), with their cells.
fn group_facts(
    cd: &CafeDeployment,
    ctx: &Context,
    sets: &[Arc<InPlaceSet>],
    update: &str,
    group: usize,
) -> Facts {
    let ns = cd.namespace().unwrap_or_default();
    let since = cd
        .status
        .as_ref()
        .and_then(|s| s.release.as_ref())
        .and_then(|r| r.opened_at.as_ref())
        .map(|t| t.0.as_second());
    let mut pods = Vec::new();
    let mut cells = std::collections::BTreeSet::new();
    let mut pod_revisions = std::collections::BTreeSet::new();
    for set in sets {
        // Pods carry their set's revision (its template with the cell's
        // labels), so the update's pods are those on the revision of the
        // template of a set that carries the update.
        if set
            .annotations()
            .get(REVISION_ANNOTATION)
            .map(String::as_str)
            != Some(update)
        {
            continue;
        }
        let set_revision = revision::revision(&set.spec.template);
        pod_revisions.insert(set_revision.clone());
        for pod in ctx
            .pods_by_set
            .owned(&ctx.pods, &ns, &set.uid().unwrap_or_default())
        {
            if pod.labels().get(REVISION_LABEL) != Some(&set_revision)
                || pod.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            // In traffic since the group opened (a gate without a time
            // reads 0: counted, as before the time was recorded).
            let gate = traffic_gate::read(&pod);
            let released = gate.open == Some(true)
                && (gate.since == 0 || since.is_none_or(|since| gate.since >= since));
            if released {
                pods.push(pod.name_any());
                if let Some(cell) = pod.labels().get(CELL_LABEL) {
                    cells.insert(cell.clone());
                }
            }
        }
    }
    pods.sort();
    Facts {
        namespace: ns,
        name: cd.name_any(),
        revision: update.to_string(),
        pod_revisions: pod_revisions.into_iter().collect(),
        group,
        cells: cells.into_iter().collect(),
        pods,
    }
}

/// Takes the measurement of the analysis of `group` that the decision found
/// due, and adds it to the record in `status` (the decision's), which the
/// next decision judges.
async fn measure(
    cd: &CafeDeployment,
    ctx: &Context,
    sets: &[Arc<InPlaceSet>],
    (update, group): (&str, usize),
    now: &Time,
    status: &mut CafeDeploymentStatus,
) {
    let Some(spec) = cd.spec.strategy.analysis.as_ref() else {
        return;
    };
    let Some(release) = status.release.as_mut() else {
        return;
    };
    let Some(record) = gate::of(release.analysis.as_ref(), update, group) else {
        return;
    };
    let facts = group_facts(cd, ctx, sets, update, group);
    let timeout = Duration::from_secs(
        u64::try_from(spec.prometheus.timeout_seconds)
            .unwrap_or(10)
            .clamp(1, 30),
    );
    let measurements = futures::future::join_all(spec.queries.iter().map(|q| {
        let promql = verdicts::fill(&q.query, &facts);
        async move {
            let answer = match &ctx.prometheus {
                Ok(p) => p
                    .query(&spec.prometheus.address, &promql, timeout)
                    .await
                    .and_then(|body| verdicts::parse_answer(&body)),
                Err(e) => Err(e.clone()),
            };
            verdicts::judge(q, answer, now)
        }
    }))
    .await;
    for m in &measurements {
        ctx.telemetry.metrics.analysis_measured(m.phase);
        info!(
            cafedeployment = %cd.name_any(), query = %m.query, phase = ?m.phase,
            value = %m.value, "{}", m.message
        );
    }
    let next = verdicts::record(spec, record, measurements);
    if next.phase != AnalysisPhase::Running {
        ctx.telemetry.metrics.analysis_concluded(next.phase);
        let reason = format!("Analysis{}", next.phase.as_str());
        let warning = next.phase != AnalysisPhase::Successful;
        info!(cafedeployment = %cd.name_any(), reason = %reason, "{}", next.summary());
        ctx.event_as(
            cd,
            event_type(warning),
            &reason,
            &next.event_action(),
            next.summary(),
        )
        .await;
    }
    release.analysis = Some(next);
}

/// The pause an analysis verdict asked for, once its record (with the
/// action taken) is written.
async fn pause(cd: &CafeDeployment, ctx: &Context) -> Result<Action, Error> {
    ctx.event(
        cd,
        EventType::Warning,
        "PausedByAnalysis",
        "the analysis paused the release (spec.strategy.pause: true)".to_string(),
    )
    .await;
    patch_spec(
        cd,
        ctx,
        json!([{"op": "add", "path": "/spec/strategy/pause", "value": true}]),
    )
    .await
}

async fn reconcile_once(cd: Arc<CafeDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    for cache in &ctx.synced {
        cache.wait().await.map_err(|()| Error::CacheStopped)?;
    }
    let uid = cd.uid().unwrap_or_default();
    let namespace = cd.namespace().unwrap_or_default();
    let local: Vec<Arc<InPlaceSet>> = ctx.sets_by_owner.owned(&ctx.sets, &namespace, &uid);
    let cells = super::build::cells(&cd.spec.topology);
    let seen = homes::observe(&cd, &cells, local, &ctx.client, &ctx.members);
    if cd.metadata.deletion_timestamp.is_some() {
        return finalize(&cd, &ctx, &seen).await;
    }
    if seen.spans_members() && !cd.finalizers().iter().any(|f| f == MEMBER_SETS_FINALIZER) {
        // Before the first write to a member: its sets go when this does.
        return patch_spec(
            &cd,
            &ctx,
            finalizer_added(&cd.metadata, MEMBER_SETS_FINALIZER),
        )
        .await;
    }
    if ctx.behind(&cd) {
        // Our own write is on its way through the watch; decide on it then.
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let update = format!(
        "{}-{}",
        cd.name_any(),
        revision::revision(&cd.spec.template)
    );
    let (_, holding) = ctx.refusal(&cd);
    let history = record_revision(&cd, &ctx, &update, holding).await?;
    let (refused, holding) = ctx.refusal(&cd);
    let owned = &seen.sets;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    // Who did a step is read from the API server's stamps when a probe
    // shows its policies in force: probed on first sight, and again before
    // a step is recorded when the last answer is older than PROBE_EVERY (the
    // policies may have come or gone meanwhile).
    let verified = ctx.verified(&cd, false).await;
    let decide_now = |verified: bool| {
        let held = ctx.held(&cd, verified, &now);
        let outcome = decide(&Observation {
            cd: &cd,
            sets: owned.iter().map(|s| &**s).collect(),
            history: &history,
            update: &update,
            now: &now,
            refused: refused.as_ref(),
            unreachable: &seen.unreachable,
            misplaced: seen.misplaced.as_deref(),
            frozen: held.frozen.as_ref(),
            window: held.window.as_ref(),
            freezes: &held.freezes,
            verified,
        });
        (outcome, held.wake)
    };
    let (mut outcome, mut window_wake) = decide_now(verified);
    let before = cd.status.clone().unwrap_or_default();
    if history::records_steps(&before, &outcome.status) {
        let now_verified = ctx.verified(&cd, true).await;
        if now_verified != verified {
            (outcome, window_wake) = decide_now(now_verified);
        }
    }
    outcome.wake = [outcome.wake, window_wake].into_iter().flatten().min();
    seen.label_rows(&mut outcome.status.cells);
    match outcome.effect.take() {
        None => apply(&cd, &ctx, &seen, outcome, holding).await,
        Some(Effect::Measure { group }) => {
            measure(
                &cd,
                &ctx,
                owned,
                (&update, group),
                &now,
                &mut outcome.status,
            )
            .await;
            apply(&cd, &ctx, &seen, outcome, holding).await
        }
        Some(Effect::Pause) => {
            let action = apply(&cd, &ctx, &seen, outcome, holding).await?;
            pause(&cd, &ctx).await?;
            Ok(action)
        }
        // The rollback's own record replaces this decision's.
        Some(Effect::Restore(r)) => {
            ctx.publish(&cd, outcome.notes).await;
            restore(&cd, &ctx, *r).await
        }
        Some(Effect::RefuseRollback(why)) => {
            ctx.event(&cd, EventType::Warning, "RollbackRevisionNotFound", why)
                .await;
            patch_spec(
                &cd,
                &ctx,
                json!([{"op": "remove", "path": "/spec/rollbackTo"}]),
            )
            .await
        }
    }
}

/// A CafeDeployment being deleted: its sets in member clusters are deleted
/// (its local ones go by their ownerReference), then its finalizer. A member
/// that cannot be reached keeps the finalizer until it answers: nothing is
/// left behind there.
async fn finalize(cd: &CafeDeployment, ctx: &Context, seen: &Seen) -> Result<Action, Error> {
    let Some(remove) = finalizer_removed(&cd.metadata, MEMBER_SETS_FINALIZER) else {
        return Ok(Action::await_change());
    };
    let ns = cd.namespace().unwrap_or_default();
    let mut left = Vec::new();
    for (set, home) in seen.in_members() {
        let cluster = home.cluster().unwrap_or_default().to_string();
        let cell = set.labels().get(CELL_LABEL).cloned().unwrap_or_default();
        if let Some(u) = seen.unreachable.get(&cell) {
            left.push(format!("{} in {cluster} ({})", set.name_any(), u.why));
            continue;
        }
        if let Err(e) = home.delete(&ns, &set.name_any()).await {
            left.push(format!("{} in {cluster} ({e})", set.name_any()));
        } else {
            info!(cafedeployment = %cd.name_any(), set = %set.name_any(), member = %cluster, "deleted the InPlaceSet in the member cluster");
            left.push(format!("{} in {cluster} (deleting)", set.name_any()));
        }
    }
    if !left.is_empty() {
        ctx.event(
            cd,
            EventType::Normal,
            "DeletingMemberSets",
            format!(
                "waiting for the InPlaceSets in member clusters to go: {}",
                left.join(", ")
            ),
        )
        .await;
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let removed = patch_spec(cd, ctx, remove).await;
    match removed {
        // Gone already, or the finalizers moved meanwhile: look again.
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 || s.code == 422 => {
            Ok(Action::await_change())
        }
        other => other,
    }
}

fn event_type(warning: bool) -> EventType {
    if warning {
        EventType::Warning
    } else {
        EventType::Normal
    }
}

/// Writes the outcome: the confirmation reset, then the status (the release
/// record, conditional on the version decided from), then the sets. A set is
/// written only when the recorded decision allows it and it differs, and not
/// while a refused write holds the CafeDeployment's writes back (`holding`).
async fn apply(
    cd: &CafeDeployment,
    ctx: &Context,
    seen: &Seen,
    outcome: Outcome,
    holding: bool,
) -> Result<Action, Error> {
    let ns = cd.namespace().unwrap_or_default();
    let name = cd.name_any();
    let owned = &seen.sets;
    let cds: Api<CafeDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = cd.status.clone().unwrap_or_default();
    let mut rv = cd.resource_version();
    if outcome.reset_confirmation {
        // Conditional: a "true" the user writes meanwhile is never overwritten.
        let patch = json!({"metadata": {
            "resourceVersion": rv,
            "annotations": {UPGRADE_CONFIRMED_ANNOTATION: "false"}
        }});
        let written = cds
            .patch(&name, &patch_as(MANAGER), &Patch::Merge(&patch))
            .await?;
        rv = written.resource_version();
        ctx.remember(cd, rv.clone());
    }
    let written = ctx
        .write_status(cd, &previous, outcome.status.clone(), rv)
        .await?;
    let status_wait = written.as_ref().err().copied();
    if written.is_ok() {
        ctx.record_history(cd, &previous, &outcome.status).await;
    }
    if outcome.remove_override
        && let Some(reason) = cd.annotations().get(WINDOW_OVERRIDE_ANNOTATION)
    {
        // Guarded: an override written meanwhile (for the next window) stays.
        let key = WINDOW_OVERRIDE_ANNOTATION.replace('/', "~1");
        let ops = json!([
            {"op": "test", "path": format!("/metadata/annotations/{key}"), "value": reason},
            {"op": "remove", "path": format!("/metadata/annotations/{key}")}
        ]);
        match patch_spec(cd, ctx, ops).await {
            Ok(_) | Err(Error::Kube(kube::Error::Api(_))) => {}
            Err(e) => return Err(e),
        }
    }
    // The sets that differ, written side by side: a group opens in every
    // cell at once, not one cell after the other.
    let writes = outcome.sets.iter().filter(|desired| {
        let current = owned.iter().find(|s| s.name_any() == desired.name_any());
        !current.is_some_and(|c| c.spec == desired.spec && c.annotations() == desired.annotations())
    });
    let writes: Vec<&InPlaceSet> = if holding {
        Vec::new()
    } else {
        writes.collect()
    };
    let results = futures::future::join_all(writes.iter().map(|desired| async move {
        let written = match seen.home_of(desired) {
            Some(home) => home
                .apply(cd, desired, MANAGER)
                .await
                .map_err(|e| (home.cluster().map(str::to_string), e)),
            None => Ok(()),
        };
        (desired.name_any(), written)
    }))
    .await;
    // A member that fails a write is looked at again soon; the others'
    // writes stand.
    let mut member_failed = false;
    for (set, written) in results {
        match written {
            Ok(()) => {}
            Err((Some(cluster), e)) if !is_refusal(&e) => {
                warn!(cafedeployment = %name, set = %set, member = %cluster, error = %e, "cannot write the InPlaceSet in the member cluster");
                ctx.event(
                    cd,
                    EventType::Warning,
                    "MemberWriteFailed",
                    format!("cannot write InPlaceSet {set} in member cluster {cluster}: {e}"),
                )
                .await;
                member_failed = true;
            }
            Err((cluster, e)) if is_refusal(&e) => {
                // The next reconcile reports it (Stalled) and waits its hold-off.
                let where_ = cluster.map_or(String::new(), |c| format!(" in member cluster {c}"));
                ctx.refused(
                    cd,
                    condition::FAILED_UPDATE,
                    &format!("InPlaceSet {set}{where_}"),
                    &e,
                );
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
    let refusal = ctx.refusals.get(&ObjectRef::from_obj(cd));
    if !holding && refusal.is_some() {
        // Every write it needed went through.
        ctx.refusals.cleared(&ObjectRef::from_obj(cd));
    }
    let delete = if holding {
        &[][..]
    } else {
        &outcome.delete[..]
    };
    for set in delete {
        let Some(home) = seen.home_of_name(set) else {
            continue;
        };
        if let Err(e) = home.delete(&ns, set).await {
            if home.cluster().is_none() {
                return Err(e.into());
            }
            member_failed = true;
        }
    }
    // No event into a namespace being deleted: it would be refused too.
    if !refusal.as_ref().is_some_and(|r| r.terminating) {
        ctx.publish(cd, outcome.notes).await;
    }
    ctx.backoff.succeeded(&ObjectRef::from_obj(cd));
    // Unschedulable pods not yet due for rescheduling need a look when they are.
    let wake = outcome
        .wake
        .map_or(300, |w| u64::try_from(w).unwrap_or(1).max(1));
    let member_retry = member_failed.then_some(Duration::from_secs(2));
    let wake = [status_wait, refusal.map(|r| r.wait()), member_retry]
        .into_iter()
        .flatten()
        .fold(Duration::from_secs(wake), Duration::min);
    Ok(Action::requeue(wake.max(Duration::from_millis(100))))
}

async fn reconcile(obj: Arc<CafeDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let telemetry = ctx.telemetry.clone();
    telemetry
        .reconcile("cafedeployment", reconcile_once(obj, ctx), Error::Timeout)
        .await
}

fn error_policy(cd: Arc<CafeDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(ObjectRef::from_obj(&*cd));
    let conflict = matches!(error, Error::Kube(kube::Error::Api(s)) if s.code == 409);
    if conflict {
        // Someone wrote first (the user, or our own write not yet cached): decide again.
        return Action::requeue(Duration::from_millis(200));
    }
    warn!(cafedeployment = %cd.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the CafeDeployment controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    caches: &Caches,
    members: &Members,
    freezes: Option<&crate::runtime::cache::Shared<ReleaseFreeze>>,
    concurrency: u16,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let cd_events = caches.cafedeployments.subscribe();
    let set_events = caches.sets.subscribe();
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client, "cafe-operator".into()),
        telemetry,
        sets: caches.sets.store.clone(),
        sets_by_owner: caches.sets_by_owner.clone(),
        members: members.clone(),
        freezes: freezes.map(|f| f.store.clone()),
        revisions: caches.revisions.store.clone(),
        revisions_by_owner: caches.revisions_by_owner.clone(),
        pods: caches.pods.store.clone(),
        pods_by_set: caches.pods_by_set.clone(),
        prometheus: Prometheus::new(),
        // Freezes too: a release must never start from an empty freeze cache.
        synced: [
            caches.sets.synced.clone(),
            caches.revisions.synced.clone(),
            caches.pods.synced.clone(),
        ]
        .into_iter()
        .chain(freezes.map(|f| f.synced.clone()))
        .chain([members.synced.clone()])
        .collect(),
        status_writes: Coalesce::new(STATUS_EVERY),
        written: Mutex::new(HashMap::new()),
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(300)),
        refusals: Refusals::new(Duration::from_secs(1)),
        probes: Mutex::new(HashMap::new()),
    });
    let synced = [
        caches.cafedeployments.synced.clone(),
        caches.sets.synced.clone(),
        caches.revisions.synced.clone(),
    ];
    let shutdown = shutdown.shared();
    let run = Controller::for_shared_stream(cd_events, caches.cafedeployments.store.clone())
        .owns_shared_stream(set_events)
        .reconcile_on(members.set_changes())
        .reconcile_all_on(members.member_changes())
        .reconcile_all_on(
            freezes
                .map(|f| f.subscribe().map(|_| ()).left_stream())
                .unwrap_or_else(|| futures::stream::pending().right_stream()),
        )
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    run_until_stopped(run, shutdown, &synced).await;
}
