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
            // Never more than the cell's share: a set whose status still
            // counts a pod already given away (its pod cache lagging the
            // scale-in) must not give it away twice.
            away[i] = (away[i] + pending).min(sizes.get(i).copied().unwrap_or(0));
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_cell_never_gives_away_more_than_its_share() {
        let cd: CafeDeployment = serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "CafeDeployment",
            "metadata": {"name": "demo", "namespace": "shop", "generation": 1},
            "spec": {
                "replicas": 6,
                "selector": {"matchLabels": {"app": "demo"}},
                "template": {"metadata": {"labels": {"app": "demo"}},
                             "spec": {"containers": [{"name": "app", "image": "nginx"}]}},
                "topology": {"values": ["cell-a", "cell-b", "cell-x"],
                             "autoReschedule": {"enable": true, "initialDelaySeconds": 2}}
            }
        }))
        .expect("cd");
        // cell-x gave its 2 pods away already; its set's status still counts
        // one of them as unschedulable (its pod cache lags the scale-in).
        let previous: CafeDeploymentStatus = serde_json::from_value(json!({
            "observedGeneration": 1,
            "cells": [{"name": "cell-x", "replicas": 0, "rescheduledAway": 2}]
        }))
        .expect("status");
        let lagging: InPlaceSet = serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "InPlaceSet",
            "metadata": {"name": "demo-cell-x", "namespace": "shop", "generation": 3},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "demo"}},
                     "template": {"metadata": {"labels": {"app": "demo"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
            "status": {"observedGeneration": 3, "replicas": 1, "unschedulableReplicas": 1,
                       "unschedulableSince": 0}
        }))
        .expect("set");
        let cells: Vec<String> = ["cell-a", "cell-b", "cell-x"].map(String::from).to_vec();
        let distribution: Vec<(String, usize)> = cells.iter().map(|c| (c.clone(), 2)).collect();
        let (sizes, away, _) = rescheduled_sizes(
            &cd,
            &previous,
            &cells,
            &distribution,
            &[None, None, Some(&lagging)],
            100,
        );
        assert_eq!(away, vec![0, 0, 2]);
        assert_eq!(sizes.iter().sum::<usize>(), 6);
        assert_eq!(sizes[2], 0);
    }
}
