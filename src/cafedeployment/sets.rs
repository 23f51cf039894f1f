//! The cells' InPlaceSets, pure: as the release reads them (their counts
//! trusted only when their status was computed for their present template
//! and this release; a status lagging a later write counts as last reported),
//! and as the decision wants them written (each cell's set, a removed cell's
//! set drained empty and then deleted).

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::build::{self, CellSet, REVISION_ANNOTATION, STABLE_REVISION_ANNOTATION};
use super::model::{Note, Observation, cell_of, note};
use crate::api::InPlaceSet;
use crate::inplaceset::revision;
use crate::release;
use crate::release::baseline::Record;
use crate::release::cells::{Observed, Target};

/// The sets as the release reads them: each cell's (`sets`, in `cells`
/// order) and those of removed cells.
pub(super) fn observed(
    obs: &Observation,
    cells: &[String],
    sets: &[Option<&InPlaceSet>],
    record: &Record,
) -> (Vec<Option<Observed>>, Vec<Observed>) {
    let read = |s: &InPlaceSet| held(obs, s, observe(s, obs.update, record));
    let active = sets.iter().map(|s| s.map(read)).collect();
    let removed = obs
        .sets
        .iter()
        .filter(|s| !cells.contains(&cell_of(s)))
        .map(|s| read(s))
        .collect();
    (active, removed)
}

/// A set that cannot be written (its cell unreachable) goes on with the
/// share it has.
fn held(obs: &Observation, s: &InPlaceSet, mut o: Observed) -> Observed {
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
}

/// A set as the release sees it: its counts are trusted only when its status
/// was computed for its present template and it carries the revisions of
/// `record`. A status older than the set's spec (`observedGeneration` behind,
/// as after every write: a partition, a budget, a pause) counts as last
/// reported: those pods are still there and still on the revision; the
/// write moves others, and the next report counts them.
pub(super) fn observe(set: &InPlaceSet, update: &str, record: &Record) -> Observed {
    let status = set.status.clone().unwrap_or_default();
    let annotation = |key: &str| set.annotations().get(key).cloned();
    let carries = annotation(REVISION_ANNOTATION).as_deref() == Some(update)
        && annotation(STABLE_REVISION_ANNOTATION) == record.stable.clone().filter(|s| s != update);
    // Right after a release reaches a set, its status still counts the pods
    // of the template before as updated: counts describe this release only
    // when the status was computed for the set's present template. Read as
    // done, a set not started yet would hand its budget share to the others
    // (a fresh set given all of it: one group started in one cell at once).
    let counts_this_release = carries
        && status.update_revision.as_deref()
            == Some(revision::revision(&set.spec.template.spec()).as_str());
    let count = |n: i32| usize::try_from(n).unwrap_or(0);
    Observed {
        name: cell_of(set),
        given: usize::try_from(set.spec.replicas).ok(),
        live: count(status.replicas),
        available: count(status.available_replicas),
        // Counts of a set that carries this release, even while its status
        // lags its spec (as after any write to it, its template unchanged):
        // read as unstarted, a lagging set would get a new budget share, lag
        // again, and so on; and the groups completed (status.release.group)
        // would fall back after every confirmation until it caught up.
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
        held: None,
    }
}

/// Each cell's InPlaceSet as the decision wants it, and the sets of removed
/// cells drained empty (to delete), with the events that tell of them; but
/// none in a cell that cannot be reached: what it was given last stands
/// until it answers.
pub(super) fn cell_sets(
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
    let reachable = |name: &String| !obs.unreachable.contains_key(name);
    sets.retain(|s| reachable(&cell_of(s)));
    delete.retain(|name| {
        obs.sets
            .iter()
            .find(|s| s.name_any() == *name)
            .is_none_or(|s| reachable(&cell_of(s)))
    });
    (sets, delete)
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use serde_json::json;

    use super::*;
    use crate::api::names::CELL_LABEL;
    use crate::cafedeployment::decide::tests::record;

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
        let revision = counted(&set.spec.template.spec());
        if let Some(s) = set.status.as_mut() {
            s.update_revision = Some(revision);
        }
        set
    }

    #[test]
    fn a_set_whose_status_lags_its_spec_keeps_its_counts() {
        let o = observe(&lagging_set(revision::revision), "demo-2", &record());
        assert_eq!(
            o.updated_available, 5,
            "the budget split and the groups completed still see its work done"
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
        assert_eq!(
            (o.updated_available, o.stable_available),
            (0, 0),
            "the release has not started here: its work is all still to do"
        );
    }

    /// A confirmation opens group 2 of a Beta release (one pod per cell
    /// done): the write lowers both sets' partitions, and until their
    /// controller reports again their status describes the generation
    /// before. The group done stays done (it read 0 for half a second).
    #[test]
    fn a_write_to_the_sets_leaves_the_groups_completed_as_they_were() {
        let lagging = |cell: &str| -> InPlaceSet {
            let mut set: InPlaceSet = serde_json::from_value(json!({
                "apiVersion": crate::api::names::API_VERSION, "kind": "InPlaceSet",
                "metadata": {"name": format!("demo-{cell}"), "namespace": "shop",
                             "generation": 5, "labels": {CELL_LABEL: cell},
                             "annotations": {REVISION_ANNOTATION: "demo-2",
                                             STABLE_REVISION_ANNOTATION: "demo-1"}},
                "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "demo"}},
                         "template": {"metadata": {"labels": {"app": "demo"}},
                                      "spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}},
                "status": {"observedGeneration": 4, "replicas": 5, "availableReplicas": 5,
                           "updatedAvailableReplicas": 1, "stableAvailableReplicas": 4}
            }))
            .expect("set");
            let counted = revision::revision(&set.spec.template.spec());
            if let Some(s) = set.status.as_mut() {
                s.update_revision = Some(counted);
            }
            set
        };
        let record = Record {
            stable: Some("demo-1".into()),
            revision: Some("demo-2".into()),
            opened: 2,
            ..Record::default()
        };
        let cells = [("cell-a".to_string(), 5), ("cell-b".to_string(), 5)];
        let active: Vec<Option<Observed>> = ["cell-a", "cell-b"]
            .iter()
            .map(|c| Some(observe(&lagging(c), "demo-2", &record)))
            .collect();
        let decision = release::decide(&release::Input {
            record: &record,
            update: "demo-2",
            cells: &cells,
            active: &active,
            removed: &[],
            beta: true,
            batch: 4,
            need_confirm: true,
            paused: false,
            confirmed: false,
        });
        assert_eq!(
            (decision.progress.completed, decision.progress.opened),
            (1, 2),
            "the Beta group is still done while group 2 moves"
        );
    }
}
