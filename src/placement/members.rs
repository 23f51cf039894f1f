//! The registry of member clusters, as the host sees them: for each
//! registered MemberCluster a [`Member`], with a client built from its
//! kubeconfig Secret, a cache of the InPlaceSets hosts wrote there, and its
//! reachability ([`Reach`]). The MemberCluster controller
//! (`crate::membercluster`) keeps each member; the CafeDeployment controller
//! reads them through [`Members`] and [`super::homes`]. A member that has not
//! answered for `unreachableAfterSeconds` reads Unknown; its cache keeps what
//! it last showed (the member keeps serving on its own).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::Stream;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::holdoff::{self, Held, HoldOff};
pub(crate) use super::silence::credential_rejected;
use super::silence::{Heard, second, silent};
use crate::api::names::{CAFEDEPLOYMENT_NAME_ANNOTATION, CAFEDEPLOYMENT_UID_LABEL};
use crate::api::{CafeDeployment, InPlaceSet, MemberCluster, SecretKeyRef};
use crate::runtime::client::ApiCounters;
use crate::runtime::health::CacheSync;
use crate::runtime::metrics::MemberReading;

/// How long a probe or a write to a member may take.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(4);

/// Whether a member may be trusted now, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    pub reachable: bool,
    /// Why it is not (empty when it is).
    pub why: String,
    pub last_contact: Option<Time>,
}

/// A connection to a member: a client and the cache of its InPlaceSets.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) counters: ApiCounters,
    pub(crate) sets: Store<InPlaceSet>,
    /// The Secret's resourceVersion the client was built from.
    pub(crate) secret_version: String,
    /// The Secret key the client's credential comes from (a 401 names it).
    pub(crate) source: SecretKeyRef,
    pub(crate) watch: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) conn: Option<Arc<Conn>>,
    /// The cache listed once since this connection was built.
    pub(crate) synced: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) contact: Option<(Instant, Time)>,
    /// The last contact the MemberCluster's status recorded when this
    /// operator began keeping the member (an operator started during an
    /// outage says since when the member is silent).
    pub(crate) recorded_contact: Option<Time>,
    /// When this operator began trying to reach the member.
    pub(crate) trying_since: Option<Time>,
    /// A problem contact cannot cure by itself: (reason, message).
    pub(crate) problem: Option<(&'static str, String)>,
    /// The last transport error.
    pub(crate) error: Option<String>,
    /// The InPlaceSet watch failing since (a watch error; cleared when it
    /// has listed again): its cache keeps what it last showed meanwhile.
    pub(crate) watch_failed: Option<(Instant, Time, String)>,
    pub(crate) versions: Vec<String>,
    pub(crate) unreachable_after: Duration,
    /// Writes toward the member after its connection failed.
    pub(crate) hold_off: HoldOff,
}

impl State {
    /// The member answered just now.
    pub(crate) fn answered(&mut self) {
        self.contact = Some((Instant::now(), Time(k8s_openapi::jiff::Timestamp::now())));
        self.hold_off.answered();
    }

    /// How long until the member reads unreachable if it stays silent
    /// (none: it already does, or has no contact to count from).
    pub(crate) fn until_unreachable(&self) -> Option<Duration> {
        let (at, _) = self.contact.as_ref()?;
        self.unreachable_after
            .checked_sub(at.elapsed())
            .filter(|d| !d.is_zero())
    }
}

/// One member cluster.
pub struct Member {
    pub name: String,
    pub(crate) state: Mutex<State>,
}

