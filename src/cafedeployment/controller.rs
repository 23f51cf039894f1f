//! The CafeDeployment reconciler: dereference (its InPlaceSets and revisions),
//! validate (distribution), build (each cell's InPlaceSet, pure), decide (group
//! plan and release state machine, pure), apply (only what differs), report
//! (status and events on transitions).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::build::{self, REVISION_ANNOTATION};
use crate::api::count::resolve;
use crate::api::names::{UPGRADE_CONFIRMED_ANNOTATION, condition};
use crate::api::{
    CafeDeployment, CafeDeploymentStatus, CellStatus, ConfirmationWait, InPlaceSet, Phase,
    ReleaseStatus, UpgradeType, observed_condition,
};
use crate::inplaceset::revision;
use crate::release::plan::groups;
use crate::release::state::{self, Input};
use crate::runtime::{Telemetry, run_until_stopped, scoped_api, watch_cache};
use crate::topology::distribute;

const MANAGER: &str = "cafe-operator-cafedeployment";
/// ControllerRevisions of a CafeDeployment carry its uid (names may be too long for a label).
const OWNER_LABEL: &str = "cafe.sofastack.io/cafedeployment-uid";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("reconcile did not finish within {0:?}; retrying")]
    Timeout(Duration),
}

struct Context {
    client: Client,
    recorder: Recorder,
    telemetry: Telemetry,
}

impl Context {
    async fn event(&self, cd: &CafeDeployment, type_: EventType, reason: &str, note: String) {
        crate::runtime::publish_event(&self.recorder, &cd.object_ref(&()), type_, reason, note)
            .await;
    }
}

