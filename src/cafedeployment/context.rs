//! What the CafeDeployment controller keeps between reconciles (the caches,
//! the member clusters, its own last writes, refusals, sign-off probes) and
//! the small I/O every stage shares: events, the refusal record, the status
//! write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::MANAGER;
use super::history;
use super::hold::{self, Held};
use super::model::Error;
use super::model::{Note, Refused};
use super::revision_history;
use crate::api::pod::Pod;
use crate::api::{CafeDeployment, CafeDeploymentStatus, InPlaceSet, ReleaseFreeze, stamp};
use crate::placement::members::Members;
use crate::runtime::cache::OwnerIndex;
use crate::runtime::health::CacheSync;
use crate::runtime::prometheus::Prometheus;
use crate::runtime::writes::backoff::Backoff;
use crate::runtime::writes::coalesce::conditions_moved;
use crate::runtime::writes::refusals::Refusals;
use crate::runtime::writes::status::{Change, StatusWriter, Wrote};
use crate::runtime::{Telemetry, patch_as};

pub(super) struct Context {
    pub(super) client: Client,
    pub(super) recorder: Recorder,
    pub(super) telemetry: Telemetry,
    pub(super) sets: Store<InPlaceSet>,
    pub(super) sets_by_owner: OwnerIndex,
    /// The member clusters cells may live in.
    pub(super) members: Members,
    /// Release freezes (none without the ReleaseFreeze CRD).
    pub(super) freezes: Option<Store<ReleaseFreeze>>,
    pub(super) revisions: Store<ControllerRevision>,
    pub(super) revisions_by_owner: OwnerIndex,
    /// Pods, read only to name a group's pods in analysis queries.
    pub(super) pods: Store<Pod>,
    pub(super) pods_by_set: OwnerIndex,
    /// The analysis queries' client (an error: every query is an error measurement).
    pub(super) prometheus: Result<Prometheus, String>,
    /// Sets, revisions and pods have listed once (pods name a group's pods
    /// in analysis queries: never from a cache that has not listed).
    pub(super) synced: Vec<CacheSync>,
    /// The CafeDeployment status, written only when it changed.
    pub(super) status: StatusWriter,
    /// The resourceVersion our last write produced, per CafeDeployment: a
    /// cached copy older than that is not decided on (it would reopen, close or
    /// re-confirm a group already recorded).
    pub(super) written: Mutex<HashMap<ObjectRef<CafeDeployment>, u64>>,
    pub(super) backoff: Backoff<ObjectRef<CafeDeployment>>,
    /// Writes of a CafeDeployment's objects the API server refused: held
    /// back whatever wakes the reconcile, and reported as Stalled.
    pub(super) refusals: Refusals<ObjectRef<CafeDeployment>>,
    /// Per CafeDeployment, when the sign-off policies were last probed and
    /// whether they were in force.
    pub(super) probes: Mutex<HashMap<ObjectRef<CafeDeployment>, (Instant, bool)>>,
}

/// How long a probe that found the sign-off policies in force is trusted.
const PROBE_EVERY: Duration = Duration::from_secs(60);
/// How long one that found them not in force is trusted before a step is
/// recorded: they may have just been installed, or be half loaded (the API
/// server loads each policy and binding on its own), and a step recorded
/// meanwhile reads "unverified" for good.
const REPROBE_UNVERIFIED: Duration = Duration::from_secs(5);

/// Whether a probe's answer (`verified`), `age` old, is to be asked again
/// before a step is recorded.
fn probe_stale(verified: bool, age: Duration) -> bool {
    age >= if verified {
        PROBE_EVERY
    } else {
        REPROBE_UNVERIFIED
    }
}

pub(super) fn rv_number(rv: Option<String>) -> Option<u64> {
    rv.and_then(|v| v.parse().ok())
}

impl Context {
    /// Records a refused write of one of `cd`'s objects (`what`), reported
    /// with `reason`.
    pub(super) fn refused(
        &self,
        cd: &CafeDeployment,
        reason: &'static str,
        what: &str,
        e: &kube::Error,
    ) {
        let r = self
            .refusals
            .refused(ObjectRef::from_obj(cd), (reason, what), e);
        warn!(cafedeployment = %cd.name_any(), error = %e, retry_in = ?r.wait(), "{what} refused");
    }

