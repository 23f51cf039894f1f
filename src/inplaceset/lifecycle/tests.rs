use super::*;

const NOW: i64 = 10_000;
const T300: Timing = Timing {
    drain_timeout_seconds: 300,
    settle_seconds: 0,
    held_until: 0,
};

fn target() -> Target {
    Target {
        revision: "new".into(),
        shape: "s".into(),
    }
}

/// A pod serving on revision `old`, registered with `service` and `rpc`.
fn serving() -> PodFacts {
    PodFacts {
        name: "p".into(),
        created: 1_000,
        revision: Some("old".into()),
        shape: Some("s".into()),
        scheduled: true,
        gate: Gate {
            open: Some(true),
            reason: gate_reason::SERVING.into(),
            since: 2_000,
        },
        components: vec!["service".into(), "rpc".into()],
        registered: ["service".to_string(), "rpc".to_string()].into(),
        containers: vec![Container {
            name: "app".into(),
            spec_image: "nginx:1.25".into(),
            run: Some(ContainerRun {
                image: "nginx:1.25".into(),
                image_id: "id-25".into(),
                container_id: "c1".into(),
                restart_count: 0,
                ready: true,
            }),
        }],
        ready: true,
        ready_since: Some(2_000),
        routed_by_service: true,
        ..PodFacts::default()
    }
}

fn gate_off(mut p: PodFacts, reason: &str, since: i64) -> PodFacts {
    p.gate = Gate {
        open: Some(false),
        reason: reason.into(),
        since,
    };
    p.ready = false;
    p
}

/// After the spec patch, before the container restarted.
fn patched(p: PodFacts) -> PodFacts {
    let mut p = gate_off(p, gate_reason::DRAINING_FOR_UPDATE, NOW - 5);
    p.registered.clear();
    p.revision = Some("new".into());
    p.containers[0].spec_image = "nginx:1.26".into();
    p.in_place = Some(InPlaceRecord {
        revision: "new".into(),
        before: [(
            "app".to_string(),
            ContainerBefore {
                image_id: "id-25".into(),
                container_id: "c1".into(),
                restart_count: 0,
            },
        )]
        .into(),
    });
    p
}

fn restarted(mut p: PodFacts, ready: bool) -> PodFacts {
    p.containers[0].run = Some(ContainerRun {
        image: "docker.io/library/nginx:1.26".into(),
        image_id: "id-26".into(),
        container_id: "c2".into(),
        restart_count: 1,
        ready,
    });
    p
}

#[test]
fn a_fresh_read_allows_the_spec_patch_only_if_the_pod_is_still_drained_the_same() {
    let mut drained = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 5);
    drained.registered.clear();
    assert!(drained.clone().still_drained_as(&drained));
    // Kubelet's Ready and container writes change nothing that matters.
    let mut kubelet = drained.clone();
    if let Some(run) = kubelet.containers[0].run.as_mut() {
        run.ready = false;
    }
    assert!(kubelet.still_drained_as(&drained));
    // A component routing to it again, a gate opened, a revision moved, a
    // deletion: decide again instead.
    let mut registered = drained.clone();
    registered.registered.insert("rpc".into());
    assert!(!registered.still_drained_as(&drained));
    assert!(!serving().still_drained_as(&drained));
    let mut moved = drained.clone();
    moved.revision = Some("new".into());
    assert!(!moved.still_drained_as(&drained));
    let deleting = gate_off(serving(), gate_reason::DRAINING_FOR_DELETE, NOW);
    assert!(!deleting.still_drained_as(&drained));
    let mut terminating = drained.clone();
    terminating.terminating = true;
    assert!(!terminating.still_drained_as(&drained));
}

#[test]
fn an_update_takes_the_pod_out_of_traffic_first() {
    let d = step(
        &serving(),
        Intent::Update(Toward::Update),
        &target(),
        &T300,
        NOW,
    );
    assert_eq!(d, Decision::GateOff(gate_reason::DRAINING_FOR_UPDATE));
}

#[test]
fn the_spec_is_not_patched_while_any_component_still_routes_to_the_pod() {
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 10);
    p.registered.remove("service");
    let d = step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW);
    assert_eq!(d, Decision::Wait(Waiting::Draining(vec!["rpc".into()])));
    p.registered.clear();
    assert_eq!(
        step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
        Decision::PatchInPlace
    );
}

