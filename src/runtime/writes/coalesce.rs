//! Status writes that only move counters are spaced out per object: during
//! a release of 1,000 pods a set's counts change with every pod event, and
//! writing each change would cost the API server more than the pods do.
//! A change that matters to a reader (a condition, a generation, a revision,
//! a resting point) is never held back.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// When each object's status was last written.
pub struct Coalesce<K> {
    every: Duration,
    last: Mutex<HashMap<K, Instant>>,
}

impl<K: Eq + Hash + Clone> Coalesce<K> {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `None`: write now. `Some(wait)`: a counters-only change that comes
    /// too soon after the last write; write it after `wait` (or sooner, with
    /// the next urgent change).
    pub fn due(&self, key: &K, urgent: bool) -> Option<Duration> {
        if urgent {
            return None;
        }
        let last = self.last.lock().ok()?.get(key).copied()?;
        self.every.checked_sub(last.elapsed())
    }

    /// Records a write of `key`'s status.
    pub fn wrote(&self, key: K) {
        if let Ok(mut last) = self.last.lock() {
            if last.len() > 4096 {
                let every = self.every;
                last.retain(|_, at| at.elapsed() < every);
            }
            last.insert(key, Instant::now());
        }
    }
}

/// Whether two condition lists differ in what a reader acts on (type, status,
/// reason), not merely in a message quoting counts or in a time.
pub fn conditions_moved(a: &[Condition], b: &[Condition]) -> bool {
    let states = |cs: &[Condition]| {
        cs.iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect::<Vec<_>>()
    };
    states(a) != states(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_wait_for_the_interval_and_urgent_changes_never_do() {
        let c = Coalesce::new(Duration::from_secs(60));
        assert_eq!(c.due(&"a", false), None, "the first write is never held");
        c.wrote("a");
        let wait = c.due(&"a", false).expect("held back");
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60));
        assert_eq!(
            c.due(&"a", true),
            None,
            "an urgent change is written at once"
        );
        assert_eq!(c.due(&"b", false), None, "objects are spaced independently");
        let quick = Coalesce::new(Duration::ZERO);
        quick.wrote("a");
        assert_eq!(quick.due(&"a", false), None);
    }
}
