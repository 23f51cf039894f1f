//! The set-level plan: how many pods to create, which to delete, which to
//! update now. Pure; the lifecycle step then moves each pod.
//!
//! Deletion order on scale-in (first deleted first): unscheduled pods, then
//! pods that are not Ready, then pods on an older revision, then the newest;
//! the pod name breaks ties. Update order: unavailable pods first (they serve
//! no traffic, so updating them costs nothing), then the oldest; name breaks ties.
//!
//! A pod already in its lifecycle (gate closed with reason DrainingForUpdate or
//! DrainingForDelete) always finishes it, even when the set is paused or the
//! partition moved: half a drain is never abandoned with the pod out of traffic.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::lifecycle::{Intent, PodFacts, Target};
use crate::api::names::gate_reason;

/// What the set asks for, with percentages already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub replicas: usize,
    /// Pods that stay on older revisions.
    pub partition: usize,
    /// Pods that may be unavailable at once because of this set's own actions.
    pub max_unavailable: usize,
    /// No new pod starts its lifecycle; those in it finish.
    pub paused: bool,
    /// Every update re-creates (updateMode ReCreate).
    pub recreate: bool,
    pub min_ready_seconds: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New pods to create on the target revision.
    pub create: usize,
    /// One intent per pod, by name.
    pub intents: BTreeMap<String, Intent>,
}

impl Plan {
    pub fn intent(&self, pod: &str) -> Intent {
        self.intents.get(pod).copied().unwrap_or(Intent::Keep)
    }
}

fn on_target(p: &PodFacts, target: &Target) -> bool {
    p.revision.as_deref() == Some(target.revision.as_str())
}

