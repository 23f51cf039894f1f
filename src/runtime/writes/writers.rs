//! Another operator writing the same objects. Every status this operator
//! writes names it (`status.writer`, its leader-election identity). When an
//! object it wrote shows, in a later version, another operator's status,
//! two operators watch that object: two installations whose Leases differ,
//! or replicas run without leader election. Rewriting each other's status
//! (and pods) would be a fight; instead this one stands down on that object
//! for a while (`--another-writer-stand-down-seconds`), says so in the object's `AnotherWriter` condition,
//! and looks again after. The condition is written under a field manager of
//! its own, so that the other operator's status writes leave it in place;
//! one nobody renewed for twice the stand-down is cleared.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{CafeDeploymentStatus, InPlaceSetStatus, MemberClusterStatus};

/// The condition an operator that stands down writes.
pub const ANOTHER_WRITER: &str = "AnotherWriter";
/// The field manager of that condition (not the controllers' own).
pub const CONDITION_MANAGER: &str = "cafe-operator-another-writer";
/// How long an operator leaves an object alone once it found another
/// writer, unless told otherwise.
pub const STAND_DOWN: Duration = Duration::from_secs(120);

/// A status that names its writer and carries conditions.
pub trait Signed: Clone + PartialEq {
    fn writer(&self) -> Option<&str>;
    fn sign(&mut self, writer: Option<String>);
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn conditions(&self) -> &[Condition];
}

