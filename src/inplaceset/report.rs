//! Stage 5 of a set's reconcile: the status (computed from the pods and the
//! decisions, written only when it changed, counters spaced out), a Warning
//! event when the set becomes stalled, and when to look again.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::decide::Decided;
use super::dereference::Found;
use super::lifecycle::{Decision, PodFacts, Timing, Waiting, settle_wake};
use super::plan::SetSpec;
use super::status::{self, Inputs, Observed, compute};
use super::templates::Templates;
use crate::api::names::condition;
use crate::api::{InPlaceSet, InPlaceSetStatus, PreDownloadStatus};
use crate::runtime::writes::coalesce::conditions_moved;
use crate::runtime::writes::refusals::Refusal;
use crate::runtime::writes::status::{Change, Wrote};
use crate::traffic::service;

/// Writes the set's status when it changed. Returns when to look again for a
/// counters-only change held back.
pub(super) async fn report(
    ctx: &Context,
    set: &InPlaceSet,
    (found, decided): (&Found, &Decided),
    (templates, spec): (&Templates, &SetSpec),
    (refusal, pre_download): (Option<&Refusal>, Option<PreDownloadStatus>),
    (now, time): (i64, &Time),
) -> Result<Option<Duration>, kube::Error> {
    let observed: Vec<Observed> = found
        .facts
        .iter()
        .zip(&decided.decisions)
        .map(|(pod, decision)| Observed { pod, decision })
        .collect();
    let previous = set.status.clone().unwrap_or_default();
    let mut unsafe_services: Vec<String> = found
        .services
        .iter()
        .filter(|s| service::publishes_not_ready(s) && service::selects(s, &found.labels))
        .map(|s| s.name_any())
        .collect();
    unsafe_services.sort();
    let mut status = compute(&Inputs {
        observed: &observed,
        spec,
        revision: &templates.update.1.revision,
        stable_revision: templates.stable.as_ref().map(|(_, t)| t.revision.as_str()),
        generation: set.metadata.generation,
        selector: crate::api::selector_string(&set.spec.selector),
        progress_deadline_seconds: i64::from(set.spec.progress_deadline_seconds),
        previous: &previous,
        now,
        now_time: time.clone(),
        unsafe_services: &unsafe_services,
        failed_create: refusal.map(|r| r.message.as_str()),
        disruption_hold: decided.disruption_hold.as_deref(),
    });
    status.pre_download = pre_download;
    // No event into a namespace being deleted: it would be refused too.
    let quiet = refusal.is_some_and(|r| r.terminating);
    let urgent = urgent(&previous, &status, spec);
    write(ctx, set, (&previous, &status), urgent, quiet).await
}

/// The spec cannot be acted on: `Stalled=True` reason `InvalidSpec` with
/// `why`, for this generation, and a Warning event once.
pub(super) async fn invalid(
    ctx: &Context,
    set: &InPlaceSet,
    why: &str,
    time: &Time,
) -> Result<(), kube::Error> {
    let previous = set.status.clone().unwrap_or_default();
    let status = status::invalid(&previous, set.metadata.generation, why, time);
    write(ctx, set, (&previous, &status), true, false)
        .await
        .map(drop)
}

async fn write(
    ctx: &Context,
    set: &InPlaceSet,
    (previous, status): (&InPlaceSetStatus, &InPlaceSetStatus),
    urgent: bool,
    quiet: bool,
) -> Result<Option<Duration>, kube::Error> {
    let api: Api<InPlaceSet> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    let change = Change {
        previous,
        next: status,
        urgent,
        over: None,
    };
    match ctx.status.write(&api, set, change).await? {
        Wrote::Later(wait) | Wrote::StandingDown(wait) => Ok(Some(wait)),
        Wrote::Written(_) => {
            if !quiet {
                report_stall_transition(ctx, set, previous, status).await;
            }
            Ok(None)
        }
        Wrote::Unchanged | Wrote::NotLeading => Ok(None),
    }
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
        // beyond its share at once when there are more of them; fewer can
        // wait for the counters (the budget then counts too many for a
        // moment, never too few), so a creation's pods getting ready one by
        // one are not a write each.
        || beyond_share(status, spec) > beyond_share(previous, spec)
        || conditions_moved(&previous.conditions, &status.conditions)
        || pre_download_moved(previous, status)
        || first_paced_pod_available(previous, status, spec)
}

/// A paced creation's first pod is available: the CafeDeployment, which
/// stops pacing a cell once one of its pods gets ready, sees it without the
/// counters' delay (one write per set and creation).
fn first_paced_pod_available(
    previous: &InPlaceSetStatus,
    status: &InPlaceSetStatus,
    spec: &SetSpec,
) -> bool {
    spec.pace_creation
        && previous.updated_available_replicas == 0
        && status.updated_available_replicas > 0
}

/// The pre-download reached a node's end (pulled, or failed) or a new
/// revision: the CafeDeployment shows it before the next group opens.
fn pre_download_moved(previous: &InPlaceSetStatus, status: &InPlaceSetStatus) -> bool {
    let ends = |s: &InPlaceSetStatus| {
        s.pre_download
            .as_ref()
            .map(|p| (p.revision.clone(), p.pulled.len(), p.failed.clone()))
    };
    ends(previous) != ends(status)
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
pub(super) fn next_wake(
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
            deadlines.push(timing.held_until);
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
    // The settle time ends to the millisecond: waking on the second after
    // would add up to a second to every pod's update.
    let wake = settle_wake(facts, decisions, timing).map_or(wake, |s| wake.min(s));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(replicas: i32, available: i32) -> InPlaceSetStatus {
        InPlaceSetStatus {
            replicas,
            available_replicas: available,
            updated_available_replicas: available,
            ..InPlaceSetStatus::default()
        }
    }

    /// Counters moving mid-way wait, but the CafeDeployment hears at once of
    /// a paced creation's first available pod and of more pods beyond the
    /// set's share of the budget; fewer beyond it can wait.
    #[test]
    fn only_what_the_cafedeployment_waits_for_is_written_at_once() {
        let spec = SetSpec {
            replicas: 10,
            partition: 0,
            max_unavailable: 2,
            paused: false,
            pace_creation: false,
            recreate: false,
            min_ready_seconds: 0,
            disruptions_allowed: None,
        };
        let paced = SetSpec {
            pace_creation: true,
            ..spec.clone()
        };
        // 2 of 4 created pods available: counters only.
        assert!(!urgent(&status(4, 1), &status(4, 2), &spec));
        // A paced creation's first available pod.
        assert!(urgent(&status(2, 0), &status(2, 1), &paced));
        assert!(!urgent(&status(2, 1), &status(3, 1), &paced));
        // 5 unavailable (3 beyond the share) after 4: at once; back to 4: later.
        assert!(urgent(&status(8, 4), &status(8, 3), &spec));
        assert!(!urgent(&status(8, 3), &status(8, 4), &spec));
        // Every pod there and available: a resting point.
        assert!(urgent(&status(10, 9), &status(10, 10), &spec));
    }
}
