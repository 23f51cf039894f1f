//! Keeping one member cluster connected: its kubeconfig Secret watched (the
//! client is rebuilt when the Secret changes, never read again otherwise),
//! the InPlaceSets hosts wrote there watched, and its API server probed
//! every `PROBE_EVERY` (an answer is contact). One task per member, so a
//! member that hangs or refuses never delays another's watch or probe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::names::{CAFEDEPLOYMENT_NAME_ANNOTATION, CAFEDEPLOYMENT_UID_LABEL};
use crate::api::{CafeDeployment, InPlaceSet, MemberCluster, SecretKeyRef};
use crate::placement::members::{
    Conn, MEMBER_TIMEOUT, Member, Members, Senders, credential_rejected, send,
};
use crate::runtime::cache::trim;
use crate::runtime::client::{ApiCounters, client_for};

/// How often each member is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
const IPS_CRD: &str = "inplacesets.cafe.sofastack.io";

/// Keeps `member` until its MemberCluster is gone (or deleted and released):
/// watches its Secret, probes it, and says when what its status shows
/// changes (`wake`, to the MemberCluster controller).
pub(crate) async fn keep(
    host: Client,
    members: Members,
    member: Arc<Member>,
    wake: UnboundedSender<ObjectRef<MemberCluster>>,
) {
    let mut secret: Option<(SecretKeyRef, tokio::task::JoinHandle<()>)> = None;
    let mut shown = None;
    loop {
        let Some(mc) = members
            .cluster(&member.name)
            .filter(|m| m.metadata.deletion_timestamp.is_none() || holds_finalizer(m))
        else {
            if let Some((_, watch)) = secret.take() {
                watch.abort();
            }
            // Its client and InPlaceSet watch go with it.
            member.with(|s| s.conn = None);
            members.remove(&member.name);
            info!(member = %member.name, "member cluster removed");
            return;
        };
        let after = u64::try_from(mc.spec.unreachable_after_seconds).unwrap_or(20);
        member.with(|s| {
            s.unreachable_after = Duration::from_secs(after.max(2));
            // An operator started during an outage counts the silence from
            // the last contact its status recorded.
            if s.contact.is_none() && s.recorded_contact.is_none() {
                s.recorded_contact = mc.status.as_ref().and_then(|st| st.last_contact.clone());
            }
        });
        let wanted = &mc.spec.kubeconfig_secret_ref;
        if secret.as_ref().is_none_or(|(r, _)| r != wanted) {
            if let Some((_, watch)) = secret.take() {
                watch.abort();
            }
            let watch = tokio::spawn(watch_secret(
                host.clone(),
                wanted.clone(),
                member.clone(),
                members.set_changes.clone(),
            ));
            secret = Some((wanted.clone(), watch));
        }
        probe(&member).await;
        let reach = member.reach();
        // What the status shows (the last contact is refreshed on its own).
        let now_shown = (
            (reach.reachable, reach.why.clone()),
            member.with(|s| (s.problem.clone(), s.versions.clone())),
        );
        if shown.as_ref() != Some(&now_shown) {
            if shown.as_ref().map(|((reachable, _), _)| *reachable) != Some(reach.reachable) {
                if reach.reachable {
                    info!(member = %member.name, "member cluster reachable");
                } else {
                    warn!(member = %member.name, why = %reach.why, "member cluster not reachable");
                }
                members.changed();
            }
            shown = Some(now_shown);
            let _ = wake.unbounded_send(ObjectRef::from_obj(&*mc));
        }
        // Looks again when the silence reaches unreachableAfterSeconds, not
        // up to a probe period later.
        let next = member
            .with(|s| s.until_unreachable())
            .map_or(PROBE_EVERY, |d| d.min(PROBE_EVERY));
        tokio::time::sleep(next + Duration::from_millis(10)).await;
    }
}