macro_rules! signed {
    ($($status:ty),*) => {$(
        impl Signed for $status {
            fn writer(&self) -> Option<&str> {
                self.writer.as_deref()
            }
            fn sign(&mut self, writer: Option<String>) {
                self.writer = writer;
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
        }
    )*};
}

signed!(CafeDeploymentStatus, InPlaceSetStatus, MemberClusterStatus);

/// `status` as the controllers decide it: without the writer's name and
/// the AnotherWriter condition (neither is theirs to compare).
pub fn unsigned<S: Signed>(status: &S) -> S {
    let mut s = status.clone();
    s.sign(None);
    s.conditions_mut().retain(|c| c.type_ != ANOTHER_WRITER);
    s
}

/// The AnotherWriter condition of `status`, when there is one nobody renewed
/// for twice `stand_down` (the operator that stood down looked again and
/// found no other writer, or is gone).
pub fn stale_note<S: Signed>(status: &S, stand_down: Duration, now: &Time) -> bool {
    let stale = i64::try_from(2 * stand_down.as_secs()).unwrap_or(i64::MAX);
    status.conditions().iter().any(|c| {
        c.type_ == ANOTHER_WRITER
            && now.0.as_second() - c.last_transition_time.0.as_second() >= stale
    })
}

/// The condition `ours` writes when it found `other` writing the object.
pub fn note(
    (ours, other): (&str, &str),
    stand_down: Duration,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: ANOTHER_WRITER.to_string(),
        status: "True".to_string(),
        reason: "StandingDown".to_string(),
        message: format!(
            "operator {other} writes this object too, after operator {ours} did: two \
             operators watch this namespace (two installations with different Leases, or \
             replicas started with --leader-elect=false). {ours} leaves this object to {other} \
             for {}s and then looks again. Run one operator per namespace: remove or rescope \
             the other installation (kubectl get leases -A; helm list -A)",
            stand_down.as_secs()
        ),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// What this process knows of the objects it writes: the resourceVersion
/// its last status write made of each, and the objects it stands down on.
pub struct Writers {
    identity: String,
    stand_down: Duration,
    wrote: Mutex<HashMap<String, u64>>,
    down: Mutex<HashMap<String, Instant>>,
}

impl Writers {
    pub fn new(identity: String, stand_down: Duration) -> Self {
        Self {
            identity,
            stand_down,
            wrote: Mutex::default(),
            down: Mutex::default(),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn stand_down_for(&self) -> Duration {
        self.stand_down
    }

    /// How long this process still leaves `key` alone, if it does.
    pub fn standing_down(&self, key: &str) -> Option<Duration> {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let until = *down.get(key)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            down.remove(key);
            // Looking again: a write now is a first write.
            self.wrote
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
            return None;
        }
        Some(left)
    }

    /// Another operator's name on `key`'s status, in a version later than
    /// this process's last write of it (`version`: the cached object's
    /// resourceVersion; a version that is not a number tells nothing).
    pub fn another<'a>(
        &self,
        key: &str,
        version: Option<&str>,
        writer: Option<&'a str>,
    ) -> Option<&'a str> {
        let ours = *self
            .wrote
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)?;
        let seen: u64 = version?.parse().ok()?;
        writer.filter(|w| *w != self.identity && seen > ours)
    }

    /// This process wrote `key`'s status; the write made `version`.
    pub fn wrote(&self, key: String, version: Option<&str>) {
        if let Some(v) = version.and_then(|v| v.parse().ok()) {
            self.wrote
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, v);
        }
    }

    /// Leaves `key` alone for the stand-down.
    pub fn stand_down(&self, key: String) {
        self.down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Instant::now() + self.stand_down);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).expect("time"))
    }

    #[test]
    fn another_writer_counts_only_after_our_own_write_and_in_a_later_version() {
        let w = Writers::new("a".to_string(), STAND_DOWN);
        // Before this process wrote: the previous writer (an earlier run) is no one else.
        assert_eq!(w.another("x", Some("10"), Some("old")), None);
        w.wrote("x".to_string(), Some("10"));
        // The cache has not caught up with our write yet: not another writer.
        assert_eq!(w.another("x", Some("9"), Some("old")), None);
        assert_eq!(w.another("x", Some("10"), Some("a")), None);
        // Our own later version.
        assert_eq!(w.another("x", Some("12"), Some("a")), None);
        // Someone else, after us.
        assert_eq!(w.another("x", Some("12"), Some("b")), Some("b"));
        // A version that is not a number tells nothing.
        assert_eq!(w.another("x", Some("abc"), Some("b")), None);
        // Another object.
        assert_eq!(w.another("y", Some("12"), Some("b")), None);
    }

    #[test]
    fn standing_down_lasts_then_looks_again_as_a_first_write() {
        let w = Writers::new("a".to_string(), STAND_DOWN);
        w.wrote("x".to_string(), Some("10"));
        w.stand_down("x".to_string());
        let left = w.standing_down("x").expect("standing down");
        assert!(left > STAND_DOWN - Duration::from_secs(1) && left <= STAND_DOWN);
        assert_eq!(w.standing_down("y"), None);
        w.down
            .lock()
            .expect("lock")
            .insert("x".to_string(), Instant::now());
        assert_eq!(w.standing_down("x"), None, "the stand-down is over");
        assert_eq!(
            w.another("x", Some("20"), Some("b")),
            None,
            "after standing down, the next write is a first write"
        );
    }

    #[test]
    fn the_writer_and_the_note_are_not_what_controllers_compare() {
        let mut a = CafeDeploymentStatus {
            writer: Some("a".to_string()),
            ..Default::default()
        };
        a.conditions
            .push(note(("a", "b"), STAND_DOWN, Some(1), &at(100)));
        let b = CafeDeploymentStatus {
            writer: Some("b".to_string()),
            ..Default::default()
        };
        assert_eq!(unsigned(&a), unsigned(&b));
        assert_eq!(unsigned(&a).conditions.len(), 0);
    }

    #[test]
    fn a_note_nobody_renewed_for_twice_the_stand_down_is_stale() {
        let mut s = InPlaceSetStatus::default();
        let d = Duration::from_secs(120);
        assert!(!stale_note(&s, d, &at(1000)));
        s.conditions.push(note(("a", "b"), d, None, &at(1000)));
        assert!(!stale_note(&s, d, &at(1000 + 239)));
        assert!(stale_note(&s, d, &at(1000 + 240)));
        assert!(
            note(("a", "b"), d, None, &at(0))
                .message
                .contains("--leader-elect")
        );
    }
}
