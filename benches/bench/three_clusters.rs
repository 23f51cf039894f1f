//! (g) three-clusters: the same release in one cluster and spread over three (the host and
//! the members dc-2 and dc-3 of `tests/cluster/members.sh`): `--multi-pods`
//! pods over cell-a, cell-b and cell-c in groups of `--multi-group`, no
//! traffic component (what is compared is the plan's pace across clusters).
//! Reports both times, their ratio (target: within 1.1x), and the host
//! operator's memory and API requests, per member.

use std::collections::BTreeMap;
use std::time::Duration;

use cafe_operator::api::{CafeDeployment, MemberCluster};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

use crate::support::cluster::{operator, remove, set_image, wait_cd, wait_until};
use crate::support::members::{member_client, member_kubeconfig, register_member};
use crate::support::metrics::{operator_metrics, rss_kib, samples};
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::{Args, IMAGE_1, IMAGE_2, Part, Report};

const MEMBERS: [(&str, &str); 2] = [("dc-2", "cell-b"), ("dc-3", "cell-c")];

/// One side's figures.
struct Side {
    create: Duration,
    release: Duration,
    rss_mib: f64,
    /// API requests of the host operator during the release: (to the host,
    /// to each member).
    requests: (u64, BTreeMap<String, u64>),
}

/// Requests so far: the host operator's to its own cluster and to each member.
async fn requests(port: u16) -> (u64, BTreeMap<String, u64>) {
    let text = operator_metrics(port).await;
    let host = samples(&text, "cafe_api_requests_total")
        .map(|(_, n)| n as u64)
        .sum();
    let mut members = BTreeMap::new();
    for (label, n) in samples(&text, "cafe_member_api_requests_total") {
        *members.entry(label("member")).or_default() += n as u64;
    }
    (host, members)
}

async fn side(args: &Args, spread: bool) -> Side {
    let ns = TestNs::new(if spread { "bench-three" } else { "bench-one" }).await;
    let client = ns.client.clone();
    let registry: Api<MemberCluster> = Api::all(client.clone());
    let mut member_ops: Vec<Operator> = Vec::new();
    if spread {
        for (name, cell) in MEMBERS {
            register_member(&ns, name, cell, json!({})).await;
            let admin = member_kubeconfig(name);
            member_ops.push(Operator::launch(
                &format!("{}@{name}", ns.name),
                &["--role", "member"],
                &[("KUBECONFIG", admin.to_str().unwrap_or_default())],
            ));
        }
    }
    let (mut op, port) = operator(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    // One cluster: every cell here, whatever members are registered.
    let clusters = if spread {
        json!({})
    } else {
        json!({"cell-a": "local", "cell-b": "local", "cell-c": "local"})
    };
    let body = json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "CafeDeployment",
        "metadata": {"name": "multi"},
        "spec": {
            "replicas": args.multi_pods,
            "selector": {"matchLabels": {"app": "multi"}},
            "template": {"metadata": {"labels": {"app": "multi"}},
                         "spec": {"nodeSelector": {"type": "kwok"},
                                  "containers": [{"name": "app", "image": IMAGE_1}]}},
            "topology": {"values": ["cell-a", "cell-b", "cell-c"], "clusters": clusters},
            "strategy": {"upgradeType": "Batch", "batchSize": args.multi_group},
            "traffic": {"components": [], "settleSeconds": 0}
        }
    });
    let start = std::time::Instant::now();
    ns.create::<CafeDeployment>(body).await;
    wait_cd(&cds, "multi", args.multi_pods).await;
    let create = start.elapsed();
    let before = requests(port).await;
    let start = std::time::Instant::now();
    cds.patch("multi", &Default::default(), &set_image(IMAGE_2))
        .await
        .expect("release");
    wait_cd(&cds, "multi", args.multi_pods).await;
    let release = start.elapsed();
    let after = requests(port).await;
    let rss_mib = op
        .pid()
        .map_or(0.0, |pid| rss_kib(pid, "VmRSS") as f64 / 1024.0);
    let members: BTreeMap<String, u64> = after
        .1
        .iter()
        .map(|(m, n)| (m.clone(), n - before.1.get(m).copied().unwrap_or(0)))
        .collect();
    // Its sets in the members go with it (the finalizer), then the rest.
    let _ = cds.delete("multi", &DeleteParams::default()).await;
    wait_until("the CafeDeployment to go", 300, || async {
        cds.get_opt("multi").await.ok()?.is_none().then_some(())
    })
    .await;
    if spread {
        // Unused now, the members are unregistered by the operator.
        for (name, _) in MEMBERS {
            let _ = registry.delete(name, &DeleteParams::default()).await;
            wait_until("the member to be unregistered", 30, || async {
                registry.get_opt(name).await.ok()?.is_none().then_some(())
            })
            .await;
        }
    }
    op.stop();
    for mut m in member_ops {
        m.stop();
    }
    if spread {
        for (name, _) in MEMBERS {
            let namespaces: Api<Namespace> = Api::all(member_client(name).await);
            let _ = namespaces
                .delete(&ns.name, &DeleteParams::background())
                .await;
        }
    }
    remove(ns).await;
    Side {
        create,
        release,
        rss_mib,
        requests: (after.0 - before.0, members),
    }
}

/// (g) three-clusters: one cluster against three.
pub(crate) async fn three_clusters(args: &Args, report: &mut Report) {
    report.line(format!(
        "\n## {}: {} pods over cell-a, cell-b, cell-c in groups of {}: one cluster against three\n",
        Part::ThreeClusters,
        args.multi_pods,
        args.multi_group
    ));
    let one = side(args, false).await;
    let three = side(args, true).await;
    report.line("| | one cluster | three clusters (host + dc-2 + dc-3) | ratio |");
    report.line("|---|---:|---:|---:|");
    let secs = |d: Duration| d.as_secs_f64();
    report.line(format!(
        "| creation | {:.1} s | {:.1} s | {:.2}x |",
        secs(one.create),
        secs(three.create),
        secs(three.create) / secs(one.create)
    ));
    report.line(format!(
        "| release | {:.1} s | {:.1} s | **{:.2}x** (target 1.1x) |",
        secs(one.release),
        secs(three.release),
        secs(three.release) / secs(one.release)
    ));
    report.line(format!(
        "| host operator RSS after the release | {:.1} MiB | {:.1} MiB | |",
        one.rss_mib, three.rss_mib
    ));
    let members: Vec<String> = three
        .requests
        .1
        .iter()
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    report.line(format!(
        "| host operator's API requests during the release | {} (its cluster) | {} (its cluster); {} | |",
        one.requests.0,
        three.requests.0,
        members.join(", ")
    ));
}
