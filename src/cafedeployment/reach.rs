//! Cells that cannot be reached now (their cluster does not answer), pure:
//! what a person's failover moves elsewhere, and which of them the release
//! waits for.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::build::{REVISION_ANNOTATION, written_count};
use super::model::{Observation, Unreachable};
use crate::api::InPlaceSet;
use crate::release::cells::Target;

/// `topology.failover`: a listed cell that cannot be reached gives its
/// share to the cells with room, by a person's decision; once it answers,
/// it has its share again (its pods there were never touched). Returns the
/// sizes and what each cell gave.
pub(super) fn failed_over_sizes(
    failover: &[String],
    cells: &[String],
    sizes: Vec<usize>,
    obs: &Observation,
) -> (Vec<usize>, Vec<usize>) {
    let lost = |c: &String| failover.contains(c) && obs.unreachable.contains_key(c);
    let away: Vec<usize> = cells
        .iter()
        .zip(&sizes)
        .map(|(c, n)| if lost(c) { *n } else { 0 })
        .collect();
    if away.iter().all(|n| *n == 0) {
        return (sizes, away);
    }
    let room: Vec<bool> = cells
        .iter()
        .map(|c| !obs.unreachable.contains_key(c))
        .collect();
    (crate::topology::reschedule(&sizes, &away, &room), away)
}

/// The unreachable cells the release waits for: their set is not yet what
/// this decision gives them (pods, partition, revision), its status does
/// not describe its spec, or its pods are not yet there (as last seen).
pub(super) fn waiting_for<'a>(
    targets: &[Target],
    by_cell: &BTreeMap<String, &InPlaceSet>,
    obs: &'a Observation,
) -> Vec<(String, &'a Unreachable)> {
    targets
        .iter()
        .filter_map(|t| {
            let why = obs.unreachable.get(&t.name)?;
            let behind = by_cell.get(&t.name).is_none_or(|set| {
                let partition = written_count(&set.spec.strategy.partition)
                    .and_then(|n| usize::try_from(n).ok());
                usize::try_from(set.spec.replicas).ok() != Some(t.replicas)
                    || (!t.retiring && partition != Some(t.partition))
                    || (!t.retiring
                        && set
                            .annotations()
                            .get(REVISION_ANNOTATION)
                            .map(String::as_str)
                            != Some(obs.update))
                    || set.status.as_ref().and_then(|s| s.observed_generation)
                        != set.metadata.generation
                    || set.status.as_ref().is_none_or(|s| {
                        let updated = usize::try_from(s.updated_available_replicas).unwrap_or(0);
                        let live = usize::try_from(s.replicas).unwrap_or(0);
                        updated < t.replicas - t.partition.min(t.replicas) || live > t.replicas
                    })
            });
            behind.then(|| (t.name.clone(), why))
        })
        .collect()
}

/// Seconds until a group that waits for an unreachable cell passes its
/// progress deadline (measured from when the group opened), so that the
/// release stalls then, not at whatever reconcile comes next. None when
/// nothing waits, or the deadline has passed already.
pub(super) fn deadline_wake(
    deadline_seconds: i32,
    waiting: bool,
    opened_at: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<i64> {
    let at = opened_at.filter(|_| waiting)?;
    // Stalled once more than the deadline has passed (whole seconds).
    let due = at.0.as_second() + i64::from(deadline_seconds) + 1 - now.0.as_second();
    (due > 0).then_some(due)
}

#[cfg(test)]
mod tests {
    use super::deadline_wake;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: &str) -> Time {
        Time(s.parse().expect("time"))
    }

    #[test]
    fn a_group_waiting_for_an_unreachable_cell_wakes_when_its_deadline_passes() {
        let opened = at("2026-12-03T09:00:00Z");
        let now = at("2026-12-03T09:00:25Z");
        assert_eq!(deadline_wake(60, true, Some(&opened), &now), Some(36));
        assert_eq!(deadline_wake(60, false, Some(&opened), &now), None);
        assert_eq!(deadline_wake(60, true, None, &now), None);
        let past = at("2026-12-03T09:01:01Z");
        assert_eq!(deadline_wake(60, true, Some(&opened), &past), None);
    }
}
