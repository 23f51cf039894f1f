//! The CafeDeployment decision, pure: from the object, its cells' InPlaceSets
//! and its revision history (all read from caches), and `now`, what to write —
//! the confirmation reset, the status (the release record), each cell's
//! InPlaceSet, the sets to delete, and the events. No client: every rule is a
//! unit test.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::analysis::{self as gate, Act};
use super::build::{self, CellSet, REVISION_ANNOTATION, STABLE_REVISION_ANNOTATION};
use super::history::{self, Witness};
use super::model::{Effect, History, Note, Observation, Outcome, Restore, cell_of};
use super::reach::{failed_over_sizes, waiting_for};
use super::reschedule::rescheduled_sizes;
pub use super::status::Health;
use super::status::{CellRows, compute_status, conditions};
use crate::api::count::resolve;
use crate::api::names::{UPGRADE_CONFIRMED_ANNOTATION, condition};
use crate::api::{
    AnalysisPhase, AnalysisStatus, CafeDeployment, CafeDeploymentStatus, InPlaceSet, Phase,
    UpgradeType, WINDOW_OVERRIDE_ANNOTATION,
};
use crate::inplaceset::revision;
use crate::release::baseline::Record;
use crate::release::cells::{Observed, Target};
use crate::release::{self, Input};
use crate::topology::distribute;

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

/// A set as the release sees it: its counts are trusted only when its status
/// describes its current spec and it carries the revisions of `record`.
fn observe(set: &InPlaceSet, update: &str, record: &Record) -> Observed {
    let status = set.status.clone().unwrap_or_default();
    let annotation = |key: &str| set.annotations().get(key).cloned();
    let carries = annotation(REVISION_ANNOTATION).as_deref() == Some(update)
        && annotation(STABLE_REVISION_ANNOTATION) == record.stable.clone().filter(|s| s != update);
    let fresh = carries && status.observed_generation == set.metadata.generation;
    // Right after a release reaches a set, its status still counts the pods
    // of the template before as updated: counts describe this release only
    // when the status was computed for the set's present template. Read as
    // done, a set not started yet would hand its budget share to the others
    // (a fresh set given all of it: one group started in one cell at once).
    let counts_this_release = carries
        && status.update_revision.as_deref()
            == Some(revision::revision(&set.spec.template).as_str());
    let count = |n: i32| usize::try_from(n).unwrap_or(0);
    Observed {
        name: cell_of(set),
        given: usize::try_from(set.spec.replicas).ok(),
        live: count(status.replicas),
        available: count(status.available_replicas),
        // Counts of a set that carries this release, even while its status
        // lags its spec (as after any write to it, its template unchanged):
        // completion reads them only when `fresh`; the budget split reads
        // them always, or a lagging set would look unstarted, get a new
        // share, lag again, and so on.
        updated_available: if counts_this_release {
            count(status.updated_available_replicas)
        } else {
            0
        },
        stable_available: if counts_this_release {
            count(status.stable_available_replicas)
        } else {
            0
        },
        fresh,
        held: None,
    }
}

