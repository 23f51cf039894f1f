//! The console's live state: watches (with the person's credentials) on
//! CafeDeployments, InPlaceSets, their pods, ReleaseFreezes and
//! MemberClusters; on a change, the page's documents are computed again and
//! only those that changed are sent to the open pages.
//!
//! Nothing runs while nothing changes: a change wakes one recomputation
//! (changes within 150 ms are taken together) of the releases it touched
//! (a pod's or a set's CafeDeployment; every release for a freeze, a member
//! cluster or a relist); a document found as it was sent is not sent. What the person may do is asked
//! for every namespace the first time it is seen, and again every 30 s (a
//! recomputation follows only when an answer changed).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, broadcast};

use super::page::{self, PodDigest, Rights, SetDigest, World};
use super::rights;
use crate::api::names::CELL_LABEL;
use crate::api::pod::Pod;
use crate::api::{CafeDeployment, InPlaceSet, MemberCluster, ReleaseFreeze};

/// One Server-Sent Event: its name and its JSON.
#[derive(Debug)]
pub struct Message {
    pub event: &'static str,
    pub data: String,
}

/// What changed, told to every open page. The page's stream reads the
/// document itself from what was last sent: the channel holds no documents,
/// so a burst of changes costs a few bytes each and a page that fell behind
/// is sent the latest of everything, never stale versions.
#[derive(Clone, Debug)]
pub enum Change {
    Global,
    Problem,
    Release(String),
    Gone(String),
}

/// What was last sent, for a page that connects now.
#[derive(Default)]
struct Published {
    global: Option<Arc<Message>>,
    releases: BTreeMap<String, Arc<Message>>,
    problem: Option<Arc<Message>>,
}

/// The live state; cheap to share.
pub struct Live {
    who: Option<String>,
    sent: Arc<Mutex<Published>>,
    tx: broadcast::Sender<Change>,
}

struct Stores {
    cds: Store<CafeDeployment>,
    sets: Digests<SetDigest>,
    pods: Digests<PodDigest>,
    freezes: Store<ReleaseFreeze>,
    members: Store<MemberCluster>,
}

/// What the watch tasks tell the recomputation.
#[derive(Clone, Default)]
struct Signals {
    /// Something changed.
    changed: Arc<Notify>,
    /// Watch failures by resource ("memberclusters" -> why): shown on the page.
    problems: Arc<Mutex<BTreeMap<&'static str, String>>>,
    /// What must be computed again.
    dirty: Arc<Mutex<Dirty>>,
}

/// The releases to compute again: every one, or those of these uids (a
/// CafeDeployment's own, or an InPlaceSet's, which stands for its owner's).
#[derive(Default)]
struct Dirty {
    all: bool,
    uids: HashSet<String>,
}

/// How a change to one object touches the releases.
type Touches<K> = fn(&K, &mut Dirty);

/// Objects kept as digests, by uid (a reflector's store, for what the page
/// needs of objects too many to keep whole).
type Digests<T> = Arc<Mutex<HashMap<String, Arc<T>>>>;

impl Live {
    pub fn start(
        client: Client,
        scope: Option<String>,
        who: Option<String>,
        read_only: bool,
    ) -> Live {
        let signals = Signals::default();
        lock(&signals.dirty).all = true;
        let stores = Stores {
            cds: follow(
                scoped(&client, scope.as_deref()),
                watcher::Config::default(),
                (trim_meta, |cd, d| d.uids.extend(cd.metadata.uid.clone())),
                "cafedeployments",
                &signals,
            ),
            sets: digest(
                scoped::<InPlaceSet>(&client, scope.as_deref()),
                watcher::Config::default().labels(CELL_LABEL),
                (SetDigest::of, |set, d| {
                    d.uids.extend(set.owners.iter().cloned())
                }),
                "inplacesets",
                &signals,
            ),
            pods: digest(
                scoped::<Pod>(&client, scope.as_deref()),
                watcher::Config::default().labels(CELL_LABEL),
                (PodDigest::of, |pod, d| {
                    d.uids.insert(pod.owner.clone());
                }),
                "pods",
                &signals,
            ),
            freezes: follow(
                Api::all(client.clone()),
                watcher::Config::default(),
                (trim_meta, |_, d| d.all = true),
                "releasefreezes",
                &signals,
            ),
            members: follow(
                Api::all(client.clone()),
                watcher::Config::default(),
                (trim_meta, |_, d| d.all = true),
                "memberclusters",
                &signals,
            ),
        };
        let (tx, _) = broadcast::channel(256);
        let live = Live {
            who: who.clone(),
            sent: Arc::default(),
            tx,
        };
        let rights = Rights {
            who,
            read_only,
            ..Rights::default()
        };
        tokio::spawn(publish(
            client,
            stores,
            rights,
            signals,
            live.sent.clone(),
            live.tx.clone(),
        ));
        live
    }

    /// Who the API server says the person is.
    pub fn who(&self) -> Option<&str> {
        self.who.as_deref()
    }

