//! Image pre-download on the real nodes, pulling from the local registry
//! (tests/cluster/registry.sh): the ~200 MB image `cafe.local/shop:v2` is
//! taken off the nodes first, so that someone must pull it. While the Beta
//! group waits, the operator pulls it onto the nodes of the pods not yet
//! updated; after the confirmation those pods restart on it without a pull
//! (kubelet: "already present on machine"), under load, with no request
//! failed. Then a release of an image the registry does not have shows
//! `PullFailed`, naming the node and kubelet's error, while every pod still
//! serves and before any group opens.

use std::collections::BTreeSet;
use std::time::Duration;

use cafe_operator::api::{CafeDeployment, Phase};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::pre_download::{pre_download_condition, pull_pods, wait_pre_downloaded};
use crate::real_nodes::wait_for_confirmation;
use crate::support::demo::{confirm_until_healthy, phase, pods_by_cell, release_image};
use crate::support::load::Load;
use crate::support::members::cluster_script;
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::support::pods::{image, pod_condition, pod_ready};
use crate::support::real_nodes::{
    MAX_LOAD_TIME, MAX_REQUESTS, RATE, assert_no_failure, demo, service, wait_routed,
};

/// The production-sized image's version `v` (pushed to the registry only).
fn shop(v: &str) -> String {
    format!("cafe.local/shop:{v}")
}

/// Runs tests/cluster/registry.sh with `args`.
fn registry(args: &[&str]) {
    cluster_script(
        "registry.sh",
        args,
        "is the cluster up with its registry? make cluster-up",
    );
}

/// kubelet's events about `pod` with reason `reason`.
async fn events(ns: &TestNs, pod: &str, reason: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={pod},reason={reason}");
    ns.api::<Event>()
        .list(&ListParams::default().fields(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.message)
        .collect()
}

/// The names of the live pods on `image`.
async fn pods_on(ns: &TestNs, wanted: &str) -> BTreeSet<String> {
    pods_by_cell(ns)
        .await
        .into_iter()
        .filter(|(p, _)| image(p) == wanted)
        .map(|(p, _)| p.name_any())
        .collect()
}

#[tokio::test]
#[ignore = "needs the local control plane's real nodes and registry: make test"]
async fn the_batch_groups_restart_without_a_pull_and_a_missing_image_shows_before_its_group_opens()
{
    registry(&["forget", &shop("v2")]);
    let ns = TestNs::new("real-pre-download").await;
    let _op = Operator::start(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let target = service(&ns, "demo", "demo").await;
    let mut cd = demo(6, 2, "v1");
    cd["spec"]["template"]["spec"]["containers"][0]["image"] = json!(shop("v1"));
    cd["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    cd["spec"]["strategy"]["preDownload"] = json!({"parallelism": 2, "timeoutSeconds": 300});
    ns.create::<CafeDeployment>(cd).await;
    confirm_until_healthy(&ns).await;
    ns.wait("6 pods Ready on shop:v1", 300, || async {
        let pods = pods_by_cell(&ns).await;
        (pods.len() == 6
            && pods
                .iter()
                .all(|(p, _)| image(p) == shop("v1") && pod_ready(p)))
        .then_some(())
    })
    .await;
    wait_routed(&ns, target).await;
    let load = Load::start(target, RATE, MAX_REQUESTS, MAX_LOAD_TIME);

    release_image(&cds, &shop("v2")).await;
    wait_for_confirmation(&ns, "the Beta group").await;
    let later = pods_on(&ns, &shop("v1")).await;
    assert_eq!(later.len(), 4, "the Beta group is one pod per cell");
    let (_, message) = wait_pre_downloaded(&ns, &cds, 300).await;
    println!("during the Beta wait: {message}");
    ns.wait("the pull pods to be gone", 60, || async {
        pull_pods(&ns).await.is_empty().then_some(())
    })
    .await;

    confirm_until_healthy(&ns).await;
    ns.wait("6 pods Ready on shop:v2, Healthy", 300, || async {
        let pods = pods_by_cell(&ns).await;
        let all = pods.len() == 6
            && pods
                .iter()
                .all(|(p, _)| image(p) == shop("v2") && pod_ready(p));
        (all && phase(&cds).await == Some(Phase::Healthy)).then_some(())
    })
    .await;
    // The batch groups' pods (the same pods, restarted in place) found the
    // image there: kubelet pulled nothing for them.
    for pod in &later {
        let pulled = events(&ns, pod, "Pulled").await;
        let v2: Vec<&String> = pulled.iter().filter(|m| m.contains(&shop("v2"))).collect();
        println!("{pod}: {v2:?}");
        assert!(
            !v2.is_empty() && v2.iter().all(|m| m.contains("already present on machine")),
            "pod {pod} restarted on {} without a pull; kubelet said {pulled:?}",
            shop("v2")
        );
        let pulling = events(&ns, pod, "Pulling").await;
        assert!(
            !pulling.iter().any(|m| m.contains(&shop("v2"))),
            "pod {pod} pulled {} itself: {pulling:?}",
            shop("v2")
        );
    }
    let report = load.finish().await;
    assert_no_failure("a release pre-downloaded during the Beta wait", &report);

    // An image the registry does not have: paused, so no group opens; the
    // failure shows while every pod still serves.
    let pause = json!({"spec": {"strategy": {"pause": true}}});
    cds.patch("demo", &PatchParams::default(), &Patch::Merge(&pause))
        .await
        .expect("pause");
    release_image(&cds, &shop("missing")).await;
    let (_, reason, message) = ns
        .wait("ImagesPreDownloaded=False, PullFailed", 180, || async {
            pre_download_condition(&cds)
                .await
                .filter(|(_, reason, _)| reason == "PullFailed")
        })
        .await;
    println!("{reason}: {message}");
    assert!(message.contains("real-cell-"), "names the node: {message}");
    assert!(
        message.contains(&shop("missing")),
        "names the image: {message}"
    );
    let pods: Vec<Pod> = pods_by_cell(&ns)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(pods.len(), 6);
    for p in &pods {
        assert_eq!(image(p), shop("v2"), "no pod moved");
        assert!(pod_ready(p), "{} still serves", p.name_any());
        assert_eq!(
            pod_condition(p, "cafe.sofastack.io/traffic-ready").as_deref(),
            Some("True"),
            "{}'s gate is still open",
            p.name_any()
        );
    }
    // Back to the image that runs: the failed pulls and the condition go.
    release_image(&cds, &shop("v2")).await;
    let resume = json!({"spec": {"strategy": {"pause": false}}});
    cds.patch("demo", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .expect("resume");
    ns.wait("the failed pulls and the condition to go", 120, || async {
        let gone = pull_pods(&ns).await.is_empty() && pre_download_condition(&cds).await.is_none();
        (gone && phase(&cds).await == Some(Phase::Healthy)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}
