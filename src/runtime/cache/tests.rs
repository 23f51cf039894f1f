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

/// A fleet pod as the API server sends it after an in-place update (kwok's
/// status, the operator's labels, annotations and owner), `managedFields`
/// left out (never read, never built).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fleet_pod(i: usize) -> String {
    let (cd, cell) = (i / 100, i % 10);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("fleet-{cd}-bench-cell-{cell}-{:05}", i % 100_000),
            "namespace": "e2e-bench-fleet-8f3a20",
            "uid": format!("5d8f2c1e-7b9a-4c3d-9e8f-{i:012}"),
            "resourceVersion": format!("{}", 1_000_000 + i),
            "creationTimestamp": "2026-12-07T17:00:00Z",
            "labels": {"app": format!("fleet-{cd}"),
                       "cafe.sofastack.io/cell": format!("bench-cell-{cell}"),
                       "cafe.sofastack.io/revision": format!("fleet-{cd}-6d5f8c9b7")},
            "annotations": {
                "cafe.sofastack.io/traffic-components": "",
                "cafe.sofastack.io/template-shape": "8c1f0b2a4e6d9f37",
                "cafe.sofastack.io/template-keys":
                    "{\"labels\":[\"app\",\"cafe.sofastack.io/cell\"],\"annotations\":[]}",
                "cafe.sofastack.io/in-place-update": format!(
                    "{{\"revision\":\"fleet-{cd}-6d5f8c9b7\",\"before\":{{\"app\":{{\"imageId\":\"\",\
                     \"containerId\":\"kwok://{i:064}\",\"restartCount\":0}}}}}}")},
            "ownerReferences": [{"apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "InPlaceSet",
                                 "name": format!("fleet-{cd}-bench-cell-{cell}"),
                                 "uid": format!("0a1b2c3d-4e5f-4a7b-8c9d-{:012}", i / 10),
                                 "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"nodeName": format!("bench-bench-cell-{cell}-{}", i % 2),
                 "containers": [{"name": "app", "image": "nginx:1.26", "resources": {}}]},
        "status": {
            "phase": "Running", "podIP": format!("10.{}.{}.{}", 128 + cell, i / 250, i % 250),
            "startTime": "2026-12-07T17:00:01Z",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T17:05:01Z"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-07T17:00:01Z"},
                {"type": "cafe.sofastack.io/traffic-ready", "status": "True", "reason": "Serving",
                 "lastTransitionTime": "2026-12-07T17:05:00Z"}],
            "containerStatuses": [{"name": "app", "image": "nginx:1.26", "imageID": "",
                                   "containerID": format!("kwok://{i:064}"), "restartCount": 1,
                                   "ready": true, "started": true,
                                   "state": {"running": {"startedAt": "2026-12-07T17:05:00Z"}}}]
        }
    })
    .to_string()
}

/// The heap in use: the allocator's own count of bytes, chunk headers
/// included (the measurements below).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    m.uordblks + m.hblkhd
}

/// Removes the field at JSON pointer `path` (what a row measures).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn remove_at(v: &mut serde_json::Value, path: &str) {
    let (parent, key) = path.rsplit_once('/').expect("a path");
    if let Some(serde_json::Value::Object(m)) = v.pointer_mut(parent) {
        m.remove(key);
    }
}

