//! Writes the API server refused (a pod creation, an InPlaceSet too large,
//! anything into a namespace being deleted): per object, what it said and
//! when to try again. A refusal holds the object's writes back whatever
//! event wakes its reconcile (a pod event would otherwise retry at once, as
//! the error backoff only paces retries after errors), and stays on record
//! for the status until a write goes through, as a ReplicaSet's
//! `ReplicaFailure` does.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::backoff::Backoff;

/// How long an object writes nothing after the API server said its
/// namespace is being deleted (no creation is ever accepted there again).
const TERMINATING_NAMESPACE_HOLDOFF: Duration = Duration::from_secs(60);

/// The longest hold-off after a refusal for a ServiceAccount not there yet.
/// The cluster makes a namespace's `default` moments after the namespace
/// (later after its API server restarts), and a person creates a named one:
/// either way the pods should follow within seconds, not the minutes the
/// doubling reaches after a few refusals.
const MISSING_SERVICE_ACCOUNT_HOLDOFF: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Refusal {
    /// No write before this.
    pub until: Instant,
    /// The condition reason status reports it with (`FailedCreate`, ...).
    pub reason: &'static str,
    /// What was refused ("pods", "InPlaceSet demo-cell-a", ...).
    pub what: String,
    /// The API server's message.
    pub message: String,
    /// The namespace is being deleted: nothing is created, nothing reported.
    pub terminating: bool,
}

impl Refusal {
    /// How long writes are still held back (zero: try again).
    pub fn wait(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }
}

/// Refused writes per object.
pub struct Refusals<K> {
    by_object: Mutex<HashMap<K, Refusal>>,
    backoff: Backoff<K>,
}

impl<K: Eq + Hash + Clone> Refusals<K> {
    /// `first`: the hold-off after one refusal; it doubles with each one
    /// more, up to five minutes.
    pub fn new(first: Duration) -> Self {
        Self {
            by_object: Mutex::new(HashMap::new()),
            backoff: Backoff::new(first, Duration::from_secs(300)),
        }
    }

    /// The object's last write was refused, and none went through since.
    pub fn get(&self, key: &K) -> Option<Refusal> {
        self.by_object.lock().ok()?.get(key).cloned()
    }

    /// The refusal holding the object's writes back now, if one does.
    pub fn holding(&self, key: &K) -> Option<Refusal> {
        self.get(key).filter(|r| r.until > Instant::now())
    }

    /// Records a refused write: writes wait, longer after each refusal.
    pub fn refused(
        &self,
        key: K,
        (reason, what): (&'static str, &str),
        error: &kube::Error,
    ) -> Refusal {
        let terminating = namespace_terminating(error);
        let message = match error {
            kube::Error::Api(s) => s.message.clone(),
            e => e.to_string(),
        };
        let wait = if terminating {
            TERMINATING_NAMESPACE_HOLDOFF
        } else if service_account_missing(error) {
            self.backoff
                .failed(key.clone())
                .min(MISSING_SERVICE_ACCOUNT_HOLDOFF)
        } else {
            self.backoff.failed(key.clone())
        };
        let refusal = Refusal {
            until: Instant::now() + wait,
            reason,
            what: what.to_string(),
            message,
            terminating,
        };
        if let Ok(mut by_object) = self.by_object.lock() {
            by_object.insert(key, refusal.clone());
        }
        refusal
    }

    /// A write went through, or none is needed any more.
    pub fn cleared(&self, key: &K) {
        if let Ok(mut by_object) = self.by_object.lock() {
            by_object.remove(key);
        }
        self.backoff.succeeded(key);
    }
}

/// A refusal, not a failure to get an answer: the API server said no to
/// this write. A conflict (409) is a race, and Too Many Requests (429) is the
/// API server shedding load (its priority and fairness): both are retried
/// with the reconcile's backoff, never held off as a refused template.
pub fn is_refusal(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s)
        if s.code >= 400 && s.code < 500 && s.code != 409 && s.code != 429)
}

/// The API server refuses it because the namespace is being deleted.
pub fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.details.as_ref().is_some_and(|d| {
        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
    }))
}

/// The API server refuses a pod because its ServiceAccount does not exist
/// (yet): the words of its ServiceAccount admission plugin.
fn service_account_missing(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s)
        if s.code == 403 && s.message.contains("error looking up service account"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn error(code: u16, cause: Option<&str>) -> kube::Error {
        let mut status: Status = serde_json::from_value(serde_json::json!({
            "code": code, "message": "no", "reason": "Forbidden",
        }))
        .expect("status");
        if let Some(cause) = cause {
            status = serde_json::from_value(serde_json::json!({
                "code": code, "message": "no", "reason": "Forbidden",
                "details": {"causes": [{"reason": cause, "message": "terminating"}]},
            }))
            .expect("status");
        }
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn a_refusal_holds_writes_back_longer_each_time_until_cleared() {
        let refusals = Refusals::new(Duration::from_secs(1));
        let first = refusals.refused("a", ("FailedCreate", "pods"), &error(422, None));
        assert!(refusals.holding(&"a").is_some());
        assert_eq!(first.message, "no");
        let second = refusals.refused("a", ("FailedCreate", "pods"), &error(422, None));
        assert!(second.until > first.until);
        refusals.cleared(&"a");
        assert!(refusals.get(&"a").is_none());
    }

    #[test]
    fn a_terminating_namespace_holds_for_a_minute() {
        let refusals = Refusals::new(Duration::from_secs(1));
        let r = refusals.refused(
            "a",
            ("FailedCreate", "pods"),
            &error(403, Some("NamespaceTerminating")),
        );
        assert!(r.terminating && r.wait() > Duration::from_secs(50));
    }

    #[test]
    fn a_missing_service_account_is_tried_again_within_seconds_however_often_refused() {
        let refusals = Refusals::new(Duration::from_secs(1));
        let missing: kube::core::Status = serde_json::from_value(serde_json::json!({
            "code": 403, "reason": "Forbidden",
            "message": "pods \"web-x\" is forbidden: error looking up service account \
                        ns/default: serviceaccount \"default\" not found",
        }))
        .expect("status");
        let missing = kube::Error::Api(Box::new(missing));
        let waits: Vec<Duration> = (0..8)
            .map(|_| {
                refusals
                    .refused("a", ("FailedCreate", "pods"), &missing)
                    .wait()
            })
            .collect();
        assert!(
            waits.iter().all(|w| *w <= MISSING_SERVICE_ACCOUNT_HOLDOFF),
            "{waits:?}"
        );
        // Any other refusal doubles on, to five minutes.
        let other: Vec<Duration> = (0..8)
            .map(|_| {
                refusals
                    .refused("b", ("FailedCreate", "pods"), &error(403, None))
                    .wait()
            })
            .collect();
        assert!(other[7] > Duration::from_secs(60), "{other:?}");
    }

    #[test]
    fn a_conflict_or_shed_load_is_not_a_refusal() {
        assert!(is_refusal(&error(403, None)) && is_refusal(&error(422, None)));
        assert!(!is_refusal(&error(409, None)) && !is_refusal(&error(429, None)));
        assert!(!is_refusal(&error(500, None)));
    }
}
