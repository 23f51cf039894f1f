//! Stage 3 of a CafeDeployment's reconcile, the decision, pure: from the
//! object, its cells' InPlaceSets and its revision history (all read from
//! caches), the spec as `validate` resolved it, and `now`, what to write —
//! the confirmation reset, the status (the release record), each cell's
//! InPlaceSet, the sets to delete, and the events — and what the shell does
//! besides (`Effect`). No client: every rule is a unit test.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::analysis::{self as gate, Act};
use super::model::{Effect, History, Note, Observation, Outcome, Restore, cell_of, note};
use super::reach::{Counts, deadline_wake, failed_over_sizes, given_back, waiting_for};
use super::reschedule::rescheduled_sizes;
use super::sets::{cell_sets, observed};
use super::signoff::{Confirmation, record_steps};
pub use super::status::Health;
use super::status::{CellRows, compute_status, conditions};
use super::validate::{Invalid, Valid};
use super::{failover, predownload};
use crate::api::names::{UPGRADE_CONFIRMED_ANNOTATION, condition};
use crate::api::{
    Analysis, AnalysisPhase, AnalysisStatus, CafeDeployment, CafeDeploymentStatus, InPlaceSet,
    Phase, UpgradeType, WINDOW_OVERRIDE_ANNOTATION, WindowStatus,
};
use crate::release::baseline::Record;
use crate::release::{self, Input};
/// The release as recorded in status.
pub fn record_of(status: &CafeDeploymentStatus) -> Record {
    let release = status.release.as_ref();
    let revision = release
        .map(|r| r.revision.clone())
        .filter(|r| !r.is_empty());
    Record {
        stable: status.current_revision.clone(),
        opened: release.map_or(0, |r| usize::try_from(r.opened).unwrap_or(0)),
        rollback: release.is_some_and(|r| r.rollback),
        awaiting: release
            .and_then(|r| r.awaiting_confirmation.as_ref())
            .filter(|w| Some(&w.revision) == revision.as_ref())
            .map(|w| usize::try_from(w.group).unwrap_or(0)),
        baseline: release
            .map(|r| &r.baseline)
            .filter(|b| !b.is_empty())
            .map(|b| {
                b.iter()
                    .map(|(k, v)| (k.clone(), usize::try_from(*v).unwrap_or(0)))
                    .collect()
            }),
        revision,
    }
}

/// The decision, in order: a rollback a person asked for, else an invalid
/// spec's stall, else the release's next step.
pub fn decide(obs: &Observation) -> Outcome {
    let cd = obs.cd;
    let previous = cd.status.clone().unwrap_or_default();
    // A rollback a person asked for comes before anything else: it may be
    // what makes an invalid spec valid again.
    if let Some(request) = &cd.spec.rollback_to {
        return Outcome {
            status: previous,
            effect: Some(rolled_back_to(request.revision, obs.history, obs.update)),
            ..Outcome::default()
        };
    }
    match obs.valid {
        Ok(valid) => release_step(obs, valid, &previous),
        Err(Invalid(why)) => invalid(cd, &previous, obs.now, why.clone()),
    }
}

