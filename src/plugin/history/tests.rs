use super::*;
use crate::api::HistoryAction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

fn entry(seq: i64, action: HistoryAction, by: &str, revision: &str) -> HistoryEntry {
    HistoryEntry {
        seq,
        action,
        by: by.into(),
        at: Time(
            format!("2026-12-07T10:{:02}:00Z", seq)
                .parse()
                .expect("time"),
        ),
        revision: revision.into(),
        group: None,
        source: String::new(),
        message: String::new(),
    }
}

fn in_group(mut e: HistoryEntry, group: i32) -> HistoryEntry {
    e.group = Some(group);
    e
}

fn cd(history: &[HistoryEntry], verified: Option<(&str, &str)>) -> CafeDeployment {
    let conditions: Vec<serde_json::Value> = verified
        .map(|(status, message)| {
            vec![json!({"type": "SignoffVerified", "status": status,
                "reason": if status == "True" { "PoliciesInForce" } else { "PoliciesNotInForce" },
                "message": message, "lastTransitionTime": "2026-12-07T09:00:00Z"})]
        })
        .unwrap_or_default();
    serde_json::from_value(json!({
        "apiVersion": crate::api::names::API_VERSION, "kind": "CafeDeployment",
        "metadata": {"name": "demo", "namespace": "shop"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {"metadata": {"labels": {"app": "demo"}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}},
            "topology": {"values": ["cell-a"]}
        },
        "status": {"currentRevision": "demo-b", "updateRevision": "demo-c",
                   "conditions": conditions, "history": history}
    }))
    .expect("cd")
}

fn revision(number: i64, name: &str, image: &str, held: &[HistoryEntry]) -> ControllerRevision {
    let mut r: ControllerRevision = serde_json::from_value(json!({
        "metadata": {"name": name},
        "revision": number,
        "data": {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    }))
    .expect("revision");
    if !held.is_empty() {
        r.metadata.annotations = Some(
            [(
                REVISION_HISTORY_ANNOTATION.to_string(),
                serde_json::to_string(held).expect("json"),
            )]
            .into(),
        );
    }
    r
}

#[test]
fn entries_merge_once_per_seq_in_seq_order() {
    let a = entry(3, HistoryAction::Confirmed, "bob", "demo-c");
    let b = entry(1, HistoryAction::TemplateChanged, "alice", "demo-c");
    let mut other = entry(3, HistoryAction::Paused, "eve", "demo-c");
    other.message = "a second copy of seq 3 is not shown".into();
    let got = merged([&a, &b, &other, &b]);
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(got[1], a, "the first one seen wins");
}

#[test]
fn a_revision_shows_its_record_and_the_status_entries_beyond_it() {
    use HistoryAction as A;
    // Status kept the newest entries only; demo-a is no longer kept.
    let status = vec![
        entry(2, A::Completed, "operator", "demo-a"),
        in_group(entry(6, A::Confirmed, "bob", "demo-b"), 2),
        entry(7, A::TemplateChanged, "alice", "demo-c"),
        in_group(entry(8, A::GroupOpened, "operator", "demo-c"), 1),
    ];
    // demo-b's record has what rolled out of status, and a copy of seq 6.
    let b_record = vec![
        entry(4, A::TemplateChanged, "alice", "demo-b"),
        in_group(entry(5, A::GroupOpened, "operator", "demo-b"), 1),
        in_group(entry(6, A::Confirmed, "bob", "demo-b"), 2),
    ];
    let kept = vec![
        revision(2, "demo-b", "nginx:1.25", &b_record),
        revision(3, "demo-c", "nginx:1.26", &[]),
    ];
    let doc = document(&cd(&status, Some(("True", "in force"))), &kept);
    assert!(doc.verified);
    assert_eq!(doc.unverified_because, None);
    let seqs = |h: &[HistoryEntry]| h.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&doc.revisions[0].history), vec![4, 5, 6]);
    assert_eq!(seqs(&doc.revisions[1].history), vec![7, 8]);
    assert_eq!(seqs(&doc.history), vec![2, 4, 5, 6, 7, 8]);
    assert!(doc.revisions[0].current && !doc.revisions[0].update);
    assert!(!doc.revisions[1].current && doc.revisions[1].update);
    assert_eq!(doc.revisions[1].images, vec!["app=nginx:1.26"]);

    assert_eq!(
        lines(&doc),
        vec![
            "revision -  demo-a  (revision no longer kept)",
            "  2026-12-07T10:02:00Z  Completed        by operator",
            "revision 2  demo-b  (stable)  app=nginx:1.25",
            "  2026-12-07T10:04:00Z  TemplateChanged  by alice",
            "  2026-12-07T10:05:00Z  GroupOpened      by operator  group 1",
            "  2026-12-07T10:06:00Z  Confirmed        by bob       group 2",
            "revision 3  demo-c  (update)  app=nginx:1.26",
            "  2026-12-07T10:07:00Z  TemplateChanged  by alice",
            "  2026-12-07T10:08:00Z  GroupOpened      by operator  group 1",
        ]
    );
}