pub fn plan(pods: &[PodFacts], spec: &SetSpec, target: &Target, now: i64) -> Plan {
    let mut intents = BTreeMap::new();
    let leaving = |p: &PodFacts| p.terminating || p.draining_for(gate_reason::DRAINING_FOR_DELETE);
    let mut live: Vec<&PodFacts> = Vec::new();
    for p in pods {
        if leaving(p) {
            intents.insert(p.name.clone(), Intent::Delete);
        } else {
            live.push(p);
        }
    }

    // Scale in.
    if live.len() > spec.replicas {
        live.sort_by_key(|p| {
            (
                p.scheduled,
                p.ready,
                on_target(p, target),
                Reverse(p.created),
                p.name.clone(),
            )
        });
        for p in live.drain(..live.len() - spec.replicas) {
            intents.insert(p.name.clone(), Intent::Delete);
        }
    }
    let create = spec.replicas - live.len().min(spec.replicas);

    // Update: in-flight pods finish, then new ones start within partition and budget.
    let in_flight = |p: &PodFacts| p.draining_for(gate_reason::DRAINING_FOR_UPDATE);
    for p in live.iter().filter(|p| in_flight(p)) {
        intents.insert(p.name.clone(), Intent::Update);
    }
    let old: Vec<&PodFacts> = live
        .iter()
        .copied()
        .filter(|p| !on_target(p, target))
        .collect();
    let wanted = old.len().saturating_sub(spec.partition);
    let in_flight_old = old.iter().filter(|p| in_flight(p)).count();
    let unavailable = live
        .iter()
        .filter(|p| !p.available(spec.min_ready_seconds, now))
        .count();
    let mut budget = spec.max_unavailable.saturating_sub(unavailable);
    let mut room = if spec.paused {
        0
    } else {
        wanted.saturating_sub(in_flight_old)
    };

    let mut candidates: Vec<&PodFacts> = old.into_iter().filter(|p| !in_flight(p)).collect();
    candidates.sort_by_key(|p| {
        (
            p.available(spec.min_ready_seconds, now),
            p.created,
            p.name.clone(),
        )
    });
    for p in candidates {
        if room == 0 {
            break;
        }
        if p.available(spec.min_ready_seconds, now) {
            if budget == 0 {
                break;
            }
            budget -= 1;
        }
        let in_place = !spec.recreate && p.shape.as_deref() == Some(target.shape.as_str());
        let intent = if in_place {
            Intent::Update
        } else {
            Intent::Delete
        };
        intents.insert(p.name.clone(), intent);
        room -= 1;
    }
    Plan { create, intents }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inplaceset::lifecycle::Gate;
    use proptest::prelude::*;

    const NOW: i64 = 10_000;

    fn target() -> Target {
        Target {
            revision: "new".into(),
            shape: "s".into(),
        }
    }

    fn pod(i: usize, revision: &str, available: bool) -> PodFacts {
        PodFacts {
            name: format!("p{i:02}"),
            created: i as i64,
            revision: Some(revision.into()),
            shape: Some("s".into()),
            scheduled: true,
            gate: Gate {
                open: Some(available),
                reason: gate_reason::SERVING.into(),
                since: 0,
            },
            ready: available,
            ready_since: available.then_some(0),
            ..PodFacts::default()
        }
    }

    fn spec(replicas: usize, partition: usize, max_unavailable: usize) -> SetSpec {
        SetSpec {
            replicas,
            partition,
            max_unavailable,
            paused: false,
            recreate: false,
            min_ready_seconds: 0,
        }
    }

    fn count(plan: &Plan, intent: Intent) -> usize {
        plan.intents.values().filter(|i| **i == intent).count()
    }

    #[test]
    fn partition_keeps_that_many_pods_on_the_old_revision() {
        let pods: Vec<_> = (0..5).map(|i| pod(i, "old", true)).collect();
        let p = plan(&pods, &spec(5, 3, 5), &target(), NOW);
        assert_eq!(count(&p, Intent::Update), 2);
        assert_eq!(p.intent("p00"), Intent::Update, "oldest first");
        assert_eq!(p.intent("p01"), Intent::Update);
        assert_eq!(p.create, 0);
    }

    #[test]
    fn max_unavailable_bounds_how_many_start_at_once() {
        let pods: Vec<_> = (0..5).map(|i| pod(i, "old", true)).collect();
        let p = plan(&pods, &spec(5, 0, 1), &target(), NOW);
        assert_eq!(count(&p, Intent::Update), 1);
    }

    #[test]
    fn an_updated_pod_that_never_gets_ready_stops_the_update_there() {
        let mut pods: Vec<_> = (0..5).map(|i| pod(i, "old", true)).collect();
        pods[0] = pod(0, "new", false);
        let p = plan(&pods, &spec(5, 0, 1), &target(), NOW);
        assert_eq!(count(&p, Intent::Update), 0, "the budget is used up");
    }

    #[test]
    fn unavailable_old_pods_are_updated_first_even_with_the_budget_used_up() {
        let mut pods: Vec<_> = (0..3).map(|i| pod(i, "old", true)).collect();
        pods.push(pod(3, "old", false));
        // The unavailable pod uses the whole budget of 1 already.
        let p = plan(&pods, &spec(4, 0, 1), &target(), NOW);
        assert_eq!(p.intent("p03"), Intent::Update);
        assert_eq!(count(&p, Intent::Update), 1);
        let p = plan(&pods, &spec(4, 0, 2), &target(), NOW);
        assert_eq!(count(&p, Intent::Update), 2);
    }

    #[test]
    fn scale_in_deletes_unready_then_old_then_newest() {
        let pods = vec![
            pod(0, "new", true),
            pod(1, "old", true),
            pod(2, "new", false),
            pod(3, "new", true),
        ];
        let p = plan(&pods, &spec(2, 0, 4), &target(), NOW);
        assert_eq!(p.intent("p02"), Intent::Delete, "not ready first");
        assert_eq!(p.intent("p01"), Intent::Delete, "then the older revision");
        assert_eq!(p.intent("p00"), Intent::Keep);
    }

    #[test]
    fn a_change_that_cannot_be_made_in_place_recreates() {
        let mut pods = vec![pod(0, "old", true)];
        pods[0].shape = Some("other".into());
        let p = plan(&pods, &spec(1, 0, 1), &target(), NOW);
        assert_eq!(p.intent("p00"), Intent::Delete);
        let mut recreate = spec(1, 0, 1);
        recreate.recreate = true;
        let p = plan(&[pod(0, "old", true)], &recreate, &target(), NOW);
        assert_eq!(p.intent("p00"), Intent::Delete);
    }

    #[test]
    fn pods_in_their_lifecycle_finish_it_while_paused() {
        let mut pods: Vec<_> = (0..3).map(|i| pod(i, "old", true)).collect();
        pods[1].gate = Gate {
            open: Some(false),
            reason: gate_reason::DRAINING_FOR_UPDATE.into(),
            since: 0,
        };
        let mut paused = spec(3, 0, 3);
        paused.paused = true;
        let p = plan(&pods, &paused, &target(), NOW);
        assert_eq!(p.intent("p01"), Intent::Update);
        assert_eq!(count(&p, Intent::Update), 1, "no new pod starts");
    }

    fn arb_pod() -> impl Strategy<Value = PodFacts> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0..3u8,
            0..1000i64,
        )
            .prop_map(|(on_new, available, scheduled, lifecycle, created)| {
                let mut p = pod(0, if on_new { "new" } else { "old" }, available);
                p.created = created;
                p.scheduled = scheduled;
                match lifecycle {
                    1 => {
                        p.gate.open = Some(false);
                        p.gate.reason = gate_reason::DRAINING_FOR_UPDATE.into();
                        p.ready = false;
                    }
                    2 => {
                        p.gate.open = Some(false);
                        p.gate.reason = gate_reason::DRAINING_FOR_DELETE.into();
                        p.ready = false;
                    }
                    _ => {}
                }
                p
            })
    }

    proptest! {
        #[test]
        fn plans_respect_replicas_partition_budget_and_pause(
            mut pods in proptest::collection::vec(arb_pod(), 0..20),
            replicas in 0usize..20,
            partition in 0usize..20,
            max_unavailable in 1usize..5,
            paused in any::<bool>(),
        ) {
            for (i, p) in pods.iter_mut().enumerate() {
                p.name = format!("p{i:02}");
            }
            let mut s = spec(replicas, partition, max_unavailable);
            s.paused = paused;
            let plan = plan(&pods, &s, &target(), NOW);
            let intent = |q: &PodFacts| plan.intent(&q.name);
            let draining = |q: &PodFacts, r: &str| q.draining_for(r);

            let (leaving, live): (Vec<&PodFacts>, Vec<&PodFacts>) = pods
                .iter()
                .partition(|q| draining(q, gate_reason::DRAINING_FOR_DELETE));
            // Pods already leaving keep leaving.
            prop_assert!(leaving.iter().all(|q| intent(q) == Intent::Delete));
            // Live pods plus creations make replicas; scale-in removes exactly the excess.
            prop_assert_eq!(plan.create, replicas.saturating_sub(live.len()));
            let scaled_in = live.iter().filter(|q| intent(q) == Intent::Delete).count();
            prop_assert_eq!(scaled_in, live.len().saturating_sub(replicas));

            let remaining: Vec<&PodFacts> =
                live.iter().copied().filter(|q| intent(q) != Intent::Delete).collect();
            let is_old = |q: &PodFacts| q.revision.as_deref() == Some("old");
            let in_flight = |q: &PodFacts| draining(q, gate_reason::DRAINING_FOR_UPDATE);
            // Pods in their lifecycle finish it.
            prop_assert!(remaining
                .iter()
                .filter(|q| in_flight(q))
                .all(|q| intent(q) == Intent::Update));

            let old = remaining.iter().filter(|q| is_old(q)).count();
            let old_in_flight = remaining.iter().filter(|q| is_old(q) && in_flight(q)).count();
            let started: Vec<&PodFacts> = remaining
                .iter()
                .copied()
                .filter(|q| is_old(q) && !in_flight(q) && intent(q) == Intent::Update)
                .collect();
            if paused {
                prop_assert!(started.is_empty());
            }
            // Never more than the partition allows to leave the old revision.
            prop_assert!(started.len() + old_in_flight
                <= old.saturating_sub(partition).max(old_in_flight));
            // Available pods start only within the unavailability budget.
            let available_started = started.iter().filter(|q| q.available(0, NOW)).count();
            prop_assert!(available_started <= max_unavailable);
        }
    }
}
