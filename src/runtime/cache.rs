//! One watch per resource kind for the whole process, shared by every
//! controller (in the spirit of controller-runtime's shared informers):
//!
//! - objects are trimmed to the fields the operator reads before they are
//!   stored ([`trim`]); pods are read as [`Pod`], which holds those fields
//!   only, so 10,000 pods cost tens of MiB, not hundreds;
//! - one store per kind, read by every controller; pods are indexed by their
//!   owning InPlaceSet, so a reconcile touches its own pods only;
//! - every change — deletions included — is fanned out to each subscriber as
//!   the stored `Arc`, never a copy.
//!
//! A relist (after the watch expired, or an API server restart) swaps the
//! store in one step and fans out every object, and, as deletions, the
//! objects the relist no longer shows.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod as FullPod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;

use super::health::{CacheSync, Health};
use super::scoped_api;
use crate::api::names::{CAFEDEPLOYMENT_UID_LABEL, REVISION_LABEL};
use crate::api::pod::Pod;
use crate::api::{CafeDeployment, InPlaceSet};

type Subscribers<K> = Arc<Mutex<Vec<UnboundedSender<Arc<K>>>>>;

/// A watched kind: its store, whether it has listed, and its subscribers.
pub struct Shared<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub store: Store<K>,
    pub synced: CacheSync,
    subscribers: Subscribers<K>,
}

impl<K> Clone for Shared<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            synced: self.synced.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<K> Shared<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// Every change from now on (creations, updates, deletions), as stored.
    /// Subscribe before the watch is driven, or the first list is missed.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + use<K>
    where
        K: Send + Sync,
    {
        let (tx, rx) = unbounded();
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push(tx);
        }
        rx
    }
}

/// Starts a shared watch of `api`: returns the handle controllers read and
/// subscribe through, and the future that drives the watch (run it until
/// shutdown). `trim` strips each object before it is stored; `observe` sees
/// every watch event first (to keep an index).
pub fn watch<K, O>(
    health: &Health,
    name: &'static str,
    (api, config): (Api<K>, watcher::Config),
    lag: Duration,
    trim: fn(&mut K),
    mut observe: O,
) -> (Shared<K>, impl Future<Output = ()> + Send + use<K, O>)
where
    O: FnMut(&watcher::Event<K>) + Send + 'static,
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let outages = health.clone();
    // The index is kept in the same step as the store, before the cache
    // reports itself synced: a reconcile must never see a full store and an
    // empty index (it would create every pod again).
    let events = watch_events(api, config, lag)
        .modify(trim)
        .reflect(writer)
        .map(move |event| {
            match &event {
                Ok(e) => observe(e),
                // An expired watch (410) is an ordinary relist; anything
                // else is the API server out of reach.
                Err(watcher::Error::WatchError(_)) => {}
                Err(_) => outages.watch_failed(k8s_openapi::jiff::Timestamp::now().as_second()),
            }
            event
        });
    let (events, synced) = health.track_synced(name, events);
    let subscribers: Subscribers<K> = Arc::default();
    let shared = Shared {
        store: store.clone(),
        synced,
        subscribers: subscribers.clone(),
    };
    let drive = async move {
        let mut events = std::pin::pin!(events);
        // What the store held when a relist began: what it no longer shows
        // afterwards was deleted meanwhile.
        let mut before_relist: Vec<Arc<K>> = Vec::new();
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            let changed: Vec<Arc<K>> = match &event {
                watcher::Event::Apply(o) => vec![
                    store
                        .get(&ObjectRef::from_obj(o))
                        .unwrap_or_else(|| Arc::new(o.clone())),
                ],
                watcher::Event::Delete(o) => vec![Arc::new(o.clone())],
                watcher::Event::Init => {
                    before_relist = store.state();
                    continue;
                }
                watcher::Event::InitApply(_) => continue,
                watcher::Event::InitDone => {
                    let now = store.state();
                    let kept: HashSet<ObjectRef<K>> =
                        now.iter().map(|o| ObjectRef::from_obj(&**o)).collect();
                    let gone = std::mem::take(&mut before_relist)
                        .into_iter()
                        .filter(|o| !kept.contains(&ObjectRef::from_obj(&**o)));
                    now.iter().cloned().chain(gone).collect()
                }
            };
            if let Ok(mut subscribers) = subscribers.lock() {
                subscribers
                    .retain(|tx| changed.iter().all(|o| tx.unbounded_send(o.clone()).is_ok()));
            }
        }
    };
    (shared, drive)
}