pub(crate) fn holds_finalizer(mc: &MemberCluster) -> bool {
    mc.finalizers()
        .iter()
        .any(|f| f == crate::api::names::MEMBER_IN_USE_FINALIZER)
}

/// Watches the member's kubeconfig Secret (that one object, by name) and
/// (re)builds the member's client whenever it changes.
async fn watch_secret(
    host: Client,
    r: SecretKeyRef,
    member: Arc<Member>,
    set_changes: Senders<ObjectRef<CafeDeployment>>,
) {
    let secrets: Api<Secret> = Api::namespaced(host, &r.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", r.name));
    let mut events = std::pin::pin!(watcher::watcher(secrets, config).default_backoff());
    let mut listed = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listed = false,
            Ok(watcher::Event::InitApply(secret) | watcher::Event::Apply(secret)) => {
                listed = true;
                connect(&member, &r, &secret, &set_changes).await;
            }
            Ok(watcher::Event::InitDone) if !listed => missing(&member, &r),
            Ok(watcher::Event::Delete(_)) => missing(&member, &r),
            Ok(watcher::Event::InitDone) => {}
            // The host's own API server: keep the client we have.
            Err(e) => {
                warn!(member = %member.name, error = %e, "cannot watch the kubeconfig Secret")
            }
        }
    }
}

/// The kubeconfig Secret does not exist: say what to create.
fn missing(member: &Member, r: &SecretKeyRef) {
    member.with(|s| {
        s.problem = Some((
            "SecretNotFound",
            format!(
                "its kubeconfig Secret {}/{} does not exist: create it with the kubeconfig \
                 under key {}",
                r.namespace, r.name, r.key
            ),
        ));
    });
}

/// (Re)builds the member's client from `secret` when its version changed.
async fn connect(
    member: &Arc<Member>,
    r: &SecretKeyRef,
    secret: &Secret,
    set_changes: &Senders<ObjectRef<CafeDeployment>>,
) {
    // The key is part of the version: a MemberCluster that names another
    // key of the same Secret gets a new client too.
    let version = format!(
        "{}#{}",
        secret.resource_version().unwrap_or_default(),
        r.key
    );
    if member.with(|s| s.conn.as_ref().is_some_and(|c| c.secret_version == version)) {
        return;
    }
    let built = match kubeconfig_in(secret, &r.key) {
        None => Err(format!(
            "its kubeconfig Secret {}/{} has no key {}: put the kubeconfig there or set \
                 spec.kubeconfigSecretKeyRef.key",
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
                set_changes.clone(),
                member.clone(),
            ));
            member.with(|s| {
                s.conn = Some(Arc::new(Conn {
                    client,
                    counters,
                    sets,
                    secret_version: version,
                    source: r.clone(),
                    watch,
                }));
                s.synced = synced;
                s.watch_failed = None;
                s.problem = None;
            });
            info!(member = %member.name, rotated, "member cluster client built from its kubeconfig Secret");
        }
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
    let Some((client, source)) = member.with(|s| {
        s.conn
            .as_ref()
            .map(|c| (c.client.clone(), c.source.clone()))
    }) else {
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
        Ok(Err(kube::Error::Api(e))) if e.code == 401 => {
            s.answered();
            s.problem = Some(credential_rejected(&source, &e.message));
        }
        Ok(Err(kube::Error::Api(e))) if e.code == 403 => {
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
                // Its cache keeps what it last showed, as when the member is
                // silent; not trusted once the watch has failed for
                // unreachableAfterSeconds (`Member::reach`).
                let now = (Instant::now(), Time(k8s_openapi::jiff::Timestamp::now()));
                member.with(|s| {
                    s.error = Some(e.to_string());
                    match &mut s.watch_failed {
                        Some((_, _, error)) => *error = e.to_string(),
                        None => s.watch_failed = Some((now.0, now.1, e.to_string())),
                    }
                });
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
                member.with(|s| s.watch_failed = None);
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