/// What 10,000 cached pods cost in heap, and of what (the allocator's own
/// count of bytes in use, chunk headers included):
/// `cargo test --lib bytes_per_cached_pod -- --ignored --nocapture --test-threads=1`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
#[ignore = "a measurement: run it alone, it reads the allocator's process-wide counters"]
fn bytes_per_cached_pod() {
    const N: usize = 10_000;
    let texts: Vec<String> = (0..N).map(fleet_pod).collect();
    let cost = |edit: &dyn Fn(&mut serde_json::Value)| {
        // Edited beforehand: only the pods are built while measuring.
        let edited: Vec<String> = texts
            .iter()
            .map(|t| {
                let mut v: serde_json::Value = serde_json::from_str(t).expect("pod JSON");
                edit(&mut v);
                v.to_string()
            })
            .collect();
        let before = heap();
        let pods: Vec<Arc<Pod>> = edited
            .iter()
            .map(|t| Arc::new(serde_json::from_str(t).expect("pod")))
            .collect();
        let bytes = heap().saturating_sub(before);
        drop(pods);
        bytes as f64 / N as f64
    };
    let whole = cost(&|_| {});
    let mut rows = vec![("a pod (Arc<Pod>)".to_string(), whole)];
    for (what, path) in [
        ("  its labels", "/metadata/labels"),
        ("  its annotations", "/metadata/annotations"),
        ("  its owner references", "/metadata/ownerReferences"),
        ("  its spec", "/spec"),
        ("  its status", "/status"),
    ] {
        let without = cost(&|v| remove_at(v, path));
        rows.push((what.to_string(), whole - without));
    }
    // The store's key (name, namespace, resourceVersion and uid again) and
    // the owner index's name.
    let pods: Vec<Arc<Pod>> = texts
        .iter()
        .map(|t| Arc::new(serde_json::from_str(t).expect("pod")))
        .collect();
    let before = heap();
    let keys: Vec<ObjectRef<Pod>> = pods.iter().map(|p| ObjectRef::from_obj(&**p)).collect();
    rows.push((
        "its store key (ObjectRef)".to_string(),
        heap().saturating_sub(before) as f64 / N as f64,
    ));
    let before = heap();
    let index = OwnerIndex::default();
    for p in &pods {
        index.observe(&watcher::Event::Apply((**p).clone()));
    }
    rows.push((
        "its owner index entry".to_string(),
        heap().saturating_sub(before) as f64 / N as f64,
    ));
    drop((keys, index));
    println!(
        "heap per cached pod ({N} pods, std::mem::size_of::<Pod>() = {}):",
        std::mem::size_of::<Pod>()
    );
    for (what, bytes) in rows {
        println!("{what:32} {bytes:8.0} B");
    }
}

/// What 1,000 cached InPlaceSets of the fleet's shape cost in heap, and of
/// what: `cargo test --lib bytes_per_cached_set -- --ignored --nocapture --test-threads=1`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
#[ignore = "a measurement: run it alone, it reads the allocator's process-wide counters"]
fn bytes_per_cached_set() {
    use crate::api::InPlaceSet;
    const N: usize = 1_000;
    let text = include_str!("fleet_set.json");
    let cost = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(text).expect("set JSON");
        edit(&mut v);
        let edited = v.to_string();
        let before = heap();
        let sets: Vec<Arc<InPlaceSet>> = (0..N)
            .map(|_| Arc::new(serde_json::from_str(&edited).expect("set")))
            .collect();
        let bytes = heap().saturating_sub(before);
        drop(sets);
        bytes as f64 / N as f64
    };
    let whole = cost(&|_| {});
    println!(
        "heap per cached set ({N} sets, {} B of JSON, size_of InPlaceSet {} (spec {}, status {}), \
         PodTemplateSpec {}, PodSpec {}, Container {}):",
        text.len(),
        std::mem::size_of::<InPlaceSet>(),
        std::mem::size_of::<crate::api::InPlaceSetSpec>(),
        std::mem::size_of::<crate::api::InPlaceSetStatus>(),
        std::mem::size_of::<k8s_openapi::api::core::v1::PodTemplateSpec>(),
        std::mem::size_of::<k8s_openapi::api::core::v1::PodSpec>(),
        std::mem::size_of::<k8s_openapi::api::core::v1::Container>(),
    );
    println!("{:32} {whole:8.0} B", "a set (Arc<InPlaceSet>)");
    for (what, path) in [
        ("  its template's affinity", "/spec/template/spec/affinity"),
        (
            "  its template's containers",
            "/spec/template/spec/containers",
        ),
        ("  its status", "/status"),
        ("  its status conditions", "/status/conditions"),
    ] {
        let without = cost(&|v| remove_at(v, path));
        println!("{what:32} {:8.0} B", whole - without);
    }
}
