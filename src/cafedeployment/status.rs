//! The CafeDeployment's status, pure: counts over every set, one row per
//! cell, the phase and its message (where the release stands and what holds
//! it, from `phase`; what it waits for or what stalls it, and how to go on),
//! the release record, and the kstatus conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::analysis::Gate;
use super::build::REVISION_ANNOTATION;
use super::model::{Observation, UNKNOWN, Unreachable};
use super::phase::{held_phase, progress_phase};
use crate::api::names::condition;
use crate::api::{
    CafeDeployment, CafeDeploymentStatus, CellStatus, ConfirmationWait, InPlaceSet, Phase,
    ReleaseStatus, observed_condition,
};
use crate::release::baseline::Record;
use crate::release::{self, progress};

/// The kstatus reading of a phase, so that `kubectl wait --for=condition=Ready`,
/// Helm's and Flux's kstatus checks and Argo CD tell "working" (Reconciling),
/// "waiting for a person" (neither Reconciling nor Stalled, Ready=False with
/// reason WaitingForConfirm or Paused), "stuck" (Stalled) and "done" (Ready)
/// apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health<'a> {
    pub ready: bool,
    pub reconciling: bool,
    pub stalled: bool,
    pub progressing: bool,
    /// The reason of Ready, Reconciling and Progressing.
    pub reason: &'a str,
    pub stalled_reason: &'a str,
}

impl<'a> Health<'a> {
    pub fn of(phase: Phase, stall: Option<&'a str>) -> Self {
        let (ready, reconciling, reason) = match phase {
            Phase::Healthy => (true, false, "NewRevisionAvailable"),
            Phase::WaitingForConfirm => (false, false, "WaitingForConfirm"),
            Phase::Paused => (false, false, "Paused"),
            Phase::Frozen => (false, false, "Frozen"),
            Phase::Stalled => (false, false, "ProgressDeadlineExceeded"),
            Phase::Progressing | Phase::RollingBack => (false, true, "ReplicaSetUpdated"),
            // The operator is at work (measuring), not waiting for a person.
            Phase::Analyzing => (false, true, "AnalysisRunning"),
        };
        let stalled = phase == Phase::Stalled;
        Self {
            ready,
            reconciling,
            stalled,
            progressing: !stalled,
            reason: if stalled {
                stall.unwrap_or(reason)
            } else {
                reason
            },
            stalled_reason: if stalled {
                stall.unwrap_or("ProgressDeadlineExceeded")
            } else {
                "NotStalled"
            },
        }
    }
}

/// Builds this observation's conditions, all with `message` and
/// `generation`; each keeps its transition time unless its status moved.
pub(super) fn conditions<'a>(
    previous: &'a CafeDeploymentStatus,
    message: &'a str,
    generation: Option<i64>,
    now: &'a Time,
) -> impl Fn(&str, bool, &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition + 'a {
    move |type_, ok, reason| {
        observed_condition(
            &previous.conditions,
            type_,
            ok,
            reason,
            message.to_string(),
            generation,
            now,
        )
    }
}

/// When the newest group opened: now, if this decision opened one (or a new
/// release began), else as recorded.
pub(super) fn opened_at(
    previous: &CafeDeploymentStatus,
    record: &Record,
    opened: usize,
    now: &Time,
) -> Option<Time> {
    let before = previous.release.as_ref();
    let same_release = before.map(|r| r.revision.as_str()) == record.revision.as_deref();
    let opened_before = before.map_or(0, |r| usize::try_from(r.opened).unwrap_or(0));
    match before.and_then(|r| r.opened_at.clone()) {
        Some(at) if same_release && opened <= opened_before => Some(at),
        _ => Some(now.clone()),
    }
}

/// The cells as status reports them: desired pods, pods moved away by
/// autoReschedule or by failover, and each cell's set.
pub(super) struct CellRows<'a> {
    pub distribution: &'a [(String, usize)],
    pub away: &'a [usize],
    pub failed_over: &'a [usize],
    pub observed: &'a [Option<&'a InPlaceSet>],
    /// Unreachable cells the release needs something of (in `values` order).
    pub waiting: &'a [(String, &'a Unreachable)],
}