    /// The refused write on record for `cd` as status reports it (none in a
    /// namespace being deleted), and whether it still holds writes back.
    pub(super) fn refusal(&self, cd: &CafeDeployment) -> (Option<Refused>, bool) {
        let Some(r) = self.refusals.get(&ObjectRef::from_obj(cd)) else {
            return (None, false);
        };
        let shown = (!r.terminating).then(|| Refused {
            reason: r.reason,
            message: format!("the API server refuses to write {}: {}", r.what, r.message),
        });
        (shown, r.wait() > Duration::ZERO)
    }

    pub(super) async fn event(
        &self,
        cd: &CafeDeployment,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        self.event_as(cd, type_, reason, reason, note).await;
    }

    pub(super) async fn event_as(
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
    pub(super) async fn publish(&self, cd: &CafeDeployment, notes: Vec<Note>) {
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
    pub(super) fn held(&self, cd: &CafeDeployment, verified: bool, now: &Time) -> Held {
        let freezes = self
            .freezes
            .as_ref()
            .map(|store| store.state())
            .unwrap_or_default();
        hold::held(cd, &freezes, verified, now)
    }

    /// Whether the sign-off policies were in force for `cd` when last
    /// probed, and whether that answer is stale (`probe_stale`).
    pub(super) fn verified_on_record(&self, cd: &CafeDeployment) -> Option<(bool, bool)> {
        let probes = self.probes.lock().ok()?;
        let (at, verified) = probes.get(&ObjectRef::from_obj(cd))?;
        Some((*verified, probe_stale(*verified, at.elapsed())))
    }

    /// The last answer, or a probe now when there is none (or it is stale
    /// and `fresh` is asked for).
    pub(super) async fn verified(&self, cd: &CafeDeployment, fresh: bool) -> bool {
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
    pub(super) async fn probe(&self, cd: &CafeDeployment) -> bool {
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
    pub(super) async fn record_history(
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

    pub(super) fn remember(&self, cd: &CafeDeployment, rv: Option<String>) {
        if let (Some(rv), Ok(mut w)) = (rv_number(rv), self.written.lock()) {
            w.insert(ObjectRef::from_obj(cd), rv);
        }
    }

    /// The cache has not caught up with our own last write to `cd`.
    pub(super) fn behind(&self, cd: &CafeDeployment) -> bool {
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
    pub(super) async fn write_status(
        &self,
        cd: &CafeDeployment,
        previous: &CafeDeploymentStatus,
        status: CafeDeploymentStatus,
        rv: Option<String>,
    ) -> Result<Result<Option<String>, Duration>, Error> {
        if status == *previous {
            return Ok(Ok(rv));
        }
        let api: Api<CafeDeployment> =
            Api::namespaced(self.client.clone(), &cd.namespace().unwrap_or_default());
        let change = Change {
            previous,
            next: &status,
            urgent: urgent(previous, &status),
            over: rv.as_deref(),
        };
        match self.status.write(&api, cd, change).await? {
            Wrote::Unchanged => Ok(Ok(rv)),
            Wrote::Later(wait) => Ok(Err(wait)),
            // Not leading: no write at all, and none of the sets after it.
            Wrote::NotLeading => Ok(Err(Duration::from_secs(5))),
            // Another operator writes it: leave it to that one for a while.
            Wrote::StandingDown(wait) => Ok(Err(wait)),
            Wrote::Written(version) => {
                self.remember(cd, version.clone());
                Ok(Ok(version))
            }
        }
    }
}

/// Whether a status change must be written at once: anything but counts
/// (and the messages that quote them) moving.
pub(super) fn urgent(previous: &CafeDeploymentStatus, status: &CafeDeploymentStatus) -> bool {
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

pub(super) fn event_type(warning: bool) -> EventType {
    if warning {
        EventType::Warning
    } else {
        EventType::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_found_missing_are_asked_again_sooner_than_policies_in_force() {
        let s = Duration::from_secs;
        assert!(!probe_stale(true, s(30)), "in force: trusted a minute");
        assert!(probe_stale(true, s(60)));
        assert!(!probe_stale(false, s(1)));
        assert!(
            probe_stale(false, s(5)),
            "not in force: asked again before a step is recorded"
        );
    }
}