/// Makes sure the template has a ControllerRevision (numbered after the
/// newest) and keeps at most `historyLimit` older ones.
async fn record_revision(cd: &CafeDeployment, ctx: &Context, hash: &str) -> Result<String, Error> {
    let ns = cd.namespace().unwrap_or_default();
    let uid = cd.uid().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let name = format!("{}-{hash}", cd.name_any());
    let mut existing = api
        .list(&ListParams::default().labels(&format!("{OWNER_LABEL}={uid}")))
        .await?
        .items;
    if !existing.iter().any(|r| r.name_any() == name) {
        let next = existing.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let mut rev = ControllerRevision {
            revision: next,
            data: Some(RawExtension(
                json!({"spec": {"template": cd.spec.template}}),
            )),
            ..ControllerRevision::default()
        };
        rev.metadata.name = Some(name.clone());
        rev.metadata.labels = Some([(OWNER_LABEL.to_string(), uid.clone())].into());
        rev.metadata.owner_references = cd.controller_owner_ref(&()).map(|o| vec![o]);
        match api.create(&PostParams::default(), &rev).await {
            Ok(r) => existing.push(r),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Trim the oldest beyond historyLimit, never the current one.
    existing.sort_by_key(|r| r.revision);
    let keep = usize::try_from(cd.spec.history_limit).unwrap_or(0) + 1;
    let excess = existing.len().saturating_sub(keep);
    for old in existing
        .iter()
        .filter(|r| r.name_any() != name)
        .take(excess)
    {
        let _ = api.delete(&old.name_any(), &Default::default()).await;
    }
    Ok(name)
}

/// `spec.rollbackTo`: restore that revision's template (0: the previous
/// revision), clear the request, and record in status that the release that
/// follows is a rollback (no Beta group, no confirmation waits).
async fn roll_back(cd: &CafeDeployment, ctx: &Context, number: i64) -> Result<Action, Error> {
    let ns = cd.namespace().unwrap_or_default();
    let name = cd.name_any();
    let uid = cd.uid().unwrap_or_default();
    let cds: Api<CafeDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let history = revisions
        .list(&ListParams::default().labels(&format!("{OWNER_LABEL}={uid}")))
        .await?
        .items;
    let current = format!("{name}-{}", revision::revision(&cd.spec.template));
    let target = if number == 0 {
        history
            .iter()
            .filter(|r| r.name_any() != current)
            .max_by_key(|r| r.revision)
    } else {
        history.iter().find(|r| r.revision == number)
    };
    let template = target
        .and_then(|t| t.data.as_ref())
        .map(|d| d.0["spec"]["template"].clone());
    let patch = match (target, template) {
        (Some(t), Some(template)) if !template.is_null() => {
            let previous = cd.status.clone().unwrap_or_default();
            let mut status = previous.clone();
            status.phase = Some(Phase::RollingBack);
            status.release = Some(ReleaseStatus {
                revision: t.name_any(),
                rollback: true,
                message: format!("rolling back to revision {} ({})", t.revision, t.name_any()),
                ..ReleaseStatus::default()
            });
            write_status(&cds, &name, &previous, status).await?;
            ctx.event(
                cd,
                EventType::Normal,
                "RollingBack",
                format!(
                    "rolling back to revision {} ({}) at once: no Beta group, no confirmation",
                    t.revision,
                    t.name_any()
                ),
            )
            .await;
            json!([
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "remove", "path": "/spec/rollbackTo"}
            ])
        }
        _ => {
            let mut kept: Vec<i64> = history.iter().map(|r| r.revision).collect();
            kept.sort_unstable();
            ctx.event(
                cd,
                EventType::Warning,
                "RollbackRevisionNotFound",
                format!(
                    "spec.rollbackTo.revision {number} is not in the history (kept: {kept:?}); \
                     set it to one of them, or 0 for the previous revision"
                ),
            )
            .await;
            json!([{"op": "remove", "path": "/spec/rollbackTo"}])
        }
    };
    let patch: json_patch::Patch =
        serde_json::from_value(patch).unwrap_or_else(|_| json_patch::Patch(Vec::new()));
    cds.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await?;
    Ok(Action::await_change())
}

/// The shares after autoReschedule: a cell (not pinned) whose pods stay
/// unschedulable for `initialDelaySeconds` gives those pods' quota to cells
/// with room. What moved is kept in status until the spec changes. Returns the
/// sizes, what each cell gave away, and when to look again for pods not due yet.
fn rescheduled_sizes(
    cd: &CafeDeployment,
    previous: &CafeDeploymentStatus,
    cells: &[String],
    distribution: &[(String, usize)],
    observed: &[Option<InPlaceSet>],
) -> (Vec<usize>, Vec<usize>, Option<i64>) {
    let sizes: Vec<usize> = distribution.iter().map(|(_, n)| *n).collect();
    let auto = &cd.spec.topology.auto_reschedule;
    let same_spec = previous.observed_generation == cd.metadata.generation;
    let mut away: Vec<usize> = cells
        .iter()
        .map(|c| {
            previous
                .cells
                .iter()
                .find(|row| &row.name == c && same_spec)
                .map_or(0, |row| usize::try_from(row.rescheduled_away).unwrap_or(0))
        })
        .collect();
    let mut room: Vec<bool> = away.iter().map(|a| *a == 0).collect();
    let mut wake = None;
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    for (i, (cell, set)) in cells.iter().zip(observed).enumerate() {
        let Some(set) = set else { continue };
        let Some(status) = set.status.as_ref() else {
            continue;
        };
        if status.observed_generation != set.metadata.generation {
            continue;
        }
        // Pods a pending scale-in already removes do not count twice.
        let leaving = (status.replicas - set.spec.replicas).max(0);
        let pending = usize::try_from(status.unschedulable_replicas - leaving).unwrap_or(0);
        if pending == 0 {
            continue;
        }
        room[i] = false;
        if !auto.enable || cd.spec.topology.unit_replicas.contains_key(cell) {
            continue;
        }
        let due = status.unschedulable_since.unwrap_or(now) + i64::from(auto.initial_delay_seconds);
        if now >= due {
            away[i] += pending;
        } else {
            wake = Some(wake.map_or(due - now, |w: i64| w.min(due - now)));
        }
    }
    (
        crate::topology::reschedule(&sizes, &away, &room),
        away,
        wake,
    )
}

fn updated_available(set: Option<&InPlaceSet>, hash: &str) -> (Option<usize>, usize) {
    let Some(set) = set else {
        return (None, 0);
    };
    let carries = set
        .annotations()
        .get(REVISION_ANNOTATION)
        .map(String::as_str)
        == Some(hash);
    if !carries {
        return (None, 0);
    }
    let partition = match &set.spec.strategy.partition {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
            usize::try_from(*n).ok()
        }
        _ => None,
    };
    let status = set.status.clone().unwrap_or_default();
    // Counts from before the InPlaceSet saw its current spec say nothing about it.
    let fresh = status.observed_generation == set.metadata.generation;
    let available = if fresh {
        usize::try_from(status.updated_available_replicas).unwrap_or(0)
    } else {
        0
    };
    (partition, available)
}

