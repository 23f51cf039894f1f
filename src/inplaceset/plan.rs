//! The set-level plan: how many pods to create and on which revision, which
//! to delete, which to move now and where to. Pure; the lifecycle step then
//! moves each pod.
//!
//! The set keeps `replicas` pods: `replicas - partition` on the template's
//! revision (the update), the rest on the stable revision when the spec names
//! one (`stableTemplate`, CloneSet's semantics with an explicit baseline). New
//! pods fill the update's share first, then the stable share; a pod on a third
//! revision (a stray, e.g. from a release a new template replaced) moves to the
//! update while its share is short, else back to stable; pods beyond the
//! update's share move back to stable. Without a stable template, pods off the
//! template stay until the partition lets them move, and new pods use the template.
//!
//! Deletion order on scale-in (first deleted first): unscheduled pods, then
//! pods that are not Ready, then strays and pods of whichever revision holds
//! more than its share, then the newest; the pod name breaks ties. Move order:
//! unavailable pods first (they serve no traffic, so moving them costs
//! nothing), then the oldest; name breaks ties.
//!
//! A pod already in its lifecycle (gate closed with reason DrainingForUpdate or
//! DrainingForDelete) always finishes it, even when the set is paused or the
//! partition moved: half a drain is never abandoned with the pod out of traffic.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::lifecycle::{Intent, PodFacts, Toward};
use crate::api::names::gate_reason;

/// What the set asks for, with percentages already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub replicas: usize,
    /// Pods that stay on older revisions (on the stable one, when named).
    pub partition: usize,
    /// Pods that may be unavailable at once because of this set's own actions.
    pub max_unavailable: usize,
    /// No new pod starts its lifecycle; those in it finish.
    pub paused: bool,
    /// New pods come only within the unavailability budget (none while paused).
    pub pace_creation: bool,
    /// Every update re-creates (updateMode ReCreate).
    pub recreate: bool,
    pub min_ready_seconds: i64,
    /// Available pods that may still leave traffic under the
    /// PodDisruptionBudgets selecting the pods (None: no budget selects them).
    pub disruptions_allowed: Option<usize>,
}

/// The revisions of the set: the template's, and the stable one when the spec
/// names a different one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revisions {
    pub update: String,
    pub update_shape: String,
    pub stable: Option<(String, String)>,
}

impl Revisions {
    fn on_update(&self, p: &PodFacts) -> bool {
        p.revision.as_deref() == Some(self.update.as_str())
    }

    fn on_stable(&self, p: &PodFacts) -> bool {
        self.stable
            .as_ref()
            .is_some_and(|(r, _)| p.revision.as_deref() == Some(r.as_str()))
    }