#[test]
fn unverified_identities_are_said_first_and_details_follow_the_columns() {
    use HistoryAction as A;
    let mut frozen = entry(1, A::Frozen, "unverified", "demo-c");
    frozen.source = "ReleaseFreeze/incident".into();
    frozen.message = "incident 4711".into();
    let mut confirmed = in_group(entry(2, A::Confirmed, "analysis", "demo-c"), 2);
    confirmed.source = "analysis".into();
    confirmed.message = "error-rate 0.1 < 1".into();
    let mut rolled = entry(3, A::RolledBack, "carol", "demo-c");
    rolled.message = "rolling back to revision 2".into();
    let why = "no sign-off admission policy stamped a dry-run write";
    let doc = document(
        &cd(&[frozen, confirmed, rolled], Some(("False", why))),
        &[revision(3, "demo-c", "nginx:1.26", &[])],
    );
    assert!(!doc.verified);
    assert_eq!(
        lines(&doc),
        vec![
            format!("identities are unverified: {why}"),
            "revision 3  demo-c  (update)  app=nginx:1.26".to_string(),
            "  2026-12-07T10:01:00Z  Frozen      by unverified           \
             ReleaseFreeze/incident: incident 4711"
                .to_string(),
            "  2026-12-07T10:02:00Z  Confirmed   by analysis    group 2  \
             analysis: error-rate 0.1 < 1"
                .to_string(),
            "  2026-12-07T10:03:00Z  RolledBack  by carol                \
             rolling back to revision 2"
                .to_string(),
        ]
    );
}

#[test]
fn a_missing_condition_is_unverified_and_a_revision_without_entries_says_so() {
    let doc = document(&cd(&[], None), &[revision(1, "demo-b", "nginx:1.25", &[])]);
    let text = lines(&doc);
    assert!(
        text[0].starts_with("identities are unverified: the operator has not reported"),
        "{text:?}"
    );
    assert_eq!(text[1], "revision 1  demo-b  (stable)  app=nginx:1.25");
    assert_eq!(text[2], "  (no history recorded)");
}

#[test]
fn an_unreadable_entry_of_a_record_loses_only_itself() {
    let good = entry(1, HistoryAction::TemplateChanged, "alice", "demo-b");
    let mut r = revision(1, "demo-b", "nginx:1.25", &[]);
    let text = format!(
        "[{},{{\"seq\":2,\"action\":\"SomethingNew\"}}]",
        serde_json::to_string(&good).expect("json")
    );
    r.metadata.annotations = Some([(REVISION_HISTORY_ANNOTATION.to_string(), text)].into());
    assert_eq!(recorded(&r), (vec![good], 1));
    let doc = document(&cd(&[], Some(("True", ""))), &[r]);
    let text = lines(&doc);
    assert!(
        text.last()
            .is_some_and(|l| l.contains("1 entry of its annotation")),
        "{text:?}"
    );
}

#[test]
fn the_json_document_has_the_shape_tools_read() {
    let status = vec![in_group(
        entry(1, HistoryAction::Confirmed, "bob", "demo-c"),
        2,
    )];
    let doc = document(
        &cd(&status, Some(("True", "in force"))),
        &[revision(3, "demo-c", "nginx:1.26", &[])],
    );
    let value = serde_json::to_value(&doc).expect("json");
    let entry = json!({"seq": 1, "action": "Confirmed", "by": "bob",
        "at": "2026-12-07T10:01:00Z", "revision": "demo-c", "group": 2});
    assert_eq!(
        value,
        json!({
            "name": "demo", "namespace": "shop", "verified": true,
            "revisions": [{"number": 3, "name": "demo-c", "images": ["app=nginx:1.26"],
                           "current": false, "update": true, "history": [entry]}],
            "history": [entry]
        })
    );
}
