use super::*;
use serde_json::json;

fn pod(name: &str, owner: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x",
                                          "uid": owner, "controller": true}]},
    }))
    .expect("pod literal")
}

#[test]
fn a_relist_replaces_the_index_and_deletions_leave_it() {
    let index = OwnerIndex::default();
    index.observe(&watcher::Event::Apply(pod("a", "u1")));
    index.observe(&watcher::Event::Apply(pod("b", "u1")));
    index.observe(&watcher::Event::Delete(pod("a", "u1")));
    let names = |i: &OwnerIndex, uid: &str| {
        let inner = i.inner.read().expect("lock");
        let mut v: Vec<String> = inner
            .by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&index, "u1"), ["b"]);
    // A relist that no longer shows b but shows c under another owner.
    index.observe(&watcher::Event::<Pod>::Init);
    index.observe(&watcher::Event::InitApply(pod("c", "u2")));
    assert_eq!(
        names(&index, "u1"),
        ["b"],
        "the old index serves until the relist is done"
    );
    index.observe(&watcher::Event::<Pod>::InitDone);
    assert!(names(&index, "u1").is_empty());
    assert_eq!(names(&index, "u2"), ["c"]);
}
