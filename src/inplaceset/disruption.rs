//! PodDisruptionBudgets, honoured by in-place updates too. Kubernetes checks
//! a PDB only in the eviction API; an in-place update (or a drain before a
//! re-create) never goes through it, so the set checks the budgets that
//! select its pods before it takes an available pod out of traffic.
//!
//! The room a budget leaves is the smaller of two readings, so that neither
//! lag lets one pod too many leave traffic:
//! - the disruption controller's `status.disruptionsAllowed` (it sees every
//!   pod the budget selects, not only ours, but lags our writes);
//! - `expectedPods - desiredHealthy` less the pods of ours the budget selects
//!   that are out of traffic in the pod cache, less the pods this process
//!   has just taken out and the cache does not show yet (the [`Ledger`]:
//!   sets of several cells reconcile at once and share one budget).
//!
//! A budget whose status the disruption controller has not computed for its
//! present spec allows nothing: decisions fail closed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use super::lifecycle::PodFacts;

/// How long a pod taken out of traffic is counted from memory while the
/// cache does not show it out: longer than any watch lag worth waiting for.
const CLAIM_TTL: Duration = Duration::from_secs(30);

/// Whether `pdb` selects pods labelled `labels`. A budget without a
/// selector selects nothing; an empty selector selects every pod (policy/v1).
pub fn selects(pdb: &PodDisruptionBudget, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.clone()) else {
        return false;
    };
    Selector::try_from(selector).is_ok_and(|s| s.matches(labels))
}

/// Out of traffic as far as a budget goes: not Ready, its gate closed, or
/// terminating. Fails closed: a gate closed but kubelet's Ready not yet
/// turned False already counts.
pub fn out_of_traffic(p: &PodFacts) -> bool {
    p.terminating || !p.ready || p.gate.open != Some(true)
}

/// One budget as the set reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    pub name: String,
    /// The disruption controller's status is for the present spec.
    pub computed: bool,
    pub disruptions_allowed: usize,
    /// `expectedPods - desiredHealthy`: how many may be out at once.
    pub max_out: usize,
    /// Pods of ours it selects that are out of traffic (cache and ledger).
    pub ours_out: usize,
}

impl Reading {
    pub fn of(pdb: &PodDisruptionBudget, ours_out: usize) -> Self {
        let status = pdb.status.as_ref();
        let count = |n: i32| usize::try_from(n).unwrap_or(0);
        Self {
            name: pdb.name_any(),
            computed: status.is_some_and(|s| {
                s.observed_generation.is_some() && s.observed_generation >= pdb.metadata.generation
            }),
            disruptions_allowed: status.map_or(0, |s| count(s.disruptions_allowed)),
            max_out: status.map_or(0, |s| count(s.expected_pods - s.desired_healthy)),
            ours_out,
        }
    }

    /// Available pods that may still leave traffic under this budget.
    pub fn room(&self) -> usize {
        if !self.computed {
            return 0;
        }
        self.disruptions_allowed
            .min(self.max_out.saturating_sub(self.ours_out))
    }

    /// What the release waits for while the room is zero.
    pub fn hold_message(&self) -> String {
        if !self.computed {
            return format!(
                "waiting for PodDisruptionBudget {}: the disruption controller has not \
                 computed its status yet, so no pod leaves traffic",
                self.name
            );
        }
        format!(
            "waiting for PodDisruptionBudget {}: it allows no more disruption now \
             ({} allowed, {} of its pods out of traffic, at most {}); the update goes on \
             as pods it selects are back in traffic",
            self.name, self.disruptions_allowed, self.ours_out, self.max_out
        )
    }
}

/// The tightest of the budgets: its room, and the hold message when it is zero.
pub fn tightest(readings: &[Reading]) -> Option<(usize, String)> {
    readings
        .iter()
        .min_by_key(|r| r.room())
        .map(|r| (r.room(), r.hold_message()))
}

/// Pods this process took out of traffic under each budget that the pod
/// cache may not show yet: by budget uid, pod uid -> when.
#[derive(Default)]
pub struct Ledger {
    claims: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

pub type Claims = HashMap<String, HashMap<String, Instant>>;

impl Ledger {
    /// Held from reading the budgets until the pods taken out are claimed,
    /// so two sets under one budget never both spend its last room.
    pub fn lock(&self) -> Option<MutexGuard<'_, Claims>> {
        self.claims.lock().ok()
    }
}

/// Forgets the claims the cache now shows (`out` holds the uids of the
/// budget's pods out of traffic) or that expired; returns how many remain.
pub fn pending_claims(claims: &mut Claims, budget_uid: &str, out: &[String]) -> usize {
    let Some(pods) = claims.get_mut(budget_uid) else {
        return 0;
    };
    pods.retain(|uid, at| at.elapsed() < CLAIM_TTL && !out.contains(uid));
    pods.len()
}

/// Records pods taken out of traffic under a budget.
pub fn claim(claims: &mut Claims, budget_uid: &str, pods: impl IntoIterator<Item = String>) {
    let entry = claims.entry(budget_uid.to_string()).or_default();
    for uid in pods {
        entry.insert(uid, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pdb(status: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "generation": 2},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": status,
        }))
        .expect("pdb")
    }

    fn computed(allowed: i32) -> serde_json::Value {
        json!({"observedGeneration": 2, "disruptionsAllowed": allowed, "expectedPods": 12,
               "desiredHealthy": 11, "currentHealthy": 11 + allowed})
    }

    #[test]
    fn the_room_is_the_smaller_of_the_controllers_and_our_own_count() {
        assert_eq!(Reading::of(&pdb(computed(1)), 0).room(), 1);
        // We closed a gate the controller has not seen yet.
        assert_eq!(Reading::of(&pdb(computed(1)), 1).room(), 0);
        // A pod of another workload is out: the controller knows.
        assert_eq!(Reading::of(&pdb(computed(0)), 0).room(), 0);
    }

    #[test]
    fn a_budget_not_computed_for_its_spec_allows_nothing() {
        let stale = json!({"observedGeneration": 1, "disruptionsAllowed": 1,
                           "expectedPods": 12, "desiredHealthy": 11});
        let r = Reading::of(&pdb(stale), 0);
        assert_eq!(r.room(), 0);
        assert!(
            r.hold_message().contains("not computed"),
            "{}",
            r.hold_message()
        );
        assert_eq!(Reading::of(&pdb(json!(null)), 0).room(), 0);
    }

    #[test]
    fn selectors_follow_policy_v1() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(selects(&pdb(json!(null)), &labels));
        let mut other = pdb(json!(null));
        if let Some(spec) = other.spec.as_mut() {
            spec.selector = None;
        }
        assert!(!selects(&other, &labels), "no selector: no pods");
    }

    #[test]
    fn claims_last_until_the_cache_shows_the_pod_out() {
        let mut claims = Claims::default();
        claim(&mut claims, "b1", ["p1".to_string(), "p2".to_string()]);
        assert_eq!(pending_claims(&mut claims, "b1", &[]), 2);
        assert_eq!(pending_claims(&mut claims, "b1", &["p1".to_string()]), 1);
        assert_eq!(pending_claims(&mut claims, "b2", &[]), 0);
    }
}