/// A watch of `api` as every watch of the operator runs: with kube's
/// backoff, and its events `lag` late (tests only; zero in production).
pub fn watch_events<K>(
    api: Api<K>,
    config: watcher::Config,
    lag: Duration,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + use<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    lagged(watcher(api, config).default_backoff(), lag)
}

/// Every event of `events`, in order, `lag` after it arrived (none: as
/// they come). For tests only (`--debug-watch-lag-ms`): the watch of an API
/// server under load, whose events reach the caches well after the
/// responses to the operator's own writes.
fn lagged<S>(events: S, lag: Duration) -> impl Stream<Item = S::Item> + Send
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    if lag.is_zero() {
        return events.left_stream();
    }
    let (tx, rx) = unbounded();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if tx
                .unbounded_send((tokio::time::Instant::now() + lag, event))
                .is_err()
            {
                return;
            }
        }
    });
    rx.then(|(due, event)| async move {
        tokio::time::sleep_until(due).await;
        event
    })
    .right_stream()
}

/// Pods by the uid of their controlling owner (an InPlaceSet), so a
/// reconcile reads its own pods without scanning all of them. Names only:
/// the pods themselves live in the store once.
#[derive(Clone, Default)]
pub struct OwnerIndex {
    inner: Arc<RwLock<OwnerIndexInner>>,
}

#[derive(Default)]
struct OwnerIndexInner {
    by_owner: HashMap<String, HashSet<String>>,
    /// Built during a relist, swapped in when it completes.
    relist: Option<HashMap<String, HashSet<String>>>,
}

fn controller_uid<K: Resource>(o: &K) -> Option<&str> {
    o.meta()
        .owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

impl OwnerIndex {
    /// Keeps the index in step with the watch of `K`.
    pub fn observe<K: Resource>(&self, event: &watcher::Event<K>) {
        let Ok(mut index) = self.inner.write() else {
            return;
        };
        let name = |o: &K| o.meta().name.clone().unwrap_or_default();
        match event {
            watcher::Event::Init => index.relist = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                if let (Some(uid), Some(relist)) = (controller_uid(o), index.relist.as_mut()) {
                    relist.entry(uid.to_string()).or_default().insert(name(o));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = index.relist.take() {
                    index.by_owner = relist;
                }
            }
            watcher::Event::Apply(o) => {
                if let Some(uid) = controller_uid(o) {
                    index
                        .by_owner
                        .entry(uid.to_string())
                        .or_default()
                        .insert(name(o));
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(uid) = controller_uid(o)
                    && let Some(names) = index.by_owner.get_mut(uid)
                {
                    names.remove(&name(o));
                    if names.is_empty() {
                        index.by_owner.remove(uid);
                    }
                }
            }
        }
    }

    /// `observe` as a watch's observer.
    pub fn indexer<K: Resource>(&self) -> impl FnMut(&watcher::Event<K>) + Send + 'static + use<K> {
        let index = self.clone();
        move |event| index.observe(event)
    }

    /// The objects in `store` controlled by `uid` in `namespace`. An entry
    /// whose object is gone or no longer owned is skipped.
    pub fn owned<K>(&self, store: &Store<K>, namespace: &str, uid: &str) -> Vec<Arc<K>>
    where
        K: Resource + Clone + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let names: Vec<String> = self
            .inner
            .read()
            .ok()
            .and_then(|i| i.by_owner.get(uid).map(|n| n.iter().cloned().collect()))
            .unwrap_or_default();
        names
            .into_iter()
            .filter_map(|n| store.get(&ObjectRef::new(&n).within(namespace)))
            .filter(|o| controller_uid(&**o) == Some(uid))
            .collect()
    }
}

/// The process's watches of one scope (a namespace, or all of them).
#[derive(Clone)]
pub struct Caches {
    /// Pods the operator made (they carry the revision label).
    pub pods: Shared<Pod>,
    /// Pods by owning InPlaceSet.
    pub pods_by_set: OwnerIndex,
    pub services: Shared<Service>,
    /// PodDisruptionBudgets: in-place updates honour them too.
    pub disruption_budgets: Shared<PodDisruptionBudget>,
    pub sets: Shared<InPlaceSet>,
    /// InPlaceSets by owning CafeDeployment.
    pub sets_by_owner: OwnerIndex,
    pub cafedeployments: Shared<CafeDeployment>,
    /// ControllerRevisions of CafeDeployments.
    pub revisions: Shared<ControllerRevision>,
    /// ControllerRevisions by owning CafeDeployment.
    pub revisions_by_owner: OwnerIndex,
    /// The pods that pre-download a release's images onto a node (few, short-lived).
    pub pulls: Shared<FullPod>,
    /// How late every watch event is delivered (tests only; zero in
    /// production): for the watches a controller runs itself too.
    pub lag: Duration,
}

