//! Real nodes, real requests: the test application runs in containers on the
//! local control plane's real nodes (kubelet, containerd, runc, the CNI
//! bridge; tests/cluster/nodes.sh), and a steady stream of HTTP requests goes
//! to its Service's ClusterIP through kube-proxy while releases run. The
//! number that matters is the failed requests: ours must be zero.

mod pre_download;

use std::collections::BTreeMap;
use std::time::Duration;

use cafe_operator::api::{CafeDeployment, Phase};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::SignedDuration;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::demo::{confirm_until_healthy, phase, pods_by_cell, release_image, wait_n_on};
use crate::support::kubectl::kubectl_rollback;
use crate::support::load::Load;
use crate::support::lossless::Lossless;
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::support::pods::{image, pod_condition, pod_ready};
use crate::support::real_app::{template, testapp};
use crate::support::real_nodes::{
    MAX_LOAD_TIME, MAX_REQUESTS, RATE, assert_no_failure, create_demo, service, wait_routed,
};

/// Waits until `demo` waits for a confirmation (`what` has been released).
pub(crate) async fn wait_for_confirmation(ns: &TestNs, what: &str) {
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(&format!("{what} to wait for confirmation"), 120, || async {
        (phase(&cds).await == Some(Phase::WaitingForConfirm)).then_some(())
    })
    .await;
}

/// The number of the revision all pods ran before this release (`rollbackTo`).
pub(crate) async fn stable_revision_number(ns: &TestNs) -> i64 {
    let cds: Api<CafeDeployment> = ns.api();
    let current = cds
        .get("demo")
        .await
        .expect("demo")
        .status
        .and_then(|s| s.current_revision)
        .expect("status.currentRevision");
    let revisions: Api<ControllerRevision> = ns.api();
    revisions
        .get(&current)
        .await
        .expect("the stable ControllerRevision")
        .revision
}

#[tokio::test]
#[ignore = "needs the local control plane's real nodes: make test"]
async fn a_release_with_confirmations_and_a_rollback_fails_no_request() {
    let ns = TestNs::new("real-release").await;
    let _op = Operator::start(&ns.name);
    let target = create_demo(&ns, 6, 2).await;
    let cds: Api<CafeDeployment> = ns.api();
    let checker = Lossless::start(&ns, "demo").await;
    let load = Load::start(target, RATE, MAX_REQUESTS, MAX_LOAD_TIME);

    // Beta (one pod per cell), then batches of 2, each confirmed.
    release_image(&cds, &testapp("v2")).await;
    wait_for_confirmation(&ns, "the Beta group").await;
    let beta: Vec<Pod> = pods_by_cell(&ns)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| image(p) == testapp("v2"))
        .collect();
    assert_eq!(beta.len(), 2, "the Beta group is one pod per cell");
    let (answered, failed) = load.so_far();
    assert_eq!(
        failed, 0,
        "requests failed during the Beta group ({answered} answered)"
    );
    confirm_until_healthy(&ns).await;
    wait_n_on(&ns, 6, &testapp("v2")).await;

    // The next release, paused after its Beta group, then rolled back.
    release_image(&cds, &testapp("v3")).await;
    wait_for_confirmation(&ns, "v3's Beta group").await;
    kubectl_rollback(&ns.name, stable_revision_number(&ns).await);
    wait_n_on(&ns, 6, &testapp("v2")).await;
    // A moment of steady state after the rollback, then the verdict.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.finish().await;
    let lossless = checker.verify().await;
    assert_no_failure(
        "release v1 -> v2 (Beta + 2 batches), v3 Beta rolled back",
        &report,
    );
    let versions = report.versions();
    for v in ["v1", "v2", "v3"] {
        assert!(
            versions.contains_key(v),
            "{v} answered no request: {versions:?}"
        );
    }
    println!(
        "real-release: fewest ready endpoints {}, {} pods changed in place",
        lossless.min_ready, lossless.changed
    );
}

