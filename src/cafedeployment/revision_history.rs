//! Each revision keeps the history entries that belong to it, in the
//! annotation `cafe.sofastack.io/history` of its ControllerRevision: who
//! released it and who confirmed each group stay readable (`kubectl cafe
//! history`) after `status.history` rolled over, for as long as the revision
//! is kept (`historyLimit`). Entries are only appended, and the sign-off
//! policy refuses any other change of the annotation.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::ResourceExt;
use serde_json::json;

use super::history::{by_revision, unrecorded};
use crate::api::{HistoryEntry, REVISION_HISTORY_ANNOTATION, REVISION_HISTORY_LIMIT};

/// The entries a revision's annotation holds (none when unreadable).
pub fn recorded(revision: &ControllerRevision) -> Vec<HistoryEntry> {
    revision
        .annotations()
        .get(REVISION_HISTORY_ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// The JSON patches that append to each revision the entries of `history`
/// it lacks, by revision name. Each is guarded by a test of the annotation
/// as read, so a concurrent append is never lost (the patch fails and the
/// next write tries again).
pub fn appends(
    revisions: &[Arc<ControllerRevision>],
    history: &[HistoryEntry],
) -> Vec<(String, json_patch::Patch)> {
    let mut patches = Vec::new();
    for (name, _) in by_revision(history) {
        let Some(revision) = revisions.iter().find(|r| r.name_any() == name) else {
            continue;
        };
        let kept = recorded(revision);
        let missing = unrecorded(history, name, &kept);
        let room = REVISION_HISTORY_LIMIT.saturating_sub(kept.len());
        if missing.is_empty() || room == 0 {
            continue;
        }
        let Ok(items) = missing
            .into_iter()
            .take(room)
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        let items = items.join(",");
        let key = REVISION_HISTORY_ANNOTATION.replace('/', "~1");
        let current = revision
            .annotations()
            .get(REVISION_HISTORY_ANNOTATION)
            .filter(|_| !kept.is_empty());
        let ops = match (current, revision.metadata.annotations.is_some()) {
            // The old text, untouched, then the new entries: what the policy's
            // append-only rule checks (a prefix).
            (Some(old), _) => json!([
                {"op": "test", "path": format!("/metadata/annotations/{key}"), "value": old},
                {"op": "replace", "path": format!("/metadata/annotations/{key}"),
                 "value": format!("{},{items}]", old.trim_end().trim_end_matches(']'))}
            ]),
            (None, true) => json!([
                {"op": "add", "path": format!("/metadata/annotations/{key}"), "value": format!("[{items}]")}
            ]),
            (None, false) => json!([
                {"op": "add", "path": "/metadata/annotations",
                 "value": {REVISION_HISTORY_ANNOTATION: format!("[{items}]")}}
            ]),
        };
        if let Ok(patch) = serde_json::from_value(ops) {
            patches.push((name.to_string(), patch));
        }
    }
    patches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HistoryAction;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn entry(seq: i64, revision: &str) -> HistoryEntry {
        HistoryEntry {
            seq,
            action: HistoryAction::Confirmed,
            by: "bob".into(),
            at: Time("2026-12-07T10:00:00Z".parse().expect("time")),
            revision: revision.into(),
            group: Some(2),
            source: String::new(),
            message: String::new(),
        }
    }

    fn revision(name: &str, held: &[HistoryEntry]) -> Arc<ControllerRevision> {
        let mut r = ControllerRevision::default();
        r.metadata.name = Some(name.into());
        if !held.is_empty() {
            r.metadata.annotations = Some(
                [(
                    REVISION_HISTORY_ANNOTATION.to_string(),
                    serde_json::to_string(held).expect("json"),
                )]
                .into(),
            );
        }
        Arc::new(r)
    }

    #[test]
    fn a_revision_gets_only_its_own_entries_it_lacks_appended_after_a_test() {
        let history = vec![entry(1, "demo-a"), entry(2, "demo-b"), entry(3, "demo-b")];
        let revisions = vec![
            revision("demo-a", &history[..1]),
            revision("demo-b", &history[1..2]),
        ];
        let patches = appends(&revisions, &history);
        assert_eq!(patches.len(), 1, "demo-a holds its entry already");
        let (name, patch) = &patches[0];
        assert_eq!(name, "demo-b");
        let ops = serde_json::to_value(patch).expect("json");
        assert_eq!(ops[0]["op"], "test");
        let appended: Vec<HistoryEntry> =
            serde_json::from_str(ops[1]["value"].as_str().expect("text")).expect("entries");
        assert_eq!(
            appended.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        // The appended text extends the old one: the policy's prefix rule holds.
        let old = serde_json::to_string(&history[1..2]).expect("json");
        assert!(
            ops[1]["value"]
                .as_str()
                .expect("text")
                .starts_with(&old[..old.len() - 1])
        );
    }

    #[test]
    fn a_revision_without_annotations_gets_the_map() {
        let history = vec![entry(1, "demo-a")];
        let patches = appends(&[revision("demo-a", &[])], &history);
        let ops = serde_json::to_value(&patches[0].1).expect("json");
        assert_eq!(ops[0]["path"], "/metadata/annotations");
    }
}
