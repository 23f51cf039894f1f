//! The recomputation: one pass per burst of changes, and every 30 s the
//! person's rights asked again; only documents that differ from those last
//! sent are kept and announced.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::{Client, ResourceExt};
use tokio::sync::broadcast;

use super::follow::{Digests, Signals, Stores};
use super::{Change, Message, Published, json, lock};
use crate::api::CafeDeployment;
use crate::plugin::console::page::{self, Rights, SetDigest, World};
use crate::plugin::console::rights;

/// The recomputation loop: one pass per burst of changes, and every 30 s
/// to ask about rights again.
pub(super) async fn publish(
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
        if !woken(&client, &signals, &mut rights, &mut asked).await {
            continue;
        }
        let cds = stores.cds.state();
        ask_new_namespaces(&client, &cds, &mut rights, &signals).await;
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
        send(
            &mut sent.global,
            "global",
            json(&global),
            Change::Global,
            &tx,
        );
        let problem = json(&serde_json::json!({"message": problem}));
        send(&mut sent.problem, "problem", problem, Change::Problem, &tx);
        send_releases(&mut sent, releases, &keys, &tx);
    }
}

/// Waits for a change (and the rest of its burst, 150 ms) or for the time
/// to ask about rights again; false when the rights were asked and none
/// changed (nothing to compute).
async fn woken(
    client: &Client,
    signals: &Signals,
    rights: &mut Rights,
    asked: &mut tokio::time::Instant,
) -> bool {
    tokio::select! {
        () = signals.changed.notified() => tokio::time::sleep(Duration::from_millis(150)).await,
        () = tokio::time::sleep_until(*asked + Duration::from_secs(30)) => {
            *asked = tokio::time::Instant::now();
            let fresh = ask_again(client, rights).await;
            if fresh == *rights {
                return false;
            }
            *rights = fresh;
            lock(&signals.dirty).all = true;
        }
    }
    true
}

/// Namespaces seen for the first time: may the person operate there? A new
/// answer is shown on every release.
async fn ask_new_namespaces(
    client: &Client,
    cds: &[Arc<CafeDeployment>],
    rights: &mut Rights,
    signals: &Signals,
) {
    let unasked: BTreeSet<String> = cds
        .iter()
        .filter_map(|c| c.namespace())
        .filter(|ns| !rights.operate.contains_key(ns))
        .collect();
    if !unasked.is_empty() {
        lock(&signals.dirty).all = true;
    }
    for ns in unasked {
        let may = rights::may(client, "patch", "cafedeployments", Some(&ns)).await;
        rights.operate.insert(ns, may);
    }
}

/// A document is kept and announced only when it differs from the last sent.
fn send(
    slot: &mut Option<Arc<Message>>,
    event: &'static str,
    data: String,
    change: Change,
    tx: &broadcast::Sender<Change>,
) {
    if slot.as_ref().is_none_or(|m| m.data != data) {
        *slot = Some(Arc::new(Message { event, data }));
        let _ = tx.send(change);
    }
}

/// The releases computed again, sent where they changed; those whose
/// CafeDeployment is no longer among `keys` told gone.
fn send_releases(
    sent: &mut Published,
    releases: BTreeMap<String, page::Release>,
    keys: &HashSet<String>,
    tx: &broadcast::Sender<Change>,
) {
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
        let change = Change::Release(key.clone());
        send(&mut slot, "release", json(&release), change, tx);
        if let Some(m) = slot {
            sent.releases.insert(key, m);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InPlaceSet;
    use serde_json::json;

    #[test]
    fn a_sets_change_stands_for_its_cafedeployments() {
        let set: InPlaceSet = serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "InPlaceSet",
            "metadata": {"name": "demo-cell-a", "uid": "set-uid",
                         "ownerReferences": [{"apiVersion": crate::api::names::API_VERSION,
                             "kind": "CafeDeployment", "name": "demo", "uid": "cd-uid"}]},
            "spec": {"replicas": 1, "selector": {}, "template": {}}
        }))
        .expect("set");
        let touched: HashSet<String> = ["set-uid".to_string(), "other-cd".to_string()].into();
        let mut found: Vec<String> = owners(&touched, &[Arc::new(SetDigest::of(&set))])
            .into_iter()
            .collect();
        found.sort();
        assert_eq!(found, ["cd-uid", "other-cd", "set-uid"]);
    }
}
