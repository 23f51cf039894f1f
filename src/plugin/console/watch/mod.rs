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

//!
//! `follow` keeps the watches and tells what they saw; `publish` computes
//! and sends.

mod follow;
mod publish;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use tokio::sync::broadcast;

use super::page::Rights;
use follow::{Signals, Stores};

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

impl Live {
    pub fn start(
        client: Client,
        scope: Option<String>,
        who: Option<String>,
        read_only: bool,
    ) -> Live {
        let signals = Signals::default();
        lock(&signals.dirty).all = true;
        let stores = Stores::start(&client, scope.as_deref(), &signals);
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
        tokio::spawn(publish::publish(
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