impl Member {
    pub(crate) fn new(name: String) -> Self {
        let state = State {
            trying_since: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            ..State::default()
        };
        Self {
            name,
            state: Mutex::new(state),
        }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Whether the member may be trusted now: it answered within
    /// `unreachableAfterSeconds`, its InPlaceSets listed once on this
    /// connection, and its watch has not been failing for longer than that
    /// (a watch that fails keeps what it last showed, as silence does).
    pub fn reach(&self) -> Reach {
        self.with(|s| {
            let last_contact = s
                .contact
                .as_ref()
                .map(|(_, t)| t.clone())
                .or_else(|| s.recorded_contact.clone());
            let synced = s.synced.load(std::sync::atomic::Ordering::SeqCst);
            let watch_error = s.watch_failed.as_ref();
            let why = if let Some((_, message)) = &s.problem {
                format!("member cluster {}: {message}", self.name)
            } else if s.conn.is_none() {
                format!("member cluster {}: no client yet", self.name)
            } else if s.until_unreachable().is_none() {
                let heard = Heard {
                    contact: s.contact.as_ref().map(|(_, t)| t),
                    recorded: s.recorded_contact.as_ref(),
                    trying_since: s.trying_since.as_ref(),
                    error: s.error.as_deref(),
                };
                silent(&self.name, heard)
            } else if let Some((_, since, error)) =
                watch_error.filter(|(at, ..)| at.elapsed() >= s.unreachable_after)
            {
                format!(
                    "member cluster {} answers, but its InPlaceSet watch has failed since {} \
                     ({error}): what it shows is not trusted until it lists again; check that \
                     the host's identity there may list and watch InPlaceSets",
                    self.name,
                    second(since)
                )
            } else if !synced {
                let error = watch_error.map_or(String::new(), |(_, _, e)| format!(" ({e})"));
                format!(
                    "member cluster {}: its InPlaceSets have not listed yet on this \
                     connection{error}",
                    self.name
                )
            } else {
                String::new()
            };
            Reach {
                reachable: why.is_empty(),
                why,
                last_contact,
            }
        })
    }

    /// Whether a write toward the member may go now; claims the one trial
    /// write when a hold-off has just ended.
    pub(crate) fn claim_write(&self) -> Result<(), Held> {
        self.with(|s| s.hold_off.claim(Instant::now(), MEMBER_TIMEOUT))
    }

    /// Why writes toward the member wait now (none: they may go).
    pub fn held_off(&self) -> Option<Held> {
        self.with(|s| s.hold_off.holding(Instant::now()))
    }

    /// What a write toward the member met: an answer clears its hold-off,
    /// no answer makes writes wait longer, a 401 is its credential
    /// rejected. Returns the wait after a failure to answer.
    pub(crate) fn wrote<T>(&self, result: &Result<T, kube::Error>) -> Option<Duration> {
        self.with(|s| match result {
            Ok(_) => {
                s.answered();
                None
            }
            Err(e) if holdoff::held_off(e).is_some() => None,
            Err(e) if holdoff::is_connection_failure(e) => {
                let jitter = crate::runtime::writes::backoff::jitter();
                Some(s.hold_off.failed(Instant::now(), e.to_string(), jitter))
            }
            Err(kube::Error::Api(status)) => {
                s.answered();
                if status.code == 401
                    && let Some(conn) = &s.conn
                {
                    s.problem = Some(credential_rejected(&conn.source, &status.message));
                }
                None
            }
            Err(_) => None,
        })
    }

    /// The InPlaceSets a CafeDeployment (`uid`) has in this member, as last seen.
    pub fn sets_of(&self, namespace: &str, uid: &str) -> Vec<Arc<InPlaceSet>> {
        let Some(conn) = self.with(|s| s.conn.clone()) else {
            return Vec::new();
        };
        conn.sets
            .state()
            .into_iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(namespace)
                    && s.labels().get(CAFEDEPLOYMENT_UID_LABEL).map(String::as_str) == Some(uid)
            })
            .collect()
    }

    /// The member's InPlaceSets in `namespace`, to write them.
    pub fn sets_api(&self, namespace: &str) -> Option<Api<InPlaceSet>> {
        self.with(|s| {
            s.conn
                .as_ref()
                .map(|c| Api::namespaced(c.client.clone(), namespace))
        })
    }

    /// API requests to this member so far, by (verb, resource, outcome).
    pub fn requests(&self) -> BTreeMap<crate::runtime::client::RequestKey, u64> {
        self.with(|s| s.conn.as_ref().map(|c| c.counters.snapshot()))
            .unwrap_or_default()
    }

    /// Seconds since the member last answered (none: never).
    pub fn silence(&self) -> Option<f64> {
        self.with(|s| s.contact.as_ref().map(|(at, _)| at.elapsed().as_secs_f64()))
    }
}

pub(crate) type Senders<T> = Arc<Mutex<Vec<UnboundedSender<T>>>>;

pub(crate) fn send<T: Clone>(senders: &Senders<T>, item: &T) {
    if let Ok(mut s) = senders.lock() {
        s.retain(|tx| tx.unbounded_send(item.clone()).is_ok());
    }
}

fn subscribe<T>(senders: &Senders<T>) -> impl Stream<Item = T> + use<T> {
    let (tx, rx) = unbounded();
    if let Ok(mut s) = senders.lock() {
        s.push(tx);
    }
    rx
}

/// A watched scope's CafeDeployment cache, and whether it has listed.
type Scope = (Store<CafeDeployment>, CacheSync);

/// Every member cluster registered in the host.
#[derive(Clone)]
pub struct Members {
    clusters: Store<MemberCluster>,
    /// The MemberClusters have listed once: before that, no cell can be
    /// placed (an empty registry would place every cell here).
    pub synced: CacheSync,
    live: Arc<RwLock<BTreeMap<String, Arc<Member>>>>,
    /// The CafeDeployment caches of every watched scope (and whether each
    /// has listed): who uses a member.
    cafedeployments: Arc<Mutex<Vec<Scope>>>,
    /// A member's InPlaceSet changed: the CafeDeployment to look at.
    pub(crate) set_changes: Senders<ObjectRef<CafeDeployment>>,
    /// A member came, went, or changed reachability: look at every one.
    member_changes: Senders<()>,
}