/// The status of this decision: the counts and rows, then the phase and its
/// message (the release's progress, held by an analysis or a freeze, waiting
/// for a budget or an unreachable cell, stalled by a cell or a refused
/// write), the release record, and the kstatus conditions.
pub(super) fn compute_status(
    cd: &CafeDeployment,
    obs: &Observation,
    cells: &CellRows,
    decision: &release::Decision,
    analysed: &Gate,
    previous: &CafeDeploymentStatus,
) -> CafeDeploymentStatus {
    let record = &decision.record;
    let progress = &decision.progress;
    let mut status = CafeDeploymentStatus {
        observed_generation: cd.metadata.generation,
        selector: Some(crate::api::selector_string(&cd.spec.selector)),
        current_revision: record.stable.clone(),
        update_revision: Some(obs.update.to_string()),
        ..CafeDeploymentStatus::default()
    };
    let cells_text = count_cells(&mut status, obs, cells);
    let shown = progress_phase(cd, obs, decision, analysed, cells.distribution, &cells_text);
    let (phase, message) = held_phase(cd, obs, &progress.phase, analysed, shown, &cells_text);
    // A cell waiting for a PodDisruptionBudget says so.
    let budget = first_cell(cells, |c| {
        c.type_ == condition::PROGRESSING && c.reason == condition::WAITING_FOR_DISRUPTION_BUDGET
    })
    .map(|(cell, c)| format!("cell {cell} is {}", c.message));
    let message = match (phase, budget) {
        (Phase::Progressing | Phase::RollingBack, Some(held)) => format!("{message}; {held}"),
        _ => message,
    };
    let opened = opened_at(previous, record, progress.opened, obs.now);
    let overdue = opened.as_ref().is_some_and(|at| {
        obs.now.0.as_second() - at.0.as_second()
            > i64::from(cd.spec.strategy.progress_deadline_seconds)
    });
    let (message, member_stall) =
        unreachable_wait(cd, progress, cells.waiting, overdue, (phase, message));
    let message = held_off_wait(obs, cells, phase, message);
    // A write the API server refuses stalls the release where it stands.
    let stalled = obs
        .refused
        .map(|r| (r.reason.to_string(), r.message.clone()))
        .or(stalled_cell(cd, cells))
        .or(member_stall);
    let (phase, message) = match (&stalled, phase) {
        (Some((_, why)), p) if p != Phase::Healthy || obs.refused.is_some() => {
            (Phase::Stalled, why.clone())
        }
        _ => (phase, message),
    };
    status.phase = Some(phase);
    status.release = Some(release_status(
        obs.update,
        decision,
        analysed,
        (phase, &message),
        opened,
    ));
    let stall = stalled.as_ref().map(|(reason, _)| reason.as_str());
    status.conditions = kstatus_conditions(
        cd,
        previous,
        obs.now,
        (phase, &message),
        status.available_replicas,
        stall,
    );
    status
}

/// The first cell (in `values` order) whose set has a condition `matching`.
fn first_cell(
    cells: &CellRows,
    matching: impl Fn(&Condition) -> bool,
) -> Option<(String, Condition)> {
    cells
        .distribution
        .iter()
        .zip(cells.observed)
        .find_map(|((cell, _), set)| {
            let s = set.as_ref()?.status.as_ref()?;
            let c = s.conditions.iter().find(|c| matching(c))?;
            Some((cell.clone(), c.clone()))
        })
}

/// An unreachable cell the group needs holds it: the message says so, and
/// past the progress deadline (`overdue`) the release stalls naming it (it
/// goes on when the cell answers). Returns the message and that stall.
fn unreachable_wait(
    cd: &CafeDeployment,
    progress: &progress::Progress,
    waiting: &[(String, &Unreachable)],
    overdue: bool,
    (phase, message): (Phase, String),
) -> (String, Option<(String, String)>) {
    let unreachable = waiting
        .iter()
        .map(|(cell, u)| format!("cell {cell} is unreachable: {}", u.why))
        .collect::<Vec<_>>()
        .join("; ");
    let message = match phase {
        Phase::Progressing | Phase::RollingBack if !waiting.is_empty() => {
            format!("{message}; waiting: {unreachable}")
        }
        _ => message,
    };
    let member_stall = (!waiting.is_empty()
        && overdue
        && matches!(phase, Phase::Progressing | Phase::RollingBack))
    .then(|| {
        (
            condition::MEMBER_UNREACHABLE.to_string(),
            format!(
                "group {} of {} is past its progress deadline ({}s): {unreachable}. It goes on \
                 when the cell answers; nothing there is changed meanwhile. Or move its pods \
                 to the other cells by listing it in spec.topology.failover",
                progress.opened, progress.groups, cd.spec.strategy.progress_deadline_seconds
            ),
        )
    });
    (message, member_stall)
}

/// A cell whose member's writes are held off (its connection failed, it is
/// not yet judged unreachable) while the release moves: the message says so.
fn held_off_wait(obs: &Observation, cells: &CellRows, phase: Phase, message: String) -> String {
    if !matches!(phase, Phase::Progressing | Phase::RollingBack) {
        return message;
    }
    let held: Vec<String> = cells
        .distribution
        .iter()
        .filter_map(|(cell, _)| Some(format!("cell {cell}: {}", obs.held_off.get(cell)?)))
        .collect();
    if held.is_empty() {
        return message;
    }
    format!("{message}; waiting: {}", held.join("; "))
}

