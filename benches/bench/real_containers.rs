//! (f) real-containers: real containers. The test application of `examples/real-nodes.yaml`
//! on the two real nodes (kubelet, containerd, runc, the CNI bridge), released
//! by a Deployment (`maxSurge: 0`, `maxUnavailable`: one group: each pod is
//! deleted and a new one scheduled, given a sandbox and an address) and by a
//! CafeDeployment of the same budget (in place: the same pod, its container
//! restarted on the new image), side by side in one run.

use std::time::{Duration, Instant};

use cafe_operator::api::CafeDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::support::cluster;
use crate::support::cluster::{deployment_done, operator, remove, set_image, wait_cd, wait_until};
use crate::support::namespace::TestNs;
use crate::support::real_app::{example, template, testapp};
use crate::support::release::release;
use crate::support::stages::{CREATION_STAGES, creation_marks, image, report_stages, watch_stages};
use crate::{Args, Part, Report, WAIT};

/// One side's figures: from nothing to all ready, and the release.
struct Timed {
    create: Duration,
    release: Duration,
    /// Waited for an idle machine before the creation and before the release.
    waited: Duration,
}

/// The Service every side's pods are behind, as in the README's table.
async fn service(ns: &TestNs) {
    ns.create::<k8s_openapi::api::core::v1::Service>(json!({
        "metadata": {"name": "bench"},
        "spec": {"selector": {"app": "bench"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .await;
}

/// The Deployment of the same pods and budget; where its release's new pods'
/// time went is reported.
async fn deployment(args: &Args, report: &mut Report) -> Timed {
    let ns = TestNs::new("bench-real-deploy").await;
    service(&ns).await;
    let deployments: Api<Deployment> = ns.api();
    let (pods, group) = (args.real_pods, args.real_group);
    let mut waited = quiet().await;
    let start = Instant::now();
    ns.create::<Deployment>(cluster::deployment(pods, group, template("bench", "v1")))
        .await;
    let done = || async {
        let d = deployments.get("bench").await.ok()?;
        deployment_done(&d, pods).then_some(())
    };
    wait_until("the Deployment's pods to be ready", WAIT, done).await;
    let create = start.elapsed();
    let to = testapp("v2");
    let target = to.clone();
    // The release's pods are new ones: their creation's stages.
    let (stages, watch) = watch_stages(&ns, &CREATION_STAGES, move |p| {
        if image(p).as_deref() == Some(target.as_str()) {
            creation_marks(p)
        } else {
            vec![false; CREATION_STAGES.len()]
        }
    });
    waited += quiet().await;
    let start = Instant::now();
    deployments
        .patch("bench", &PatchParams::default(), &set_image(&to))
        .await
        .expect("patch the Deployment");
    wait_until("the Deployment's rollout", WAIT, done).await;
    let release = start.elapsed();
    watch.abort();
    if let Ok(st) = stages.lock() {
        report_stages(
            report,
            "where the Deployment's release went (its new pods)",
            &st,
            start,
        );
    }
    remove(ns).await;
    Timed {
        create,
        release,
        waited,
    }
}

/// The CafeDeployment `bench` of the example's template: `pods` over cell-a
/// and cell-b (one real node each), batches of `group`, no confirmation.
fn cafedeployment(pods: usize, group: usize, traffic: Value) -> Value {
    let mut cd = example();
    cd["metadata"] = json!({"name": "bench"});
    cd["spec"]["replicas"] = json!(pods);
    cd["spec"]["selector"] = json!({"matchLabels": {"app": "bench"}});
    cd["spec"]["template"] = template("bench", "v1");
    cd["spec"]["strategy"] =
        json!({"upgradeType": "Batch", "batchSize": group, "needWaitingForConfirm": false});
    cd["spec"]["traffic"] = traffic;
    cd
}

/// A CafeDeployment of the same pods and budget with `traffic` components,
/// its operator watching only its namespace; where its release went is
/// reported under `title`.
async fn cafedeployment_side(
    args: &Args,
    report: &mut Report,
    traffic: Value,
    title: &str,
) -> Timed {
    let ns = TestNs::new("bench-real-cd").await;
    service(&ns).await;
    let (mut op, port) = operator(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let (pods, group) = (args.real_pods, args.real_group);
    let mut waited = quiet().await;
    let start = Instant::now();
    ns.create::<CafeDeployment>(cafedeployment(pods, group, traffic))
        .await;
    wait_cd(&cds, "bench", pods).await;
    let create = start.elapsed();
    waited += quiet().await;
    let measured = release(&ns, port, pods, &testapp("v2")).await;
    if let Ok(st) = measured.stages.lock() {
        report_stages(report, title, &st, measured.start);
    }
    op.stop();
    remove(ns).await;
    Timed {
        create,
        release: measured.took,
        waited,
    }
}

/// The machine's CPU time so far, busy and in all, from /proc/stat (ticks).
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Waits, a minute at most, until the machine is idle (under a quarter of
/// its CPUs busy for 3 seconds in a row): the side before leaves its pods'
/// teardown (containerd's shims, kubelet's cleanup) running after its
/// namespace is gone, and a side that starts in it is slowed by it. Returns
/// how long it waited.
pub(crate) async fn quiet() -> Duration {
    let start = Instant::now();
    let (mut calm, mut last) = (0, cpu_ticks());
    while calm < 3 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_ticks();
        let busy = (now.0 - last.0) as f64 / (now.1 - last.1).max(1) as f64;
        calm = if busy < 0.25 { calm + 1 } else { 0 };
        last = now;
    }
    start.elapsed()
}

/// Whether the cluster has the real nodes (not with CAFE_REAL_NODES=0).
pub(crate) async fn real_nodes(client: &Client) -> usize {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&ListParams::default().labels("type=real"))
        .await
        .map_or(0, |l| l.items.len())
}

/// (f) real-containers: the test application released in place by a
/// CafeDeployment and recreated by a Deployment of the same budget.
pub(crate) async fn real_containers(args: &Args, report: &mut Report, client: &Client) {
    let (pods, group) = (args.real_pods, args.real_group);
    report.line(format!(
        "\n## {}: {pods} pods of the test application on the real nodes, \
         groups of {group}\n",
        Part::RealContainers
    ));
    let nodes = real_nodes(client).await;
    if nodes == 0 {
        report
            .line("skipped: the cluster has no real nodes (it was started with CAFE_REAL_NODES=0)");
        return;
    }
    let deploy = deployment(args, report).await;
    // `components: []`: no traffic component drains the pods, as the
    // Deployment's pods are not drained either (its ended pods' requests
    // fail; README's table); the default is the service component.
    let in_place = cafedeployment_side(
        args,
        report,
        json!({"components": []}),
        "where the CafeDeployment's release went (in place, no traffic component)",
    )
    .await;
    let drained = cafedeployment_side(
        args,
        report,
        json!({"components": ["service"], "settleSeconds": 3}),
        "where the CafeDeployment's release went (in place, drained by the service component)",
    )
    .await;
    let secs = |d: Duration| d.as_secs_f64();
    let ratio = |d: Duration| secs(d) / secs(deploy.release).max(1e-9);
    report.line(format!(
        "\n{nodes} real nodes; the same budget ({group} pods unavailable at most) and the same \
         Service on each side; each creation and release started on an idle machine (waited \
         {:.0} s, {:.0} s, {:.0} s for it)\n",
        secs(deploy.waited),
        secs(in_place.waited),
        secs(drained.waited)
    ));
    report.line("| | create from zero -> all ready | new image -> all ready | release ratio |");
    report.line("|---|---:|---:|---:|");
    let rows = [
        ("Deployment (delete, then a new pod; no drain)", &deploy),
        ("CafeDeployment, in place, no traffic component", &in_place),
        (
            "CafeDeployment, in place, drained by the service component (settleSeconds 3)",
            &drained,
        ),
    ];
    for (name, side) in rows {
        report.line(format!(
            "| {name} | {:.1} s | {:.1} s | {:.2}x |",
            secs(side.create),
            secs(side.release),
            ratio(side.release)
        ));
    }
}
