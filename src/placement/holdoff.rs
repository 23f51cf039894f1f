//! Writes toward a member whose connection fails: held off, per member,
//! with growing waits. A connection failing (no answer, a transport error,
//! a 5xx) is the member's, not one object's: every write toward it waits,
//! whichever CafeDeployment or set it is for. When a hold-off ends, one
//! write tries (the others still wait while it is in flight); the member
//! answering again (a write, its probe or its watch) clears it. An API
//! server going down is thus tried a handful of times before it is judged
//! unreachable, not once per reconcile.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp, Unit};

use crate::runtime::writes::backoff::delay;

/// The first wait after a failed write; it doubles with each one more (with
/// jitter), up to `MAX_WAIT`.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Why writes toward a member wait now, as status and logs say it.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    /// How long until a write may try again.
    pub wait: Duration,
    /// Failed writes in a row.
    pub failures: u32,
    /// The last failure.
    pub error: String,
    /// When writes may try again (wall clock, for status).
    pub retry_at: Timestamp,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writes there are held off until {} after {} failed in a row ({}); they go on \
             when it answers, and it reads unreachable if it stays silent for \
             unreachableAfterSeconds",
            self.retry_at, self.failures, self.error
        )
    }
}

impl std::error::Error for Held {}

#[derive(Clone, Debug)]
struct Failing {
    failures: u32,
    until: Instant,
    /// `until` on the wall clock (status shows it; stable between reconciles).
    until_wall: Timestamp,
    /// `until` bounds a write in flight (a trial), not a wait after a failure.
    trial: bool,
    error: String,
}

/// One member's write hold-off.
#[derive(Clone, Debug, Default)]
pub struct HoldOff {
    failing: Option<Failing>,
}

impl HoldOff {
    /// Whether a write may go now (`Ok`), claiming the one trial write when
    /// a hold-off has just ended: a trial in flight for up to `bound` holds
    /// the others back.
    pub fn claim(&mut self, now: Instant, bound: Duration) -> Result<(), Held> {
        let Some(f) = &mut self.failing else {
            return Ok(());
        };
        if f.until > now {
            return Err(held(f, now));
        }
        f.until = now + bound;
        f.until_wall = wall(bound);
        f.trial = true;
        Ok(())
    }

    /// Why writes wait now, without claiming anything.
    pub fn holding(&self, now: Instant) -> Option<Held> {
        self.failing
            .as_ref()
            .filter(|f| f.until > now)
            .map(|f| held(f, now))
    }

    /// A write failed for want of an answer: the next waits longer. Writes
    /// that were in flight together when the member went silent count as
    /// one failure. Returns the wait.
    pub fn failed(&mut self, now: Instant, error: String, jitter: f64) -> Duration {
        if let Some(f) = &mut self.failing
            && !f.trial
            && f.until > now
        {
            f.error = error;
            return f.until - now;
        }
        let failures = self.failing.as_ref().map_or(0, |f| f.failures) + 1;
        let wait = delay(FIRST_WAIT, MAX_WAIT, failures, jitter);
        self.failing = Some(Failing {
            failures,
            until: now + wait,
            until_wall: wall(wait),
            trial: false,
            error,
        });
        wait
    }

    /// The member answered: writes go again at once.
    pub fn answered(&mut self) {
        self.failing = None;
    }
}

fn held(f: &Failing, now: Instant) -> Held {
    Held {
        wait: f.until.saturating_duration_since(now),
        failures: f.failures,
        error: f.error.clone(),
        retry_at: f.until_wall,
    }
}

/// The wall clock `wait` from now, to the second.
fn wall(wait: Duration) -> Timestamp {
    let now = Timestamp::now();
    let at = SignedDuration::try_from(wait)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(now);
    at.round(Unit::Second).unwrap_or(at)
}

/// The member did not answer the write: no answer in time, a transport
/// error, or its API server failing (5xx). A 4xx is an answer.
pub fn is_connection_failure(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(s) => s.code >= 500,
        kube::Error::Service(e) => !e.is::<Held>(),
        _ => true,
    }
}

/// The hold-off a write met instead of going out, if that is why it failed.
pub fn held_off(error: &kube::Error) -> Option<&Held> {
    match error {
        kube::Error::Service(e) => e.downcast_ref::<Held>(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(4);

    #[test]
    fn a_healthy_member_holds_nothing_back() {
        let mut h = HoldOff::default();
        let now = Instant::now();
        assert!(h.claim(now, BOUND).is_ok());
        assert!(h.claim(now, BOUND).is_ok(), "no trial without a failure");
        assert!(h.holding(now).is_none());
    }

    #[test]
    fn waits_grow_with_each_failure_and_one_trial_goes_at_a_time() {
        let mut h = HoldOff::default();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for n in 0..5 {
            let wait = h.failed(now, format!("refused {n}"), 1.0);
            waits.push(wait);
            let held = h.claim(now, BOUND).expect_err("held after a failure");
            assert_eq!(
                (held.failures, held.error.as_str()),
                (n + 1, &*format!("refused {n}"))
            );
            now += wait;
            assert!(
                h.claim(now, BOUND).is_ok(),
                "the trial goes when the wait ends"
            );
            assert!(
                h.claim(now, BOUND).is_err(),
                "a second write waits for the trial"
            );
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn writes_failing_together_count_once() {
        let mut h = HoldOff::default();
        let now = Instant::now();
        let first = h.failed(now, "a".into(), 1.0);
        let second = h.failed(now + Duration::from_millis(10), "b".into(), 1.0);
        assert!(second <= first);
        assert_eq!(h.holding(now).map(|held| held.failures), Some(1));
    }

    #[test]
    fn an_answer_clears_the_hold_off() {
        let mut h = HoldOff::default();
        let now = Instant::now();
        h.failed(now, "refused".into(), 1.0);
        h.answered();
        assert!(h.claim(now, BOUND).is_ok());
        assert!(h.holding(now).is_none());
    }

    #[test]
    fn only_failures_to_answer_count() {
        let status = |code: u16| {
            let s: kube::core::Status = serde_json::from_value(serde_json::json!({
                "code": code, "message": "m", "reason": "r"}))
            .expect("status");
            kube::Error::Api(Box::new(s))
        };
        assert!(is_connection_failure(&status(503)));
        assert!(!is_connection_failure(&status(422)));
        assert!(!is_connection_failure(&status(401)));
        assert!(is_connection_failure(&kube::Error::Service(
            "timeout".into()
        )));
        let mut h = HoldOff::default();
        h.failed(Instant::now(), "x".into(), 1.0);
        let held = h.holding(Instant::now()).expect("held");
        let e = kube::Error::Service(Box::new(held));
        assert!(!is_connection_failure(&e) && held_off(&e).is_some());
    }
}
