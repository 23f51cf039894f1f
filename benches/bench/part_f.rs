//! (f): real containers. The test application of `examples/real-nodes.yaml`
//! on the two real nodes (kubelet, containerd, runc, the CNI bridge), released
//! by a Deployment (`maxSurge: 0`, `maxUnavailable`: one group: each pod is
//! deleted and a new one scheduled, given a sandbox and an address) and by a
//! CafeDeployment of the same budget (in place: the same pod, its container
//! restarted on the new image), side by side in one run.

use std::time::{Duration, Instant};

use cafe_operator::api::CafeDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::cluster::{deployment_done, operator, remove, set_image, wait_cd, wait_until};
use crate::part_a::release;
use crate::real_app::{example, template, testapp};
use crate::stages::{CREATION_STAGES, creation_marks, image, report_stages, watch_stages};
use crate::support::TestNs;
use crate::{Args, Report, WAIT};

/// One side's figures: from nothing to all ready, and the release.
struct Timed {
    create: Duration,
    release: Duration,
}

/// The Deployment of the same pods and budget; where its release's new pods'
/// time went is reported.
async fn deployment(args: &Args, report: &mut Report) -> Timed {
    let ns = TestNs::new("bench-real-deploy").await;
    let deployments: Api<Deployment> = ns.api();
    let (pods, group) = (args.real_pods, args.real_group);
    let start = Instant::now();
    ns.create::<Deployment>(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": pods,
            "selector": {"matchLabels": {"app": "bench"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 0, "maxUnavailable": group}},
            "template": template("bench", "v1"),
        }
    }))
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    deployments
        .patch(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(&set_image(&to)),
        )
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
    Timed { create, release }
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
    if traffic != json!({}) {
        ns.create::<k8s_openapi::api::core::v1::Service>(json!({
            "metadata": {"name": "bench"},
            "spec": {"selector": {"app": "bench"}, "ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .await;
    }
    let (mut op, port) = operator(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let (pods, group) = (args.real_pods, args.real_group);
    let start = Instant::now();
    ns.create::<CafeDeployment>(cafedeployment(pods, group, traffic))
        .await;
    wait_cd(&cds, "bench", pods).await;
    let create = start.elapsed();
    let measured = release(&ns, port, pods, &testapp("v2")).await;
    if let Ok(st) = measured.stages.lock() {
        report_stages(report, title, &st, measured.start);
    }
    op.stop();
    remove(ns).await;
    Timed {
        create,
        release: measured.took,
    }
}

/// Whether the cluster has the real nodes (not with CAFE_REAL_NODES=0).
async fn real_nodes(client: &Client) -> usize {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&ListParams::default().labels("type=real"))
        .await
        .map_or(0, |l| l.items.len())
}

pub(crate) async fn part_f(args: &Args, report: &mut Report, client: &Client) {
    let (pods, group) = (args.real_pods, args.real_group);
    report.line(format!(
        "\n## (f) real containers: {pods} pods of the test application on the real nodes, \
         groups of {group}\n"
    ));
    let nodes = real_nodes(client).await;
    if nodes == 0 {
        report
            .line("skipped: the cluster has no real nodes (it was started with CAFE_REAL_NODES=0)");
        return;
    }
    let deploy = deployment(args, report).await;
    let in_place = cafedeployment_side(
        args,
        report,
        json!({}),
        "where the CafeDeployment's release went (in place)",
    )
    .await;
    let drained = cafedeployment_side(
        args,
        report,
        json!({"components": ["service"]}),
        "where the CafeDeployment's release went (in place, drained by the service component)",
    )
    .await;
    let secs = |d: Duration| d.as_secs_f64();
    let ratio = |d: Duration| secs(d) / secs(deploy.release).max(1e-9);
    report.line(format!(
        "\n{nodes} real nodes; the same budget ({group} pods unavailable at most) on each side\n"
    ));
    report.line("| | create from zero -> all ready | new image -> all ready | release ratio |");
    report.line("|---|---:|---:|---:|");
    report.line(format!(
        "| Deployment (delete, then a new pod) | {:.1} s | {:.1} s | 1.00x |",
        secs(deploy.create),
        secs(deploy.release)
    ));
    report.line(format!(
        "| CafeDeployment, in place | {:.1} s | {:.1} s | **{:.2}x** |",
        secs(in_place.create),
        secs(in_place.release),
        ratio(in_place.release)
    ));
    report.line(format!(
        "| CafeDeployment, in place, drained from the Service (settleSeconds 3) | {:.1} s | \
         {:.1} s | {:.2}x |",
        secs(drained.create),
        secs(drained.release),
        ratio(drained.release)
    ));
}
