//! The local control plane is a real cluster, and its simulated kubelets
//! behave like kubelet where cafe-operator depends on them.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::support::namespace::TestNs;
use crate::support::pods::{pod_condition, pod_ready};

const GATE: &str = "example.com/gate";

/// The `ready` flag of `ip`'s endpoint in the Service's EndpointSlices.
async fn endpoint_ready(slices: &Api<EndpointSlice>, service: &str, ip: &str) -> Option<bool> {
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let slices = slices.list(&lp).await.ok()?;
    slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .find(|e| e.addresses.iter().any(|a| a == ip))
        .map(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn deployment_pods_land_in_their_cell_become_ready_and_back_a_service() {
    let ns = TestNs::new("smoke-deploy").await;
    ns.create::<Service>(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .await;
    ns.create::<Deployment>(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{
                            "key": "cafe.sofastack.io/cell", "operator": "In", "values": ["cell-b"]
                        }]}]
                    }}},
                    "containers": [{"name": "web", "image": "nginx:1.25"}]
                }
            }
        }
    }))
    .await;

    let pods: Api<Pod> = ns.api();
    let ready = ns
        .wait("2 Ready pods of Deployment web", 90, || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let ready: Vec<Pod> = list.items.into_iter().filter(pod_ready).collect();
            (ready.len() == 2).then_some(ready)
        })
        .await;

    let nodes: Api<Node> = Api::all(ns.client.clone());
    let slices: Api<EndpointSlice> = ns.api();
    for pod in &ready {
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let node = nodes
            .get(&node_name.expect("a Ready pod is scheduled"))
            .await
            .expect("the pod's node exists");
        let cell = node.metadata.labels.unwrap_or_default()["cafe.sofastack.io/cell"].clone();
        assert_eq!(
            cell, "cell-b",
            "the pod runs in the cell its affinity names"
        );

        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("a Ready pod has an IP");
        assert!(
            ip.starts_with("198.18."),
            "pod IP {ip} comes from the pod range, not the service range"
        );
        ns.wait("the pod's endpoint to be ready", 30, || async {
            (endpoint_ready(&slices, "web", &ip).await == Some(true)).then_some(())
        })
        .await;
    }
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_readiness_gate_takes_a_pod_out_of_its_service_and_back() {
    let ns = TestNs::new("smoke-gate").await;
    ns.create::<Service>(json!({
        "metadata": {"name": "gated"},
        "spec": {"selector": {"app": "gated"}, "ports": [{"port": 80}]}
    }))
    .await;
    ns.create::<Pod>(json!({
        "metadata": {"name": "gated", "labels": {"app": "gated"}},
        "spec": {
            "readinessGates": [{"conditionType": GATE}],
            "containers": [{"name": "app", "image": "nginx:1.25"}]
        }
    }))
    .await;
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();

    // Containers run and are ready, but the gate's condition does not exist yet.
    let pod = ns
        .wait("containers ready while the gate is missing", 60, || async {
            let p = pods.get("gated").await.ok()?;
            (pod_condition(&p, "ContainersReady").as_deref() == Some("True")).then_some(p)
        })
        .await;
    assert!(
        !pod_ready(&pod),
        "a missing gate condition keeps the pod not Ready"
    );
    let reason = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("ReadinessGatesNotReady"));
    let ip = pod
        .status
        .and_then(|s| s.pod_ip)
        .expect("a running pod has an IP");

    for (gate, ready) in [("True", true), ("False", false), ("True", true)] {
        let patch = json!({"status": {"conditions": [{"type": GATE, "status": gate}]}});
        pods.patch_status("gated", &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .expect("patch the gate condition");
        ns.wait(&format!("Ready={ready} after gate={gate}"), 30, || async {
            let p = pods.get("gated").await.ok()?;
            (pod_ready(&p) == ready).then_some(())
        })
        .await;
        ns.wait(
            &format!("endpoint ready={ready} after gate={gate}"),
            30,
            || async { (endpoint_ready(&slices, "gated", &ip).await == Some(ready)).then_some(()) },
        )
        .await;
    }
}

