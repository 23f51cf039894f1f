//! Image pre-download (`spec.strategy.preDownload`) on the simulated nodes:
//! while the Beta group waits for its confirmation, the nodes of the pods not
//! yet updated get a pull pod each (never more at once than the parallelism),
//! the InPlaceSets and the CafeDeployment say how far it came, the pull pods
//! go, and the waiting pods are not touched. A real pull from the registry,
//! its failure shown before a group opens, and a restart without a pull are
//! the real-node story's (`real_nodes/pre_download.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cafe_operator::api::{CafeDeployment, InPlaceSet, Phase};
use cafe_operator::inplaceset::predownload::PULL_LABEL;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::demo::{
    confirm_until_healthy, create_demo_with, pods_by_cell, release_image, settle, wait_all_on,
};
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::support::pods::{image, pod_ready};

/// The CafeDeployment's `ImagesPreDownloaded` condition: (status, reason, message).
pub(crate) async fn pre_download_condition(
    cds: &Api<CafeDeployment>,
) -> Option<(String, String, String)> {
    let cd = cds.get("demo").await.ok()?;
    cd.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ImagesPreDownloaded")
        .map(|c| (c.status, c.reason, c.message))
}

/// Waits up to `seconds` for `ImagesPreDownloaded=True`; its reason and message.
pub(crate) async fn wait_pre_downloaded(
    ns: &TestNs,
    cds: &Api<CafeDeployment>,
    seconds: u64,
) -> (String, String) {
    let (_, reason, message) = ns
        .wait("ImagesPreDownloaded=True", seconds, || async {
            pre_download_condition(cds)
                .await
                .filter(|(status, _, _)| status == "True")
        })
        .await;
    (reason, message)
}

/// The pull pods in the namespace.
pub(crate) async fn pull_pods(ns: &TestNs) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(PULL_LABEL))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// CAFE's example (10 pods, Beta, groups of 4, confirmed) with
/// `preDownload` at `parallelism`, created and confirmed up.
async fn create_demo_with_pre_download(ns: &TestNs, parallelism: i32) {
    create_demo_with(ns, json!({"preDownload": {"parallelism": parallelism}})).await;
    confirm_until_healthy(ns).await;
}