async fn reconcile_once(cd: Arc<CafeDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cd.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = cd.namespace().unwrap_or_default();
    let name = cd.name_any();
    let cds: Api<CafeDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let sets: Api<InPlaceSet> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = &cd.spec;
    let previous = cd.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    if let Some(request) = &spec.rollback_to {
        return roll_back(&cd, &ctx, request.revision).await;
    }
    let replicas = usize::try_from(spec.replicas).unwrap_or(0);
    let cells = build::cells(&spec.topology);
    let distribution = match distribute(replicas, &cells, &spec.topology.unit_replicas) {
        Ok(d) => d,
        Err(e) => {
            // Invalid until the user changes the spec: report, do not retry.
            if previous.phase != Some(Phase::Stalled) {
                ctx.event(&cd, EventType::Warning, "InvalidSpec", e.to_string())
                    .await;
            }
            let mut status = previous.clone();
            status.phase = Some(Phase::Stalled);
            status.observed_generation = cd.metadata.generation;
            write_status(&cds, &name, &previous, status).await?;
            return Ok(Action::await_change());
        }
    };
    let hash = revision::revision(&spec.template);
    let revision_name = record_revision(&cd, &ctx, &hash).await?;

    let mut observed = Vec::new();
    for cell in &cells {
        observed.push(sets.get_opt(&build::inplaceset_name(&cd, cell)).await?);
    }
    let (sizes, away, wake) = rescheduled_sizes(&cd, &previous, &cells, &distribution, &observed);
    let distribution: Vec<(String, usize)> =
        cells.iter().cloned().zip(sizes.iter().copied()).collect();
    let (mut partitions, available): (Vec<Option<usize>>, Vec<usize>) = observed
        .iter()
        .map(|s| updated_available(s.as_ref(), &hash))
        .unzip();
    // Until a first release completes, the pods do not exist yet: the groups
    // pace their creation (a cell gets `size - partition` pods, all new), and
    // the groups released are read from how many pods each cell was given.
    let scale_out = previous.current_revision.is_none();
    if scale_out {
        partitions = observed
            .iter()
            .zip(&sizes)
            .map(|(set, size)| {
                let given = usize::try_from(set.as_ref()?.spec.replicas).unwrap_or(0);
                Some(size.saturating_sub(given))
            })
            .collect();
    }
    let batch = resolve(&spec.strategy.batch_size, replicas, false)
        .unwrap_or(1)
        .max(1);
    let beta = spec.strategy.upgrade_type == UpgradeType::Beta;
    let plan = groups(&sizes, beta, batch);
    let awaiting = previous
        .release
        .as_ref()
        .and_then(|r| r.awaiting_confirmation.as_ref())
        .map(|w| (w.revision.as_str(), usize::try_from(w.group).unwrap_or(0)));
    // The release of a restored revision is a rollback until it completes.
    let rollback = previous
        .release
        .as_ref()
        .is_some_and(|r| r.rollback && r.revision == revision_name);
    let confirmed = cd
        .annotations()
        .get(UPGRADE_CONFIRMED_ANNOTATION)
        .map(String::as_str)
        == Some("true");
    let input = Input {
        sizes: &sizes,
        updated_available: &available,
        partitions: &partitions,
        plan: &plan,
        need_confirm: spec.strategy.need_waiting_for_confirm,
        paused: spec.strategy.pause,
        rollback,
        revision: &revision_name,
        awaiting,
        confirmed,
    };
    let decision = state::decide(&input);

    // The wait begins by resetting the confirmation, so an earlier "true" never counts.
    if decision.begins_waiting(&input) {
        let patch = json!({"metadata": {"annotations": {UPGRADE_CONFIRMED_ANNOTATION: "false"}}});
        cds.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        ctx.event(
            &cd,
            EventType::Normal,
            "WaitingForConfirm",
            format!(
                "group {} of {} done; confirm group {} with: kubectl annotate cafedeployment {name} \
                 {UPGRADE_CONFIRMED_ANNOTATION}=true --overwrite",
                decision.completed,
                decision.groups,
                decision.completed + 1
            ),
        )
        .await;
    }

    // Each cell's InPlaceSet, written only when it differs.
    for (((cell, size), partition), current) in cells
        .iter()
        .zip(&sizes)
        .zip(&decision.partitions)
        .zip(&observed)
    {
        let desired = if scale_out {
            build::inplaceset(&cd, cell, size - partition.min(size), 0, &hash)
        } else {
            build::inplaceset(&cd, cell, *size, *partition, &hash)
        };
        let same = current.as_ref().is_some_and(|c| {
            c.spec == desired.spec && c.annotations().get(REVISION_ANNOTATION) == Some(&hash)
        });
        if !same {
            sets.patch(
                &desired.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await?;
        }
    }

    retire_removed_cells(&cd, &ctx, &sets, &cells).await?;

    let kind = if rollback {
        ReleaseKind::Rollback
    } else if scale_out {
        ReleaseKind::ScaleOut
    } else {
        ReleaseKind::Update
    };
    let status = compute_status(
        &cd,
        &revision_name,
        kind,
        &distribution,
        &away,
        &observed,
        &decision,
        &previous,
        &now,
    );
    if status.phase != previous.phase
        && let Some(phase) = status.phase
    {
        let note = status
            .release
            .as_ref()
            .map(|r| r.message.clone())
            .unwrap_or_default();
        ctx.event(&cd, EventType::Normal, &format!("{phase:?}"), note)
            .await;
    }
    write_status(&cds, &name, &previous, status).await?;
    // Unschedulable pods not yet due for rescheduling need a look when they are.
    let wake = wake.map_or(300, |w| u64::try_from(w).unwrap_or(1).max(1));
    Ok(Action::requeue(Duration::from_secs(wake)))
}

/// A cell removed from `topology.values` is drained, not cut: its InPlaceSet
/// is scaled to zero (each pod leaves traffic before it is deleted) and only
/// then deleted. Deleting it at once would let garbage collection kill its
/// pods without a drain.
async fn retire_removed_cells(
    cd: &CafeDeployment,
    ctx: &Context,
    sets: &Api<InPlaceSet>,
    cells: &[String],
) -> Result<(), Error> {
    let uid = cd.uid().unwrap_or_default();
    let owned = sets
        .list(&ListParams::default().labels(crate::api::names::CELL_LABEL))
        .await?
        .items
        .into_iter()
        .filter(|s| s.owner_references().iter().any(|o| o.uid == uid));
    for set in owned {
        let cell = set
            .labels()
            .get(crate::api::names::CELL_LABEL)
            .cloned()
            .unwrap_or_default();
        if cells.contains(&cell) {
            continue;
        }
        let live = set.status.as_ref().map_or(0, |s| s.replicas);
        if set.spec.replicas > 0 {
            let patch = json!({"spec": {"replicas": 0}});
            sets.patch(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            ctx.event(
                cd,
                EventType::Normal,
                "DrainingCell",
                format!("cell {cell} was removed from topology.values: draining its {live} pod(s)"),
            )
            .await;
        } else if live == 0 {
            sets.delete(&set.name_any(), &Default::default()).await?;
            ctx.event(
                cd,
                EventType::Normal,
                "RemovedCell",
                format!(
                    "cell {cell} drained; its InPlaceSet {} deleted",
                    set.name_any()
                ),
            )
            .await;
        }
    }
    Ok(())
}

async fn write_status(
    cds: &Api<CafeDeployment>,
    name: &str,
    previous: &CafeDeploymentStatus,
    status: CafeDeploymentStatus,
) -> Result<(), Error> {
    if status == *previous {
        return Ok(());
    }
    let body = json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1",
        "kind": "CafeDeployment",
        "status": status,
    });
    cds.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// What the release in progress is, for its phase and message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReleaseKind {
    /// A new template, moved group by group.
    Update,
    /// A restored revision, released at once.
    Rollback,
    /// The first release: pods are created group by group.
    ScaleOut,
}