#[test]
fn nothing_changes_until_kubelet_takes_the_pod_out_of_ready() {
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 5);
    p.components.clear();
    p.registered.clear();
    p.ready = true;
    assert_eq!(
        step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
        Decision::Wait(Waiting::Unready)
    );
    assert_eq!(
        step(&p, Intent::Delete, &target(), &T300, NOW),
        Decision::Wait(Waiting::Unready)
    );
    // A kubelet that never reacts (its node is gone) stalls the drain.
    assert_eq!(
        step(
            &p,
            Intent::Update(Toward::Update),
            &target(),
            &T300,
            NOW + 400
        ),
        Decision::UnreadyTimedOut
    );
    p.ready = false;
    assert_eq!(
        step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
        Decision::PatchInPlace
    );
}

#[test]
fn a_pod_no_service_selects_does_not_wait_for_kubelet() {
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 5);
    p.registered.clear();
    p.ready = true;
    p.routed_by_service = false;
    assert_eq!(
        step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
        Decision::PatchInPlace
    );
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_DELETE, NOW - 5);
    p.ready = true;
    p.routed_by_service = false;
    assert_eq!(
        step(&p, Intent::Delete, &target(), &T300, NOW),
        Decision::Wait(Waiting::Draining(vec!["service".into(), "rpc".into()])),
        "its components still route to it"
    );
    p.registered.clear();
    assert_eq!(
        step(&p, Intent::Delete, &target(), &T300, NOW),
        Decision::Delete
    );
}

#[test]
fn a_drained_pod_waits_the_settle_time_before_it_changes() {
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 10);
    p.registered.clear();
    let timing = Timing {
        drain_timeout_seconds: 300,
        settle_seconds: 5,
        held_until: 0,
    };
    let intent = Intent::Update(Toward::Update);
    assert_eq!(
        step(&p, intent, &target(), &timing, NOW),
        Decision::Wait(Waiting::Settling),
        "not seen drained before: the clock starts now"
    );
    p.drained_for_ms = Some(4_999);
    assert_eq!(
        step(&p, intent, &target(), &timing, NOW),
        Decision::Wait(Waiting::Settling),
        "a millisecond short of the settle time"
    );
    p.drained_for_ms = Some(5_000);
    assert_eq!(
        step(&p, intent, &target(), &timing, NOW),
        Decision::PatchInPlace
    );
}

#[test]
fn the_settle_clock_counts_milliseconds_from_the_first_reconcile_that_saw_the_pod_drained() {
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 10);
    p.registered.clear();
    let mut q = p.clone();
    q.name = "q".into();
    let mut still_routed = serving();
    still_routed.name = "r".into();
    // Seen drained at 10_000.900 s: its clock starts there, to the millisecond
    // (whole seconds started it at 10_000 and let a reconcile at 10_003.0
    // change it after 2.1 s of a 3 s settle time).
    let mut facts = vec![p.clone(), still_routed.clone()];
    let clock = drained_clock(&HashMap::new(), &mut facts, 10_000_900);
    assert_eq!(clock, HashMap::from([("p".to_string(), 10_000_900)]));
    assert_eq!(facts[0].drained_for_ms, Some(0));
    assert_eq!(facts[1].drained_for_ms, None, "still in traffic");
    let timing = Timing {
        drain_timeout_seconds: 300,
        settle_seconds: 3,
        held_until: 0,
    };
    let intent = Intent::Update(Toward::Update);
    let mut facts = vec![p.clone(), q.clone()];
    let clock = drained_clock(&clock, &mut facts, 10_003_000);
    assert_eq!(facts[0].drained_for_ms, Some(2_100));
    assert_eq!(facts[1].drained_for_ms, Some(0), "q's clock starts now");
    assert_eq!(
        step(&facts[0], intent, &target(), &timing, 10_003),
        Decision::Wait(Waiting::Settling),
        "2.1 s of 3 s"
    );
    let mut facts = vec![p.clone(), q.clone()];
    let clock = drained_clock(&clock, &mut facts, 10_003_900);
    assert_eq!(facts[0].drained_for_ms, Some(3_000));
    assert_eq!(
        step(&facts[0], intent, &target(), &timing, 10_003),
        Decision::PatchInPlace
    );
    // Back in traffic: the pod leaves the clock; drained again, it starts over.
    let mut facts = vec![serving(), q];
    let clock = drained_clock(&clock, &mut facts, 10_004_000);
    assert!(!clock.contains_key("p"));
    let mut facts = vec![p];
    drained_clock(&clock, &mut facts, 10_050_000);
    assert_eq!(facts[0].drained_for_ms, Some(0));
}

