//! The console's watches: a reflector (or a store of digests) per kind,
//! each in its own task, telling the recomputation what changed and what
//! failed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::lock;
use crate::api::names::CELL_LABEL;
use crate::api::pod::Pod;
use crate::api::{CafeDeployment, InPlaceSet, MemberCluster, ReleaseFreeze};
use crate::plugin::console::page::{PodDigest, SetDigest};

pub(super) struct Stores {
    pub(super) cds: Store<CafeDeployment>,
    pub(super) sets: Digests<SetDigest>,
    pub(super) pods: Digests<PodDigest>,
    pub(super) freezes: Store<ReleaseFreeze>,
    pub(super) members: Store<MemberCluster>,
}

/// What the watch tasks tell the recomputation.
#[derive(Clone, Default)]
pub(super) struct Signals {
    /// Something changed.
    pub(super) changed: Arc<Notify>,
    /// Watch failures by resource ("memberclusters" -> why): shown on the page.
    pub(super) problems: Arc<Mutex<BTreeMap<&'static str, String>>>,
    /// What must be computed again.
    pub(super) dirty: Arc<Mutex<Dirty>>,
}

/// The releases to compute again: every one, or those of these uids (a
/// CafeDeployment's own, or an InPlaceSet's, which stands for its owner's).
#[derive(Default)]
pub(super) struct Dirty {
    pub(super) all: bool,
    pub(super) uids: HashSet<String>,
}

/// How a change to one object touches the releases.
type Touches<K> = fn(&K, &mut Dirty);

/// Objects kept as digests, by uid (a reflector's store, for what the page
/// needs of objects too many to keep whole).
pub(super) type Digests<T> = Arc<Mutex<HashMap<String, Arc<T>>>>;

impl Stores {
    /// Starts every watch of `scope` (a namespace, or all of them).
    pub(super) fn start(client: &Client, scope: Option<&str>, signals: &Signals) -> Stores {
        Stores {
            cds: follow(
                scoped(client, scope),
                watcher::Config::default(),
                (trim_meta, |cd, d| d.uids.extend(cd.metadata.uid.clone())),
                "cafedeployments",
                signals,
            ),
            sets: digest(
                scoped::<InPlaceSet>(client, scope),
                watcher::Config::default().labels(CELL_LABEL),
                (SetDigest::of, |set, d| {
                    d.uids.extend(set.owners.iter().cloned())
                }),
                "inplacesets",
                signals,
            ),
            pods: digest(
                scoped::<Pod>(client, scope),
                watcher::Config::default().labels(CELL_LABEL),
                (PodDigest::of, |pod, d| {
                    d.uids.insert(pod.owner.clone());
                }),
                "pods",
                signals,
            ),
            freezes: follow_all(client, "releasefreezes", signals),
            members: follow_all(client, "memberclusters", signals),
        }
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A reflector on `api` that keeps objects as `trim` leaves them, driven
/// in its own task: every change marks what it `touches` and wakes the
/// recomputation; a failure is recorded until the watch recovers.
fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    (trim, touches): (fn(&mut K), Touches<K>),
    resource: &'static str,
    signals: &Signals,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    <K as Resource>::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let signals = signals.clone();
    let stream = watcher(api, config).default_backoff().modify(trim);
    let stream = reflector::reflector(writer, stream);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let touch = |o: &K| touches(o, &mut lock(&signals.dirty));
            signals.tell(resource, event.as_ref().map_err(short), touch);
        }
    });
    store
}

/// A cluster-wide `follow` whose every change touches every release.
fn follow_all<K>(client: &Client, resource: &'static str, signals: &Signals) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    <K as Resource>::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let touches: Touches<K> = |_, d| d.all = true;
    follow(
        Api::all(client.clone()),
        watcher::Config::default(),
        (trim_meta, touches),
        resource,
        signals,
    )
}

/// Like `follow`, keeping each object's `digest` only.
fn digest<K, T>(
    api: Api<K>,
    config: watcher::Config,
    (digest, touches): (fn(&K) -> T, Touches<T>),
    resource: &'static str,
    signals: &Signals,
) -> Digests<T>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    T: Send + Sync + 'static,
{
    let store: Digests<T> = Arc::default();
    let (kept, signals) = (store.clone(), signals.clone());
    let stream = watcher(api, config).default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        // A relist is gathered here, then replaces the store at once.
        let mut relist: Option<HashMap<String, Arc<T>>> = None;
        let uid = |o: &K| o.meta().uid.clone().unwrap_or_default();
        while let Some(event) = stream.next().await {
            match &event {
                Ok(watcher::Event::Init) => relist = Some(HashMap::new()),
                Ok(watcher::Event::InitApply(o)) => {
                    let d = Arc::new(digest(o));
                    relist.get_or_insert_default().insert(uid(o), d);
                }
                Ok(watcher::Event::InitDone) => {
                    *lock(&kept) = relist.take().unwrap_or_default();
                }
                Ok(watcher::Event::Apply(o)) => {
                    let d = Arc::new(digest(o));
                    touches(&d, &mut lock(&signals.dirty));
                    lock(&kept).insert(uid(o), d);
                }
                Ok(watcher::Event::Delete(o)) => {
                    if let Some(d) = lock(&kept).remove(&uid(o)) {
                        touches(&d, &mut lock(&signals.dirty));
                    }
                }
                Err(_) => {}
            }
            signals.tell(resource, event.as_ref().map_err(short), |_| {});
        }
    });
    store
}

impl Signals {
    /// Records what a watch event means: a failure until the watch
    /// recovers, a relist as everything touched, an object by `touch`;
    /// wakes the recomputation when anything changed.
    fn tell<K>(
        &self,
        resource: &'static str,
        event: Result<&watcher::Event<K>, String>,
        touch: impl FnOnce(&K),
    ) {
        let mut problems = lock(&self.problems);
        let before = problems.remove(resource);
        match &event {
            Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => touch(o),
            // A relist replaced the store: anything may have gone.
            Ok(watcher::Event::InitDone) => lock(&self.dirty).all = true,
            Ok(_) => {}
            Err(why) => {
                problems.insert(resource, format!("cannot watch {resource}: {why}"));
            }
        }
        let now = problems.get(resource).cloned();
        drop(problems);
        if before != now || event.is_ok() {
            self.changed.notify_one();
        }
    }
}

/// What the page does not show is not kept.
fn trim_meta<K: Resource>(o: &mut K) {
    o.managed_fields_mut().clear();
}

/// A watch failure in a few words: the API server's message, if it sent one.
fn short(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => crate::plugin::session::short(e),
        e => e.to_string(),
    }
}
