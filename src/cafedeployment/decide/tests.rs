use super::*;
use crate::api::{ConfirmationWait, FailoverState, ReleaseStatus};
use crate::cafedeployment::model::{Frozen, Revision, UNKNOWN, Unreachable};
use crate::cafedeployment::validate::validate;
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

pub(in crate::cafedeployment) fn record() -> Record {
    Record {
        stable: Some("demo-2".into()),
        revision: Some("demo-2".into()),
        ..Record::default()
    }
}

/// Two cells of 5 pods, Beta then batches of 4 with confirmations;
/// `topology` extends the topology, `status` is the status before.
pub(in crate::cafedeployment) fn two_cells(
    topology: serde_json::Value,
    status: serde_json::Value,
) -> CafeDeployment {
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
    let valid = validate(cd, misplaced);
    decide(&Observation {
        cd,
        sets: Vec::new(),
        history: &history,
        update: "demo-1",
        now: &now,
        refused: None,
        unreachable,
        held_off: &BTreeMap::new(),
        valid: valid.as_ref(),
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
            held_off: &BTreeMap::new(),
            valid: validate(&cd, None).as_ref(),
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
fn a_second_outage_after_the_give_back_moves_nothing_until_a_person_decides_again() {
    let listed = json!({"failover": ["cell-b"]});
    let status = |o: &Outcome| serde_json::to_value(&o.status).expect("status");
    let first = decide_at(
        &two_cells(listed.clone(), json!({})),
        &unreachable_b(),
        "2026-12-03T09:00:10Z",
    );
    assert_eq!(first.status.cells[0].replicas, 10, "the decision acts");
    assert_eq!(first.status.failover[0].state, FailoverState::Active);
    assert!(first.notes.iter().any(|n| n.reason == "FailoverActive"));
    // It answers and nothing holds more than its share: spent.
    let back = decide_at(
        &two_cells(listed.clone(), status(&first)),
        &BTreeMap::new(),
        "2026-12-03T09:05:00Z",
    );
    assert_eq!(back.status.cells[0].replicas, 5);
    assert_eq!(back.status.failover[0].state, FailoverState::Spent);
    assert_eq!(condition(&back.status, condition::FAILOVER_SPENT), "True");
    // The next outage of the same cell moves nothing, and says why.
    let second = decide_at(
        &two_cells(listed.clone(), status(&back)),
        &unreachable_b(),
        "2026-12-04T10:00:00Z",
    );
    assert_eq!(second.status.cells[0].replicas, 5, "no decision for it");
    assert_eq!(second.status.cells[1].failed_over, 0);
    let spent = second
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::FAILOVER_SPENT)
        .expect("FailoverSpent");
    assert!(
        spent.message.contains("its pods are not moved"),
        "{}",
        spent.message
    );
    assert!(
        second
            .notes
            .iter()
            .any(|n| n.warning && n.reason == "FailoverNotActed"),
        "{:?}",
        second.notes
    );
    // A new decision: removed (status forgets it), then listed again.
    let removed = decide_at(
        &two_cells(json!({}), status(&second)),
        &unreachable_b(),
        "2026-12-04T10:01:00Z",
    );
    assert!(removed.status.failover.is_empty());
    assert_eq!(condition(&removed.status, condition::FAILOVER_SPENT), "");
    let anew = decide_at(
        &two_cells(listed, status(&removed)),
        &unreachable_b(),
        "2026-12-04T10:02:00Z",
    );
    assert_eq!(anew.status.cells[0].replicas, 10, "a new decision acts");
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
        held_off: &BTreeMap::new(),
        valid: validate(&cd, None).as_ref(),
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
