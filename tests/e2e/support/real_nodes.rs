//! The stories on the real nodes: the test application's Services reached
//! through kube-proxy, `demo` released under load, and the load's bounds.

use std::net::SocketAddr;
use std::time::Duration;

use cafe_operator::api::CafeDeployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use crate::support::demo::{confirm_until_healthy, pods_by_cell, wait_n_on};
use crate::support::load::{Load, Report};
use crate::support::namespace::TestNs;
use crate::support::real_app::{example, template, testapp};

pub(crate) const TAINT: &str = "cafe.sofastack.io/real-node";

/// Requests a second: steady, well within what the two nodes serve.
pub(crate) const RATE: u32 = 200;

/// Every load stops by itself after this many requests or this long.
pub(crate) const MAX_REQUESTS: u64 = 120_000;

pub(crate) const MAX_LOAD_TIME: Duration = Duration::from_secs(540);

/// A ClusterIP Service `name` in front of app's pods; returns ClusterIP:80.
pub(crate) async fn service(ns: &TestNs, name: &str, app: &str) -> SocketAddr {
    service_in(&ns.client, &ns.name, name, app).await
}

/// `service` in namespace `ns` of the cluster `client` talks to (a member:
/// the machine routes to its Services through its node's namespace).
pub(crate) async fn service_in(client: &Client, ns: &str, name: &str, app: &str) -> SocketAddr {
    let body: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .expect("a Service");
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &body)
        .await
        .expect("create the Service");
    let ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP Service has an address");
    assert!(
        ip.starts_with("198.19."),
        "Service addresses come from 198.19.0.0/17, got {ip}"
    );
    format!("{ip}:80").parse().expect("ClusterIP:80")
}

/// Waits until kube-proxy routes the Service: 20 requests in a row answered.
pub(crate) async fn wait_routed(ns: &TestNs, target: SocketAddr) {
    ns.wait("kube-proxy to route the Service", 60, || async {
        let load = Load::start(target, 100, 20, Duration::from_secs(2));
        let report = load.finish_when_done().await;
        (report.failed().is_empty() && report.sent() == 20).then_some(())
    })
    .await;
}

/// A CafeDeployment `demo` of the test application on the real nodes:
/// `replicas` pods over cell-a and cell-b, Beta, batches of `batch`, confirmed.
pub(crate) fn demo(replicas: i64, batch: i64, version: &str) -> serde_json::Value {
    let mut demo = example();
    demo["spec"]["replicas"] = json!(replicas);
    demo["spec"]["strategy"]["batchSize"] = json!(batch);
    demo["spec"]["template"] = template("demo", version);
    demo
}

/// Creates `demo` with its Service, confirms it up, and waits until kube-proxy
/// routes to it; returns the Service's address.
pub(crate) async fn create_demo(ns: &TestNs, replicas: i64, batch: i64) -> SocketAddr {
    let target = service(ns, "demo", "demo").await;
    ns.create::<CafeDeployment>(demo(replicas, batch, "v1"))
        .await;
    confirm_until_healthy(ns).await;
    wait_n_on(ns, replicas as usize, &testapp("v1")).await;
    for (p, _) in pods_by_cell(ns).await {
        let ip = p.status.and_then(|s| s.pod_ip).unwrap_or_default();
        assert!(
            ip.starts_with("198.18."),
            "pod addresses come from 198.18.0.0/16, got {ip}"
        );
    }
    wait_routed(ns, target).await;
    target
}

/// Asserts that no request failed and that the load covered the whole story
/// (it had not stopped at its bound), printing the report either way.
pub(crate) fn assert_no_failure(story: &str, report: &Report) {
    println!("{story}: {}", report.summary());
    assert!(
        !report.ran_out,
        "{story}: the load stopped at its bound ({MAX_REQUESTS} requests or {MAX_LOAD_TIME:?}) \
         before the story ended: raise the bound"
    );
    let failed = report.failed();
    assert!(
        failed.is_empty(),
        "{story}: {} of {} requests failed; the first: {:?}",
        failed.len(),
        report.sent(),
        &failed[..failed.len().min(5)]
    );
}