#[allow(clippy::too_many_arguments)]
fn compute_status(
    cd: &CafeDeployment,
    revision: &str,
    kind: ReleaseKind,
    distribution: &[(String, usize)],
    away: &[usize],
    observed: &[Option<InPlaceSet>],
    decision: &state::Decision,
    previous: &CafeDeploymentStatus,
    now: &Time,
) -> CafeDeploymentStatus {
    let mut status = CafeDeploymentStatus {
        observed_generation: cd.metadata.generation,
        selector: Some(
            cd.spec
                .selector
                .match_labels
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        current_revision: previous.current_revision.clone(),
        update_revision: Some(revision.to_string()),
        ..CafeDeploymentStatus::default()
    };
    let mut rows = Vec::new();
    for ((cell, size), set) in distribution.iter().zip(observed) {
        let s = set
            .as_ref()
            .and_then(|s| s.status.clone())
            .unwrap_or_default();
        status.replicas += s.replicas;
        status.ready_replicas += s.ready_replicas;
        status.available_replicas += s.available_replicas;
        status.updated_replicas += s.updated_replicas;
        status.updated_ready_replicas += s.updated_ready_replicas;
        rows.push(CellStatus {
            name: cell.clone(),
            replicas: i32::try_from(*size).unwrap_or(i32::MAX),
            updated: s.updated_replicas,
            ready: s.ready_replicas,
            available: s.available_replicas,
            rescheduled_away: i32::try_from(away.get(rows.len()).copied().unwrap_or(0))
                .unwrap_or(0),
        });
    }
    let cells_text = rows
        .iter()
        .map(|r| format!("{} {}/{}", r.name, r.updated, r.replicas))
        .collect::<Vec<_>>()
        .join(", ");
    status.cells = rows;
    let name = cd.name_any();
    // The wait on record is the decision's, in every phase (it survives a pause).
    let awaiting = decision.awaiting.map(|group| ConfirmationWait {
        revision: revision.to_string(),
        group: i32::try_from(group).unwrap_or(i32::MAX),
    });
    let (phase, message) = match &decision.phase {
        state::Phase::Complete => {
            status.current_revision = Some(revision.to_string());
            (
                Phase::Healthy,
                format!(
                    "all {} pods run {revision} ({cells_text})",
                    cd.spec.replicas
                ),
            )
        }
        state::Phase::WaitingForConfirm(group) => (
            Phase::WaitingForConfirm,
            format!(
                "group {} of {} done ({cells_text}); confirm to continue: kubectl annotate \
                 cafedeployment {name} {UPGRADE_CONFIRMED_ANNOTATION}=true --overwrite",
                group - 1,
                decision.groups
            ),
        ),
        state::Phase::Paused => (
            Phase::Paused,
            format!(
                "paused after group {} of {} ({cells_text}); resume: kubectl patch cafedeployment \
                 {name} --type merge -p '{{\"spec\":{{\"strategy\":{{\"pause\":false}}}}}}'",
                decision.completed, decision.groups
            ),
        ),
        state::Phase::Progressing => (
            if kind == ReleaseKind::Rollback {
                Phase::RollingBack
            } else {
                Phase::Progressing
            },
            format!(
                "{} group {} of {} ({cells_text})",
                if kind == ReleaseKind::ScaleOut {
                    "creating the pods of"
                } else {
                    "releasing"
                },
                decision.released,
                decision.groups
            ),
        ),
    };
    // A stalled cell stalls the release: say which and why, and how to recover.
    let stalled = distribution
        .iter()
        .zip(observed)
        .find_map(|((cell, _), set)| {
            let s = set.as_ref()?.status.as_ref()?;
            s.conditions
                .iter()
                .find(|c| c.type_ == condition::STALLED && c.status == "True")
                .map(|c| (cell.clone(), c.reason.clone(), c.message.clone()))
        });
    let (phase, message) = match (&stalled, phase) {
        (Some((cell, reason, why)), p) if p != Phase::Healthy => (
            Phase::Stalled,
            format!(
                "cell {cell}: {reason}: {why}. Roll back with: kubectl patch cafedeployment \
                 {name} --type merge -p '{{\"spec\":{{\"rollbackTo\":{{\"revision\":0}}}}}}'"
            ),
        ),
        _ => (phase, message),
    };
    let done = i32::try_from(decision.completed).unwrap_or(0);
    let total = i32::try_from(decision.groups).unwrap_or(0);
    status.phase = Some(phase);
    status.release = Some(ReleaseStatus {
        revision: revision.to_string(),
        rollback: kind == ReleaseKind::Rollback && phase != Phase::Healthy,
        group: done,
        groups: total,
        progress: format!("{done}/{total}"),
        message: message.clone(),
        awaiting_confirmation: awaiting,
    });
    let complete = phase == Phase::Healthy;
    let cond = |type_: &str, ok: bool, reason: &str| {
        observed_condition(
            &previous.conditions,
            type_,
            ok,
            reason,
            message.clone(),
            cd.metadata.generation,
            now,
        )
    };
    let progress_reason = if complete {
        "NewRevisionAvailable"
    } else {
        "ReplicaSetUpdated"
    };
    status.conditions = vec![
        cond(
            condition::AVAILABLE,
            status.available_replicas >= cd.spec.replicas,
            if status.available_replicas >= cd.spec.replicas {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
        ),
        cond(
            condition::PROGRESSING,
            phase != Phase::Stalled,
            if phase == Phase::Stalled {
                "ProgressDeadlineExceeded"
            } else {
                progress_reason
            },
        ),
        cond(
            condition::READY,
            complete,
            if complete { "Ready" } else { "Releasing" },
        ),
        cond(
            condition::RECONCILING,
            !complete,
            if complete { "Ready" } else { "Releasing" },
        ),
        cond(
            condition::STALLED,
            stalled.is_some() && !complete,
            stalled
                .as_ref()
                .filter(|_| !complete)
                .map_or("NotStalled", |(_, reason, _)| reason.as_str()),
        ),
    ];
    status
}

async fn reconcile(obj: Arc<CafeDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let telemetry = ctx.telemetry.clone();
    telemetry
        .reconcile("cafedeployment", reconcile_once(obj, ctx), Error::Timeout)
        .await
}

fn error_policy(cd: Arc<CafeDeployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(cafedeployment = %cd.name_any(), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the CafeDeployment controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    namespace: Option<&str>,
    concurrency: u16,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let cds: Api<CafeDeployment> = scoped_api(&client, namespace);
    let sets: Api<InPlaceSet> = scoped_api(&client, namespace);
    let (store, cd_events, synced) = watch_cache(
        &telemetry.health,
        "cafedeployments",
        cds,
        watcher::Config::default(),
    );
    let cd_events = cd_events.applied_objects();
    telemetry.metrics.observe_cafedeployments(store.clone());
    let controller = Controller::for_stream(cd_events, store);
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client, "cafe-operator".into()),
        telemetry,
    });
    let shutdown = shutdown.shared();
    let run = controller
        .owns(sets, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    run_until_stopped(run, shutdown, &[synced]).await;
}
