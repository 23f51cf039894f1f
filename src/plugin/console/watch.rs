//! The console's live state: watches (with the person's credentials) on
//! CafeDeployments, InPlaceSets, their pods, ReleaseFreezes and
//! MemberClusters; on a change, the page's documents are computed again and
//! only those that changed are sent to the open pages.
//!
//! Nothing runs while nothing changes: a change wakes one recomputation
//! (changes within 150 ms are taken together); a recomputation that finds
//! every document as sent sends nothing. What the person may do is asked
//! for every namespace the first time it is seen, and again every 30 s (a
//! recomputation follows only when an answer changed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, broadcast};

use super::page::{self, Rights, World};
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
    tx: broadcast::Sender<Arc<Message>>,
}

struct Stores {
    cds: Store<CafeDeployment>,
    sets: Store<InPlaceSet>,
    pods: Store<Pod>,
    freezes: Store<ReleaseFreeze>,
    members: Store<MemberCluster>,
}

/// Watch failures by resource ("memberclusters" -> why): shown on the page.
type Problems = Arc<Mutex<BTreeMap<&'static str, String>>>;

impl Live {
    pub fn start(
        client: Client,
        scope: Option<String>,
        who: Option<String>,
        read_only: bool,
    ) -> Live {
        let changed = Arc::new(Notify::new());
        let problems: Problems = Arc::default();
        let namespaced = |client: &Client| -> Api<_> { scoped(client, scope.as_deref()) };
        let stores = Stores {
            cds: follow(
                namespaced(&client),
                watcher::Config::default(),
                "cafedeployments",
                &changed,
                &problems,
            ),
            sets: follow(
                scoped(&client, scope.as_deref()),
                watcher::Config::default().labels(CELL_LABEL),
                "inplacesets",
                &changed,
                &problems,
            ),
            pods: follow(
                scoped(&client, scope.as_deref()),
                watcher::Config::default().labels(CELL_LABEL),
                "pods",
                &changed,
                &problems,
            ),
            freezes: follow(
                Api::all(client.clone()),
                watcher::Config::default(),
                "releasefreezes",
                &changed,
                &problems,
            ),
            members: follow(
                Api::all(client.clone()),
                watcher::Config::default(),
                "memberclusters",
                &changed,
                &problems,
            ),
        };
        let (tx, _) = broadcast::channel(1024);
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
            changed,
            problems,
            live.sent.clone(),
            live.tx.clone(),
        ));
        live
    }

    /// Who the API server says the person is.
    pub fn who(&self) -> Option<&str> {
        self.who.as_deref()
    }

    /// Everything as last sent, and the changes from now on (atomically:
    /// nothing is missed between the two).
    pub fn subscribe(&self) -> (Vec<Arc<Message>>, broadcast::Receiver<Arc<Message>>) {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let now = sent
            .global
            .iter()
            .chain(sent.problem.iter())
            .chain(sent.releases.values())
            .cloned()
            .collect();
        (now, rx)
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

/// A reflector on `api`, driven in its own task: every change wakes
/// `changed`; a failure is recorded in `problems` until the watch recovers.
fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    resource: &'static str,
    changed: &Arc<Notify>,
    problems: &Problems,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    <K as Resource>::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let (changed, problems) = (changed.clone(), problems.clone());
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear());
    let stream = reflector::reflector(writer, stream);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let mut problems = problems.lock().unwrap_or_else(|e| e.into_inner());
            let before = problems.get(resource).cloned();
            match event {
                Ok(_) => {
                    problems.remove(resource);
                }
                Err(e) => {
                    problems.insert(resource, format!("cannot watch {resource}: {}", short(&e)));
                }
            }
            let now = problems.get(resource).cloned();
            drop(problems);
            if before != now || now.is_none() {
                changed.notify_one();
            }
        }
    });
    store
}

fn short(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.message.clone(),
        e => e.to_string(),
    }
}

/// The recomputation loop: one pass per burst of changes, and every 30 s
/// to ask about rights again.
async fn publish(
    client: Client,
    stores: Stores,
    mut rights: Rights,
    changed: Arc<Notify>,
    problems: Problems,
    sent: Arc<Mutex<Published>>,
    tx: broadcast::Sender<Arc<Message>>,
) {
    rights = ask_again(&client, &rights).await;
    let mut asked = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = changed.notified() => tokio::time::sleep(Duration::from_millis(150)).await,
            () = tokio::time::sleep_until(asked + Duration::from_secs(30)) => {
                asked = tokio::time::Instant::now();
                let fresh = ask_again(&client, &rights).await;
                if fresh == rights {
                    continue;
                }
                rights = fresh;
            }
        }
        let cds = stores.cds.state();
        // Namespaces seen for the first time: may the person operate there?
        let unasked: BTreeSet<String> = cds
            .iter()
            .filter_map(|c| c.namespace())
            .filter(|ns| !rights.operate.contains_key(ns))
            .collect();
        for ns in unasked {
            let may = rights::may(&client, "patch", "cafedeployments", Some(&ns)).await;
            rights.operate.insert(ns, may);
        }
        let (sets, pods) = (stores.sets.state(), stores.pods.state());
        let (freezes, members) = (stores.freezes.state(), stores.members.state());
        let world = World {
            cds: &cds,
            sets: &sets,
            pods: &pods,
            freezes: &freezes,
            members: &members,
            rights: &rights,
        };
        let releases = page::releases(&world);
        let global = page::global(&world);
        let problem = problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
        let send = |slot: &mut Option<Arc<Message>>, event, data: String| {
            if slot.as_ref().is_none_or(|m| m.data != data) {
                let message = Arc::new(Message { event, data });
                *slot = Some(message.clone());
                let _ = tx.send(message);
            }
        };
        send(&mut sent.global, "global", json(&global));
        send(
            &mut sent.problem,
            "problem",
            json(&serde_json::json!({"message": problem})),
        );
        let gone: Vec<String> = sent
            .releases
            .keys()
            .filter(|k| !releases.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            sent.releases.remove(&key);
            let _ = tx.send(Arc::new(Message {
                event: "gone",
                data: json(&serde_json::json!({"key": key})),
            }));
        }
        for (key, release) in releases {
            let mut slot = sent.releases.remove(&key);
            send(&mut slot, "release", json(&release));
            if let Some(m) = slot {
                sent.releases.insert(key, m);
            }
        }
    }
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
