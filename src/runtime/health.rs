//! What `/healthz` and `/readyz` answer.
//!
//! Live: the process serves HTTP (its runtime is not wedged). Ready: a standby
//! replica waiting for the leader Lease is ready (it has nothing to sync, and a
//! rolling update of the operator must not wait for it); the leader is ready
//! once every watch cache it started has listed its objects once.

use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::watcher;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Connecting, before leader election or the controllers start.
    Starting,
    /// Waiting for the leader Lease.
    Standby,
    /// Running the controllers.
    Leading,
}

#[derive(Debug)]
struct State {
    role: Role,
    /// This process's name among operators (its leader-election identity),
    /// and how long it leaves an object another operator writes too.
    identity: String,
    stand_down: std::time::Duration,
    /// Caches started by the controllers, and whether each has synced.
    caches: Vec<(&'static str, bool)>,
    /// When a watch last lost its API server (epoch seconds), and how long the
    /// cluster's own agents may take to catch up after such an outage.
    outage: Outage,
}

/// After the API server was out of reach, the operator's caches are current
/// again within a second, but the nodes' agents (kube-proxy, which routes by
/// the EndpointSlices it last saw) reconnect with client-go's backoff, up to
/// a minute later. Until then a pod the API shows drained may still receive
/// new connections, so no drained pod is changed before `catch_up` has passed
/// since the last failed watch.
#[derive(Clone, Copy, Debug, Default)]
struct Outage {
    last_failure: Option<i64>,
    catch_up: i64,
}

/// Shared by the controllers (which register their caches) and the probe endpoint.
#[derive(Clone, Debug)]
pub struct Health(Arc<Mutex<State>>);

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(State {
            role: Role::Starting,
            identity: crate::runtime::leader::default_identity(),
            stand_down: crate::runtime::writes::writers::STAND_DOWN,
            caches: Vec::new(),
            outage: Outage::default(),
        })))
    }
}

impl Health {
    pub fn set_role(&self, role: Role) {
        if let Ok(mut s) = self.0.lock() {
            s.role = role;
        }
    }

    /// Names this process among operators (`--leader-election-identity`),
    /// and sets how long it leaves an object another operator writes too.
    pub fn set_identity(&self, identity: Option<String>, stand_down: std::time::Duration) {
        if let Ok(mut s) = self.0.lock() {
            if let Some(identity) = identity {
                s.identity = identity;
            }
            s.stand_down = stand_down;
        }
    }

    /// How long this process leaves an object another operator writes too.
    pub fn stand_down(&self) -> std::time::Duration {
        self.0
            .lock()
            .map(|s| s.stand_down)
            .unwrap_or(crate::runtime::writes::writers::STAND_DOWN)
    }

    /// This process's name among operators.
    pub fn identity(&self) -> String {
        self.0
            .lock()
            .map(|s| s.identity.clone())
            .unwrap_or_default()
    }

    /// Whether this process runs the controllers (it holds the leader Lease,
    /// or runs without leader election).
    pub fn leading(&self) -> bool {
        self.0.lock().is_ok_and(|s| s.role == Role::Leading)
    }

    /// How long the nodes' agents may take to catch up after an outage of
    /// the API server (`--catch-up-after-outage-seconds`).
    pub fn set_outage_catch_up(&self, seconds: i64) {
        if let Ok(mut s) = self.0.lock() {
            s.outage.catch_up = seconds;
        }
    }

    /// A watch could not reach the API server (not an expired watch: a
    /// failed connection, list or stream).
    pub fn watch_failed(&self, now: i64) {
        if let Ok(mut s) = self.0.lock() {
            s.outage.last_failure = Some(now);
        }
    }

    /// Until when (epoch seconds) no drained pod may be changed: the last
    /// outage plus the catch-up time (0: no outage seen).
    pub fn changes_held_until(&self) -> i64 {
        self.0
            .lock()
            .ok()
            .and_then(|s| s.outage.last_failure.map(|at| at + s.outage.catch_up))
            .unwrap_or(0)
    }

