//! The resourceVersion our own last write to an object produced, so that a
//! watch cache that has not caught up with it is not decided on: a stale
//! copy would repeat the write (a gate written twice, a finalizer added or
//! removed a second time). Another writer (a kubelet) may have changed the
//! object between our read and our write, so "not the version we read" is
//! not enough: the cache must show our write, or a later one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;

/// Our last write per object uid, forgotten once the cache shows it or after
/// `window` (a missed event never holds an object back for long).
pub struct OwnWrites {
    window: Duration,
    written: Mutex<HashMap<String, (String, Instant)>>,
}

impl OwnWrites {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            written: Mutex::new(HashMap::new()),
        }
    }

    /// Records the resourceVersion our write to `uid` produced.
    pub fn remember(&self, uid: String, rv: String) {
        if let Ok(mut written) = self.written.lock() {
            written.insert(uid, (rv, Instant::now()));
        }
    }

    /// True while the cached `object` is older than our last write to it.
    /// resourceVersions are compared as numbers where they are (etcd
    /// revisions), else by equality.
    pub fn stale<K: Resource>(&self, object: &K) -> bool {
        let meta = object.meta();
        let (Some(uid), Some(rv)) = (meta.uid.as_ref(), meta.resource_version.as_ref()) else {
            return false;
        };
        let Ok(mut written) = self.written.lock() else {
            return false;
        };
        let Some((ours, at)) = written.get(uid) else {
            return false;
        };
        let behind = match (rv.parse::<u64>(), ours.parse::<u64>()) {
            (Ok(cached), Ok(ours)) => cached < ours,
            _ => rv != ours,
        };
        if behind && at.elapsed() < self.window {
            true
        } else {
            written.remove(uid);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    fn pod(rv: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u-1", "resourceVersion": rv}
        }))
        .expect("pod")
    }

    #[test]
    fn a_copy_older_than_our_write_is_stale_until_the_cache_catches_up() {
        let writes = OwnWrites::new(Duration::from_secs(10));
        assert!(!writes.stale(&pod("5")), "nothing written yet");
        writes.remember("u-1".into(), "7".into());
        assert!(writes.stale(&pod("5")));
        assert!(!writes.stale(&pod("7")), "the cache shows our write");
        assert!(!writes.stale(&pod("5")), "forgotten once seen");
    }

    #[test]
    fn a_missed_event_holds_an_object_back_only_for_the_window() {
        let writes = OwnWrites::new(Duration::ZERO);
        writes.remember("u-1".into(), "7".into());
        assert!(!writes.stale(&pod("5")));
    }
}
