//! The operator's own life during a release on the real nodes, under load:
//! SIGKILLed again and again, and run in the cluster from its own image,
//! installed, upgraded mid-release and uninstalled with helm. No request fails.

use std::process::Command;
use std::time::Duration;

use cafe_operator::api::{CafeDeployment, Phase};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::chart::{CHART, helm};
use crate::support::demo::{confirm_until_healthy, phase, pods_by_cell, release_image, wait_n_on};
use crate::support::kubectl::kubectl_annotate_confirm;
use crate::support::load::Load;
use crate::support::namespace::TestNs;
use crate::support::operator::{Operator, holder};
use crate::support::pods::restarts;
use crate::support::real_app::testapp;
use crate::support::real_nodes::{
    MAX_LOAD_TIME, MAX_REQUESTS, RATE, TAINT, assert_no_failure, create_demo,
};

/// No confirmations: the release runs by itself while the operator dies.
async fn unattended(ns: &TestNs) {
    let cds: Api<CafeDeployment> = ns.api();
    let patch = json!({"spec": {"strategy": {"needWaitingForConfirm": false}}});
    cds.patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("no confirmation");
}

/// Every pod of `demo` by UID with its restart count.
async fn restarts_by_uid(ns: &TestNs) -> Vec<(String, i32)> {
    pods_by_cell(ns)
        .await
        .iter()
        .map(|(p, _)| (p.uid().unwrap_or_default(), restarts(p)))
        .collect()
}

/// How many SIGKILLs the operator gets during the release, 1-4 s apart.
const KILLS: u64 = 8;

#[tokio::test]
#[ignore = "needs the local control plane's real nodes: make test"]
async fn the_operator_sigkilled_again_and_again_fails_no_request() {
    let ns = TestNs::new("real-kills").await;
    let mut op = Operator::start(&ns.name);
    let target = create_demo(&ns, 6, 2).await;
    unattended(&ns).await;
    let before = restarts_by_uid(&ns).await;
    let cds: Api<CafeDeployment> = ns.api();
    let load = Load::start(target, RATE, MAX_REQUESTS, MAX_LOAD_TIME);
    release_image(&cds, &testapp("v2")).await;
    let mut mid_release = 0;
    for k in 0..KILLS {
        // 1-4 s apart, a fixed sequence: the same run every time.
        tokio::time::sleep(Duration::from_millis(1000 + (k * 1777) % 3000)).await;
        if phase(&cds).await != Some(Phase::Healthy) {
            mid_release += 1;
        }
        op.restart();
    }
    wait_n_on(&ns, 6, &testapp("v2")).await;
    ns.wait("the release to be Healthy", 120, || async {
        (phase(&cds).await == Some(Phase::Healthy)).then_some(())
    })
    .await;
    let report = load.finish().await;
    println!("real-kills: {KILLS} SIGKILLs, {mid_release} of them while the release ran");
    assert!(
        mid_release >= KILLS - 2,
        "only {mid_release} of {KILLS} SIGKILLs landed while the release ran"
    );
    assert_no_failure(&format!("release of 6 pods with {KILLS} SIGKILLs"), &report);
    let after = restarts_by_uid(&ns).await;
    for (uid, restarts_before) in before {
        let restarts_after = after
            .iter()
            .find(|(u, _)| *u == uid)
            .map(|(_, r)| *r)
            .unwrap_or_else(|| panic!("pod {uid} was replaced, not updated in place"));
        assert_eq!(
            restarts_after,
            restarts_before + 1,
            "pod {uid} was updated exactly once"
        );
    }
}

