//! Cells that cannot be reached now (their cluster does not answer), pure:
//! what a person's failover moves elsewhere, and which of them the release
//! waits for.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::build::{REVISION_ANNOTATION, written_count};
use super::model::{Observation, Unreachable};
use crate::api::InPlaceSet;
use crate::release::cells::Target;

/// A reachable cell's set as failover paces it: pods given, live and
/// available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub given: usize,
    pub live: usize,
    pub available: usize,
}

impl Counts {
    pub fn of(set: &InPlaceSet) -> Self {
        let status = set.status.clone().unwrap_or_default();
        let count = |n: i32| usize::try_from(n).unwrap_or(0);
        Self {
            given: count(set.spec.replicas),
            live: count(status.replicas),
            available: count(status.available_replicas),
        }
    }

    /// Pods asked for or running that serve nothing yet.
    fn unavailable(&self) -> usize {
        self.given.max(self.live).saturating_sub(self.available)
    }
}

/// `topology.failover`: a cell whose decision acts (`acting`: it does not
/// answer, by a person's decision for this outage) gives its share to the
/// cells with room; once it answers, it has its share again (its pods there
/// were never touched). The replacements come at the budget's pace
/// ([`paced_surge`]). `counts`: each cell's set, if reachable. Returns the
/// sizes and what each cell gave.
pub(super) fn failed_over_sizes(
    acting: &[String],
    cells: &[String],
    sizes: Vec<usize>,
    obs: &Observation,
    counts: &[Option<Counts>],
    budget: impl Fn(&[usize]) -> usize,
) -> (Vec<usize>, Vec<usize>) {
    let lost = |c: &String| acting.contains(c) && obs.unreachable.contains_key(c);
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
    let full = crate::topology::reschedule(&sizes, &away, &room);
    let budget = budget(&full);
    (paced_surge(&sizes, &full, counts, budget), away)
}

/// Replacements count against the budget as every unavailable pod does
/// (docs/safety.md): a cell that receives failed-over pods (`full` over its
/// own `base` share) is given more only while the pods not available over
/// the reachable cells (`counts`; asked for and not yet started, starting,
/// failing) stay within `budget`, so the surge moves at the budget's pace.
/// What a set was given already is never taken back here. While no
/// replacement is pending one may always start, so that pods failing for
/// their own reasons cannot hold a lost cell's capacity back for ever.
pub fn paced_surge(
    base: &[usize],
    full: &[usize],
    counts: &[Option<Counts>],
    budget: usize,
) -> Vec<usize> {
    let receiving = |i: usize| full[i] > base[i] && counts.get(i).copied().flatten().is_some();
    let mut out: Vec<usize> = (0..full.len())
        .map(|i| match counts.get(i).copied().flatten() {
            Some(c) if receiving(i) => c.given.clamp(base[i], full[i]),
            _ => full[i],
        })
        .collect();
    let unavailable: usize = counts.iter().flatten().map(Counts::unavailable).sum();
    let pending: usize = (0..full.len())
        .filter(|i| receiving(*i))
        .filter_map(|i| {
            let c = counts[i]?;
            Some((out[i] - base[i]).min(c.given.saturating_sub(c.available)))
        })
        .sum();
    let mut room = budget.saturating_sub(unavailable);
    if pending == 0 {
        room = room.max(1);
    }
    // Round-robin, in `values` order, so that every receiving cell fills.
    while room > 0 {
        let before = room;
        for i in (0..full.len()).filter(|i| receiving(*i)) {
            if room > 0 && out[i] < full[i] {
                out[i] += 1;
                room -= 1;
            }
        }
        if room == before {
            break;
        }
    }
    out
}

/// Whether the pods failover moved are given back: no reachable cell's set
/// is given or holds more than `sizes` gives it.
pub(super) fn given_back(sizes: &[usize], counts: &[Option<Counts>]) -> bool {
    sizes
        .iter()
        .zip(counts)
        .all(|(n, c)| c.is_none_or(|c| c.given <= *n && c.live <= *n))
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
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn set(given: usize, live: usize, available: usize) -> Option<Counts> {
        Some(Counts {
            given,
            live,
            available,
        })
    }

    #[test]
    fn failover_replacements_start_at_the_budgets_pace() {
        // 12 pods over three cells, cell-c lost: its 4 go to cell-a and
        // cell-b, against a budget of 3.
        let base = [4, 4, 4];
        let full = [6, 6, 0];
        let first = paced_surge(&base, &full, &[set(4, 4, 4), set(4, 4, 4), None], 3);
        assert_eq!(first, [6, 5, 0], "3 replacements at once, not 4");
        // Two of them available: two more may start, but only one is left.
        let next = paced_surge(&base, &full, &[set(6, 6, 6), set(5, 5, 4), None], 3);
        assert_eq!(next, [6, 6, 0]);
        // All three still starting: nothing more.
        let held = paced_surge(&base, &full, &[set(6, 6, 4), set(5, 5, 4), None], 3);
        assert_eq!(held, [6, 5, 0]);
    }

    #[test]
    fn every_unavailable_pod_counts_but_one_replacement_may_always_start() {
        let base = [4, 4, 4];
        let full = [6, 6, 0];
        // Two pods failing in cell-a: one replacement fits the budget of 3.
        let some = paced_surge(&base, &full, &[set(4, 4, 2), set(4, 4, 4), None], 3);
        assert_eq!(some, [5, 4, 0]);
        // Four failing, more than the budget: still one at a time.
        let broken = paced_surge(&base, &full, &[set(4, 4, 0), set(4, 4, 4), None], 3);
        assert_eq!(broken, [5, 4, 0]);
        let waiting = paced_surge(&base, &full, &[set(5, 5, 0), set(4, 4, 4), None], 3);
        assert_eq!(waiting, [5, 4, 0], "the one pending holds the rest");
        // What a set was given is never taken back by the pacing.
        let given = paced_surge(&base, &full, &[set(6, 6, 0), set(6, 6, 0), None], 3);
        assert_eq!(given, [6, 6, 0]);
    }

    #[test]
    fn the_surge_is_given_back_when_no_reachable_cell_holds_more_than_its_size() {
        let sizes = [4, 4, 4];
        assert!(!given_back(&sizes, &[set(5, 5, 5), set(4, 4, 4), None]));
        assert!(!given_back(&sizes, &[set(4, 5, 5), set(4, 4, 4), None]));
        assert!(given_back(&sizes, &[set(4, 4, 4), set(4, 4, 4), None]));
    }

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
