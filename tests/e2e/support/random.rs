//! Pseudo-random timing for the chaos stories.

use std::time::Duration;

/// A pseudo-random duration in [lo, hi) ms: the clock's nanoseconds.
pub(crate) fn random_ms(lo: u64, hi: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_millis(lo + (nanos / 1000) % (hi - lo))
}
