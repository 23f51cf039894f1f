use super::*;
use crate::api::names::{REVISION_LABEL, TRAFFIC_FINALIZER_PREFIX, TRAFFIC_GATE};
use serde_json::json;

fn cd(phase: &str, generation: i64, observed: i64) -> CafeDeployment {
    serde_json::from_value(json!({
        "apiVersion": crate::api::names::API_VERSION, "kind": "CafeDeployment",
        "metadata": {"name": "demo", "namespace": "shop", "generation": generation},
        "spec": {
            "replicas": 10,
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {"metadata": {"labels": {"app": "demo"}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}},
            "topology": {"values": ["cell-a", "cell-b"]},
            "strategy": {"batchSize": 4, "needWaitingForConfirm": true}
        },
        "status": {"observedGeneration": observed, "phase": phase,
                   "currentRevision": "demo-1", "updateRevision": "demo-2",
                   "release": {"revision": "demo-2", "group": 1, "groups": 3,
                               "message": "group 1 of 3 done"}}
    }))
    .expect("cd")
}

fn pod(gate: Option<(&str, &str)>, finalizers: &[&str], revision: &str) -> Pod {
    let conditions: Vec<serde_json::Value> = gate
        .map(|(status, reason)| {
            vec![json!({"type": TRAFFIC_GATE, "status": status, "reason": reason})]
        })
        .unwrap_or_default();
    serde_json::from_value(json!({
        "metadata": {"name": "p", "labels": {REVISION_LABEL: revision},
                     "annotations": {"cafe.sofastack.io/traffic-components": "service,rpc"},
                     "finalizers": finalizers.iter().map(|c| format!("{TRAFFIC_FINALIZER_PREFIX}{c}")).collect::<Vec<_>>()},
        "status": {"conditions": conditions}
    }))
    .expect("pod")
}

#[test]
fn the_verdict_is_the_same_for_get_w_and_status() {
    assert_eq!(
        verdict(&cd("Healthy", 2, 2), false),
        Some(Verdict::Complete)
    );
    assert_eq!(verdict(&cd("Healthy", 3, 2), false), None, "stale status");
    assert_eq!(verdict(&cd("Stalled", 2, 2), false), Some(Verdict::Stalled));
    assert_eq!(verdict(&cd("WaitingForConfirm", 2, 2), false), None);
    assert_eq!(
        verdict(&cd("WaitingForConfirm", 2, 2), true),
        Some(Verdict::Waiting)
    );
    assert_eq!(Verdict::Stalled.exit_code(), 1);
}

#[test]
fn pod_states_follow_the_lifecycle() {
    assert_eq!(pod_state(&pod(None, &[], "r1"), Some("r2")), "starting");
    let serving = pod(Some(("True", "Serving")), &["service", "rpc"], "r1");
    assert_eq!(pod_state(&serving, Some("r2")), "serving");
    let draining = pod(Some(("False", "DrainingForUpdate")), &["rpc"], "r1");
    assert_eq!(pod_state(&draining, Some("r2")), "draining");
    let drained = pod(Some(("False", "DrainingForUpdate")), &[], "r1");
    assert_eq!(pod_state(&drained, Some("r2")), "updating");
    let patched = pod(Some(("False", "DrainingForUpdate")), &[], "r2");
    assert_eq!(pod_state(&patched, Some("r2")), "verifying");
    let back = pod(Some(("True", "Serving")), &["service"], "r2");
    assert_eq!(pod_state(&back, Some("r2")), "restoring");
}

#[test]
fn the_tree_is_drawn_by_cluster_with_each_members_reachability() {
    let mut cd = cd("Progressing", 2, 2);
    if let Some(s) = cd.status.as_mut() {
        s.cells = serde_json::from_value(json!([
            {"name": "cell-a", "replicas": 2, "updated": 1, "ready": 2, "available": 2},
            {"name": "cell-b", "replicas": 2, "updated": 2, "ready": 2, "available": 2,
             "cluster": "dc-2", "reachability": "Reachable"},
            {"name": "cell-c", "replicas": 2, "updated": 1, "ready": 2, "available": 2,
             "cluster": "dc-3", "reachability": "Unknown",
             "lastContact": "1970-01-01T00:01:00Z"}
        ]))
        .expect("rows");
    }
    let set = |cell: &str| -> InPlaceSet {
        serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "InPlaceSet",
            "metadata": {"name": format!("demo-{cell}"),
                         "labels": {crate::api::names::CELL_LABEL: cell}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "demo"}},
                     "template": {"metadata": {"labels": {"app": "demo"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}
        }))
        .expect("set")
    };
    let snap = Snapshot {
        cd,
        sets: vec![set("cell-a"), set("cell-b")],
        pods: Vec::new(),
        unread: [("dc-3".to_string(), "no answer within 4s".to_string())].into(),
        now: 180,
    };
    let lines = tree(&snap);
    assert_eq!(lines[0], "cluster (this one)");
    assert!(
        lines[1].starts_with("  cell-a  ⟶ InPlaceSet demo-cell-a"),
        "{lines:?}"
    );
    assert_eq!(lines[2], "cluster dc-2  Reachable");
    assert!(
        lines[3].starts_with("  cell-b  ⟶ InPlaceSet demo-cell-b"),
        "{lines:?}"
    );
    assert_eq!(
        lines[4],
        "cluster dc-3  Unknown, last contact 2m ago  (not read: no answer within 4s)"
    );
    assert_eq!(
        lines[5],
        "  cell-c  ⟶ (as last seen) updated 1/2  ready 2  available 2"
    );
}

