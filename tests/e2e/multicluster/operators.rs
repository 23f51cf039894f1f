//! Two host operators over the same namespace. With the default flags they
//! elect one writer (leader election is on by default); run without it, the
//! first to find the other writing its objects stands down on them and says
//! so in an AnotherWriter condition, instead of rewriting each other's status
//! and growing cells past their size.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cafe_operator::api::{CafeDeployment, Phase};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{CELLS, Federation};
use crate::support::operator::Operator;

/// What a story saw while it watched: the most pods a cell ever had (live,
/// over the three clusters), and how many times the CafeDeployment changed.
struct Watch {
    stop: Arc<AtomicBool>,
    most: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    changes: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watch {
    async fn start(fed: &Federation, name: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let most = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let changes = Arc::new(AtomicUsize::new(0));
        let cds: Api<CafeDeployment> = fed.cds();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let (stopped, counted) = (stop.clone(), changes.clone());
        let counter = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher::watcher(cds, config));
            let mut last = None;
            while let Some(event) = events.next().await {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(watcher::Event::Apply(cd)) = event {
                    let version = cd.resource_version();
                    if last.is_some() && version != last {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    last = version;
                }
            }
        });
        let (stopped, seen) = (stop.clone(), most.clone());
        let clients: Vec<(kube::Client, String)> = std::iter::once(fed.ns.client.clone())
            .chain(fed.members.iter().map(|m| m.client.clone()))
            .map(|c| (c, fed.ns.name.clone()))
            .collect();
        let sampler = tokio::spawn(async move {
            while !stopped.load(Ordering::SeqCst) {
                let mut by_cell: BTreeMap<String, usize> = BTreeMap::new();
                for (client, ns) in &clients {
                    let pods: Api<k8s_openapi::api::core::v1::Pod> =
                        Api::namespaced(client.clone(), ns);
                    let lp = kube::api::ListParams::default().labels("app=web");
                    for pod in pods.list(&lp).await.map(|l| l.items).unwrap_or_default() {
                        if pod.metadata.deletion_timestamp.is_none() {
                            let cell = pod
                                .labels()
                                .get("cafe.sofastack.io/cell")
                                .cloned()
                                .unwrap_or_default();
                            *by_cell.entry(cell).or_default() += 1;
                        }
                    }
                }
                if let Ok(mut most) = seen.lock() {
                    for (cell, n) in by_cell {
                        let m: &mut usize = most.entry(cell).or_default();
                        *m = (*m).max(n);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            stop,
            most,
            changes,
            tasks: vec![counter, sampler],
        }
    }

    fn changes(&self) -> usize {
        self.changes.load(Ordering::SeqCst)
    }

    /// Stops watching; the most pods each cell had.
    fn finish(self) -> BTreeMap<String, usize> {
        self.stop.store(true, Ordering::SeqCst);
        for task in &self.tasks {
            task.abort();
        }
        self.most.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Confirms `name` at every wait until it is Healthy.
async fn confirm_until_healthy(fed: &Federation, name: &str) {
    let cds = fed.cds();
    fed.ns
        .wait(
            "the release to finish, confirming each wait",
            240,
            || async {
                let cd = cds.get(name).await.ok()?;
                let status = cd.status?;
                if status.observed_generation != cd.metadata.generation {
                    return None;
                }
                match status.phase {
                    Some(Phase::Healthy) => Some(()),
                    Some(Phase::WaitingForConfirm) => {
                        fed.confirm(name).await;
                        None
                    }
                    _ => None,
                }
            },
        )
        .await;
}

/// Asserts that no cell ever had more than its two pods.
fn assert_never_overgrown(most: &BTreeMap<String, usize>) {
    for cell in CELLS {
        let n = most.get(cell).copied().unwrap_or(0);
        assert_eq!(
            n, 2,
            "{cell} had at most {n} live pods at once (2 wanted): {most:?}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn two_host_operators_started_with_the_default_flags_elect_one_writer() {
    // No --leader-elect flag at all: the operator's default. Outside a pod the
    // Lease lives in the first watched namespace (the story's).
    let fed =
        Federation::with_host_args("mc-two-default", &["--leader-election-identity", "op-one"])
            .await;
    let lease: Api<Lease> = fed.ns.api();
    fed.ns
        .wait("op-one to hold the Lease", 30, || async {
            let held = lease.get_opt("cafe-operator").await.ok().flatten()?;
            (held.spec?.holder_identity.as_deref() == Some("op-one")).then_some(())
        })
        .await;
    let mut second = Operator::launch(
        &format!("{}@host-two", fed.ns.name),
        &["--leader-election-identity", "op-two"],
        &[],
    );
    let watch = Watch::start(&fed, "web").await;
    fed.create("web", json!({})).await;
    fed.set_image("web", "nginx:1.26").await;
    confirm_until_healthy(&fed, "web").await;
    fed.assert_images(["nginx:1.26", "nginx:1.26"], "released")
        .await;
    let changes = watch.changes();
    assert_never_overgrown(&watch.finish());
    let holder = lease
        .get("cafe-operator")
        .await
        .expect("Lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("op-one"), "one writer, the first");
    let log = std::fs::read_to_string(&second.log).unwrap_or_default();
    assert!(
        log.contains("waiting for the leader Lease") && !log.contains("became the leader"),
        "the second operator waits as a standby: {log}"
    );
    let cd = fed.cd("web").await;
    let status = cd.status.expect("status");
    assert_eq!(
        status.writer.as_deref(),
        Some("op-one"),
        "the status names its writer"
    );
    assert!(!status.conditions.iter().any(|c| c.type_ == "AnotherWriter"));
    println!("mc-two-default: {changes} CafeDeployment changes through creation and release");
    second.stop();
    fed.finish().await;
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn an_operator_that_finds_another_writing_its_objects_stands_down_and_says_so() {
    let alone = |identity: &'static str| -> [&'static str; 5] {
        [
            "--leader-elect=false",
            "--leader-election-identity",
            identity,
            "--another-writer-stand-down-seconds",
            "20",
        ]
    };
    let mut fed = Federation::with_host_args("mc-two-writers", &alone("op-one")).await;
    fed.create("web", json!({})).await;
    // A second installation arrives, without a Lease in common.
    let mut second = Operator::launch(&format!("{}@host-two", fed.ns.name), &alone("op-two"), &[]);
    let watch = Watch::start(&fed, "web").await;
    fed.set_image("web", "nginx:1.26").await;
    let cds = fed.cds();
    let since = Instant::now();
    let note = fed
        .ns
        .wait(
            "an AnotherWriter condition on the CafeDeployment",
            90,
            || async {
                let cd = cds.get("web").await.ok()?;
                let status = cd.status?;
                let c = status
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "AnotherWriter")?;
                (c.status == "True").then_some(c)
            },
        )
        .await;
    println!(
        "mc-two-writers: found after {:?}: {}",
        since.elapsed(),
        note.message
    );
    assert_eq!(note.reason, "StandingDown");
    assert!(
        note.message.contains("op-one") && note.message.contains("op-two"),
        "it names both operators: {}",
        note.message
    );
    assert!(
        note.message.contains("--leader-elect"),
        "it says what to do: {}",
        note.message
    );
    // Waiting for a person, nothing changes: the two do not rewrite each other.
    fed.wait_phase("web", Phase::WaitingForConfirm, 90).await;
    let before = watch.changes();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let quiet = watch.changes() - before;
    confirm_until_healthy(&fed, "web").await;
    fed.assert_images(["nginx:1.26", "nginx:1.26"], "released by one writer")
        .await;
    let changes = watch.changes();
    assert_never_overgrown(&watch.finish());
    println!(
        "mc-two-writers: {quiet} CafeDeployment changes in 15 s waiting for a person, \
         {changes} through the release"
    );
    assert!(
        quiet <= 3,
        "no fight: {quiet} changes in 15 s while waiting for a person"
    );
    // The one whose name the status bears goes; the other takes over.
    let writer = fed.cd("web").await.status.and_then(|s| s.writer);
    let (continuing, standing) = if writer.as_deref() == Some("op-two") {
        ("op-two", "op-one")
    } else {
        ("op-one", "op-two")
    };
    println!("mc-two-writers: {continuing} goes on, {standing} stands down");

    // The writer leaves: the other looks again (after its stand-down, if it
    // stood down last) and finishes the next release alone; the note,
    // renewed by nobody, goes.
    if continuing == "op-two" {
        second.stop();
    } else {
        fed.host_op.stop();
    }
    fed.set_image("web", "nginx:1.27").await;
    confirm_until_healthy(&fed, "web").await;
    fed.assert_images(
        ["nginx:1.27", "nginx:1.27"],
        "released after the other left",
    )
    .await;
    let cd = fed.cd("web").await;
    assert_eq!(
        cd.status.as_ref().and_then(|s| s.writer.as_deref()),
        Some(standing)
    );
    let poke = AtomicUsize::new(0);
    fed.ns
        .wait("the AnotherWriter condition to be cleared", 90, || async {
            // A look at the object clears a note nobody renewed for twice the
            // stand-down: an annotation wakes the operator.
            let n = poke.fetch_add(1, Ordering::SeqCst);
            let patch = json!({"metadata": {"annotations": {"e2e/poke": n.to_string()}}});
            let _ = cds
                .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            let cd = cds.get("web").await.ok()?;
            let status = cd.status?;
            (!status.conditions.iter().any(|c| c.type_ == "AnotherWriter")
                && status.phase == Some(Phase::Healthy))
            .then_some(())
        })
        .await;
    second.stop();
    fed.finish().await;
}