    /// Counts the watch stream `events` as a cache that must sync (list its
    /// objects once) before the operator is ready, and passes it through.
    pub fn track<K, E, S>(
        &self,
        name: &'static str,
        events: S,
    ) -> impl Stream<Item = Result<watcher::Event<K>, E>> + use<K, E, S>
    where
        S: Stream<Item = Result<watcher::Event<K>, E>>,
    {
        self.track_synced(name, events).0
    }

    /// Like `track`, and also returns a handle any number of tasks can await
    /// until the cache has synced.
    ///
    /// The stream is observed rather than the reflector store awaited: a
    /// store's `wait_until_ready` wakes only the last of several concurrent
    /// waiters (it is a oneshot receiver), so concurrent reconciles waiting
    /// on it would hang.
    pub fn track_synced<K, E, S>(
        &self,
        name: &'static str,
        events: S,
    ) -> (
        impl Stream<Item = Result<watcher::Event<K>, E>> + use<K, E, S>,
        CacheSync,
    )
    where
        S: Stream<Item = Result<watcher::Event<K>, E>>,
    {
        let index = self.0.lock().ok().map(|mut s| {
            s.caches.push((name, false));
            s.caches.len() - 1
        });
        let state = self.0.clone();
        let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
        let events = events.inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                synced_tx.send_replace(true);
                if let (Some(i), Ok(mut s)) = (index, state.lock()) {
                    s.caches[i].1 = true;
                }
            }
        });
        (events, CacheSync(synced_rx))
    }

    /// `Ok(why)` when ready, `Err(why not)` otherwise.
    pub fn ready(&self) -> Result<String, String> {
        let Ok(s) = self.0.lock() else {
            return Err("health state unavailable".to_string());
        };
        readiness(s.role, &s.caches)
    }
}

/// Resolves once a tracked cache has listed its objects; cheap to clone and
/// to await from many tasks at once.
#[derive(Clone, Debug)]
pub struct CacheSync(tokio::sync::watch::Receiver<bool>);

impl CacheSync {
    /// A cache there is nothing to list for (a kind that is not installed).
    pub fn already() -> Self {
        Self(tokio::sync::watch::channel(true).1)
    }

    pub fn is_synced(&self) -> bool {
        *self.0.borrow()
    }

    /// `Err` if the watch stream was dropped before it ever synced.
    pub async fn wait(&self) -> Result<(), ()> {
        let mut rx = self.0.clone();
        rx.wait_for(|synced| *synced)
            .await
            .map(|_| ())
            .map_err(|_| ())
    }
}

/// The readiness decision, pure.
pub fn readiness(role: Role, caches: &[(&'static str, bool)]) -> Result<String, String> {
    match role {
        Role::Starting => Err("starting: connecting to the API server".to_string()),
        Role::Standby => Ok("standby: waiting for the leader Lease".to_string()),
        Role::Leading => {
            let waiting: Vec<&str> = caches
                .iter()
                .filter(|(_, synced)| !synced)
                .map(|(name, _)| *name)
                .collect();
            if caches.is_empty() {
                Err("leading: the controllers have not started their caches yet".to_string())
            } else if waiting.is_empty() {
                Ok(format!("leading: {} caches synced", caches.len()))
            } else {
                Err(format!(
                    "leading: waiting for caches to sync: {}",
                    waiting.join(", ")
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_ready_only_when_every_cache_synced() {
        assert!(readiness(Role::Starting, &[]).is_err());
        assert!(readiness(Role::Standby, &[]).is_ok());
        assert!(readiness(Role::Leading, &[]).is_err());
        let err = readiness(Role::Leading, &[("pods", true), ("inplacesets", false)]).unwrap_err();
        assert!(
            err.contains("inplacesets") && !err.contains("pods"),
            "{err}"
        );
        assert!(readiness(Role::Leading, &[("pods", true), ("inplacesets", true)]).is_ok());
    }
}