#[test]
fn the_header_shows_phase_next_action_revisions_and_the_group_bar() {
    let snap = Snapshot {
        cd: cd("WaitingForConfirm", 2, 2),
        sets: Vec::new(),
        pods: Vec::new(),
        unread: Default::default(),
        now: 0,
    };
    let text = header(&snap).join("\n");
    assert!(text.contains("⏸ WaitingForConfirm"), "{text}");
    assert!(text.contains("kubectl cafe confirm demo"), "{text}");
    assert!(
        text.contains("demo-1 (stable) -> demo-2 (update)"),
        "{text}"
    );
    assert!(text.contains("1/3 [████████░░░░░░░░░░░░░░░░]"), "{text}");
    assert!(list_line(&snap.cd, false).contains("a person: confirm"));
    assert!(!text.contains("Sign-off:"), "nothing recorded: {text}");
}

fn step(seq: i64, action: &str, by: &str, revision: &str, group: Option<i32>) -> serde_json::Value {
    let mut e = json!({"seq": seq, "action": action, "by": by,
        "at": "2026-12-07T10:00:00Z", "revision": revision});
    if let Some(g) = group {
        e["group"] = json!(g);
    }
    e
}

fn with_history(history: serde_json::Value) -> CafeDeployment {
    let mut cd = cd("WaitingForConfirm", 2, 2);
    if let Some(s) = cd.status.as_mut() {
        s.history = serde_json::from_value(history).expect("history");
    }
    cd
}

#[test]
fn the_header_says_who_changed_the_template_and_who_confirmed_each_group() {
    let cd = with_history(json!([
        // An earlier release of demo-2 (rolled away and back): not this one.
        step(1, "TemplateChanged", "mallory", "demo-2", None),
        step(2, "Confirmed", "mallory", "demo-2", Some(2)),
        step(3, "TemplateChanged", "alice", "demo-2", None),
        step(4, "GroupOpened", "operator", "demo-2", Some(1)),
        step(5, "Confirmed", "bob", "demo-2", Some(2)),
        step(6, "Paused", "carol", "demo-2", None),
        step(7, "Confirmed", "analysis", "demo-2", Some(3)),
        step(8, "Confirmed", "dave", "demo-1", Some(2)),
    ]));
    let snap = Snapshot {
        cd,
        sets: Vec::new(),
        pods: Vec::new(),
        unread: Default::default(),
        now: 0,
    };
    let lines = header(&snap);
    let at = lines
        .iter()
        .position(|l| l.starts_with("Revision:"))
        .expect("a revision line");
    assert_eq!(
        lines[at + 1],
        "Sign-off:  Template by alice · group 2 confirmed by bob · group 3 confirmed by analysis"
    );
    assert!(lines[at + 2].starts_with("Group:     1/3"), "{lines:?}");
}

#[test]
fn unverified_names_and_rollbacks_and_break_glass_are_told_as_such() {
    let mut glass = step(3, "Confirmed", "alice", "demo-2", Some(2));
    glass["message"] = json!("break-glass: alice also changed the template (four-eyes bypassed)");
    let status = with_history(json!([
        step(1, "RolledBack", "unverified", "demo-2", None),
        step(2, "Confirmed", "unverified", "demo-2", Some(2)),
        glass,
    ]))
    .status
    .expect("status");
    assert_eq!(
        signoff(&status).as_deref(),
        Some(
            "Rolled back by (unverified) · group 2 confirmed by (unverified) · \
             group 2 confirmed by alice (break-glass)"
        )
    );
    // The template's entry rolled out of status: the confirmations still show.
    let status = with_history(json!([step(9, "Confirmed", "bob", "demo-2", Some(3))]))
        .status
        .expect("status");
    assert_eq!(
        signoff(&status).as_deref(),
        Some("group 3 confirmed by bob")
    );
    let other = with_history(json!([step(9, "Confirmed", "bob", "demo-1", Some(3))]))
        .status
        .expect("status");
    assert_eq!(signoff(&other), None, "only the revision being released");
}