/// (image, imageID, containerID, restartCount, ready) of the first container.
fn container_facts(pod: &Pod) -> Option<(String, String, String, i32, bool)> {
    let cs = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .clone();
    Some((
        cs.image,
        cs.image_id,
        cs.container_id.unwrap_or_default(),
        cs.restart_count,
        cs.ready,
    ))
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn an_in_place_image_change_restarts_the_container_and_a_crashloop_never_gets_ready() {
    let ns = TestNs::new("smoke-inplace").await;
    ns.create::<Pod>(json!({
        "metadata": {"name": "app"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    }))
    .await;
    let pods: Api<Pod> = ns.api();
    let before = ns
        .wait("the pod to be Ready", 60, || async {
            let p = pods.get("app").await.ok()?;
            pod_ready(&p).then_some(p)
        })
        .await;
    let (_, image_id0, container_id0, restarts0, _) = container_facts(&before).expect("status");
    assert_eq!(restarts0, 0);

    let set_image = |image: &'static str| {
        let pods = pods.clone();
        async move {
            let patch = json!({"spec": {"containers": [{"name": "app", "image": image}]}});
            pods.patch("app", &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .expect("patch the image in place");
        }
    };

    // Every version of the pod from here on: as kubelet writes a restart, a
    // container that is not ready never shows in a pod that reads Ready.
    let versions = pods
        .watch(
            &WatchParams::default().fields("metadata.name=app"),
            &before.resource_version().unwrap_or_default(),
        )
        .await
        .expect("watch the pod");
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut versions = std::pin::pin!(versions);
        // Until the restarted pod is Ready again.
        while let Some(Ok(WatchEvent::Modified(p))) = versions.next().await {
            let Some((image, .., container_ready)) = container_facts(&p) else {
                continue;
            };
            let ready = pod_ready(&p);
            let done = image == "nginx:1.26" && ready;
            seen.push((image, container_ready, ready));
            if done {
                break;
            }
        }
        seen
    });
    set_image("nginx:1.26").await;
    // The restart is visible (new image, not ready) before the container is ready again.
    let restarted = ns
        .wait("containerStatuses to show the new image", 30, || async {
            let p = pods.get("app").await.ok()?;
            let facts = container_facts(&p)?;
            (facts.0 == "nginx:1.26").then_some(facts)
        })
        .await;
    assert_ne!(restarted.1, image_id0, "a new imageID");
    assert_ne!(restarted.2, container_id0, "a new containerID");
    assert_eq!(restarted.3, 1, "restartCount + 1");
    let after = ns
        .wait("the restarted pod to be Ready", 30, || async {
            let p = pods.get("app").await.ok()?;
            pod_ready(&p).then_some(p)
        })
        .await;
    let seen = tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .expect("the watch saw the pod Ready again")
        .expect("the watch task");
    assert!(
        seen.iter().any(|(image, ..)| image == "nginx:1.26"),
        "the watch saw the restart: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(_, container_ready, ready)| *container_ready || !ready),
        "a pod whose container is not ready never reads Ready: {seen:?}"
    );
    assert_eq!(after.metadata.uid, before.metadata.uid, "the same pod");
    assert_eq!(
        after.status.as_ref().and_then(|s| s.pod_ip.clone()),
        before.status.as_ref().and_then(|s| s.pod_ip.clone()),
        "the same IP"
    );

    set_image("example.com/app:crashloop").await;
    ns.wait("the crashloop image to be running", 30, || async {
        let p = pods.get("app").await.ok()?;
        let facts = container_facts(&p)?;
        (facts.0 == "example.com/app:crashloop" && facts.3 == 2).then_some(())
    })
    .await;
    // Readiness would arrive within about a second; give it three.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = pods.get("app").await.expect("pod");
    assert!(!pod_ready(&p), "a crashloop container never becomes ready");
    assert!(!container_facts(&p).expect("status").4);
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_pod_with_a_finalizer_stays_terminating_until_it_is_removed() {
    let ns = TestNs::new("smoke-finalizer").await;
    ns.create::<Pod>(json!({
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    }))
    .await;
    let pods: Api<Pod> = ns.api();
    ns.wait("the pod to be Ready", 60, || async {
        let p = pods.get("held").await.ok()?;
        pod_ready(&p).then_some(())
    })
    .await;
    pods.delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    ns.wait("the terminating pod to turn not Ready", 30, || async {
        let p = pods.get("held").await.ok()?;
        (!pod_ready(&p)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = pods
        .get("held")
        .await
        .expect("still there while the finalizer is");
    assert!(p.metadata.deletion_timestamp.is_some());

    let patch = json!([{"op": "remove", "path": "/metadata/finalizers/0"}]);
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("json patch");
    pods.patch("held", &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .expect("remove the finalizer");
    ns.wait("the pod to be gone", 30, || async {
        pods.get_opt("held").await.ok()?.is_none().then_some(())
    })
    .await;
    let names: BTreeSet<String> = pods
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(names.is_empty(), "no pod left: {names:?}");
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_condition_written_without_a_transition_time_never_wedges_readiness() {
    // Other controllers (OpenKruise among them) legally write conditions with
    // `lastTransitionTime: null`; the simulated kubelet must keep computing Ready.
    let ns = TestNs::new("smoke-null-time").await;
    ns.create::<Pod>(json!({
        "metadata": {"name": "untimed", "labels": {"app": "untimed"}},
        "spec": {
            "readinessGates": [{"conditionType": GATE}],
            "containers": [{"name": "app", "image": "nginx:1.25"}]
        }
    }))
    .await;
    let pods: Api<Pod> = ns.api();
    ns.wait("containers ready while the gate is missing", 60, || async {
        let p = pods.get("untimed").await.ok()?;
        (pod_condition(&p, "ContainersReady").as_deref() == Some("True")).then_some(())
    })
    .await;
    let patch = json!({"status": {"conditions": [
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": null},
        {"type": GATE, "status": "True", "lastTransitionTime": null}
    ]}});
    // The pod as our write left it (a read afterwards could already show
    // the simulated kubelet's next write).
    let untimed = pods
        .patch_status(
            "untimed",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .expect("conditions without a transition time");
    let times: Vec<bool> = untimed
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| c.type_ == "ContainersReady")
                .map(|c| c.last_transition_time.is_none())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        times,
        vec![true],
        "the time is gone, as another controller left it"
    );
    ns.wait("Ready once the gate is True", 30, || async {
        let p = pods.get("untimed").await.ok()?;
        pod_ready(&p).then_some(())
    })
    .await;
}
