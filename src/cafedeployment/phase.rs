//! The phase of a release and its message, pure: where the release stands
//! by its progress (creating, releasing, waiting for confirmation, paused,
//! rolling back, done), with how to go on, and what holds it (a group's
//! analysis, a freeze). `status` adds what waits or stalls it.

use kube::ResourceExt;

use super::analysis::Gate;
use super::model::{Observation, cell_of};
use crate::api::names::UPGRADE_CONFIRMED_ANNOTATION;
use crate::api::{CafeDeployment, Phase};
use crate::release::{self, progress};

/// The phase and message of the release's progress, before anything holds
/// or stalls it.
pub(super) fn progress_phase(
    cd: &CafeDeployment,
    obs: &Observation,
    decision: &release::Decision,
    analysed: &Gate,
    distribution: &[(String, usize)],
    cells_text: &str,
) -> (Phase, String) {
    let revision = obs.update;
    let record = &decision.record;
    let progress = &decision.progress;
    let name = cd.name_any();
    let creating = record.stable.is_none();
    match &progress.phase {
        progress::Phase::Complete
            if !obs
                .sets
                .iter()
                .any(|s| !distribution.iter().any(|(c, _)| *c == cell_of(s))) =>
        {
            (
                Phase::Healthy,
                format!(
                    "all {} pods run {revision} ({cells_text})",
                    cd.spec.replicas
                ),
            )
        }
        progress::Phase::Complete => (
            Phase::Progressing,
            format!("moving pods out of removed cells ({cells_text})"),
        ),
        // Nothing to create yet: a first creation at zero replicas is done.
        progress::Phase::Empty if creating => (
            Phase::Healthy,
            format!("replicas is 0; scaling up creates the pods of {revision} group by group"),
        ),
        progress::Phase::Empty => (
            Phase::Progressing,
            format!(
                "scaled to zero in the release of {revision}: the release is kept; scaling \
                 up creates pods on {} except what the groups opened so far cover, and \
                 the release goes on from there",
                record.stable.as_deref().unwrap_or_default()
            ),
        ),
        progress::Phase::WaitingForConfirm(group) => (
            Phase::WaitingForConfirm,
            waiting_message(&name, revision, decision, *group, cells_text),
        ),
        progress::Phase::Paused => (
            Phase::Paused,
            format!(
                "paused after group {} of {} ({cells_text}); resume: kubectl patch cafedeployment \
                 {name} --type merge -p '{{\"spec\":{{\"strategy\":{{\"pause\":false}}}}}}'",
                progress.completed, progress.groups
            ),
        ),
        // Recorded, never inferred: a template reverted to the stable revision
        // records a rollback; a completed release whose sets' status catches up
        // (or a lost pod coming back) is not one.
        progress::Phase::Progressing if record.rollback => (
            Phase::RollingBack,
            progressing_message(decision, analysed, cells_text),
        ),
        progress::Phase::Progressing => (
            Phase::Progressing,
            progressing_message(decision, analysed, cells_text),
        ),
    }
}

/// The message while `group` waits for confirmation: how to confirm it, or,
/// scaled to zero, what scaling up does.
fn waiting_message(
    name: &str,
    revision: &str,
    decision: &release::Decision,
    group: usize,
    cells_text: &str,
) -> String {
    let progress = &decision.progress;
    if progress.groups == 0 {
        format!(
            "scaled to zero while group {group} of {revision} waits for confirmation: the \
             release is kept; scaling up creates pods on {} except what the groups opened \
             so far cover",
            decision.record.stable.as_deref().unwrap_or_default()
        )
    } else {
        format!(
            "group {} of {} done ({cells_text}); confirm to continue: kubectl annotate \
             cafedeployment {name} {UPGRADE_CONFIRMED_ANNOTATION}=true --overwrite",
            group - 1,
            progress.groups
        )
    }
}

/// The message while a group's pods move: a creation, a rollback (one an
/// analysis asked for says why) or a release.
fn progressing_message(decision: &release::Decision, analysed: &Gate, cells_text: &str) -> String {
    let record = &decision.record;
    let progress = &decision.progress;
    let rollback = record.rollback;
    format!(
        "{} group {} of {} ({cells_text}){}",
        if record.stable.is_none() {
            "creating the pods of"
        } else if rollback {
            "rolling back"
        } else {
            "releasing"
        },
        progress.opened,
        progress.groups,
        // A rollback an analysis asked for says why.
        analysed
            .record
            .as_ref()
            .filter(|a| rollback && a.action.as_deref() == Some("Rollback"))
            .map_or(String::new(), |a| format!(
                ": the analysis of group {} of {} failed: {}",
                a.group, a.revision, a.message
            ))
    )
}

/// A group's analysis holds the release: it says where it stands; a freeze
/// says so where a pause would, whoever paused too.
pub(super) fn held_phase(
    cd: &CafeDeployment,
    obs: &Observation,
    progress: &progress::Phase,
    analysed: &Gate,
    (phase, message): (Phase, String),
    cells_text: &str,
) -> (Phase, String) {
    let (phase, message) = match (progress, &analysed.shown) {
        (progress::Phase::WaitingForConfirm(_) | progress::Phase::Paused, Some((shown, text))) => {
            let shown = if cd.spec.strategy.pause || obs.frozen.is_some() {
                Phase::Paused
            } else {
                *shown
            };
            (shown, format!("{text} ({cells_text})"))
        }
        _ => (phase, message),
    };
    match (phase, obs.frozen) {
        (Phase::Paused, Some(frozen)) => {
            (Phase::Frozen, format!("{} ({cells_text})", frozen.message))
        }
        _ => (phase, message),
    }
}
