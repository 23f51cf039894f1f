//! Member clusters as the host sees them: for each MemberCluster, one client
//! (built from its kubeconfig Secret, rebuilt when the Secret changes), one
//! cache of the InPlaceSets hosts wrote there, and its reachability. Each
//! member is looked after by a task of its own, so a member that hangs or
//! refuses never delays another's watch, probe or status.
//!
//! The CafeDeployment controller reads a member through [`Member`]: its
//! sets, a client to write them, and whether it may be trusted now
//! ([`Reach`]). A member that has not answered for
//! `unreachableAfterSeconds` reads Unknown; its cache keeps what it last
//! showed (the member keeps serving on its own).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use super::cache::{trim, watch_events};
use super::client::{ApiCounters, client_for};
use super::status::{Change, StatusWriter, Wrote};
use crate::api::names::{
    CAFEDEPLOYMENT_NAME_ANNOTATION, CAFEDEPLOYMENT_UID_LABEL, MEMBER_IN_USE_FINALIZER, condition,
};
use crate::api::{
    CafeDeployment, InPlaceSet, MemberCluster, MemberClusterStatus, finalizer_added,
    finalizer_removed, observed_condition_as,
};

/// How often each member is probed (and its Secret read).
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a probe or a write to a member may take.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(4);
/// How often `status.lastContact` is refreshed while nothing else changes.
const CONTACT_WRITTEN_EVERY: Duration = Duration::from_secs(30);
const MANAGER: &str = "cafe-operator-members";
const IPS_CRD: &str = "inplacesets.cafe.sofastack.io";

/// Whether a member may be trusted now, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    pub reachable: bool,
    /// Why it is not (empty when it is).
    pub why: String,
    pub last_contact: Option<Time>,
}