impl Caches {
    /// The watches of `namespace` (all when `None`), and the future that
    /// drives them all. Subscribe before driving it.
    /// `lag` delays every watch event (tests only; zero in production).
    pub fn start(
        client: &Client,
        namespace: Option<&str>,
        health: &Health,
        lag: Duration,
    ) -> (Self, impl Future<Output = ()> + Send + use<>) {
        let scope = Scope {
            client,
            namespace,
            health,
            lag,
        };
        let pods_by_set = OwnerIndex::default();
        let sets_by_owner = OwnerIndex::default();
        let revisions_by_owner = OwnerIndex::default();
        let (pods, drive_pods) = scope.watch(
            "pods",
            watcher::Config::default().labels(REVISION_LABEL),
            trim::meta,
            pods_by_set.indexer(),
        );
        let (services, drive_services) = scope.watch(
            "services",
            watcher::Config::default(),
            trim::service,
            |_: &watcher::Event<Service>| {},
        );
        let (disruption_budgets, drive_budgets) = scope.watch(
            "poddisruptionbudgets",
            watcher::Config::default(),
            trim::meta,
            |_: &watcher::Event<PodDisruptionBudget>| {},
        );
        let (sets, drive_sets) = scope.watch(
            "inplacesets",
            watcher::Config::default(),
            trim::meta,
            sets_by_owner.indexer(),
        );
        let (cafedeployments, drive_cds) = scope.watch(
            "cafedeployments",
            watcher::Config::default(),
            trim::meta,
            |_: &watcher::Event<CafeDeployment>| {},
        );
        let (revisions, drive_revisions) = scope.watch(
            "controllerrevisions",
            watcher::Config::default().labels(CAFEDEPLOYMENT_UID_LABEL),
            trim::meta,
            revisions_by_owner.indexer(),
        );
        let (pulls, drive_pulls) = scope.watch(
            "pulls",
            watcher::Config::default().labels(crate::api::names::PULL_LABEL),
            trim::meta,
            |_: &watcher::Event<FullPod>| {},
        );
        let drive = async move {
            tokio::join!(
                drive_pulls,
                drive_pods,
                drive_services,
                drive_budgets,
                drive_sets,
                drive_cds,
                drive_revisions
            );
        };
        let caches = Self {
            pods,
            pods_by_set,
            services,
            disruption_budgets,
            sets,
            sets_by_owner,
            cafedeployments,
            revisions,
            revisions_by_owner,
            pulls,
            lag,
        };
        (caches, drive)
    }
}

/// Where the caches watch: through which client, in which namespace (all
/// when `None`), reporting to which health, with which delay (tests only).
struct Scope<'a> {
    client: &'a Client,
    namespace: Option<&'a str>,
    health: &'a Health,
    lag: Duration,
}

impl Scope<'_> {
    /// Starts the shared watch `name` of the kind `K` in this scope, as [`watch`].
    fn watch<K, O>(
        &self,
        name: &'static str,
        config: watcher::Config,
        trim: fn(&mut K),
        observe: O,
    ) -> (Shared<K>, impl Future<Output = ()> + Send + use<K, O>)
    where
        O: FnMut(&watcher::Event<K>) + Send + 'static,
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + Send + Sync + 'static,
        K: serde::de::DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    {
        watch(
            self.health,
            name,
            (scoped_api(self.client, self.namespace), config),
            self.lag,
            trim,
            observe,
        )
    }
}

/// What a reconcile reads of each kind, and nothing more.
pub mod trim {
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};
    use kube::Resource;

    /// kubectl's copy of the whole object, and the field owners: never read.
    pub fn meta<K: Resource>(o: &mut K) {
        let meta = o.meta_mut();
        meta.managed_fields = None;
        if let Some(a) = meta.annotations.as_mut() {
            a.remove(crate::api::names::LAST_APPLIED_ANNOTATION);
        }
    }

    /// A Service: its selector and whether it publishes not-ready addresses.
    pub fn service(s: &mut Service) {
        meta(s);
        if let Some(spec) = s.spec.take() {
            s.spec = Some(ServiceSpec {
                selector: spec.selector,
                publish_not_ready_addresses: spec.publish_not_ready_addresses,
                ..ServiceSpec::default()
            });
        }
        s.status = None;
    }
}

#[cfg(test)]
mod tests;
