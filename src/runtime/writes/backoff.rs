//! Retries after errors: exponential per object, with jitter, reset on
//! success. A failing object never hot-loops, and many objects failing at
//! once (an API server restart) do not retry in lockstep.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// Consecutive failures per key.
pub struct Backoff<K> {
    failures: Mutex<HashMap<K, u32>>,
    base: Duration,
    max: Duration,
}

impl<K: Eq + Hash> Backoff<K> {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            base,
            max,
        }
    }

    /// One more failure of `key`: how long to wait before the next try.
    pub fn failed(&self, key: K) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        delay(self.base, self.max, n, jitter())
    }

    pub fn succeeded(&self, key: &K) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

/// `base * 2^(n-1)`, at most `max`, scaled by a jitter factor in [0.5, 1.0].
pub fn delay(base: Duration, max: Duration, failures: u32, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    exp.min(max).mul_f64(jitter.clamp(0.5, 1.0))
}

/// A jitter factor in [0.5, 1.0].
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    0.5 + f64::from(nanos % 1000) / 2000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_resets_on_success() {
        let (b, m) = (Duration::from_millis(500), Duration::from_secs(300));
        assert_eq!(delay(b, m, 1, 1.0), Duration::from_millis(500));
        assert_eq!(delay(b, m, 4, 1.0), Duration::from_secs(4));
        assert_eq!(delay(b, m, 40, 1.0), m);
        assert_eq!(delay(b, m, 4, 0.5), Duration::from_secs(2));
        let backoff = Backoff::new(b, m);
        let first = backoff.failed("x");
        let third = {
            backoff.failed("x");
            backoff.failed("x")
        };
        assert!(third > first);
        backoff.succeeded(&"x");
        assert!(backoff.failed("x") <= Duration::from_millis(500));
    }
}