#[test]
fn the_settle_clock_does_not_start_while_a_service_lists_the_pod_ready() {
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 1);
    p.registered.clear();
    p.ready = true;
    p.routed_by_service = true;
    let mut facts = vec![p.clone()];
    assert!(drained_clock(&HashMap::new(), &mut facts, 1_000).is_empty());
    assert_eq!(facts[0].drained_for_ms, None);
    p.ready = false;
    let mut facts = vec![p];
    assert_eq!(drained_clock(&HashMap::new(), &mut facts, 1_000).len(), 1);
}

#[test]
fn a_settling_pod_wakes_the_set_the_millisecond_its_settle_time_ends() {
    let timing = Timing {
        drain_timeout_seconds: 300,
        settle_seconds: 3,
        held_until: 0,
    };
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 1);
    p.registered.clear();
    let mut q = p.clone();
    p.drained_for_ms = Some(1_250);
    q.drained_for_ms = Some(2_700);
    let settling = Decision::Wait(Waiting::Settling);
    assert_eq!(p.settle_left_ms(&timing), 1_750);
    assert_eq!(
        settle_wake(
            &[p.clone(), q.clone()],
            &[settling.clone(), settling.clone()],
            &timing
        ),
        Some(Duration::from_millis(300))
    );
    assert_eq!(
        settle_wake(&[q.clone()], &[Decision::Steady], &timing),
        None,
        "only settling pods"
    );
    q.drained_for_ms = Some(3_000);
    assert_eq!(settle_wake(&[q], &[settling], &timing), None, "settled");
}

#[test]
fn after_an_api_server_outage_no_drained_pod_changes_until_the_nodes_caught_up() {
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 10);
    p.registered.clear();
    p.drained_for_ms = Some(5_000);
    let intent = Intent::Update(Toward::Update);
    for settle_seconds in [0, 5] {
        let mut timing = Timing {
            drain_timeout_seconds: 300,
            settle_seconds,
            held_until: NOW + 30,
        };
        assert_eq!(
            step(&p, intent, &target(), &timing, NOW),
            Decision::Wait(Waiting::Settling),
            "settle {settle_seconds}: kube-proxy may still route to it"
        );
        timing.held_until = NOW;
        assert_eq!(
            step(&p, intent, &target(), &timing, NOW),
            Decision::PatchInPlace
        );
    }
    // A pod that declared no traffic component: nothing routes to it.
    p.components.clear();
    let held = Timing {
        drain_timeout_seconds: 300,
        settle_seconds: 5,
        held_until: NOW + 30,
    };
    assert_eq!(
        step(&p, intent, &target(), &held, NOW),
        Decision::PatchInPlace
    );
}

#[test]
fn a_drain_past_its_timeout_stalls_naming_the_component() {
    let p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 301);
    let d = step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW);
    assert_eq!(
        d,
        Decision::DrainTimedOut(vec!["service".into(), "rpc".into()])
    );
}

#[test]
fn a_patched_pod_reopens_its_gate_once_its_container_restarted() {
    let p = patched(serving());
    // The old container still runs: same containerID and restartCount.
    assert_eq!(
        step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
        Decision::Wait(Waiting::Verifying(vec!["app".into()]))
    );
    // Restarted, not ready yet: the old container is gone, so the gate
    // opens and kubelet's readiness decides when traffic comes.
    let mut p = restarted(p, false);
    p.unready_since = Some(NOW - 5);
    assert_eq!(
        step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
        Decision::GateOn
    );
    p.gate = Gate {
        open: Some(true),
        reason: gate_reason::SERVING.into(),
        since: NOW - 1,
    };
    assert!(p.starting());
    assert_eq!(
        step(&p, Intent::Keep, &target(), &T300, NOW),
        Decision::Wait(Waiting::ContainersStarting)
    );
    let p = restarted(p, true);
    assert_eq!(
        step(&p, Intent::Keep, &target(), &T300, NOW),
        Decision::Steady
    );
}

#[test]
fn a_restart_reported_under_a_resolved_image_name_reopens_the_gate() {
    let mut p = restarted(patched(serving()), false);
    if let Some(run) = p.containers[0].run.as_mut() {
        run.image = "registry.example/nginx@sha256:26".into();
    }
    assert_eq!(
        step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
        Decision::GateOn
    );
}

