//! Handing the allocator's free memory back to the system.
//!
//! glibc's allocator keeps what the program freed for later: after the
//! caches' first lists and a release's bursts, a fleet operator held about
//! 11 MiB of free heap (100.8 MiB of RSS, 89.5 MiB after `malloc_trim`, at
//! 10,000 pods). Trimming walks the free chunks only (a few milliseconds at
//! that size) and touches no cached object.

use std::time::Duration;

/// How often free memory goes back.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Gives free memory back every [`TRIM_EVERY`], for ever.
pub async fn trim_periodically() {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        trim();
    }
}

/// Returns the allocator's free pages to the system (glibc only; other
/// allocators give theirs back on their own).
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks and frees only
    // pages no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}