/// The in-place path on a real kubelet: same pod UID and IP, restartCount + 1,
/// the old container stopped by SIGTERM (exit 0, its in-flight request
/// answered) after its preStop hook, and the pod back in traffic only once
/// the readiness probe passed.
#[tokio::test]
#[ignore = "needs the local control plane's real nodes: make test"]
async fn an_in_place_update_on_a_real_kubelet_keeps_the_pod_and_honours_sigterm() {
    let ns = TestNs::new("real-inplace").await;
    let _op = Operator::start(&ns.name);
    let target = create_demo(&ns, 2, 2).await;
    let cds: Api<CafeDeployment> = ns.api();
    let before: BTreeMap<String, (String, i32)> = identities(&ns).await;
    let patch = json!({"spec": {"strategy": {"needWaitingForConfirm": false}}});
    cds.patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("no confirmation");
    let load = Load::start(target, RATE, MAX_REQUESTS, MAX_LOAD_TIME);
    release_image(&cds, &testapp("v2")).await;
    wait_n_on(&ns, 2, &testapp("v2")).await;
    let report = load.finish().await;
    assert_no_failure("in-place update of 2 pods", &report);

    let pods: Api<Pod> = ns.api();
    for (uid, (ip, restarts)) in &before {
        let (p, _) = pods_by_cell(&ns)
            .await
            .into_iter()
            .find(|(p, _)| p.uid().as_deref() == Some(uid))
            .unwrap_or_else(|| panic!("pod {uid} was replaced, not updated in place"));
        let name = p.name_any();
        let status = p.status.clone().unwrap_or_default();
        assert_eq!(
            status.pod_ip.as_deref(),
            Some(ip.as_str()),
            "{name} kept its IP"
        );
        let c = &status.container_statuses.unwrap_or_default()[0];
        assert_eq!(c.restart_count, restarts + 1, "{name}: restartCount + 1");
        let last = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .unwrap_or_else(|| panic!("{name}: the old container's end is recorded"));
        assert_eq!(
            last.exit_code, 0,
            "{name}: the old container exited by itself on SIGTERM (137 would be SIGKILL)"
        );
        // The old container's log: the preStop hook, then SIGTERM.
        let previous = pods
            .logs(
                &name,
                &kube::api::LogParams {
                    previous: true,
                    ..Default::default()
                },
            )
            .await
            .expect("kubectl logs --previous through the kubelet");
        let hook = previous.find("preStop hook").unwrap_or_else(|| {
            panic!("{name}: the preStop hook ran in the old container:\n{previous}")
        });
        let term = previous
            .find("terminated, finishing requests in flight")
            .unwrap_or_else(|| panic!("{name}: SIGTERM reached the old container:\n{previous}"));
        assert!(hook < term, "{name}: preStop before SIGTERM:\n{previous}");
        // Back in traffic only once the readiness probe passed: kubelet's
        // Ready (which the gate is part of, and EndpointSlices follow) turned
        // True no sooner than the new container's start + initialDelaySeconds
        // (2 s; the timestamps are whole seconds, hence 1). The gate itself
        // reopens as soon as the new container runs (src/inplaceset/lifecycle.rs).
        let started = c
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone())
            .expect("running")
            .0;
        let ready_since = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.clone())
            .expect("the Ready condition")
            .0;
        assert!(
            ready_since >= started + SignedDuration::from_secs(1),
            "{name}: Ready at {ready_since}, before the readiness probe could pass ({started} + 2 s)"
        );
        assert_eq!(pod_condition(&p, "Ready").as_deref(), Some("True"));
    }
}

/// uid -> (IP, restartCount) of every live demo pod.
async fn identities(ns: &TestNs) -> BTreeMap<String, (String, i32)> {
    pods_by_cell(ns)
        .await
        .into_iter()
        .map(|(p, _)| {
            let restarts = crate::support::pods::restarts(&p);
            (
                p.uid().unwrap_or_default(),
                (
                    p.status.and_then(|s| s.pod_ip).unwrap_or_default(),
                    restarts,
                ),
            )
        })
        .collect()
}