/// The release's next step for a valid spec: each cell's size, the sets as
/// the release reads them, who confirms, the release decision and the
/// analysis gate; then the sets to write, the status and its events, the
/// effect, and the history.
fn release_step(obs: &Observation, valid: &Valid, previous: &CafeDeploymentStatus) -> Outcome {
    let cd = obs.cd;
    let strategy = &cd.spec.strategy;
    let paused = paused(obs, previous);
    let sizes = Sizes::of(obs, valid, previous);
    let record = record_of(previous);
    let (active, removed) = observed(obs, &valid.cells, &sizes.sets, &record);
    let analysis = strategy.analysis.as_ref();
    let previous_analysis = previous.release.as_ref().and_then(|r| r.analysis.as_ref());
    let confirmation = Confirmation::of(cd, analysis, previous_analysis, obs.update, &record);
    let decision = release::decide(&Input {
        record: &record,
        update: obs.update,
        cells: &sizes.sized,
        active: &active,
        removed: &removed,
        beta: strategy.upgrade_type == UpgradeType::Beta,
        batch: valid.batch,
        // An analysis is a confirmation: groups wait for its verdict.
        need_confirm: strategy.need_waiting_for_confirm || analysis.is_some(),
        paused,
        confirmed: confirmation.confirmed,
    });
    let decision = counted(decision, previous, obs.update);
    let analysed = gate_of(
        obs,
        (analysis, previous_analysis),
        &record,
        &decision,
        paused,
    );
    let mut notes = Vec::new();
    let (sets, delete) = cell_sets(obs, &decision, &sizes.by_cell, paused, &mut notes);
    let waiting = waiting_for(&decision.targets, &sizes.by_cell, obs);
    let rows = CellRows {
        distribution: &sizes.sized,
        away: &sizes.away,
        failed_over: &sizes.failed_over,
        observed: &sizes.sets,
        waiting: &waiting,
    };
    let mut status = compute_status(cd, obs, &rows, &decision, &analysed, previous);
    failover_status(obs, &sizes, previous, &mut status, &mut notes);
    let (pulled, failed_pull) = predownload::condition(cd, &obs.sets, previous, obs.now);
    status.conditions.extend(pulled);
    notes.extend(failed_pull);
    notes.extend(phase_notes(
        cd,
        previous,
        &status,
        &decision,
        analysis.is_none(),
    ));
    notes.extend(analysis_notes(previous_analysis, analysed.record.as_ref()));
    let due = match (analysis, analysed.record.as_ref()) {
        (Some(a), Some(r)) => crate::release::analysis::due_in(a, r, obs.now),
        _ => None,
    };
    let deadline = deadline_wake(
        strategy.progress_deadline_seconds,
        !waiting.is_empty(),
        status.release.as_ref().and_then(|r| r.opened_at.as_ref()),
        obs.now,
    );
    let wake = due
        .map(|due| due.max(1))
        .into_iter()
        .chain(sizes.wake)
        .chain(deadline)
        .min();
    let effect = effect_of(analysed, due, paused, obs.history, &mut notes);
    record_steps(obs, previous, &mut status, confirmation.by_analysis);
    Outcome {
        reset_confirmation: decision.begins_waiting,
        status,
        sets,
        delete,
        notes,
        wake,
        effect,
        remove_override: override_ends(cd, previous, obs.window),
    }
}

/// The decision with its groups completed as status shows them: never fewer
/// than shown before within the same release (`progress::shown_completed`).
fn counted(
    mut decision: release::Decision,
    previous: &CafeDeploymentStatus,
    update: &str,
) -> release::Decision {
    let before = previous.release.as_ref().map(|r| release::progress::Shown {
        revision: &r.revision,
        groups: usize::try_from(r.groups).unwrap_or(0),
        completed: usize::try_from(r.group).unwrap_or(0),
    });
    let progress = &decision.progress;
    let revision = decision.record.revision.as_deref().unwrap_or(update);
    decision.progress.completed =
        release::progress::shown_completed(progress.completed, progress.groups, revision, before);
    decision
}

/// Whether the release stands still: a freeze stops it as a pause does,
/// whoever paused it; a deny window too, except a rollback.
fn paused(obs: &Observation, previous: &CafeDeploymentStatus) -> bool {
    let rolling_back = previous.release.as_ref().is_some_and(|r| r.rollback);
    obs.cd.spec.strategy.pause
        || obs
            .frozen
            .is_some_and(|f| !(f.lets_rollback && rolling_back))
}

/// Each cell's set and size: the distribution as autoReschedule and failover
/// move it, and what they moved away.
struct Sizes<'a> {
    /// The owned sets, by cell (removed cells' too).
    by_cell: BTreeMap<String, &'a InPlaceSet>,
    /// Each cell's set, in cells order.
    sets: Vec<Option<&'a InPlaceSet>>,
    /// Each cell's pods, in cells order.
    sized: Vec<(String, usize)>,
    /// Pods autoReschedule moved away from each cell.
    away: Vec<usize>,
    /// Pods failover moved away from each cell.
    failed_over: Vec<usize>,
    /// Seconds until autoReschedule looks again.
    wake: Option<i64>,
    /// Each `topology.failover` decision's life, for status.
    failover: Vec<crate::api::FailoverStatus>,
}

