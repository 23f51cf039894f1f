//! What the InPlaceSet controller keeps between reconciles: the caches it
//! reads and what it remembers of its own writes (creations the cache has not
//! shown, pods written to, drains under way, refusals, budget claims).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use super::lifecycle::{self, PodFacts};
use super::{disruption, pods};
use crate::api::InPlaceSet;
use crate::api::pod::Pod;
use crate::runtime::Telemetry;
use crate::runtime::cache::OwnerIndex;
use crate::runtime::health::CacheSync;
use crate::runtime::writes::backoff::Backoff;
use crate::runtime::writes::own_writes::OwnWrites;
use crate::runtime::writes::refusals::Refusals;
use crate::runtime::writes::status::StatusWriter;

/// How long a created pod may be missing from the watch cache before it is
/// assumed lost (and created again).
const CREATION_EXPECTATION: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Context {
    pub(super) client: Client,
    pub(super) telemetry: Telemetry,
    pub(super) pods: Store<Pod>,
    /// The pods that pre-download images onto a node, and the image they run.
    pub(super) pulls: Store<k8s_openapi::api::core::v1::Pod>,
    pub(super) pull_image: String,
    /// The pods of each set, by its uid.
    pub(super) pods_by_set: OwnerIndex,
    /// Whether `pods` has listed once (a reconcile must not plan from an empty cache).
    pub(super) pods_synced: CacheSync,
    /// The set's status, written only when it changed.
    pub(super) status: StatusWriter,
    pub(super) services: Store<Service>,
    pub(super) services_synced: CacheSync,
    /// PodDisruptionBudgets, and the pods this process took out of traffic
    /// under them that the cache may not show yet.
    pub(super) budgets: Store<PodDisruptionBudget>,
    pub(super) budgets_synced: CacheSync,
    pub(super) ledger: disruption::Ledger,
    /// Every set, to count the pods a budget selects in other cells too.
    pub(super) sets: Store<InPlaceSet>,
    pub(super) recorder: Recorder,
    /// Pods created per set (by uid) that the watch cache has not shown yet:
    /// without this, a fast second reconcile would create them again.
    pub(super) created: Mutex<HashMap<String, Vec<(String, Instant)>>>,
    /// Consecutive failures per set, for the error backoff.
    pub(super) backoff: Backoff<ObjectRef<InPlaceSet>>,
    /// Per set (by uid): the API server refused its last creation; no pod
    /// is created again before the hold-off ends, whatever event wakes the set.
    pub(super) refusals: Refusals<String>,
    /// Pods written to: until the cache shows our write, the pod is not acted
    /// on again (the gate would be written twice).
    pub(super) acted_on: OwnWrites,
    /// Per set (by uid), when each of its drained pods (by name) was first
    /// seen drained, in unix milliseconds: the settle time runs from there.
    /// Lost on restart, so a new leader waits it again.
    pub(super) drained: Mutex<HashMap<String, HashMap<String, i64>>>,
}

pub(super) fn now() -> (i64, Time) {
    let ts = k8s_openapi::jiff::Timestamp::now();
    (ts.as_second(), Time(ts))
}

impl Context {
    /// Pods created earlier that the cache does not show yet.
    pub(super) fn pending_creations(&self, uid: &str, seen: &[Arc<Pod>]) -> usize {
        let Ok(mut created) = self.created.lock() else {
            return 0;
        };
        let entry = created.entry(uid.to_string()).or_default();
        entry.retain(|(name, at)| {
            at.elapsed() < CREATION_EXPECTATION && !seen.iter().any(|p| p.name_any() == *name)
        });
        entry.len()
    }

    pub(super) fn creation_failed(&self, uid: &str, name: &str) {
        if let Ok(mut created) = self.created.lock()
            && let Some(entry) = created.get_mut(uid)
        {
            entry.retain(|(n, _)| n != name);
        }
    }

    /// Fills in how long each drained pod of set `uid` has been seen
    /// drained, at `now_ms` (unix milliseconds); pods no longer drained (or
    /// gone) are forgotten.
    pub(super) fn note_drained(&self, uid: &str, facts: &mut [PodFacts], now_ms: i64) {
        let Ok(mut drained) = self.drained.lock() else {
            return;
        };
        let before = drained.remove(uid).unwrap_or_default();
        let now_drained = lifecycle::drained_clock(&before, facts, now_ms);
        if !now_drained.is_empty() {
            drained.insert(uid.to_string(), now_drained);
        }
    }

    /// The uids of our pods that `budget` selects and that are out of
    /// traffic: the pods of every set in `namespace` whose template the
    /// budget selects (O(pods under the budget), only when one exists).
    pub(super) fn out_of_traffic_under(
        &self,
        budget: &PodDisruptionBudget,
        namespace: &str,
    ) -> Vec<String> {
        self.sets
            .state()
            .into_iter()
            .filter(|s| s.namespace().as_deref() == Some(namespace))
            .filter(|s| disruption::selects(budget, s.spec.template.labels()))
            .flat_map(|s| {
                let uid = s.uid().unwrap_or_default();
                self.pods_by_set.owned(&self.pods, namespace, &uid)
            })
            .filter(|p| disruption::out_of_traffic(&pods::facts(p)))
            .filter_map(|p| p.uid())
            .collect()
    }

    pub(super) fn expect_created(&self, uid: &str, name: String) {
        if let Ok(mut created) = self.created.lock() {
            created
                .entry(uid.to_string())
                .or_default()
                .push((name, Instant::now()));
        }
    }

    pub(super) async fn event(
        &self,
        set: &InPlaceSet,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        crate::runtime::publish_event(&self.recorder, &set.object_ref(&()), type_, reason, note)
            .await;
    }
}