/// Follows the pull pods from a watch, every change in the API server's
/// order: the most live at once per set, and how many there were (by uid: a
/// set's pulls take turns in its slots' names). (A pull pod on a simulated node lives about 0.1 s: a sampled list
/// would miss some.)
struct PullWatch {
    most: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PullWatch {
    fn start(pods: Api<Pod>) -> Self {
        let (most, seen) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(std::sync::Mutex::new(BTreeSet::new())),
        );
        let (m, s) = (most.clone(), seen.clone());
        let config = watcher::Config::default().labels(PULL_LABEL);
        let task = tokio::spawn(async move {
            let mut events = watcher(pods, config).boxed();
            // Live pull pods (not terminating), by name: their set.
            let mut live: BTreeMap<String, String> = BTreeMap::new();
            while let Some(Ok(event)) = events.next().await {
                let (pod, gone) = match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
                    watcher::Event::Delete(p) => (p, true),
                    watcher::Event::Init | watcher::Event::InitDone => continue,
                };
                let name = pod.name_any();
                s.lock().unwrap().insert(pod.uid().unwrap_or_default());
                if gone || pod.metadata.deletion_timestamp.is_some() {
                    live.remove(&name);
                } else {
                    let set = pod.labels().get(PULL_LABEL).cloned().unwrap_or_default();
                    live.insert(name, set);
                }
                let mut per_set: BTreeMap<&String, usize> = BTreeMap::new();
                for set in live.values() {
                    *per_set.entry(set).or_default() += 1;
                }
                m.fetch_max(
                    per_set.values().copied().max().unwrap_or(0),
                    Ordering::Relaxed,
                );
            }
        });
        Self { most, seen, task }
    }

    fn finish(self) -> (usize, usize) {
        self.task.abort();
        let seen = self.seen.lock().unwrap().len();
        (self.most.load(Ordering::Relaxed), seen)
    }
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn during_the_beta_wait_the_next_groups_nodes_get_the_image_one_at_a_time_and_their_pods_stay()
 {
    let ns = TestNs::new("pre-download").await;
    // The operator's watch lags 400 ms behind its own writes, as under a
    // loaded API server: its cache shows a pull it started only later, and
    // the next round must not start a second one meanwhile.
    let mut op = Operator::launch(&ns.name, &["--debug-watch-lag-ms", "400"], &[]);
    let cds: Api<CafeDeployment> = ns.api();
    create_demo_with_pre_download(&ns, 1).await;
    wait_all_on(&ns, "nginx:1.25").await;
    assert!(
        pull_pods(&ns).await.is_empty(),
        "a creation pulls nothing ahead: every pod is new"
    );
    assert_eq!(pre_download_condition(&cds).await, None);

    let watch = PullWatch::start(ns.api());
    release_image(&cds, "nginx:1.26").await;
    // The operator dies as the pulls begin; the one after it goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    op.restart();
    settle(&ns, Phase::WaitingForConfirm, 1).await;
    let waiting: BTreeMap<String, (String, String)> = pods_by_cell(&ns)
        .await
        .into_iter()
        .filter(|(p, _)| image(p) == "nginx:1.25")
        .map(|(p, _)| {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            (p.uid().unwrap_or_default(), (p.name_any(), node))
        })
        .collect();
    assert_eq!(waiting.len(), 8, "the Beta group is one pod per cell");
    let wanted: BTreeSet<String> = waiting.values().map(|(_, node)| node.clone()).collect();

    let (reason, message) = wait_pre_downloaded(&ns, &cds, 90).await;
    println!("ImagesPreDownloaded=True {reason}: {message}");
    assert_eq!(reason, "Pulled");
    assert!(message.contains("nginx:1.26"), "{message}");
    assert!(
        message.contains(&format!("all {} nodes", wanted.len())),
        "{message}"
    );
    ns.wait("the pull pods to be gone", 30, || async {
        pull_pods(&ns).await.is_empty().then_some(())
    })
    .await;
    let (most, seen) = watch.finish();
    println!("pull pods: {seen} in all, at most {most} at once in one cell");
    assert_eq!(
        most, 1,
        "parallelism 1: one node pulls at a time in each cell"
    );
    // A finished pull's pod stays until the set's status records the node:
    // neither the lagging cache nor the new leader pulls a node twice.
    assert_eq!(seen, wanted.len(), "one pull pod for each of {wanted:?}");
    // Each set pulled onto exactly the nodes of its pods not yet updated.
    let mut pulled = BTreeSet::new();
    for set in ns
        .api::<InPlaceSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        let p = set
            .status
            .and_then(|s| s.pre_download)
            .expect("status.preDownload");
        assert_eq!(p.pulling, 0);
        assert!(p.failed.is_empty(), "{:?}", p.failed);
        assert_eq!(p.images, vec!["nginx:1.26".to_string()]);
        pulled.extend(p.pulled);
    }
    assert_eq!(pulled, wanted, "pulled onto the nodes of the waiting pods");
    // The waiting pods were not touched: same pods, old image, Ready.
    let still: BTreeMap<String, bool> = pods_by_cell(&ns)
        .await
        .into_iter()
        .filter(|(p, _)| image(p) == "nginx:1.25")
        .map(|(p, _)| (p.uid().unwrap_or_default(), pod_ready(&p)))
        .collect();
    assert_eq!(
        still.keys().collect::<BTreeSet<_>>(),
        waiting.keys().collect::<BTreeSet<_>>()
    );
    assert!(
        still.values().all(|ready| *ready),
        "every waiting pod Ready"
    );

    confirm_until_healthy(&ns).await;
    wait_all_on(&ns, "nginx:1.26").await;
    assert!(pull_pods(&ns).await.is_empty());
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn turning_pre_download_off_mid_release_removes_its_pulls_and_its_condition() {
    let ns = TestNs::new("pre-download-off").await;
    let _op = Operator::start(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    create_demo_with_pre_download(&ns, 4).await;
    release_image(&cds, "nginx:1.26").await;
    settle(&ns, Phase::WaitingForConfirm, 1).await;
    wait_pre_downloaded(&ns, &cds, 90).await;
    let patch = json!({"spec": {"strategy": {"preDownload": null}}});
    cds.patch(
        "demo",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("turn pre-download off");
    ns.wait("the condition and the sets' figures to go", 60, || async {
        let gone = pre_download_condition(&cds).await.is_none();
        let sets = ns
            .api::<InPlaceSet>()
            .list(&ListParams::default())
            .await
            .ok()?;
        let figures = sets
            .iter()
            .any(|s| s.status.as_ref().is_some_and(|s| s.pre_download.is_some()));
        (gone && !figures && pull_pods(&ns).await.is_empty()).then_some(())
    })
    .await;
    confirm_until_healthy(&ns).await;
    wait_all_on(&ns, "nginx:1.26").await;
}
