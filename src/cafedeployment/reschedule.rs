//! autoReschedule, pure: the quota of pods a full cell cannot schedule moves
//! to cells with room.

use crate::api::{CafeDeployment, CafeDeploymentStatus, InPlaceSet};

/// The shares after autoReschedule: a cell (not pinned) whose pods stay
/// unschedulable for `initialDelaySeconds` gives those pods' quota to cells
/// with room. What moved is kept in status until the spec changes. Returns the
/// sizes, what each cell gave away, and when to look again for pods not due yet.
pub fn rescheduled_sizes(
    cd: &CafeDeployment,
    previous: &CafeDeploymentStatus,
    cells: &[String],
    distribution: &[(String, usize)],
    observed: &[Option<&InPlaceSet>],
    now: i64,
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