    /// The changes from now on. Subscribe before reading `everything`: a
    /// change in between is then told twice, never missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// Everything as last sent.
    pub fn everything(&self) -> Vec<Arc<Message>> {
        let sent = lock(&self.sent);
        sent.global
            .iter()
            .chain(sent.problem.iter())
            .chain(sent.releases.values())
            .cloned()
            .collect()
    }

    /// The document a change announces, as it is now (None: changed again
    /// since, and that change is on its way).
    pub fn latest(&self, change: &Change) -> Option<Arc<Message>> {
        let sent = lock(&self.sent);
        match change {
            Change::Global => sent.global.clone(),
            Change::Problem => sent.problem.clone(),
            Change::Release(key) => sent.releases.get(key).cloned(),
            Change::Gone(key) => (!sent.releases.contains_key(key)).then(|| {
                Arc::new(Message {
                    event: "gone",
                    data: json(&serde_json::json!({"key": key})),
                })
            }),
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

/// The recomputation loop: one pass per burst of changes, and every 30 s
/// to ask about rights again.
async fn publish(
    client: Client,
    stores: Stores,
    mut rights: Rights,
    signals: Signals,
    sent: Arc<Mutex<Published>>,
    tx: broadcast::Sender<Change>,
) {
    rights = ask_again(&client, &rights).await;
    let mut asked = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = signals.changed.notified() => tokio::time::sleep(Duration::from_millis(150)).await,
            () = tokio::time::sleep_until(asked + Duration::from_secs(30)) => {
                asked = tokio::time::Instant::now();
                let fresh = ask_again(&client, &rights).await;
                if fresh == rights {
                    continue;
                }
                rights = fresh;
                lock(&signals.dirty).all = true;
            }
        }
        let cds = stores.cds.state();
        // Namespaces seen for the first time: may the person operate there?
        let unasked: BTreeSet<String> = cds
            .iter()
            .filter_map(|c| c.namespace())
            .filter(|ns| !rights.operate.contains_key(ns))
            .collect();
        if !unasked.is_empty() {
            lock(&signals.dirty).all = true;
        }
        for ns in unasked {
            let may = rights::may(&client, "patch", "cafedeployments", Some(&ns)).await;
            rights.operate.insert(ns, may);
        }
        let (sets, pods) = (values(&stores.sets), values(&stores.pods));
        let (freezes, members) = (stores.freezes.state(), stores.members.state());
        let dirty = std::mem::take(&mut *lock(&signals.dirty));
        let only = (!dirty.all).then(|| owners(&dirty.uids, &sets));
        let world = World {
            cds: &cds,
            sets: &sets,
            pods: &pods,
            freezes: &freezes,
            members: &members,
            rights: &rights,
        };
        let releases = page::releases(&world, only.as_ref());
        let global = page::global(&world);
        let problem = lock(&signals.problems)
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        let keys: HashSet<String> = cds.iter().map(|c| page::key(c)).collect();
        let mut sent = lock(&sent);
        // A document is kept and announced only when it differs from the last sent.
        let send = |slot: &mut Option<Arc<Message>>, event, data: String, change| {
            if slot.as_ref().is_none_or(|m| m.data != data) {
                *slot = Some(Arc::new(Message { event, data }));
                let _ = tx.send(change);
            }
        };
        send(&mut sent.global, "global", json(&global), Change::Global);
        send(
            &mut sent.problem,
            "problem",
            json(&serde_json::json!({"message": problem})),
            Change::Problem,
        );
        let gone: Vec<String> = sent
            .releases
            .keys()
            .filter(|k| !keys.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            sent.releases.remove(&key);
            let _ = tx.send(Change::Gone(key));
        }
        for (key, release) in releases {
            let mut slot = sent.releases.remove(&key);
            send(
                &mut slot,
                "release",
                json(&release),
                Change::Release(key.clone()),
            );
            if let Some(m) = slot {
                sent.releases.insert(key, m);
            }
        }
    }
}

/// The CafeDeployments `uids` stand for: a set's uid for its owner's.
fn owners(uids: &HashSet<String>, sets: &[Arc<SetDigest>]) -> HashSet<String> {
    let mut out = uids.clone();
    for set in sets {
        if uids.contains(&set.uid) {
            out.extend(set.owners.iter().cloned());
        }
    }
    out
}

fn values<T>(digests: &Digests<T>) -> Vec<Arc<T>> {
    lock(digests).values().cloned().collect()
}

/// Every right asked again: the cluster-wide ones and those of every
/// namespace seen so far.
async fn ask_again(client: &Client, known: &Rights) -> Rights {
    let mut fresh = Rights {
        freeze: rights::may(client, "create", "releasefreezes", None).await,
        thaw: rights::may(client, "patch", "releasefreezes", None).await,
        operate: BTreeMap::new(),
        ..known.clone()
    };
    for ns in known.operate.keys() {
        let may = rights::may(client, "patch", "cafedeployments", Some(ns)).await;
        fresh.operate.insert(ns.clone(), may);
    }
    fresh
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests;