impl<'a> Sizes<'a> {
    /// Sizes the cells of `valid` for the sets of `obs`: autoReschedule's
    /// moves, then the failover decisions that act (each bound to its
    /// outage, `failover`), their surge paced by the budget.
    fn of(obs: &Observation<'a>, valid: &Valid, previous: &CafeDeploymentStatus) -> Self {
        let cells = &valid.cells;
        let by_cell: BTreeMap<String, &InPlaceSet> =
            obs.sets.iter().map(|s| (cell_of(s), *s)).collect();
        let sets: Vec<Option<&InPlaceSet>> =
            cells.iter().map(|c| by_cell.get(c).copied()).collect();
        let now = obs.now.0.as_second();
        let (sizes, away, wake) =
            rescheduled_sizes(obs.cd, previous, cells, &valid.distribution, &sets, now);
        let spec = &obs.cd.spec;
        let mut decisions = failover::records(
            &spec.topology.failover,
            &previous.failover,
            obs.unreachable,
            obs.now,
        );
        let counts: Vec<Option<Counts>> = cells
            .iter()
            .zip(&sets)
            .map(|(c, s)| {
                s.filter(|_| !obs.unreachable.contains_key(c))
                    .map(Counts::of)
            })
            .collect();
        let beta = spec.strategy.upgrade_type == UpgradeType::Beta;
        let budget = |full: &[usize]| {
            let plan = release::plan::Plan::new(full, beta, valid.batch);
            release::cells::budget(&plan, full.iter().sum())
        };
        let (sizes, failed_over) = failed_over_sizes(
            &failover::acting(&decisions),
            cells,
            sizes,
            obs,
            &counts,
            budget,
        );
        failover::spend(
            &mut decisions,
            obs.unreachable,
            given_back(&sizes, &counts),
            obs.now,
        );
        let sized = cells.iter().cloned().zip(sizes.iter().copied()).collect();
        Self {
            by_cell,
            sets,
            sized,
            away,
            failed_over,
            wake,
            failover: decisions,
        }
    }
}

/// The failover decisions into `status` (`status.failover`, the
/// `FailoverSpent` condition) and their events.
fn failover_status(
    obs: &Observation,
    sizes: &Sizes,
    previous: &CafeDeploymentStatus,
    status: &mut CafeDeploymentStatus,
    notes: &mut Vec<Note>,
) {
    let moved: BTreeMap<String, usize> = sizes
        .sized
        .iter()
        .zip(&sizes.failed_over)
        .map(|((c, _), n)| (c.clone(), *n))
        .collect();
    notes.extend(failover::notes(
        previous,
        &sizes.failover,
        &moved,
        obs.unreachable,
    ));
    status.conditions.extend(failover::spent_condition(
        &sizes.failover,
        obs.unreachable,
        previous,
        obs.cd.metadata.generation,
        obs.now,
    ));
    status.failover = sizes.failover.clone();
}

/// The analysis gate over this decision (`analysis`: the spec's, and the
/// record before).
fn gate_of(
    obs: &Observation,
    (analysis, previous): (Option<&Analysis>, Option<&AnalysisStatus>),
    record: &Record,
    decision: &release::Decision,
    paused: bool,
) -> gate::Gate {
    gate::gate(&gate::Input {
        spec: analysis,
        previous,
        progress: &decision.progress.phase,
        awaiting: decision.record.awaiting,
        groups: decision.progress.groups,
        revision: obs.update,
        stable: decision.record.stable.as_deref(),
        new_release: decision.record.revision != record.revision
            && !decision.record.rollback
            && !decision.record.releases_stable(),
        paused,
        name: &obs.cd.name_any(),
        now: obs.now,
    })
}

/// The events of a phase that changed, and of a wait that begins for a
/// person's confirmation (`by_person`: no analysis gives it).
fn phase_notes(
    cd: &CafeDeployment,
    previous: &CafeDeploymentStatus,
    status: &CafeDeploymentStatus,
    decision: &release::Decision,
    by_person: bool,
) -> Vec<Note> {
    let mut notes = Vec::new();
    if status.phase != previous.phase
        && let Some(phase) = status.phase
    {
        let message = status
            .release
            .as_ref()
            .map(|r| r.message.clone())
            .unwrap_or_default();
        notes.push(note(
            phase == Phase::Stalled,
            &format!("{phase:?}"),
            message,
        ));
    }
    if decision.begins_waiting && by_person {
        let name = cd.name_any();
        notes.push(note(
            false,
            "WaitingForConfirm",
            format!(
                "group {} of {} done; confirm group {} with: kubectl annotate cafedeployment \
                 {name} {UPGRADE_CONFIRMED_ANNOTATION}=true --overwrite",
                decision.progress.completed,
                decision.progress.groups,
                decision.progress.completed + 1
            ),
        ));
    }
    notes
}

/// An override opens the one window it was given for: once that ends (or
/// the release leaves it), it is removed.
fn override_ends(
    cd: &CafeDeployment,
    previous: &CafeDeploymentStatus,
    window: Option<&WindowStatus>,
) -> bool {
    cd.annotations().contains_key(WINDOW_OVERRIDE_ANNOTATION)
        && previous
            .window
            .as_ref()
            .is_some_and(|w| w.overridden_by.is_some())
        && window.map(|w| (&w.name, &w.since))
            != previous.window.as_ref().map(|w| (&w.name, &w.since))
}