#[test]
fn a_pod_that_was_ready_and_crashed_is_not_starting() {
    let mut p = serving();
    p.ready = false;
    p.ready_since = None;
    p.unready_since = Some(p.gate.since + 600);
    if let Some(run) = p.containers[0].run.as_mut() {
        run.ready = false;
    }
    assert!(!p.starting());
    assert_eq!(
        step(&p, Intent::Keep, &target(), &T300, NOW),
        Decision::Steady
    );
}

#[test]
fn the_image_id_alone_does_not_prove_a_restart() {
    let mut p = patched(serving());
    if let Some(run) = p.containers[0].run.as_mut() {
        run.image = "nginx:1.26".into();
        run.image_id = "id-26".into();
    }
    assert!(matches!(
        step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
        Decision::Wait(Waiting::Verifying(_))
    ));
}

#[test]
fn deletion_drains_first_and_a_new_pod_enters_traffic_when_ready() {
    let d = step(&serving(), Intent::Delete, &target(), &T300, NOW);
    assert_eq!(d, Decision::GateOff(gate_reason::DRAINING_FOR_DELETE));
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_DELETE, NOW);
    p.registered.clear();
    assert_eq!(
        step(&p, Intent::Delete, &target(), &T300, NOW),
        Decision::Delete
    );

    let mut new = serving();
    new.gate = Gate::default();
    new.registered.clear();
    new.ready = false;
    if let Some(run) = new.containers[0].run.as_mut() {
        run.ready = false;
    }
    // Started or not, a new pod's gate opens: kubelet's readiness decides.
    assert_eq!(
        step(&new, Intent::Keep, &target(), &T300, NOW),
        Decision::GateOn
    );
    let mut pulling = new.clone();
    if let Some(run) = pulling.containers[0].run.as_mut() {
        run.container_id.clear();
    }
    assert_eq!(
        step(&pulling, Intent::Keep, &target(), &T300, NOW),
        Decision::GateOn
    );
    new.containers[0].run = None;
    assert_eq!(
        step(&new, Intent::Keep, &target(), &T300, NOW),
        Decision::GateOn
    );
    // A closed gate reopens only on started containers.
    let mut closed = gate_off(pulling, gate_reason::DRAINING_FOR_UPDATE, NOW);
    assert_eq!(
        step(&closed, Intent::Keep, &target(), &T300, NOW),
        Decision::Wait(Waiting::ContainersStarting)
    );
    closed.containers = serving().containers;
    assert_eq!(
        step(&closed, Intent::Keep, &target(), &T300, NOW),
        Decision::GateOn
    );
}

#[test]
fn a_pod_whose_gate_opened_at_creation_is_starting_until_first_ready() {
    let mut p = serving();
    p.gate.since = p.created;
    p.ready = false;
    p.ready_since = None;
    p.registered.clear();
    if let Some(run) = p.containers[0].run.as_mut() {
        run.ready = false;
    }
    // Kubelet's first status, a few seconds after the gate: Ready False
    // since the start (or the second after it).
    p.started_at = Some(p.created + 3);
    for first in [p.created + 3, p.created + 4] {
        p.unready_since = Some(first);
        assert!(p.starting());
        assert_eq!(
            step(&p, Intent::Keep, &target(), &T300, NOW),
            Decision::Wait(Waiting::ContainersStarting)
        );
    }
    // Ready for a while, then not: a crash, not a start.
    p.unready_since = Some(p.created + 60);
    assert!(!p.starting());
    assert_eq!(
        step(&p, Intent::Keep, &target(), &T300, NOW),
        Decision::Steady
    );
}

#[test]
fn with_no_components_the_drain_and_registration_waits_are_empty() {
    let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW);
    p.components.clear();
    p.registered.clear();
    assert_eq!(
        step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
        Decision::PatchInPlace
    );
    let mut s = serving();
    s.components.clear();
    assert!(s.available(0, NOW));
}

#[test]
fn available_needs_every_component_back_and_min_ready_seconds() {
    let mut p = serving();
    assert!(p.available(0, NOW));
    assert!(!p.available(NOW, NOW), "not ready long enough");
    p.registered.remove("rpc");
    assert!(!p.available(0, NOW), "rpc has not registered the pod");
}

#[test]
fn a_terminating_pod_is_left_to_kubelet_and_the_components() {
    let mut p = serving();
    p.terminating = true;
    for intent in [Intent::Keep, Intent::Update(Toward::Update), Intent::Delete] {
        assert_eq!(
            step(&p, intent, &target(), &T300, NOW),
            Decision::Wait(Waiting::Terminating)
        );
    }
}