/// A stalled cell stalls the release: its reason, and a message that says
/// which cell and why, and how to recover.
fn stalled_cell(cd: &CafeDeployment, cells: &CellRows) -> Option<(String, String)> {
    let name = cd.name_any();
    let rollback_hint = format!(
        "roll back with: kubectl patch cafedeployment {name} --type merge -p \
         '{{\"spec\":{{\"rollbackTo\":{{\"revision\":0}}}}}}'"
    );
    first_cell(cells, |c| c.type_ == condition::STALLED && c.status == "True")
        .map(|(cell, c)| (cell, c.reason, c.message))
        .map(|(cell, reason, why)| {
            let next = if reason == condition::FAILED_CREATE {
                format!("Change what the API server refuses (the template, a quota, an admission policy), or {rollback_hint}")
            } else {
                let mut hint = rollback_hint.clone();
                hint[..1].make_ascii_uppercase();
                hint
            };
            let message = format!("cell {cell}: {reason}: {why}. {next}");
            (reason, message)
        })
}

/// The release record as status keeps it (`revision`: the update revision).
fn release_status(
    revision: &str,
    decision: &release::Decision,
    analysed: &Gate,
    (phase, message): (Phase, &str),
    opened_at: Option<Time>,
) -> ReleaseStatus {
    let record = &decision.record;
    let progress = &decision.progress;
    let done = i32::try_from(progress.completed).unwrap_or(i32::MAX);
    let total = i32::try_from(progress.groups).unwrap_or(i32::MAX);
    ReleaseStatus {
        revision: record
            .revision
            .clone()
            .unwrap_or_else(|| revision.to_string()),
        rollback: record.rollback && phase != Phase::Healthy,
        group: done,
        opened: i32::try_from(progress.opened).unwrap_or(i32::MAX),
        groups: total,
        progress: format!("{done}/{total}"),
        message: message.to_string(),
        awaiting_confirmation: record.awaiting.map(|group| ConfirmationWait {
            revision: revision.to_string(),
            group: i32::try_from(group).unwrap_or(i32::MAX),
        }),
        baseline: record
            .baseline
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), i32::try_from(*v).unwrap_or(i32::MAX)))
            .collect(),
        opened_at,
        analysis: analysed.record.clone(),
    }
}

/// The kstatus conditions of a `phase` and its `message`, with the reason
/// of a stall; Available when `available` pods reach `spec.replicas`.
fn kstatus_conditions(
    cd: &CafeDeployment,
    previous: &CafeDeploymentStatus,
    now: &Time,
    (phase, message): (Phase, &str),
    available: i32,
    stall: Option<&str>,
) -> Vec<Condition> {
    let cond = conditions(previous, message, cd.metadata.generation, now);
    let available = available >= cd.spec.replicas;
    let health = Health::of(phase, stall);
    vec![
        cond(
            condition::AVAILABLE,
            available,
            if available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
        ),
        cond(condition::PROGRESSING, health.progressing, health.reason),
        cond(condition::READY, health.ready, health.reason),
        cond(condition::RECONCILING, health.reconciling, health.reason),
        cond(condition::STALLED, health.stalled, health.stalled_reason),
    ]
}

/// The counts over every set and each cell's row, into `status`; returns
/// the cells as messages cite them (`cell-a 2/5, cell-b 1/5`).
fn count_cells(status: &mut CafeDeploymentStatus, obs: &Observation, cells: &CellRows) -> String {
    let CellRows {
        distribution,
        away,
        failed_over,
        observed,
        ..
    } = *cells;
    let revision = obs.update;
    let mut rows = Vec::new();
    // Counts over every set, removed cells included: pods are pods.
    for set in &obs.sets {
        let s = set.status.clone().unwrap_or_default();
        status.replicas += s.replicas;
        status.ready_replicas += s.ready_replicas;
        status.available_replicas += s.available_replicas;
        let carries = set
            .annotations()
            .get(REVISION_ANNOTATION)
            .map(String::as_str)
            == Some(revision);
        if carries {
            status.updated_replicas += s.updated_replicas;
            status.updated_ready_replicas += s.updated_ready_replicas;
        }
    }
    for (i, ((cell, size), set)) in distribution.iter().zip(observed).enumerate() {
        let s = set.and_then(|s| s.status.clone()).unwrap_or_default();
        let carries = set.is_some_and(|s| {
            s.annotations().get(REVISION_ANNOTATION).map(String::as_str) == Some(revision)
        });
        rows.push(CellStatus {
            name: cell.clone(),
            replicas: i32::try_from(*size).unwrap_or(i32::MAX),
            updated: if carries { s.updated_replicas } else { 0 },
            ready: s.ready_replicas,
            available: s.available_replicas,
            rescheduled_away: i32::try_from(away.get(i).copied().unwrap_or(0)).unwrap_or(0),
            failed_over: i32::try_from(failed_over.get(i).copied().unwrap_or(0)).unwrap_or(0),
            reachability: obs.unreachable.get(cell).map(|_| UNKNOWN.to_string()),
            last_contact: obs
                .unreachable
                .get(cell)
                .and_then(|u| u.last_contact.clone()),
            cluster: None,
        });
    }
    let cells_text = rows
        .iter()
        .map(|r| format!("{} {}/{}", r.name, r.updated, r.replicas))
        .collect::<Vec<_>>()
        .join(", ");
    status.cells = rows;
    cells_text
}