/// A connection to a member: a client and the cache of its InPlaceSets.
struct Conn {
    client: Client,
    counters: ApiCounters,
    sets: Store<InPlaceSet>,
    /// The Secret's resourceVersion the client was built from.
    secret_version: String,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

#[derive(Default)]
struct State {
    conn: Option<Arc<Conn>>,
    /// The cache listed once since this connection was built.
    synced: Arc<std::sync::atomic::AtomicBool>,
    contact: Option<(Instant, Time)>,
    /// A problem contact cannot cure by itself: (reason, message).
    problem: Option<(&'static str, String)>,
    /// The last transport error.
    error: Option<String>,
    versions: Vec<String>,
    unreachable_after: Duration,
}

impl State {
    /// The member answered just now.
    fn answered(&mut self) {
        self.contact = Some((Instant::now(), Time(k8s_openapi::jiff::Timestamp::now())));
    }
}

/// One member cluster.
pub struct Member {
    pub name: String,
    state: Mutex<State>,
}

impl Member {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Whether the member may be trusted now.
    pub fn reach(&self) -> Reach {
        self.with(|s| {
            let last_contact = s.contact.as_ref().map(|(_, t)| t.clone());
            let since = last_contact.as_ref().map_or_else(
                || "never answered".to_string(),
                |t| format!("has not answered since {}", t.0),
            );
            let why = if let Some((_, message)) = &s.problem {
                format!("member cluster {}: {message}", self.name)
            } else if s.conn.is_none() {
                format!("member cluster {}: no client yet", self.name)
            } else if s
                .contact
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() >= s.unreachable_after)
            {
                let error = s
                    .error
                    .as_deref()
                    .map_or(String::new(), |e| format!(" ({e})"));
                format!("member cluster {} {since}{error}", self.name)
            } else if !s.synced.load(std::sync::atomic::Ordering::SeqCst) {
                format!(
                    "member cluster {}: its InPlaceSets have not listed yet",
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
    pub fn requests(&self) -> BTreeMap<super::client::RequestKey, u64> {
        self.with(|s| s.conn.as_ref().map(|c| c.counters.snapshot()))
            .unwrap_or_default()
    }

    /// Seconds since the member last answered (none: never).
    pub fn silence(&self) -> Option<f64> {
        self.with(|s| s.contact.as_ref().map(|(at, _)| at.elapsed().as_secs_f64()))
    }
}

type Senders<T> = Arc<Mutex<Vec<UnboundedSender<T>>>>;

/// Every member cluster registered in the host.
#[derive(Clone)]
pub struct Members {
    host: Client,
    clusters: Store<MemberCluster>,
    /// The MemberClusters have listed once: before that, no cell can be
    /// placed (an empty registry would place every cell here).
    pub synced: super::health::CacheSync,
    live: Arc<RwLock<BTreeMap<String, Arc<Member>>>>,
    /// A member's InPlaceSet changed: the CafeDeployment to look at.
    set_changes: Senders<ObjectRef<CafeDeployment>>,
    /// A member came, went, or changed reachability: look at every one.
    member_changes: Senders<()>,
    /// Each MemberCluster's status, written only when it changed.
    status: Arc<StatusWriter>,
}

fn send<T: Clone>(senders: &Senders<T>, item: &T) {
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

impl Members {
    /// The registry, and the future that keeps it (run it until shutdown).
    /// Without the MemberCluster CRD (`enabled` false) it stays empty.
    pub fn start(
        host: Client,
        enabled: bool,
        health: &super::health::Health,
    ) -> (Self, impl Future<Output = ()> + Send + use<>) {
        let (clusters, writer) = reflector::store();
        let api: Api<MemberCluster> = Api::all(host.clone());
        let stream = watch_events(api, watcher::Config::default(), Duration::ZERO)
            .modify(trim::meta)
            .reflect(writer);
        // Without the CRD there is nothing to list (nor to wait for).
        let (events, synced) = if enabled {
            let (events, synced) = health.track_synced("memberclusters", stream);
            (Some(events), synced)
        } else {
            (None, super::health::CacheSync::already())
        };
        let members = Self {
            host: host.clone(),
            clusters,
            synced,
            live: Arc::default(),
            set_changes: Arc::default(),
            member_changes: Arc::default(),
            // Every change of a member's status is one a reader waits for.
            status: Arc::new(StatusWriter::new(MANAGER, Duration::ZERO, health.clone())),
        };
        let this = members.clone();
        let drive = async move {
            let Some(events) = events else {
                return std::future::pending().await;
            };
            let mut events = std::pin::pin!(events);
            let mut tasks: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue };
                if matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                    continue;
                }
                // Start a task for each new member; a task ends when its
                // MemberCluster is gone.
                tasks.retain(|_, t| !t.is_finished());
                for mc in this.clusters.state() {
                    let name = mc.name_any();
                    if let std::collections::btree_map::Entry::Vacant(slot) =
                        tasks.entry(name.clone())
                    {
                        let member = Arc::new(Member {
                            name: name.clone(),
                            state: Mutex::default(),
                        });
                        if let Ok(mut live) = this.live.write() {
                            live.insert(name.clone(), member.clone());
                        }
                        info!(member = %name, "member cluster registered");
                        slot.insert(tokio::spawn(this.clone().look_after(member)));
                    }
                }
                send(&this.member_changes, &());
            }
        };
        (members, drive)
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

    pub fn get(&self, name: &str) -> Option<Arc<Member>> {
        self.live.read().ok()?.get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Member>> {
        self.live
            .read()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn set_changes(&self) -> impl Stream<Item = ObjectRef<CafeDeployment>> + use<> {
        subscribe(&self.set_changes)
    }

    pub fn member_changes(&self) -> impl Stream<Item = ()> + use<> {
        subscribe(&self.member_changes)
    }

    /// Keeps one member: its client (rebuilt when the Secret changes), its
    /// probe, its status, its finalizer; until its MemberCluster is deleted
    /// and no CafeDeployment uses it any more.
    async fn look_after(self, member: Arc<Member>) {
        let mut last_reach: Option<bool> = None;
        let mut contact_written: Option<Instant> = None;
        loop {
            let Some(mc) = self
                .clusters
                .get(&ObjectRef::new(&member.name))
                .filter(|m| m.metadata.deletion_timestamp.is_none() || holds_finalizer(m))
            else {
                if let Ok(mut live) = self.live.write() {
                    live.remove(&member.name);
                }
                info!(member = %member.name, "member cluster removed");
                send(&self.member_changes, &());
                return;
            };
            let in_use = match self.keep_while_used(&member, &mc).await {
                Ok(in_use) => in_use,
                Err(e) => {
                    warn!(member = %member.name, error = %e, "cannot write the MemberCluster's finalizer");
                    None
                }
            };
            let after = u64::try_from(mc.spec.unreachable_after_seconds).unwrap_or(20);
            member.with(|s| s.unreachable_after = Duration::from_secs(after.max(2)));
            self.connect(&member, &mc).await;
            probe(&member).await;
            let reach = member.reach();
            if last_reach != Some(reach.reachable) {
                if reach.reachable {
                    info!(member = %member.name, "member cluster reachable");
                } else {
                    warn!(member = %member.name, why = %reach.why, "member cluster not reachable");
                }
                last_reach = Some(reach.reachable);
                send(&self.member_changes, &());
            }
            let stale = contact_written.is_none_or(|at| at.elapsed() >= CONTACT_WRITTEN_EVERY);
            match self
                .write_status(&member, &mc, stale, in_use.as_deref())
                .await
            {
                Ok(true) => contact_written = Some(Instant::now()),
                Ok(false) => {}
                Err(e) => {
                    warn!(member = %member.name, error = %e, "cannot write MemberCluster status")
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// Reads the kubeconfig Secret and (re)builds the client when it changed.
    async fn connect(&self, member: &Arc<Member>, mc: &MemberCluster) {
        let r = &mc.spec.kubeconfig_secret_ref;
        let secrets: Api<Secret> = Api::namespaced(self.host.clone(), &r.namespace);
        let secret = match tokio::time::timeout(MEMBER_TIMEOUT, secrets.get_opt(&r.name)).await {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => {
                return member.with(|s| {
                    s.problem = Some((
                        "SecretNotFound",
                        format!(
                            "its kubeconfig Secret {}/{} does not exist: create it with the \
                             kubeconfig under key {}",
                            r.namespace, r.name, r.key
                        ),
                    ));
                });
            }
            // The host's own API server: keep the client we have.
            Ok(Err(e)) => {
                return warn!(member = %member.name, error = %e, "cannot read the kubeconfig Secret");
            }
            Err(_) => return,
        };
        let version = secret.resource_version().unwrap_or_default();
        if member.with(|s| s.conn.as_ref().is_some_and(|c| c.secret_version == version)) {
            return;
        }
        let built = match kubeconfig_in(&secret, &r.key) {
            None => Err(format!(
                "its kubeconfig Secret {}/{} has no key {}: put the kubeconfig there or set \
                 spec.kubeconfigSecretRef.key",
                r.namespace, r.name, r.key
            )),
            Some(text) => build_client(&text).await.map_err(|e| {
                format!(
                    "the kubeconfig in Secret {}/{} key {} is not usable: {e}",
                    r.namespace, r.name, r.key
                )
            }),
        };
        match built {
            Err(message) => member.with(|s| s.problem = Some(("InvalidKubeconfig", message))),
            Ok((client, counters)) => {
                let rotated = member.with(|s| s.conn.is_some());
                let (sets, writer) = reflector::store();
                let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let watch = tokio::spawn(watch_sets(
                    client.clone(),
                    writer,
                    synced.clone(),
                    self.set_changes.clone(),
                    member.clone(),
                ));
                member.with(|s| {
                    s.conn = Some(Arc::new(Conn {
                        client,
                        counters,
                        sets,
                        secret_version: version,
                        watch,
                    }));
                    s.synced = synced;
                    s.problem = None;
                });
                info!(member = %member.name, rotated, "member cluster client built from its kubeconfig Secret");
            }
        }
    }

    /// The finalizer: put on a MemberCluster in service; taken off one being
    /// deleted once no CafeDeployment uses the member. Returns why a
    /// deletion waits (none: no deletion, or it goes now).
    async fn keep_while_used(
        &self,
        member: &Member,
        mc: &MemberCluster,
    ) -> Result<Option<String>, kube::Error> {
        let api: Api<MemberCluster> = Api::all(self.host.clone());
        if mc.metadata.deletion_timestamp.is_none() {
            if !holds_finalizer(mc) {
                let patch = finalizer_added(&mc.metadata, MEMBER_IN_USE_FINALIZER);
                patch_finalizers(&api, &mc.name_any(), patch).await?;
            }
            return Ok(None);
        }
        let users = match self.users(member).await {
            Ok(users) => users,
            Err(e) => return Ok(Some(format!("cannot tell whether it is in use: {e}"))),
        };
        if !users.is_empty() {
            return Ok(Some(format!(
                "its deletion waits until no CafeDeployment uses it: {}. Remove those cells \
                 from their topology.values (they drain there) or delete the CafeDeployments; \
                 if the cluster is lost for good, remove the finalizer {MEMBER_IN_USE_FINALIZER} \
                 by hand (their cells then wait until topology.clusters says where they run)",
                users.join(", ")
            )));
        }
        let Some(patch) = finalizer_removed(&mc.metadata, MEMBER_IN_USE_FINALIZER) else {
            return Ok(None);
        };
        patch_finalizers(&api, &mc.name_any(), patch).await?;
        info!(member = %member.name, "member cluster unregistered: no CafeDeployment uses it");
        Ok(None)
    }

    /// The CafeDeployments that use `member`: those whose status places a
    /// cell there, and those with InPlaceSets in its cache (as last seen).
    async fn users(&self, member: &Member) -> Result<Vec<String>, String> {
        // "namespace/name" -> what of it is there.
        let mut users = BTreeMap::new();
        let cds: Api<CafeDeployment> = Api::all(self.host.clone());
        let listed = tokio::time::timeout(MEMBER_TIMEOUT, cds.list(&Default::default()))
            .await
            .map_err(|_| {
                format!("the host did not list CafeDeployments within {MEMBER_TIMEOUT:?}")
            })?
            .map_err(|e| format!("listing CafeDeployments: {e}"))?;
        for cd in listed {
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

    /// Writes the MemberCluster's status when it changed, or its last
    /// contact when `refresh`. Returns whether it wrote.
    async fn write_status(
        &self,
        member: &Member,
        mc: &MemberCluster,
        refresh: bool,
        in_use: Option<&str>,
    ) -> Result<bool, kube::Error> {
        let previous = mc.status.clone().unwrap_or_default();
        let reach = member.reach();
        let (status, reason) = member.with(|s| match &s.problem {
            Some((reason, _)) => ("False", *reason),
            None if reach.reachable => ("True", "Reachable"),
            None => ("Unknown", "Unreachable"),
        });
        let versions = member.with(|s| s.versions.clone());
        let message = if reach.reachable {
            format!("answers; serves InPlaceSet {}", versions.join(", "))
        } else {
            reach.why.clone()
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let ready = observed_condition_as(
            &previous.conditions,
            condition::READY,
            status,
            reason,
            message,
            mc.metadata.generation,
            &now,
        );
        let next = MemberClusterStatus {
            observed_generation: mc.metadata.generation,
            last_contact: if refresh {
                reach.last_contact.clone()
            } else {
                previous.last_contact.clone()
            }
            .or(reach.last_contact.clone()),
            in_place_set_versions: versions,
            conditions: std::iter::once(ready)
                .chain(in_use.map(|why| {
                    observed_condition_as(
                        &previous.conditions,
                        condition::DELETING,
                        "True",
                        "InUse",
                        why.to_string(),
                        mc.metadata.generation,
                        &now,
                    )
                }))
                .collect(),
        };
        let api: Api<MemberCluster> = Api::all(self.host.clone());
        let change = Change {
            previous: &previous,
            next: &next,
            urgent: true,
            over: None,
        };
        if !matches!(
            self.status.write(&api, mc, change).await?,
            Wrote::Written(_)
        ) {
            return Ok(false);
        }
        Ok(refresh || previous.last_contact.is_none())
    }
}

fn holds_finalizer(mc: &MemberCluster) -> bool {
    mc.finalizers().iter().any(|f| f == MEMBER_IN_USE_FINALIZER)
}

/// Patches a MemberCluster's finalizers (a JSON patch guarded by a test);
/// a conflict or a MemberCluster gone meanwhile is looked at next time.
async fn patch_finalizers(
    api: &Api<MemberCluster>,
    name: &str,
    patch: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    match tokio::time::timeout(
        MEMBER_TIMEOUT,
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 || s.code == 409 || s.code == 422 => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(kube::Error::Service(
            format!("no answer within {MEMBER_TIMEOUT:?}").into(),
        )),
    }
}

/// The kubeconfig under `key` of a member's Secret.
pub fn kubeconfig_in(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// A client from a kubeconfig's current context, with short timeouts so
/// that a member that stopped answering fails fast.
pub async fn build_client(text: &str) -> Result<(Client, ApiCounters), String> {
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| e.to_string())?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    config.connect_timeout = Some(MEMBER_TIMEOUT);
    config.write_timeout = Some(MEMBER_TIMEOUT);
    client_for(config).map_err(|e| e.to_string())
}

/// Asks the member for the InPlaceSet CRD: an answer is contact; the CRD's
/// served versions say whether the member can run what the host writes.
async fn probe(member: &Member) {
    let Some(client) = member.with(|s| s.conn.as_ref().map(|c| c.client.clone())) else {
        return;
    };
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let answer = tokio::time::timeout(MEMBER_TIMEOUT, crds.get_opt(IPS_CRD)).await;
    member.with(|s| match answer {
        Ok(Ok(Some(crd))) => {
            s.answered();
            s.error = None;
            s.versions = crd
                .spec
                .versions
                .iter()
                .filter(|v| v.served)
                .map(|v| v.name.clone())
                .collect();
            s.problem = (!s.versions.iter().any(|v| v == crate::api::names::VERSION)).then(|| {
                (
                    "InPlaceSetVersionMissing",
                    format!(
                        "it does not serve InPlaceSet {} (serves [{}]): install this operator's \
                         CRDs there",
                        crate::api::names::VERSION,
                        s.versions.join(", ")
                    ),
                )
            });
        }
        Ok(Ok(None)) => {
            s.answered();
            s.problem = Some((
                "InPlaceSetCRDMissing",
                "the InPlaceSet CRD is not installed there: install it (cafe-operator crd | \
                 kubectl apply --server-side -f -) and run the operator there with --role member"
                    .to_string(),
            ));
        }
        Ok(Err(kube::Error::Api(e))) if e.code == 401 || e.code == 403 => {
            s.answered();
            s.problem = Some((
                "Forbidden",
                format!(
                    "its kubeconfig may not read the InPlaceSet CRD ({}): grant what \
                     docs/multi-cluster.md lists",
                    e.message
                ),
            ));
        }
        Ok(Err(e)) => s.error = Some(e.to_string()),
        Err(_) => s.error = Some(format!("no answer within {MEMBER_TIMEOUT:?}")),
    });
}

/// A member's watch retries after 0.5 s, doubling up to 2 s: a member that
/// comes back is listed again within about a probe period (kube's default
/// backoff waits up to 30 s).
struct Retry(Duration);

impl Default for Retry {
    fn default() -> Self {
        Self(Duration::from_millis(500))
    }
}

impl Iterator for Retry {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
        Some(wait)
    }
}

impl kube::runtime::utils::Backoff for Retry {
    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Watches the member's InPlaceSets that hosts wrote; every change wakes the
/// CafeDeployment named on the set.
async fn watch_sets(
    client: Client,
    writer: reflector::store::Writer<InPlaceSet>,
    synced: Arc<std::sync::atomic::AtomicBool>,
    changes: Senders<ObjectRef<CafeDeployment>>,
    member: Arc<Member>,
) {
    let api: Api<InPlaceSet> = Api::all(client);
    let config = watcher::Config::default().labels(CAFEDEPLOYMENT_UID_LABEL);
    let events = watcher::watcher(api, config)
        .backoff(Retry::default())
        .modify(trim::meta)
        .reflect(writer);
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                // Not trusted again until it has listed again.
                synced.store(false, std::sync::atomic::Ordering::SeqCst);
                member.with(|s| s.error = Some(e.to_string()));
                continue;
            }
        };
        // Init comes before the list is asked for: not an answer.
        if !matches!(event, watcher::Event::Init) {
            member.with(|s| {
                s.answered();
            });
        }
        let woken = match &event {
            watcher::Event::Apply(s) | watcher::Event::Delete(s) | watcher::Event::InitApply(s) => {
                vec![s.clone()]
            }
            watcher::Event::InitDone => {
                synced.store(true, std::sync::atomic::Ordering::SeqCst);
                Vec::new()
            }
            _ => Vec::new(),
        };
        for set in woken {
            if let (Some(name), Some(ns)) = (
                set.annotations().get(CAFEDEPLOYMENT_NAME_ANNOTATION),
                set.namespace(),
            ) {
                send(&changes, &ObjectRef::new(name).within(&ns));
            }
        }
    }
}