/// What the analysis asks the shell to do: its verdict's action (a rollback
/// resolved to the stable revision's template), or the measurement due now
/// while the release waits for the verdict (never while paused or frozen:
/// the analysis waits too). `due`: seconds until its next measurement.
fn effect_of(
    analysed: gate::Gate,
    due: Option<i64>,
    paused: bool,
    history: &History,
    notes: &mut Vec<Note>,
) -> Option<Effect> {
    match analysed.act {
        Some(Act::Pause) => Some(Effect::Pause),
        Some(Act::Rollback(stable)) => {
            let Some(r) = history.get(&stable) else {
                notes.push(note(
                    true,
                    "RollbackRevisionNotFound",
                    format!(
                        "the analysis asked for a rollback to {stable}, which is not in the \
                         history; roll back by hand with spec.rollbackTo"
                    ),
                ));
                return None;
            };
            let message = analysed
                .record
                .as_ref()
                .map_or("analysis failed", |a| a.message.as_str());
            Some(Effect::Restore(Box::new(Restore {
                why: format!("rolling back to {stable}: {message}"),
                revision: stable,
                template: r.template.clone(),
                analysis: analysed.record,
            })))
        }
        // Only while the analysis holds the release (a record kept as
        // history, superseded by a person, is measured no more).
        None => analysed
            .record
            .as_ref()
            .filter(|_| analysed.shown.is_some())
            .filter(|r| r.phase == AnalysisPhase::Running && r.action.is_none() && !paused)
            .filter(|_| due.is_some_and(|d| d <= 0))
            .and_then(|r| usize::try_from(r.group).ok())
            .map(|group| Effect::Measure { group }),
    }
}

/// `spec.rollbackTo`: the recorded revision it names (0: the newest one
/// other than the current template's), or why none is.
fn rolled_back_to(number: i64, history: &History, update: &str) -> Effect {
    let target = if number == 0 {
        history
            .iter()
            .filter(|(name, _)| name.as_str() != update)
            .max_by_key(|(_, r)| r.number)
    } else {
        history.iter().find(|(_, r)| r.number == number)
    };
    match target {
        Some((name, r)) => Effect::Restore(Box::new(Restore {
            revision: name.clone(),
            template: r.template.clone(),
            why: format!("rolling back to revision {} ({name})", r.number),
            analysis: None,
        })),
        None => {
            let mut kept: Vec<i64> = history.values().map(|r| r.number).collect();
            kept.sort_unstable();
            Effect::RefuseRollback(format!(
                "spec.rollbackTo.revision {number} is not in the history (kept: {kept:?}); \
                 set it to one of them, or 0 for the previous revision"
            ))
        }
    }
}

/// An event when an analysis starts (its verdict's event comes with the
/// measurement that reached it).
fn analysis_notes(
    previous: Option<&crate::api::AnalysisStatus>,
    current: Option<&crate::api::AnalysisStatus>,
) -> Vec<Note> {
    let Some(current) = current else {
        return Vec::new();
    };
    let same = previous.is_some_and(|p| p.revision == current.revision && p.group == current.group);
    if same {
        return Vec::new();
    }
    vec![Note {
        action: Some(current.event_action()),
        ..note(false, "AnalysisStarted", current.summary())
    }]
}

/// The spec cannot be acted on (a rule the API server cannot check): say so,
/// for this generation, and change nothing until the spec changes.
fn invalid(
    cd: &CafeDeployment,
    previous: &CafeDeploymentStatus,
    now: &Time,
    why: String,
) -> Outcome {
    let mut status = previous.clone();
    status.observed_generation = cd.metadata.generation;
    status.phase = Some(Phase::Stalled);
    let message = format!("invalid spec: {why}");
    if let Some(release) = status.release.as_mut() {
        release.message = message.clone();
    }
    let cond = conditions(previous, &message, cd.metadata.generation, now);
    status.conditions = vec![
        cond(condition::READY, false, condition::INVALID_SPEC),
        cond(condition::RECONCILING, false, condition::INVALID_SPEC),
        cond(condition::STALLED, true, condition::INVALID_SPEC),
        cond(condition::PROGRESSING, false, condition::INVALID_SPEC),
    ];
    let notes = if previous.phase != Some(Phase::Stalled)
        || previous.observed_generation != cd.metadata.generation
    {
        vec![note(true, condition::INVALID_SPEC, message.clone())]
    } else {
        Vec::new()
    };
    Outcome {
        status,
        notes,
        ..Outcome::default()
    }
}

#[cfg(test)]
pub(super) mod tests;