pub fn decide(obs: &Observation) -> Outcome {
    let cd = obs.cd;
    let spec = &cd.spec;
    let previous = cd.status.clone().unwrap_or_default();
    let now = obs.now.0.as_second();
    let replicas = usize::try_from(spec.replicas).unwrap_or(0);
    // A freeze stops the release as a pause does, whoever paused it; a deny
    // window too, except a rollback.
    let rolling_back = previous.release.as_ref().is_some_and(|r| r.rollback);
    let paused = spec.strategy.pause
        || obs
            .frozen
            .is_some_and(|f| !(f.lets_rollback && rolling_back));
    // A rollback a person asked for comes before anything else.
    if let Some(request) = &spec.rollback_to {
        return Outcome {
            status: previous,
            effect: Some(rolled_back_to(request.revision, obs.history, obs.update)),
            ..Outcome::default()
        };
    }
    let cells = build::cells(&spec.topology);
    let distribution = match distribute(replicas, &cells, &spec.topology.unit_replicas) {
        Ok(d) => d,
        Err(e) => return invalid(cd, &previous, obs.now, e.to_string()),
    };
    let batch = match resolve(&spec.strategy.batch_size, replicas, false) {
        Ok(b) => b.max(1),
        Err(e) => return invalid(cd, &previous, obs.now, format!("strategy.batchSize {e}")),
    };
    if let Some(why) = obs.misplaced {
        return invalid(cd, &previous, obs.now, why.to_string());
    }
    let analysis = spec.strategy.analysis.as_ref();
    if let Some(e) = analysis
        .into_iter()
        .flat_map(|a| &a.queries)
        .find_map(|q| crate::release::analysis::check_conditions(q).err())
    {
        return invalid(cd, &previous, obs.now, format!("strategy.{e}"));
    }
    let by_cell: BTreeMap<String, &InPlaceSet> =
        obs.sets.iter().map(|s| (cell_of(s), *s)).collect();
    let active_sets: Vec<Option<&InPlaceSet>> =
        cells.iter().map(|c| by_cell.get(c).copied()).collect();
    let (sizes, away, wake) =
        rescheduled_sizes(cd, &previous, &cells, &distribution, &active_sets, now);
    let (sizes, failed_over) = failed_over_sizes(&spec.topology.failover, &cells, sizes, obs);
    let sized: Vec<(String, usize)> = cells.iter().cloned().zip(sizes.iter().copied()).collect();

    let record = record_of(&previous);
    // A set that cannot be written goes on with the share it has.
    let held = |s: &InPlaceSet, mut o: Observed| {
        if obs.unreachable.contains_key(&cell_of(s)) {
            // A percentage was never written by a CafeDeployment: count it
            // all as spent.
            o.held = Some(
                build::written_count(&s.spec.strategy.max_unavailable).map_or_else(
                    || usize::try_from(s.spec.replicas).unwrap_or(0),
                    |n| usize::try_from(n).unwrap_or(0),
                ),
            );
        }
        o
    };
    let active: Vec<Option<Observed>> = active_sets
        .iter()
        .map(|s| s.map(|s| held(s, observe(s, obs.update, &record))))
        .collect();
    let removed_sets: Vec<&InPlaceSet> = obs
        .sets
        .iter()
        .filter(|s| !cells.contains(&cell_of(s)))
        .copied()
        .collect();
    let removed: Vec<Observed> = removed_sets
        .iter()
        .map(|s| held(s, observe(s, obs.update, &record)))
        .collect();
    let previous_analysis = previous.release.as_ref().and_then(|r| r.analysis.as_ref());
    // A person's "true" always confirms; a passed analysis does on its own
    // unless it asks for a person too, or the sign-off rules want a person
    // to confirm the Beta group (the wait for group 2 of a Beta release).
    let by_person = cd
        .annotations()
        .get(UPGRADE_CONFIRMED_ANNOTATION)
        .map(String::as_str)
        == Some("true");
    let by_analysis = gate::confirms(analysis, previous_analysis, obs.update, record.awaiting)
        && !person_confirms(cd, &record);
    let confirmed = by_person || by_analysis;
    let decision = release::decide(&Input {
        record: &record,
        update: obs.update,
        cells: &sized,
        active: &active,
        removed: &removed,
        beta: spec.strategy.upgrade_type == UpgradeType::Beta,
        batch,
        // An analysis is a confirmation: groups wait for its verdict.
        need_confirm: spec.strategy.need_waiting_for_confirm || analysis.is_some(),
        paused,
        confirmed,
    });
    let analysed = gate::gate(&gate::Input {
        spec: analysis,
        previous: previous_analysis,
        progress: &decision.progress.phase,
        awaiting: decision.record.awaiting,
        groups: decision.progress.groups,
        revision: obs.update,
        stable: decision.record.stable.as_deref(),
        new_release: decision.record.revision != record.revision
            && !decision.record.rollback
            && !decision.record.releases_stable(),
        paused,
        name: &cd.name_any(),
        now: obs.now,
    });

    let mut notes = Vec::new();
    let (mut sets, mut delete) = cell_sets(obs, &decision, &by_cell, paused, &mut notes);

    // Nothing is written to or deleted from a cell that cannot be reached:
    // what it was given last stands until it answers.
    let reachable = |name: &String| !obs.unreachable.contains_key(name);
    let waiting = waiting_for(&decision.targets, &by_cell, obs);
    sets.retain(|s| reachable(&cell_of(s)));
    delete.retain(|name| {
        obs.sets
            .iter()
            .find(|s| s.name_any() == *name)
            .is_none_or(|s| reachable(&cell_of(s)))
    });
    let cells = CellRows {
        distribution: &sized,
        away: &away,
        failed_over: &failed_over,
        observed: &active_sets,
        waiting: &waiting,
    };
    let status = compute_status(cd, obs, &cells, &decision, &analysed, &previous);
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
    if decision.begins_waiting && analysis.is_none() {
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
    notes.extend(analysis_notes(previous_analysis, analysed.record.as_ref()));
    let due = match (analysis, analysed.record.as_ref()) {
        (Some(a), Some(r)) => crate::release::analysis::due_in(a, r, obs.now),
        _ => None,
    };
    let wake = due.map(|due| due.max(1)).into_iter().chain(wake).min();
    let effect = effect_of(analysed, due, paused, obs.history, &mut notes);
    let mut status = status;
    status.window = obs.window.cloned();
    status
        .conditions
        .push(signoff_condition(&previous, obs.verified, cd, obs.now));
    let analysis_confirmed = (by_analysis && !by_person)
        .then(|| previous_analysis.map(confirmed_by_analysis))
        .flatten();
    let steps = history::steps(
        &previous,
        &status,
        &Witness {
            cd,
            verified: obs.verified,
            holding: obs
                .frozen
                .and_then(|f| obs.freezes.iter().find(|x| x.name == f.name)),
            freezes: obs.freezes,
            analysis_confirmed,
        },
    );
    status.history = history::append(&previous.history, steps, obs.now);
    // An override opens the one window it was given for: once that ends
    // (or the release leaves it), it is removed.
    let remove_override = cd.annotations().contains_key(WINDOW_OVERRIDE_ANNOTATION)
        && previous
            .window
            .as_ref()
            .is_some_and(|w| w.overridden_by.is_some())
        && obs.window.map(|w| (&w.name, &w.since))
            != previous.window.as_ref().map(|w| (&w.name, &w.since));
    Outcome {
        reset_confirmation: decision.begins_waiting,
        status,
        sets,
        delete,
        notes,
        wake,
        effect,
        remove_override,
    }
}

/// Whether the API server vouches for who did each step, and if not, why
/// and what to install.
fn signoff_condition(
    previous: &CafeDeploymentStatus,
    verified: bool,
    cd: &CafeDeployment,
    now: &Time,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let (reason, message) = if verified {
        (
            "PoliciesInForce",
            "the API server stamps who changes, confirms, pauses, resumes and rolls back this \
             release, and refuses stamps written by hand (the sign-off admission policies)"
                .to_string(),
        )
    } else {
        (
            "PoliciesNotInForce",
            "no sign-off admission policy stamped a dry-run write to this CafeDeployment: who did \
             each step cannot be vouched for, and the history reads \"unverified\". Install the \
             policies (Kubernetes 1.36+): helm value signoff.enabled=true, or kubectl apply -f \
             deploy/signoff/policies.yaml"
                .to_string(),
        )
    };
    crate::api::observed_condition(
        &previous.conditions,
        condition::SIGNOFF_VERIFIED,
        verified,
        reason,
        message,
        cd.metadata.generation,
        now,
    )
}

/// Whether the wait on record is one only a person may end: the Beta
/// group's (the wait for group 2 of a forward Beta release) when the
/// sign-off rules ask for a human Beta — the CafeDeployment's own, or its
/// namespace's as the API server stamped them.
fn person_confirms(cd: &CafeDeployment, record: &Record) -> bool {
    let human_beta = cd.spec.signoff.as_ref().is_some_and(|s| s.human_beta)
        || cd
            .annotations()
            .get(crate::api::SIGNOFF_RULES_ANNOTATION)
            .is_some_and(|r| r.split(',').any(|k| k == "humanBeta"));
    human_beta
        && cd.spec.strategy.upgrade_type == UpgradeType::Beta
        && !record.rollback
        && record.awaiting == Some(2)
}

/// The analysis's verdict as the history records a confirmation by it: the
/// rule, and each query's last value.
fn confirmed_by_analysis(a: &AnalysisStatus) -> String {
    let mut last: Vec<String> = Vec::new();
    for m in a.measurements.iter().rev() {
        if !last.iter().any(|l| l.starts_with(&format!("{}=", m.query))) {
            last.push(format!("{}={}", m.query, m.value));
        }
    }
    last.reverse();
    format!("{} [{}]", a.summary(), last.join(", "))
}

/// Each cell's InPlaceSet as the decision wants it, and the sets of removed
/// cells drained empty (to delete), with the events that tell of them.
fn cell_sets(
    obs: &Observation,
    decision: &release::Decision,
    by_cell: &BTreeMap<String, &InPlaceSet>,
    paused: bool,
    notes: &mut Vec<Note>,
) -> (Vec<InPlaceSet>, Vec<String>) {
    let cd = obs.cd;
    let spec = &cd.spec;
    let stable_template = decision
        .record
        .stable
        .as_ref()
        .filter(|s| s.as_str() != obs.update)
        .and_then(|s| obs.history.get(s).map(|r| (&r.template, s.as_str())));
    let mut sets = Vec::new();
    let mut delete = Vec::new();
    for target in &decision.targets {
        let existing = by_cell.get(&target.name);
        if target.retiring {
            let Some(set) = existing else { continue };
            let live = set.status.as_ref().map_or(0, |s| s.replicas);
            if target.replicas == 0 && live == 0 && set.spec.replicas == 0 {
                delete.push(set.name_any());
                notes.push(note(
                    false,
                    "RemovedCell",
                    format!(
                        "cell {} drained; its InPlaceSet {} deleted",
                        target.name,
                        set.name_any()
                    ),
                ));
                continue;
            }
            if usize::try_from(set.spec.replicas).ok() != Some(target.replicas) {
                notes.push(note(
                    false,
                    "DrainingCell",
                    format!(
                        "cell {} was removed from topology.values: {} of its pods stay until \
                         their replacements are in traffic",
                        target.name, target.replicas
                    ),
                ));
            }
            sets.push(retiring_set(set, target));
            continue;
        }
        sets.push(build::inplaceset(
            cd,
            &CellSet {
                cell: &target.name,
                replicas: target.replicas,
                partition: target.partition,
                max_unavailable: target.max_unavailable,
                paused,
                pace_creation: target.pace_creation,
                update: (&spec.template, obs.update),
                stable: stable_template,
            },
        ));
    }
    (sets, delete)
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

fn note(warning: bool, reason: &str, message: String) -> Note {
    Note {
        warning,
        reason: reason.to_string(),
        message,
        action: None,
    }
}

/// A removed cell's set keeps its templates; it only shrinks, paused.
fn retiring_set(set: &InPlaceSet, target: &Target) -> InPlaceSet {
    let mut desired = InPlaceSet::new(&set.name_any(), set.spec.clone());
    desired.spec.replicas = i32::try_from(target.replicas).unwrap_or(i32::MAX);
    desired.spec.strategy.partition =
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(desired.spec.replicas);
    desired.spec.strategy.max_unavailable =
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0);
    desired.spec.strategy.paused = true;
    desired.metadata.namespace = set.namespace();
    desired.metadata.labels = set.metadata.labels.clone();
    desired.metadata.annotations = set.metadata.annotations.clone();
    desired.metadata.owner_references = set.metadata.owner_references.clone();
    desired
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
mod tests {
    use super::*;
    use crate::api::names::CELL_LABEL;
    use crate::api::{ConfirmationWait, ReleaseStatus};
    use crate::cafedeployment::model::{Frozen, Revision, UNKNOWN, Unreachable};
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use serde_json::json;

    fn cd(generation: i64, status: serde_json::Value) -> CafeDeployment {
        serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "CafeDeployment",
            "metadata": {"name": "demo", "namespace": "shop", "uid": "u-1",
                         "generation": generation, "resourceVersion": "7"},
            "spec": {
                "replicas": 10,
                "selector": {"matchLabels": {"app": "demo"}},
                "template": {"metadata": {"labels": {"app": "demo"}},
                             "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
                "topology": {"values": ["cell-a", "cell-b"],
                             "unitReplicas": {"cell-a": "70%", "cell-b": "70%"}},
                "strategy": {"batchSize": 4, "needWaitingForConfirm": true}
            },
            "status": status
        }))
        .expect("cd")
    }

    fn condition<'a>(status: &'a CafeDeploymentStatus, type_: &str) -> &'a str {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map_or("", |c| c.status.as_str())
    }

    /// A set of cell-a at generation 5 on nginx:1.26, with a status of
    /// generation 4 counting 5 pods updated on `counted` (a template hash).
    fn lagging_set(counted: impl Fn(&PodTemplateSpec) -> String) -> InPlaceSet {
        let mut set: InPlaceSet = serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "InPlaceSet",
            "metadata": {"name": "demo-cell-a", "namespace": "shop", "generation": 5,
                         "labels": {CELL_LABEL: "cell-a"},
                         "annotations": {REVISION_ANNOTATION: "demo-2"}},
            "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "demo"}},
                     "template": {"metadata": {"labels": {"app": "demo"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}},
            "status": {"observedGeneration": 4, "replicas": 5, "availableReplicas": 5,
                       "updatedAvailableReplicas": 5}
        }))
        .expect("set");
        let revision = counted(&set.spec.template);
        if let Some(s) = set.status.as_mut() {
            s.update_revision = Some(revision);
        }
        set
    }

    fn record() -> Record {
        Record {
            stable: Some("demo-2".into()),
            revision: Some("demo-2".into()),
            ..Record::default()
        }
    }

    /// Two cells of 5 pods, Beta then batches of 4 with confirmations;
    /// `topology` extends the topology, `status` is the status before.
    fn two_cells(topology: serde_json::Value, status: serde_json::Value) -> CafeDeployment {
        let mut cd: CafeDeployment = serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "CafeDeployment",
            "metadata": {"name": "demo", "namespace": "shop", "uid": "u-1",
                         "generation": 1, "resourceVersion": "7"},
            "spec": {
                "replicas": 10,
                "selector": {"matchLabels": {"app": "demo"}},
                "template": {"metadata": {"labels": {"app": "demo"}},
                             "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
                "topology": {"values": ["cell-a", "cell-b"]},
                "strategy": {"batchSize": 4, "needWaitingForConfirm": true,
                             "progressDeadlineSeconds": 60}
            },
            "status": status
        }))
        .expect("cd");
        if let Some(failover) = topology.get("failover") {
            cd.spec.topology.failover = serde_json::from_value(failover.clone()).expect("failover");
        }
        cd
    }

    fn unreachable_b() -> BTreeMap<String, Unreachable> {
        BTreeMap::from([(
            "cell-b".to_string(),
            Unreachable {
                why: "member cluster dc-2 has not answered since 2026-12-03T09:00:00Z".into(),
                last_contact: Some(Time("2026-12-03T09:00:00Z".parse().expect("time"))),
            },
        )])
    }

    fn decide_at(
        cd: &CafeDeployment,
        unreachable: &BTreeMap<String, Unreachable>,
        now: &str,
    ) -> Outcome {
        decide_with(cd, unreachable, now, None, None)
    }

    fn decide_with(
        cd: &CafeDeployment,
        unreachable: &BTreeMap<String, Unreachable>,
        now: &str,
        misplaced: Option<&str>,
        frozen: Option<&Frozen>,
    ) -> Outcome {
        let now = Time(now.parse().expect("time"));
        let history = BTreeMap::new();
        decide(&Observation {
            cd,
            sets: Vec::new(),
            history: &history,
            update: "demo-1",
            now: &now,
            refused: None,
            unreachable,
            misplaced,
            frozen,
            window: None,
            freezes: &[],
            verified: false,
        })
    }

    fn revision(number: i64, image: &str) -> Revision {
        Revision {
            number,
            template: serde_json::from_value(json!({
                "metadata": {"labels": {"app": "demo"}},
                "spec": {"containers": [{"name": "app", "image": image}]}}))
            .expect("template"),
        }
    }

    /// demo-0 (revision 1, nginx:1.24) and demo-1 (revision 2, the current
    /// template: `decide_with`'s update).
    fn history() -> History {
        BTreeMap::from([
            ("demo-0".to_string(), revision(1, "nginx:1.24")),
            ("demo-1".to_string(), revision(2, "nginx:1.25")),
        ])
    }

    #[test]
    fn a_rollback_a_person_asks_for_is_the_decision_s_only_effect() {
        let now = Time("2026-12-03T09:00:00Z".parse().expect("time"));
        let history = history();
        let rolled = |number: i64| {
            let mut cd = two_cells(json!({}), json!({"phase": "WaitingForConfirm"}));
            cd.spec.rollback_to = serde_json::from_value(json!({"revision": number})).ok();
            let out = decide(&Observation {
                cd: &cd,
                sets: Vec::new(),
                history: &history,
                update: "demo-1",
                now: &now,
                refused: None,
                unreachable: &BTreeMap::new(),
                misplaced: None,
                frozen: None,
                window: None,
                freezes: &[],
                verified: false,
            });
            assert!(
                out.sets.is_empty() && out.delete.is_empty(),
                "nothing else written"
            );
            assert_eq!(out.status, cd.status.clone().unwrap_or_default());
            out.effect
        };
        let restored = |effect: Option<Effect>| match effect {
            Some(Effect::Restore(r)) => (r.revision, r.why, r.template),
            other => panic!("a restore, not {other:?}"),
        };
        let (name, why, template) = restored(rolled(0));
        assert_eq!(name, "demo-0", "0: the newest revision but the current one");
        assert_eq!(why, "rolling back to revision 1 (demo-0)");
        assert_eq!(template, history["demo-0"].template);
        assert_eq!(restored(rolled(2)).0, "demo-1");
        assert_eq!(
            rolled(7),
            Some(Effect::RefuseRollback(
                "spec.rollbackTo.revision 7 is not in the history (kept: [1, 2]); set it to \
                 one of them, or 0 for the previous revision"
                    .into()
            ))
        );
    }

    #[test]
    fn the_beta_wait_is_a_persons_where_the_rules_ask_for_a_human_beta() {
        let waiting = |group| Record {
            awaiting: Some(group),
            ..record()
        };
        let mut cd = two_cells(json!({}), json!({}));
        assert!(
            !person_confirms(&cd, &waiting(2)),
            "no rule: the analysis may"
        );
        cd.spec.signoff = Some(crate::api::Signoff {
            human_beta: true,
            ..Default::default()
        });
        assert!(person_confirms(&cd, &waiting(2)), "the Beta group's wait");
        assert!(
            !person_confirms(&cd, &waiting(3)),
            "later groups: the analysis may"
        );
        let rollback = Record {
            rollback: true,
            ..waiting(2)
        };
        assert!(
            !person_confirms(&cd, &rollback),
            "a rollback waits for nobody"
        );
        cd.spec.strategy.upgrade_type = UpgradeType::Batch;
        assert!(!person_confirms(&cd, &waiting(2)), "no Beta group");
        // The namespace's rules, as the API server stamped them.
        let mut cd = two_cells(json!({}), json!({}));
        cd.annotations_mut().insert(
            crate::api::SIGNOFF_RULES_ANNOTATION.into(),
            "fourEyes,humanBeta".into(),
        );
        assert!(person_confirms(&cd, &waiting(2)));
    }

    #[test]
    fn an_analysis_asks_for_its_due_measurement_and_its_verdicts_action() {
        let running: AnalysisStatus = serde_json::from_value(json!({
            "revision": "demo-1", "group": 1, "phase": "Running",
            "startedAt": "2026-12-03T09:00:00Z", "message": "measuring"
        }))
        .expect("record");
        let gate = |act: Option<Act>, phase: AnalysisPhase| gate::Gate {
            record: Some(AnalysisStatus {
                phase,
                ..running.clone()
            }),
            shown: None,
            act,
        };
        let effect = |g: gate::Gate, due: Option<i64>, paused: bool| {
            let mut notes = Vec::new();
            let e = effect_of(g, due, paused, &history(), &mut notes);
            (e, notes.len())
        };
        let running_gate = || gate::Gate {
            shown: Some((Phase::Analyzing, "analysing".into())),
            ..gate(None, AnalysisPhase::Running)
        };
        assert_eq!(
            effect(running_gate(), Some(0), false),
            (Some(Effect::Measure { group: 1 }), 0)
        );
        assert_eq!(
            effect(running_gate(), Some(5), false),
            (None, 0),
            "not due yet"
        );
        assert_eq!(
            effect(running_gate(), Some(0), true),
            (None, 0),
            "paused or frozen: the analysis waits too"
        );
        assert_eq!(
            effect(gate(None, AnalysisPhase::Running), Some(0), false),
            (None, 0),
            "kept as history (a person confirmed first): measured no more"
        );
        assert_eq!(
            effect(gate(Some(Act::Pause), AnalysisPhase::Failed), None, false),
            (Some(Effect::Pause), 0)
        );
        let rollback = |to: &str| gate(Some(Act::Rollback(to.into())), AnalysisPhase::Failed);
        match effect(rollback("demo-0"), None, false) {
            (Some(Effect::Restore(r)), 0) => {
                assert_eq!(r.template, history()["demo-0"].template);
                assert_eq!(r.analysis.map(|a| a.phase), Some(AnalysisPhase::Failed));
            }
            other => panic!("a restore of demo-0, not {other:?}"),
        }
        assert_eq!(
            effect(rollback("demo-9"), None, false),
            (None, 1),
            "a stable revision not in the history: a Warning, nothing restored"
        );
    }

    #[test]
    fn nothing_is_written_to_an_unreachable_cell_and_its_row_reads_unknown() {
        let cd = two_cells(json!({}), json!({}));
        let out = decide_at(&cd, &unreachable_b(), "2026-12-03T09:00:10Z");
        let cells: Vec<String> = out.sets.iter().map(cell_of).collect();
        assert_eq!(cells, ["cell-a"], "no write to cell-b");
        let b = &out.status.cells[1];
        assert_eq!(b.reachability.as_deref(), Some(UNKNOWN));
        assert_eq!(b.last_contact, unreachable_b()["cell-b"].last_contact);
        assert_eq!(out.status.cells[0].reachability, None);
        assert_eq!(out.status.phase, Some(Phase::Progressing));
        let message = &out.status.release.as_ref().expect("release").message;
        assert!(
            message.contains("waiting: cell cell-b is unreachable: member cluster dc-2"),
            "{message}"
        );
    }

    #[test]
    fn a_group_waiting_for_an_unreachable_cell_stalls_past_its_deadline_naming_it() {
        let opened = json!({
            "observedGeneration": 1,
            "release": {"revision": "demo-1", "opened": 1, "groups": 3,
                        "openedAt": "2026-12-03T09:00:00Z"}
        });
        let cd = two_cells(json!({}), opened);
        let within = decide_at(&cd, &unreachable_b(), "2026-12-03T09:00:30Z");
        assert_eq!(within.status.phase, Some(Phase::Progressing));
        let past = decide_at(&cd, &unreachable_b(), "2026-12-03T09:01:30Z");
        assert_eq!(past.status.phase, Some(Phase::Stalled));
        let stalled = past
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::STALLED)
            .expect("Stalled");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", condition::MEMBER_UNREACHABLE)
        );
        assert!(
            stalled
                .message
                .contains("cell cell-b is unreachable: member cluster dc-2")
                && stalled.message.contains("spec.topology.failover"),
            "{}",
            stalled.message
        );
        let reachable = decide_at(&cd, &BTreeMap::new(), "2026-12-03T09:01:30Z");
        assert_ne!(reachable.status.phase, Some(Phase::Stalled));
    }

    #[test]
    fn failover_gives_a_lost_cells_share_to_the_others_only_while_it_is_lost() {
        let cd = two_cells(json!({"failover": ["cell-b"]}), json!({}));
        let lost = decide_at(&cd, &unreachable_b(), "2026-12-03T09:00:10Z");
        assert_eq!(lost.status.cells[0].replicas, 10, "cell-a runs all 10");
        assert_eq!(lost.status.cells[1].replicas, 0);
        assert_eq!(lost.status.cells[1].failed_over, 5);
        assert!(lost.sets.iter().all(|s| cell_of(s) == "cell-a"));
        let back = decide_at(&cd, &BTreeMap::new(), "2026-12-03T09:00:10Z");
        assert_eq!(
            back.status.cells[0].replicas, 5,
            "given back once it answers"
        );
        assert_eq!(back.status.cells[1].failed_over, 0);
        let listed_but_reachable = decide_at(
            &two_cells(json!({}), json!({})),
            &unreachable_b(),
            "2026-12-03T09:00:10Z",
        );
        assert_eq!(
            listed_but_reachable.status.cells[0].replicas, 5,
            "an unreachable cell not listed in failover keeps its share"
        );
    }

    #[test]
    fn a_freeze_holds_a_release_as_a_pause_and_says_so_in_its_phase() {
        // The release of demo-1 has its Beta group open, waiting.
        let waiting = json!({
            "observedGeneration": 1,
            "release": {"revision": "demo-1", "opened": 1, "groups": 3,
                        "openedAt": "2026-12-03T09:00:00Z"}
        });
        let cd = two_cells(json!({}), waiting);
        let frozen = Frozen {
            name: "incident".into(),
            message: "frozen by ReleaseFreeze incident: payments down".into(),
            lets_rollback: false,
        };
        let out = decide_with(
            &cd,
            &BTreeMap::new(),
            "2026-12-03T09:00:10Z",
            None,
            Some(&frozen),
        );
        assert_eq!(out.status.phase, Some(Phase::Frozen));
        let message = &out.status.release.as_ref().expect("release").message;
        assert!(
            message.starts_with("frozen by ReleaseFreeze incident"),
            "{message}"
        );
        assert!(
            out.sets.iter().all(|s| s.spec.strategy.paused),
            "every set paused"
        );
        assert_eq!(condition(&out.status, condition::READY), "False");
        assert_eq!(condition(&out.status, condition::STALLED), "False");
        assert_eq!(condition(&out.status, condition::RECONCILING), "False");
    }

    #[test]
    fn a_cell_that_cannot_be_placed_stalls_the_spec_naming_the_field() {
        let cd = two_cells(json!({}), json!({}));
        let misplaced = "topology.values: cell cell-b is listed by MemberClusters dc-2 and dc-3: \
                         choose one with topology.clusters.cell-b";
        let out = decide_with(
            &cd,
            &BTreeMap::new(),
            "2026-12-03T09:00:00Z",
            Some(misplaced),
            None,
        );
        assert_eq!(out.status.phase, Some(Phase::Stalled));
        assert!(out.sets.is_empty());
        assert!(
            out.status
                .conditions
                .iter()
                .any(|c| c.type_ == condition::STALLED
                    && c.reason == condition::INVALID_SPEC
                    && c.message.contains("topology.clusters.cell-b")),
            "{:?}",
            out.status.conditions
        );
    }

    #[test]
    fn a_set_whose_status_lags_its_spec_keeps_its_counts_but_is_not_fresh() {
        let o = observe(&lagging_set(revision::revision), "demo-2", &record());
        assert!(!o.fresh, "completion waits for the status to catch up");
        assert_eq!(
            o.updated_available, 5,
            "the budget split still sees its work done"
        );
    }

    #[test]
    fn a_status_counting_the_template_before_counts_nothing_of_this_release() {
        let before = |t: &PodTemplateSpec| {
            let mut t = t.clone();
            if let Some(c) = t.spec.as_mut().and_then(|s| s.containers.first_mut()) {
                c.image = Some("nginx:1.25".into());
            }
            revision::revision(&t)
        };
        let o = observe(&lagging_set(before), "demo-2", &record());
        assert!(!o.fresh);
        assert_eq!(
            (o.updated_available, o.stable_available),
            (0, 0),
            "the release has not started here: its work is all still to do"
        );
    }

    #[test]
    fn an_invalid_spec_is_stalled_for_this_generation_and_never_reads_ready() {
        // Ready at generation 1; generation 2 pins 140% (the API server's rule
        // would refuse it; an older CRD without the rule would not).
        let ready = json!({
            "observedGeneration": 1, "phase": "Healthy", "currentRevision": "demo-1",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        });
        let cd = cd(2, ready);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let history = BTreeMap::new();
        let out = decide(&Observation {
            cd: &cd,
            sets: Vec::new(),
            history: &history,
            update: "demo-2",
            now: &now,
            refused: None,
            unreachable: &BTreeMap::new(),
            misplaced: None,
            frozen: None,
            window: None,
            freezes: &[],
            verified: false,
        });
        assert_eq!(out.status.observed_generation, Some(2));
        assert_eq!(out.status.phase, Some(Phase::Stalled));
        assert_eq!(condition(&out.status, condition::READY), "False");
        assert_eq!(condition(&out.status, condition::STALLED), "True");
        let stalled = out
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::STALLED)
            .expect("Stalled");
        assert_eq!(stalled.reason, condition::INVALID_SPEC);
        assert!(
            stalled.message.contains("topology.unitReplicas"),
            "{}",
            stalled.message
        );
        assert!(
            out.sets.is_empty() && out.delete.is_empty(),
            "nothing is acted on"
        );
        assert_eq!(out.notes.len(), 1, "one Warning event");
    }

    #[test]
    fn health_tells_working_waiting_stuck_and_done_apart() {
        let h = Health::of(Phase::WaitingForConfirm, None);
        assert!(!h.ready && !h.reconciling && !h.stalled);
        assert_eq!(h.reason, "WaitingForConfirm");
        let h = Health::of(Phase::Paused, None);
        assert!(!h.ready && !h.reconciling && !h.stalled && h.reason == "Paused");
        let h = Health::of(Phase::Progressing, None);
        assert!(!h.ready && h.reconciling && !h.stalled);
        let h = Health::of(Phase::Stalled, Some("DrainTimeout"));
        assert!(!h.ready && !h.reconciling && h.stalled && !h.progressing);
        assert_eq!(h.stalled_reason, "DrainTimeout");
        let h = Health::of(Phase::Healthy, None);
        assert!(h.ready && !h.reconciling && !h.stalled);
    }

    #[test]
    fn the_release_record_round_trips_through_status() {
        let record = Record {
            stable: Some("demo-1".into()),
            revision: Some("demo-2".into()),
            opened: 2,
            rollback: false,
            awaiting: Some(3),
            baseline: Some([("cell-a".to_string(), 3)].into()),
        };
        let status = CafeDeploymentStatus {
            current_revision: record.stable.clone(),
            release: Some(ReleaseStatus {
                revision: "demo-2".into(),
                opened: 2,
                awaiting_confirmation: Some(ConfirmationWait {
                    revision: "demo-2".into(),
                    group: 3,
                }),
                baseline: [("cell-a".to_string(), 3)].into(),
                ..ReleaseStatus::default()
            }),
            ..CafeDeploymentStatus::default()
        };
        assert_eq!(record_of(&status), record);
    }
}
