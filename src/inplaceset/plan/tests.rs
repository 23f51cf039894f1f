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
fn the_next_pod_starts_draining_while_an_earlier_one_restarts_when_the_budget_allows() {
    // p00 is restarting on the new revision (gate open, not Ready yet): it
    // is unavailable and uses one unit of the budget.
    let mut pods: Vec<_> = (0..4).map(|i| pod(i, "old", true)).collect();
    pods[0] = pod(0, "new", false);
    pods[0].gate.open = Some(true);
    let p = plan(&pods, &spec(4, 0, 2), &target(), NOW);
    assert_eq!(
        count(&p, Intent::Update(Toward::Update)),
        1,
        "the rest of the budget starts the next drain at once"
    );
    assert_eq!(p.intent("p01"), Intent::Update(Toward::Update));
    let p = plan(&pods, &spec(4, 0, 1), &target(), NOW);
    assert_eq!(
        count(&p, Intent::Update(Toward::Update)),
        0,
        "a budget of one: the next waits until p00 is available"
    );
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