impl Members {
    /// The registry over the MemberClusters in `clusters` (listed once when
    /// `synced` is).
    pub fn new(clusters: Store<MemberCluster>, synced: CacheSync) -> Self {
        Self {
            clusters,
            synced,
            live: Arc::default(),
            cafedeployments: Arc::default(),
            set_changes: Arc::default(),
            member_changes: Arc::default(),
        }
    }

    /// An empty registry, for a host without the MemberCluster CRD (or a member).
    pub fn none() -> Self {
        let (clusters, _) = kube::runtime::reflector::store();
        Self::new(clusters, CacheSync::already())
    }

    /// The registered members, the cells each lists, and whether it is
    /// being deleted.
    pub fn registered(&self) -> Vec<(String, Vec<String>, bool)> {
        let mut out: Vec<(String, Vec<String>, bool)> = self
            .clusters
            .state()
            .iter()
            .map(|m| {
                let leaving = m.metadata.deletion_timestamp.is_some();
                (m.name_any(), m.spec.cells.clone(), leaving)
            })
            .collect();
        out.sort();
        out
    }

    /// The MemberCluster `name`, as cached.
    pub fn cluster(&self, name: &str) -> Option<Arc<MemberCluster>> {
        self.clusters.get(&ObjectRef::new(name))
    }

    pub fn get(&self, name: &str) -> Option<Arc<Member>> {
        self.live.read().ok()?.get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Member>> {
        self.live
            .read()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts keeping `member` (the MemberCluster controller does).
    pub(crate) fn insert(&self, member: Arc<Member>) {
        if let Ok(mut live) = self.live.write() {
            live.insert(member.name.clone(), member);
        }
        self.changed();
    }

    /// Stops keeping the member `name`.
    pub(crate) fn remove(&self, name: &str) {
        if let Ok(mut live) = self.live.write() {
            live.remove(name);
        }
        self.changed();
    }

    /// A member came, went or changed reachability: every CafeDeployment looks again.
    pub(crate) fn changed(&self) {
        send(&self.member_changes, &());
    }

    pub fn set_changes(&self) -> impl Stream<Item = ObjectRef<CafeDeployment>> + use<> {
        subscribe(&self.set_changes)
    }

    pub fn member_changes(&self) -> impl Stream<Item = ()> + use<> {
        subscribe(&self.member_changes)
    }

    /// What `/metrics` shows of each member.
    pub fn readings(&self) -> Vec<MemberReading> {
        self.all()
            .iter()
            .map(|m| MemberReading {
                name: m.name.clone(),
                reachable: m.reach().reachable,
                silence: m.silence(),
                requests: m.requests(),
            })
            .collect()
    }

    /// Adds a scope's CafeDeployment cache to those [`Members::users`] reads.
    pub fn observe_cafedeployments(&self, store: Store<CafeDeployment>, synced: CacheSync) {
        if let Ok(mut stores) = self.cafedeployments.lock() {
            stores.push((store, synced));
        }
    }

    /// The CafeDeployments that use `member`, from the caches (no request):
    /// those whose status places a cell there, and those with InPlaceSets in
    /// its cache (as last seen). An error says why it cannot be told yet (a
    /// cache that has not listed, or none at all): the member counts as used.
    pub fn users(&self, member: &Member) -> Result<Vec<String>, String> {
        // "namespace/name" -> what of it is there.
        let mut users = BTreeMap::new();
        let stores = self
            .cafedeployments
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        if stores.is_empty() {
            return Err("no CafeDeployment is watched yet".to_string());
        }
        if !stores.iter().all(|(_, synced)| synced.is_synced()) {
            return Err("the CafeDeployments have not listed yet".to_string());
        }
        for cd in stores.iter().flat_map(|(store, _)| store.state()) {
            let cells: Vec<&str> = cd
                .status
                .iter()
                .flat_map(|s| &s.cells)
                .filter(|row| row.cluster.as_deref() == Some(member.name.as_str()))
                .map(|row| row.name.as_str())
                .collect();
            if !cells.is_empty() {
                let key = format!("{}/{}", cd.namespace().unwrap_or_default(), cd.name_any());
                users.insert(key, format!("cells {}", cells.join(", ")));
            }
        }
        if let Some(conn) = member.with(|s| s.conn.clone()) {
            for set in conn.sets.state() {
                let key = format!(
                    "{}/{}",
                    set.namespace().unwrap_or_default(),
                    set.annotations()
                        .get(CAFEDEPLOYMENT_NAME_ANNOTATION)
                        .map_or("?", String::as_str)
                );
                users
                    .entry(key)
                    .or_insert_with(|| format!("InPlaceSet {}", set.name_any()));
            }
        }
        Ok(users
            .into_iter()
            .map(|(cd, what)| format!("{cd} ({what})"))
            .collect())
    }
}
