//! (e) confirm-latency: the reaction latency from a confirmation to the first gate flip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cafe_operator::api::CafeDeployment;
use cafe_operator::api::names::TRAFFIC_GATE;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PatchParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::cluster::{
    awaiting_confirmation, cafedeployment, cell, confirm, confirmed, image_op, json_patch,
    operator, remove, wait_cd, wait_until,
};
use crate::support::namespace::TestNs;
use crate::support::pods::pod_condition;
use crate::support::stages::percentile;
use crate::{Args, IMAGE_2, Part, Report};

/// (e) confirm-latency: confirmation -> first gate flip, on an otherwise idle operator.
pub(crate) async fn confirm_latency(args: &Args, report: &mut Report) {
    report.line(format!(
        "\n## {}: confirmation -> first gate flip ({} confirmations)\n",
        Part::ConfirmLatency,
        args.samples
    ));
    let ns = TestNs::new("bench-confirm").await;
    let (mut op, _port) = operator(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    // Beta (one pod in each of two cells), then groups of one: a wait per pod.
    let replicas = args.samples + 2;
    let mut body = cafedeployment(
        "confirm",
        args,
        replicas,
        1,
        json!({"components": [], "settleSeconds": 0}),
    );
    body["spec"]["topology"]["values"] = json!([cell(0), cell(1)]);
    body["spec"]["strategy"] = json!({"upgradeType": "Beta", "batchSize": 1});
    ns.create::<CafeDeployment>(body).await;
    wait_cd(&cds, "confirm", replicas).await;

    let flips: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = flips.clone();
    let pods: Api<Pod> = ns.api();
    let task = tokio::spawn(async move {
        let mut open: HashMap<String, bool> = HashMap::new();
        let mut s = watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(p)) = s.next().await {
            let now = Instant::now();
            let is_open = pod_condition(&p, TRAFFIC_GATE).as_deref() == Some("True");
            if open.insert(p.name_any(), is_open) == Some(true)
                && !is_open
                && let Ok(mut f) = log.lock()
            {
                f.push(now);
            }
        }
    });
    let release = json_patch(vec![
        image_op(IMAGE_2),
        json!({"op": "add", "path": "/spec/strategy/needWaitingForConfirm", "value": true}),
    ]);
    cds.patch("confirm", &PatchParams::default(), &release)
        .await
        .expect("release");
    let waiting = || async { awaiting_confirmation(&cds, "confirm").await.then_some(()) };
    let mut latencies = Vec::new();
    for _ in 0..args.samples {
        wait_until("a confirmation wait", 120, waiting).await;
        // Idle: let every watch settle first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        confirm(&cds, "confirm").await;
        let flip = wait_until("the first gate flip after a confirmation", 60, || async {
            flips.lock().ok()?.iter().find(|f| **f >= t0).copied()
        })
        .await;
        latencies.push(flip.duration_since(t0).as_secs_f64() * 1000.0);
        // The group must finish before the next wait can be confirmed.
        confirmed(&cds, "confirm").await;
    }
    task.abort();
    latencies.sort_by(f64::total_cmp);
    report.line(format!(
        "confirmation -> first gate flip: p50 **{:.0} ms**, p99 **{:.0} ms**, max {:.0} ms (n={})",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
        latencies.len()
    ));
    op.stop();
    remove(ns).await;
}