/// `helm install`/`upgrade` of the chart with the operator's own image on the
/// real nodes, watching only `ns`; `extra` adds `--set` values.
fn helm_operator(verb: &str, ns: &str, image: &str, extra: &[&str]) {
    let (repository, tag) = image.rsplit_once(':').expect("image REPOSITORY:TAG");
    let sets = [
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".to_string(),
        format!("watchNamespaces={{{ns}}}"),
        "replicaCount=2".to_string(),
        "nodeSelector.type=real".to_string(),
        format!("tolerations[0].key={TAINT}"),
        "tolerations[0].operator=Exists".to_string(),
        "tolerations[0].effect=NoSchedule".to_string(),
        // Short leases: the standby takes over within seconds.
        "leaderElection.leaseDurationSeconds=6".to_string(),
    ];
    let mut args: Vec<&str> = vec![
        verb,
        RELEASE,
        CHART,
        "--namespace",
        ns,
        "--wait",
        "--timeout",
        "180s",
    ];
    for s in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
        args.extend(["--set", s]);
    }
    helm(&args);
}

/// The chart's release name: its ClusterRoles are `real-helm-cafe-operator*`,
/// apart from other stories' releases.
const RELEASE: &str = "real-helm";

/// The chart's release in a story's namespace: uninstalled when the story
/// ends, passed or failed (its ClusterRoles outlive the namespace otherwise).
struct Release {
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = Command::new("helm")
            .args([
                "uninstall",
                RELEASE,
                "--namespace",
                &self.namespace,
                "--wait",
            ])
            .output();
    }
}

#[tokio::test]
#[ignore = "needs the local control plane's real nodes and the operator's image: make test"]
async fn the_operator_from_its_image_installed_upgraded_and_uninstalled_with_helm_fails_no_request()
{
    let image = std::env::var("CAFE_OPERATOR_IMAGE").unwrap_or_else(|_| {
        panic!(
            "CAFE_OPERATOR_IMAGE is not set: build the operator's image and import it into the \
             real nodes first (`tests/images/build.sh --operator DIR && \
             tests/cluster/load-image.sh DIR/cafe-operator.tar`, as make test does), then set \
             CAFE_OPERATOR_IMAGE=cafe.local/cafe-operator:dev"
        )
    });
    let ns = TestNs::new("real-helm").await;
    let _release = Release {
        namespace: ns.name.clone(),
    };
    helm_operator("install", &ns.name, &image, &[]);
    let pods: Api<Pod> = ns.api();
    let operators = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=cafe-operator"))
        .await
        .expect("operator pods");
    assert_eq!(operators.items.len(), 2, "two replicas");
    for p in &operators.items {
        let c = &p.spec.as_ref().expect("spec").containers[0];
        assert_eq!(c.image.as_deref(), Some(image.as_str()));
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        assert!(
            node.as_deref().is_some_and(|n| n.starts_with("real-")),
            "the operator runs on a real node: {node:?}"
        );
    }
    let first_leader = ns
        .wait("a replica to hold the Lease", 60, || holder(&ns))
        .await;

    let target = create_demo(&ns, 6, 2).await;
    let cds: Api<CafeDeployment> = ns.api();
    let load = Load::start(target, RATE, MAX_REQUESTS, MAX_LOAD_TIME);
    release_image(&cds, &testapp("v2")).await;
    ns.wait("the Beta group to wait for confirmation", 120, || async {
        (phase(&cds).await == Some(Phase::WaitingForConfirm)).then_some(())
    })
    .await;
    kubectl_annotate_confirm(&ns.name);
    // The operator itself is upgraded in the middle of the release: its pods
    // are replaced one by one, the standby takes over.
    helm_operator("upgrade", &ns.name, &image, &["logging.level=debug"]);
    let second_leader = ns
        .wait("a new replica to hold the Lease", 90, || async {
            holder(&ns).await.filter(|h| *h != first_leader)
        })
        .await;
    confirm_until_healthy(&ns).await;
    wait_n_on(&ns, 6, &testapp("v2")).await;

    helm(&["uninstall", RELEASE, "--namespace", &ns.name, "--wait"]);
    // The application serves on without its operator.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let report = load.finish().await;
    println!("real-helm: leaders {first_leader} then {second_leader}");
    assert_no_failure(
        "release with the operator in the cluster, helm upgrade mid-release, uninstall",
        &report,
    );
    assert_eq!(
        pods_by_cell(&ns).await.len(),
        6,
        "uninstall left the application's pods"
    );
}