/// A new image whose container exits at start: the release stops within its
/// first group (one pod per cell), the others keep serving, nothing fails.
#[tokio::test]
#[ignore = "needs the local control plane's real nodes: make test"]
async fn a_crashing_image_stalls_the_release_within_one_group() {
    let ns = TestNs::new("real-crash").await;
    let _op = Operator::start(&ns.name);
    let target = create_demo(&ns, 4, 2).await;
    let cds: Api<CafeDeployment> = ns.api();
    let patch = json!({"spec": {"strategy": {"upgradeType": "Beta", "batchSize": 2,
        "needWaitingForConfirm": false, "progressDeadlineSeconds": 20}}});
    cds.patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("no confirmation");
    let load = Load::start(target, RATE, MAX_REQUESTS, MAX_LOAD_TIME);
    release_image(&cds, &testapp("crash")).await;
    let message = ns
        .wait(
            "the release to stall on the crashing image",
            120,
            || async {
                let cd = cds.get("demo").await.ok()?;
                let stalled = cd
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Stalled" && c.status == "True")?;
                Some(stalled.message)
            },
        )
        .await;
    // Hold the stall a while: nothing more is touched.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pods = pods_by_cell(&ns).await;
    let crashing: Vec<&Pod> = pods
        .iter()
        .map(|(p, _)| p)
        .filter(|p| image(p) == testapp("crash"))
        .collect();
    assert!(
        !crashing.is_empty() && crashing.len() <= 2,
        "the crashing image stays within the Beta group (one pod per cell): {} pods",
        crashing.len()
    );
    let serving = pods.iter().filter(|(p, _)| pod_ready(p)).count();
    assert!(serving >= 2, "the other pods serve: {serving} Ready");
    let report = load.finish().await;
    println!("crash: stalled with {message:?}");
    assert_no_failure("a crashing image, stalled in its Beta group", &report);
}

/// The reference, in the same run and under the same load: a Deployment's
/// rolling update of the same application behind the same kind of Service,
/// with the same budget (2 pods out at once, no surge), without and with a
/// preStop sleep. It measures; it asserts only that the rollout completed.
#[tokio::test]
#[ignore = "needs the local control plane's real nodes: make test"]
async fn for_reference_a_deployment_rolling_update_under_the_same_load() {
    for (label, pre_stop) in [
        ("without preStop", None),
        ("with a 5 s preStop sleep", Some(5)),
    ] {
        let ns = TestNs::new("real-deployment").await;
        let target = service(&ns, "ref", "ref").await;
        let mut template = template("ref", "v1");
        if let Some(seconds) = pre_stop {
            template["spec"]["containers"][0]["lifecycle"] =
                json!({"preStop": {"sleep": {"seconds": seconds}}});
        }
        ns.create::<Deployment>(json!({
            "metadata": {"name": "ref"},
            "spec": {
                "replicas": 6,
                "selector": {"matchLabels": {"app": "ref"}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 2}},
                "template": template
            }
        }))
        .await;
        let deployments: Api<Deployment> = ns.api();
        let rolled_out = |image: String| {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("ref").await.ok()?;
                let s = d.status.as_ref()?;
                let spec_image = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
                    .image
                    .clone()?;
                (spec_image == image
                    && s.observed_generation >= d.metadata.generation
                    && s.updated_replicas == Some(6)
                    && s.available_replicas == Some(6)
                    && s.replicas == Some(6))
                .then_some(())
            }
        };
        ns.wait("the Deployment's 6 pods available", 120, || {
            rolled_out(testapp("v1"))
        })
        .await;
        wait_routed(&ns, target).await;
        let load = Load::start(target, RATE, MAX_REQUESTS, MAX_LOAD_TIME);
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": testapp("v2")}]}}}});
        deployments
            .patch("ref", &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .expect("roll out v2");
        ns.wait("the rolling update to v2", 180, || {
            rolled_out(testapp("v2"))
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let report = load.finish().await;
        println!(
            "reference: Deployment rolling update {label}: {}",
            report.summary()
        );
        assert!(report.versions().contains_key("v2"), "v2 answered");
    }
}