    /// Can a pod move to `toward` in place?
    fn in_place(&self, p: &PodFacts, toward: Toward) -> bool {
        let shape = match (toward, &self.stable) {
            (Toward::Stable, Some((_, shape))) => shape,
            _ => &self.update_shape,
        };
        p.shape.as_deref() == Some(shape.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New pods to create on the update revision.
    pub create: usize,
    /// New pods to create on the stable revision.
    pub create_stable: usize,
    /// One intent per pod, by name.
    pub intents: BTreeMap<String, Intent>,
    /// Available pods that would start moving but a PodDisruptionBudget
    /// allows no more disruption.
    pub held_by_disruption_budget: bool,
}

impl Plan {
    pub fn intent(&self, pod: &str) -> Intent {
        self.intents.get(pod).copied().unwrap_or(Intent::Keep)
    }
}

pub fn plan(pods: &[PodFacts], spec: &SetSpec, revs: &Revisions, now: i64) -> Plan {
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
    let has_stable = revs.stable.is_some();
    let want_update = spec.replicas - spec.partition.min(spec.replicas);
    let want_stable = spec.replicas - want_update;

    // Scale in, taking from whichever revision holds more than its share.
    if live.len() > spec.replicas {
        let updated = live.iter().filter(|p| revs.on_update(p)).count();
        let stable = live.iter().filter(|p| revs.on_stable(p)).count();
        let rank = |p: &PodFacts| {
            let surplus = if revs.on_update(p) {
                updated > want_update
            } else if revs.on_stable(p) {
                stable > want_stable
            } else {
                true
            };
            !surplus
        };
        live.sort_by_key(|p| {
            (
                p.scheduled,
                p.ready,
                rank(p),
                revs.on_update(p),
                Reverse(p.created),
                p.name.clone(),
            )
        });
        for p in live.drain(..live.len() - spec.replicas) {
            intents.insert(p.name.clone(), Intent::Delete);
        }
    }

    // Who goes where: pods in their lifecycle finish it; the update's share is
    // filled from strays, then stable pods; its surplus goes back to stable.
    let in_flight = |p: &PodFacts| p.draining_for(gate_reason::DRAINING_FOR_UPDATE);
    let mut updated = live.iter().filter(|p| revs.on_update(p)).count();
    let mut to_update: Vec<&PodFacts> = Vec::new();
    let mut to_stable: Vec<&PodFacts> = Vec::new();
    let mut by_age = live.clone();
    by_age.sort_by_key(|p| {
        (
            p.available(spec.min_ready_seconds, now),
            p.created,
            p.name.clone(),
        )
    });
    for p in by_age.iter().filter(|p| in_flight(p)) {
        if revs.on_update(p) {
            if has_stable && updated > want_update {
                updated -= 1;
                to_stable.push(p);
            } else {
                to_update.push(p);
            }
        } else if updated < want_update || !has_stable {
            updated += 1;
            to_update.push(p);
        } else {
            to_stable.push(p);
        }
    }
    let created_update = if has_stable {
        want_update
            .saturating_sub(updated)
            .min(spec.replicas.saturating_sub(live.len()))
    } else {
        spec.replicas.saturating_sub(live.len())
    };
    let create_stable = spec.replicas.saturating_sub(live.len()) - created_update;
    updated += created_update;

    // The unavailability budget: pods not available now use it; a paced
    // creation's new pods use it too, the update's share first.
    let unavailable = live
        .iter()
        .filter(|p| !p.available(spec.min_ready_seconds, now))
        .count();
    let mut budget = spec.max_unavailable.saturating_sub(unavailable);
    let (created_update, create_stable) = if spec.pace_creation {
        if spec.paused {
            budget = 0;
        }
        let update = created_update.min(budget);
        let stable = create_stable.min(budget - update);
        budget -= update + stable;
        (update, stable)
    } else {
        (created_update, create_stable)
    };

    let settled = |p: &&&PodFacts| !in_flight(p);
    let strays: Vec<&PodFacts> = by_age
        .iter()
        .filter(settled)
        .filter(|p| !revs.on_update(p) && !revs.on_stable(p))
        .copied()
        .collect();
    let stables: Vec<&PodFacts> = by_age
        .iter()
        .filter(settled)
        .filter(|p| revs.on_stable(p))
        .copied()
        .collect();
    let mut candidates: Vec<(&PodFacts, Toward)> = Vec::new();
    for p in strays.iter().chain(&stables) {
        if updated < want_update {
            updated += 1;
            candidates.push((p, Toward::Update));
        } else if has_stable && !revs.on_stable(p) {
            candidates.push((p, Toward::Stable));
        }
    }
    if has_stable && updated > want_update {
        let surplus = updated - want_update;
        candidates.extend(
            by_age
                .iter()
                .filter(settled)
                .filter(|p| revs.on_update(p))
                .take(surplus)
                .map(|p| (*p, Toward::Stable)),
        );
    }
    for p in to_update {
        intents.insert(p.name.clone(), Intent::Update(Toward::Update));
    }
    for p in to_stable {
        intents.insert(p.name.clone(), Intent::Update(Toward::Stable));
    }

    // New moves start within what is left of the budget, unless paused; an
    // available pod also needs the PodDisruptionBudgets' room (in-place
    // updates bypass the eviction API, so the set honours them itself).
    let mut disruptions = spec.disruptions_allowed;
    let mut held_by_disruption_budget = false;
    if !spec.paused {
        candidates.sort_by_key(|(p, _)| {
            (
                p.available(spec.min_ready_seconds, now),
                p.created,
                p.name.clone(),
            )
        });
        for (p, toward) in candidates {
            if p.available(spec.min_ready_seconds, now) {
                if budget == 0 {
                    break;
                }
                if disruptions == Some(0) {
                    held_by_disruption_budget = true;
                    break;
                }
                budget -= 1;
                disruptions = disruptions.map(|d| d - 1);
            }
            let intent = if !spec.recreate && revs.in_place(p, toward) {
                Intent::Update(toward)
            } else {
                Intent::Delete
            };
            intents.insert(p.name.clone(), intent);
        }
    }
    Plan {
        create: created_update,
        create_stable,
        intents,
        held_by_disruption_budget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inplaceset::lifecycle::Gate;
    use proptest::prelude::*;

    const NOW: i64 = 10_000;

    fn target() -> Revisions {
        Revisions {
            update: "new".into(),
            update_shape: "s".into(),
            stable: None,
        }
    }

    fn with_stable() -> Revisions {
        Revisions {
            stable: Some(("old".into(), "s".into())),
            ..target()
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
            pace_creation: false,
            recreate: false,
            min_ready_seconds: 0,
            disruptions_allowed: None,
        }
    }

    fn count(plan: &Plan, intent: Intent) -> usize {
        plan.intents.values().filter(|i| **i == intent).count()
    }

    #[test]
    fn partition_keeps_that_many_pods_on_the_old_revision() {
        let pods: Vec<_> = (0..5).map(|i| pod(i, "old", true)).collect();
        let p = plan(&pods, &spec(5, 3, 5), &target(), NOW);
        assert_eq!(count(&p, Intent::Update(Toward::Update)), 2);
        assert_eq!(
            p.intent("p00"),
            Intent::Update(Toward::Update),
            "oldest first"
        );
        assert_eq!(p.intent("p01"), Intent::Update(Toward::Update));
        assert_eq!(p.create, 0);
    }

    #[test]
    fn max_unavailable_bounds_how_many_start_at_once() {
        let pods: Vec<_> = (0..5).map(|i| pod(i, "old", true)).collect();
        let p = plan(&pods, &spec(5, 0, 1), &target(), NOW);
        assert_eq!(count(&p, Intent::Update(Toward::Update)), 1);
    }

    #[test]
    fn an_updated_pod_that_never_gets_ready_stops_the_update_there() {
        let mut pods: Vec<_> = (0..5).map(|i| pod(i, "old", true)).collect();
        pods[0] = pod(0, "new", false);
        let p = plan(&pods, &spec(5, 0, 1), &target(), NOW);
        assert_eq!(
            count(&p, Intent::Update(Toward::Update)),
            0,
            "the budget is used up"
        );
    }

    #[test]
    fn unavailable_old_pods_are_updated_first_even_with_the_budget_used_up() {
        let mut pods: Vec<_> = (0..3).map(|i| pod(i, "old", true)).collect();
        pods.push(pod(3, "old", false));
        // The unavailable pod uses the whole budget of 1 already.
        let p = plan(&pods, &spec(4, 0, 1), &target(), NOW);
        assert_eq!(p.intent("p03"), Intent::Update(Toward::Update));
        assert_eq!(count(&p, Intent::Update(Toward::Update)), 1);
        let p = plan(&pods, &spec(4, 0, 2), &target(), NOW);
        assert_eq!(count(&p, Intent::Update(Toward::Update)), 2);
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
        assert_eq!(p.intent("p01"), Intent::Update(Toward::Update));
        assert_eq!(
            count(&p, Intent::Update(Toward::Update)),
            1,
            "no new pod starts"
        );
    }

    #[test]
    fn new_pods_fill_the_update_share_then_the_stable_share() {
        let pods: Vec<_> = (0..5).map(|i| pod(i, "old", true)).collect();
        // 10 pods, 1 on the update: 5 new ones, 1 of them on the update.
        let p = plan(&pods, &spec(10, 9, 1), &with_stable(), NOW);
        assert_eq!((p.create, p.create_stable), (1, 4));
        assert_eq!(
            count(&p, Intent::Update(Toward::Update)),
            0,
            "created, not moved"
        );
        // Without a stable template, new pods use the template.
        let p = plan(&pods, &spec(10, 9, 1), &target(), NOW);
        assert_eq!((p.create, p.create_stable), (5, 0));
    }

    #[test]
    fn strays_move_to_the_update_while_its_share_is_short_else_back_to_stable() {
        let mut pods: Vec<_> = (0..5).map(|i| pod(i, "old", true)).collect();
        pods[0] = pod(0, "stray", true);
        pods[1] = pod(1, "stray", true);
        let p = plan(&pods, &spec(5, 4, 5), &with_stable(), NOW);
        assert_eq!(p.intent("p00"), Intent::Update(Toward::Update));
        assert_eq!(p.intent("p01"), Intent::Update(Toward::Stable));
        assert_eq!(count(&p, Intent::Update(Toward::Update)), 1);
    }

    #[test]
    fn pods_beyond_the_update_share_go_back_to_stable_and_scale_in_takes_them_first() {
        let pods: Vec<_> = (0..4)
            .map(|i| pod(i, if i < 3 { "new" } else { "old" }, true))
            .collect();
        let p = plan(&pods, &spec(4, 3, 4), &with_stable(), NOW);
        assert_eq!(count(&p, Intent::Update(Toward::Stable)), 2);
        let p = plan(&pods, &spec(2, 1, 4), &with_stable(), NOW);
        assert_eq!(count(&p, Intent::Delete), 2);
        assert_eq!(p.intent("p03"), Intent::Keep, "the stable pod is kept");
        assert_eq!(count(&p, Intent::Update(Toward::Stable)), 0);
    }

    #[test]
    fn a_disruption_budget_bounds_moves_of_available_pods_only() {
        let mut pods: Vec<_> = (0..4).map(|i| pod(i, "old", true)).collect();
        pods.push(pod(4, "old", false));
        let pdb = |allowed| SetSpec {
            disruptions_allowed: Some(allowed),
            ..spec(5, 0, 3)
        };
        let p = plan(&pods, &pdb(1), &target(), NOW);
        assert_eq!(
            p.intent("p04"),
            Intent::Update(Toward::Update),
            "free: unavailable"
        );
        assert_eq!(count(&p, Intent::Update(Toward::Update)), 2);
        assert!(p.held_by_disruption_budget);
        let p = plan(&pods, &pdb(0), &target(), NOW);
        assert_eq!(count(&p, Intent::Update(Toward::Update)), 1);
        assert!(p.held_by_disruption_budget, "the release says it waits");
        let p = plan(&pods, &pdb(5), &target(), NOW);
        assert_eq!(
            count(&p, Intent::Update(Toward::Update)),
            3,
            "the set's own budget"
        );
        assert!(!p.held_by_disruption_budget);
    }

    #[test]
    fn a_budget_of_zero_moves_no_serving_pod() {
        let pods: Vec<_> = (0..3).map(|i| pod(i, "old", true)).collect();
        let p = plan(&pods, &spec(3, 0, 0), &with_stable(), NOW);
        assert!(p.intents.values().all(|i| *i == Intent::Keep));
    }

    #[test]
    fn a_paced_creation_keeps_its_new_pods_within_the_budget() {
        let paced = |replicas, max_unavailable| SetSpec {
            pace_creation: true,
            ..spec(replicas, 0, max_unavailable)
        };
        // From zero: one budget's worth.
        assert_eq!(plan(&[], &paced(10, 3), &target(), NOW).create, 3);
        // Unpaced, everything at once.
        assert_eq!(plan(&[], &spec(10, 0, 3), &target(), NOW).create, 10);
        // New pods not yet available hold the room; available ones free it.
        let waiting: Vec<_> = (0..3).map(|i| pod(i, "new", false)).collect();
        assert_eq!(plan(&waiting, &paced(10, 3), &target(), NOW).create, 0);
        let mixed: Vec<_> = (0..3).map(|i| pod(i, "new", i == 0)).collect();
        assert_eq!(plan(&mixed, &paced(10, 3), &target(), NOW).create, 1);
        // Paused: nothing new.
        let paused = SetSpec {
            paused: true,
            ..paced(10, 3)
        };
        assert_eq!(plan(&[], &paused, &target(), NOW).create, 0);
        // With a stable revision, the update's share first, then stable.
        let p = plan(
            &[],
            &SetSpec {
                partition: 8,
                ..paced(10, 3)
            },
            &with_stable(),
            NOW,
        );
        assert_eq!((p.create, p.create_stable), (2, 1));
        // New pods use the budget that moves would: none left for an update.
        let old: Vec<_> = (0..2).map(|i| pod(i, "old", true)).collect();
        let p = plan(&old, &paced(5, 3), &target(), NOW);
        assert_eq!(p.create, 3);
        assert_eq!(count(&p, Intent::Update(Toward::Update)), 0);
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
            max_unavailable in 0usize..5,
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
                .all(|q| intent(q) == Intent::Update(Toward::Update)));

            let old = remaining.iter().filter(|q| is_old(q)).count();
            let old_in_flight = remaining.iter().filter(|q| is_old(q) && in_flight(q)).count();
            let started: Vec<&PodFacts> = remaining
                .iter()
                .copied()
                .filter(|q| is_old(q) && !in_flight(q) && intent(q) == Intent::Update(Toward::Update))
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
