//! Running for real: the endpoints a cluster operator scrapes and probes,
//! two replicas under leader election, and the Helm chart's identity doing a
//! whole release with exactly the rights the chart grants.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cafe_operator::api::{CafeDeployment, Phase};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Deserialize;
use serde_json::json;

use crate::support::chart::{CHART, helm};
use crate::support::component::ExampleComponent;
use crate::support::demo::{
    confirm_until_healthy, create_demo, phase, pod_identities, pods_by_cell, release_image,
    wait_all_on,
};
use crate::support::kubectl::kubectl_annotate_confirm;
use crate::support::namespace::TestNs;
use crate::support::net::{free_port, http_get};
use crate::support::operator::{Operator, holder};
use crate::support::pods::{image, pod_ready, restarts};

/// The value of the series `name{labels}` in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn metrics_and_probes_report_what_the_operator_does_and_sees() {
    let ns = TestNs::new("metrics").await;
    let (metrics_port, probe_port) = (free_port(), free_port());
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let probe_addr = format!("127.0.0.1:{probe_port}");
    let _op = Operator::launch(
        &ns.name,
        &[
            "--metrics-bind-address",
            &metrics_addr,
            "--health-probe-bind-address",
            &probe_addr,
        ],
        &[],
    );
    ns.wait(
        "/readyz to answer 200 once the caches synced",
        60,
        || async {
            http_get(probe_port, "/readyz")
                .filter(|(status, _)| *status == 200)
                .map(|(_, body)| assert!(body.contains("caches synced"), "{body}"))
        },
    )
    .await;
    assert_eq!(http_get(probe_port, "/healthz").map(|(s, _)| s), Some(200));
    create_demo(&ns).await;

    let labels = format!("namespace=\"{}\",name=\"demo\"", ns.name);
    let page = ns
        .wait(
            "/metrics to show the Healthy CafeDeployment",
            30,
            || async {
                let (_, page) = http_get(metrics_port, "/metrics")?;
                let healthy = format!("cafe_cafedeployment_phase{{{labels},phase=\"Healthy\"}}");
                (sample(&page, &healthy) == Some(1.0)).then_some(page)
            },
        )
        .await;
    let expect = |series: &str, check: &dyn Fn(f64) -> bool| {
        let value = sample(&page, series);
        assert!(value.is_some_and(check), "{series} = {value:?} in:\n{page}");
    };
    expect(
        &format!("cafe_cafedeployment_phase{{{labels},phase=\"Progressing\"}}"),
        &|v| v == 0.0,
    );
    expect(
        &format!("cafe_cafedeployment_release_group{{{labels}}}"),
        &|v| v == 3.0,
    );
    expect(
        &format!("cafe_cafedeployment_release_groups{{{labels}}}"),
        &|v| v == 3.0,
    );
    expect("cafe_pods{lifecycle_state=\"Serving\"}", &|v| v == 10.0);
    expect("cafe_leader", &|v| v == 1.0);
    for controller in ["cafedeployment", "inplaceset", "traffic-service"] {
        expect(
            &format!("cafe_reconciles_total{{controller=\"{controller}\"}}"),
            &|v| v > 0.0,
        );
        expect(
            &format!("cafe_reconcile_duration_seconds_count{{controller=\"{controller}\"}}"),
            &|v| v > 0.0,
        );
    }
    expect(
        "cafe_api_requests_total{verb=\"create\",resource=\"pods\",outcome=\"success\"}",
        &|v| v == 10.0,
    );
    expect(
        "cafe_api_requests_total{verb=\"patch\",resource=\"pods/status\",outcome=\"success\"}",
        &|v| v >= 10.0,
    );
}

/// Waits (up to `seconds`) until `identity` holds the Lease.
async fn wait_holder(ns: &TestNs, identity: &str, seconds: u64) {
    ns.wait(
        &format!("{identity} to hold the Lease"),
        seconds,
        || async { (holder(ns).await.as_deref() == Some(identity)).then_some(()) },
    )
    .await;
}

/// Waits until the replica answering /readyz on `probe_port` is a ready standby.
async fn wait_standby(ns: &TestNs, identity: &str, probe_port: u16) {
    ns.wait(
        &format!("{identity} to answer /readyz as a standby"),
        30,
        || async {
            http_get(probe_port, "/readyz")
                .filter(|(s, body)| *s == 200 && body.contains("standby"))
                .map(|_| ())
        },
    )
    .await;
}

fn replica(ns: &TestNs, identity: &str, probe_port: u16) -> Operator {
    let probe = format!("127.0.0.1:{probe_port}");
    Operator::launch(
        &format!("{}@{identity}", ns.name),
        &[
            "--leader-elect",
            "--leader-election-namespace",
            &ns.name,
            "--leader-election-identity",
            identity,
            "--health-probe-bind-address",
            &probe,
        ],
        &[],
    )
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_standby_replica_finishes_the_release_when_the_leader_dies() {
    let ns = TestNs::new("failover").await;
    let (probe_a, probe_b) = (free_port(), free_port());
    let mut a = replica(&ns, "replica-a", probe_a);
    wait_holder(&ns, "replica-a", 30).await;
    let _b = replica(&ns, "replica-b", probe_b);
    wait_standby(&ns, "replica-b", probe_b).await;

    create_demo(&ns).await;
    let before = pod_identities(&ns).await;
    let cds: Api<CafeDeployment> = ns.api();
    release_image(&cds, "nginx:1.26").await;
    ns.wait("the Beta group to finish", 120, || async {
        (phase(&cds).await == Some(Phase::WaitingForConfirm)).then_some(())
    })
    .await;
    kubectl_annotate_confirm(&ns.name);
    // Mid-release: the second group is moving.
    ns.wait("a pod of the second group to start moving", 60, || async {
        let moved = pods_by_cell(&ns)
            .await
            .iter()
            .filter(|(p, _)| image(p) == "nginx:1.26")
            .count();
        (moved > 2).then_some(())
    })
    .await;
    a.kill();
    let killed = Instant::now();
    wait_holder(&ns, "replica-b", 60).await;
    let failover = killed.elapsed();
    eprintln!("leader failover after SIGKILL: {failover:?} (lease duration 15s)");
    assert!(failover < Duration::from_secs(20), "{failover:?}");

    confirm_until_healthy(&ns).await;
    wait_all_on(&ns, "nginx:1.26").await;
    for (p, _) in pods_by_cell(&ns).await {
        let uid = p.uid().unwrap_or_default();
        assert_eq!(restarts(&p), 1, "{} was updated exactly once", p.name_any());
        let ip = p.status.and_then(|s| s.pod_ip).unwrap_or_default();
        assert_eq!(before.get(&uid), Some(&ip), "the same pods and IPs");
    }
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_stopped_leader_releases_its_lease_to_the_standby() {
    let ns = TestNs::new("handover").await;
    let mut a = replica(&ns, "replica-a", free_port());
    wait_holder(&ns, "replica-a", 30).await;
    let probe_b = free_port();
    let _b = replica(&ns, "replica-b", probe_b);
    wait_standby(&ns, "replica-b", probe_b).await;
    // Settled: the standby has seen the claim and sleeps until it would expire.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopping = Instant::now();
    let log = a.stop();
    let stopped = stopping.elapsed();
    assert!(log.contains("released the leader Lease"), "{log}");
    wait_holder(&ns, "replica-b", 30).await;
    let handover = stopping.elapsed();
    eprintln!(
        "SIGTERM: the leader stopped in {stopped:?}; the standby held the Lease {handover:?} after the signal"
    );
    assert!(stopped < Duration::from_secs(5), "stopped in {stopped:?}");
    assert!(
        handover < Duration::from_secs(5),
        "handover took {handover:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_leader_whose_lease_is_taken_stops_writing_at_once() {
    let ns = TestNs::new("lease-lost").await;
    let mut a = replica(&ns, "replica-a", free_port());
    wait_holder(&ns, "replica-a", 30).await;
    // Someone else holds the Lease now (as after a partition in which it expired).
    let leases: Api<Lease> = ns.api();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    let patch =
        json!({"spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now}});
    leases
        .patch(
            "cafe-operator",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("take the Lease");
    let taken = Instant::now();
    let status = loop {
        if let Some(status) = a.exited() {
            break status;
        }
        assert!(
            taken.elapsed() < Duration::from_secs(20),
            "replica-a still runs 20s after its Lease was taken"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "a leader whose Lease was taken exited after {:?}",
        taken.elapsed()
    );
    assert!(!status.success(), "a lost Lease is an error exit: {status}");
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(log.contains("lost the leader Lease"), "{log}");
}

fn kubectl_out(args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl on PATH");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
#[ignore = "needs helm: make test"]
fn the_chart_lints_clean_in_both_modes() {
    helm(&["lint", "--strict", CHART]);
    helm(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        "watchNamespaces={a,b}",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ]);
    // values.schema.json refuses a bad value and names it.
    let out = Command::new("helm")
        .args(["lint", CHART, "--set", "logging.format=xml"])
        .output()
        .expect("helm");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "logging.format=xml must fail lint");
    assert!(
        text.contains("/logging/format") && text.contains("json"),
        "{text}"
    );
}

/// Installs the chart as the release `release` in `ns` and returns a
/// kubeconfig that authenticates as the chart's ServiceAccount (a token from
/// the TokenRequest API), so the operator runs with exactly the chart's rights.
fn install_chart(ns: &TestNs, release: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "install",
        release,
        CHART,
        "--namespace",
        &ns.name,
        "--set",
        "image.repository=cafe-operator",
        "--set",
        "image.tag=e2e",
        "--wait",
        "--timeout",
        "120s",
    ];
    args.extend_from_slice(extra);
    helm(&args);
    let sa = format!("{release}-cafe-operator");
    let (ok, token) = kubectl_out(&["-n", &ns.name, "create", "token", &sa, "--duration", "1h"]);
    assert!(ok && !token.is_empty(), "a token for {sa}");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-kubeconfigs");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}.kubeconfig", ns.name));
    let admin = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let (ok, raw) = kubectl_out(&["config", "view", "--raw", "--minify"]);
    assert!(ok, "the admin kubeconfig {admin}");
    std::fs::write(&path, raw).expect("write kubeconfig");
    let path_text = path.to_string_lossy().to_string();
    for args in [
        vec!["config", "set-credentials", "chart-sa", "--token", &token],
        vec!["config", "set-context", "--current", "--user", "chart-sa"],
    ] {
        let status = Command::new("kubectl")
            .args(&args)
            .env("KUBECONFIG", &path_text)
            .output()
            .expect("kubectl");
        assert!(status.status.success(), "kubectl {args:?}");
    }
    path
}

/// `kubectl auth can-i` as the chart's ServiceAccount.
fn can_i(ns: &TestNs, release: &str, args: &[&str]) -> bool {
    let user = format!("system:serviceaccount:{}:{release}-cafe-operator", ns.name);
    let mut all = vec!["auth", "can-i", "--as", &user];
    all.extend_from_slice(args);
    kubectl_out(&all).1 == "yes"
}

/// A release with both traffic components, run by an operator that holds
/// only the chart's rights; returns its log.
async fn release_as_the_chart(ns: &TestNs, kubeconfig: &Path) -> String {
    let kubeconfig = kubeconfig.to_string_lossy().to_string();
    let mut op = Operator::launch(
        &format!("{}@chart", ns.name),
        &["--leader-elect", "--leader-election-namespace", &ns.name],
        &[("KUBECONFIG", &kubeconfig)],
    );
    let _rpc = ExampleComponent::start(&ns.name);
    ns.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop"},
        "spec": {"selector": {"app": "demo"}, "ports": [{"port": 8080}]}
    }))
    .await;
    ns.create::<CafeDeployment>(json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "CafeDeployment",
        "metadata": {"name": "demo"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {"metadata": {"labels": {"app": "demo"}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
            "topology": {"values": ["cell-a", "cell-b"]},
            "strategy": {"upgradeType": "Beta", "batchSize": 2},
            "traffic": {"components": ["service", "rpc"]}
        }
    }))
    .await;
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait("4 Ready pods, Healthy", 180, || async {
        let pods = pods_by_cell(ns).await;
        let ok = pods.len() == 4 && pods.iter().all(|(p, _)| pod_ready(p));
        (ok && phase(&cds).await == Some(Phase::Healthy)).then_some(())
    })
    .await;
    release_image(&cds, "nginx:1.26").await;
    let pods: Api<Pod> = ns.api();
    ns.wait(
        "all 4 pods on nginx:1.26, Ready, back in both components",
        180,
        || async {
            let all = pods
                .list(&ListParams::default().labels("app=demo"))
                .await
                .ok()?
                .items;
            let ok = all.len() == 4
                && all.iter().all(|p| {
                    image(p) == "nginx:1.26"
                        && pod_ready(p)
                        && restarts(p) == 1
                        && p.finalizers().len() == 2
                });
            (ok && phase(&cds).await == Some(Phase::Healthy)).then_some(())
        },
    )
    .await;
    op.stop()
}

#[tokio::test]
#[ignore = "needs the local control plane and helm: make test"]
async fn the_charts_cluster_wide_identity_is_enough_for_a_release_and_no_more() {
    let ns = TestNs::new("helm-cluster").await;
    let release = "cw";
    let kubeconfig = install_chart(&ns, release, &[]);
    // What the chart created.
    let deployment = format!("deployment/{release}-cafe-operator");
    let (ok, replicas) = kubectl_out(&[
        "-n",
        &ns.name,
        "get",
        &deployment,
        "-o",
        "jsonpath={.status.availableReplicas}",
    ]);
    assert!(
        ok && replicas == "2",
        "2 available replicas, got {replicas:?}"
    );
    let (ok, _) = kubectl_out(&["-n", &ns.name, "get", "service", "cw-cafe-operator-metrics"]);
    assert!(ok, "the metrics Service");

    assert!(can_i(
        &ns,
        release,
        &["patch", "pods/status", "-n", "default"]
    ));
    // The host role: member clusters and freezes; the members' kubeconfig
    // Secrets only in the release namespace.
    assert!(can_i(
        &ns,
        release,
        &["watch", "memberclusters.cafe.sofastack.io"]
    ));
    assert!(can_i(
        &ns,
        release,
        &["patch", "memberclusters.cafe.sofastack.io"]
    ));
    assert!(can_i(
        &ns,
        release,
        &["list", "releasefreezes.cafe.sofastack.io"]
    ));
    assert!(can_i(&ns, release, &["get", "secrets", "-n", &ns.name]));
    assert!(!can_i(&ns, release, &["get", "secrets", "-n", "default"]));
    for denied in [
        ["list", "secrets", "-A"],
        ["delete", "nodes", "-A"],
        ["update", "pods", "-A"],
        ["create", "customresourcedefinitions", "-A"],
        ["get", "configmaps", "-A"],
    ] {
        assert!(
            !can_i(&ns, release, &denied),
            "the chart must not grant {denied:?}"
        );
    }

    let log = release_as_the_chart(&ns, &kubeconfig).await;
    assert!(!log.contains("forbidden"), "no request was refused:\n{log}");
    helm(&["uninstall", release, "--namespace", &ns.name]);
    let (_, crd) = kubectl_out(&[
        "get",
        "crd",
        "cafedeployments.cafe.sofastack.io",
        "-o",
        "name",
    ]);
    assert!(!crd.is_empty(), "the CRDs stay after uninstall");
}

#[tokio::test]
#[ignore = "needs the local control plane and helm: make test"]
async fn the_charts_namespaced_identity_works_in_its_namespace_only() {
    let ns = TestNs::new("helm-ns").await;
    let release = "nsd";
    let watch = format!("watchNamespaces={{{}}}", ns.name);
    let kubeconfig = install_chart(&ns, release, &["--set", &watch]);
    assert!(can_i(
        &ns,
        release,
        &["patch", "pods/status", "-n", &ns.name]
    ));
    assert!(!can_i(&ns, release, &["list", "pods", "-n", "default"]));
    assert!(!can_i(&ns, release, &["list", "pods", "-A"]));
    let log = release_as_the_chart(&ns, &kubeconfig).await;
    assert!(!log.contains("forbidden"), "no request was refused:\n{log}");
    helm(&["uninstall", release, "--namespace", &ns.name]);
}

/// The chart README's RBAC tables say exactly what the rendered chart grants
/// (with every optional part on): each rule of each Role and ClusterRole is
/// one row (API group, resources, verbs), and each row is one rule.
#[test]
fn the_chart_readme_lists_exactly_the_rules_the_chart_renders() {
    let rendered = helm(&[
        "template",
        "x",
        CHART,
        "--set",
        "memberClusters.enabled=true",
    ]);
    let mut granted = std::collections::BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let Ok(doc) = serde_yaml::Value::deserialize(doc) else {
            continue;
        };
        let kind = doc["kind"].as_str().unwrap_or_default();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        for rule in doc["rules"].as_sequence().into_iter().flatten() {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            let groups = list("apiGroups").join(",");
            let mut resources = list("resources");
            resources.sort();
            granted.insert((groups, resources.join(","), list("verbs").join(", ")));
        }
    }
    let readme = std::fs::read_to_string(format!("{CHART}/README.md")).expect("chart README");
    let mut documented = std::collections::BTreeSet::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | group | resources | verbs | why |
        let [_, group, resources, verbs, ..] = cells.as_slice() else {
            continue;
        };
        let a_rule = resources.starts_with('`')
            && !verbs.is_empty()
            && verbs
                .split(", ")
                .all(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_lowercase()));
        if !a_rule {
            continue; // a row of the values table
        }
        // The core group is written `""`.
        let group = group.trim_matches('`').trim_matches('"').to_string();
        // Resource names in parentheses restrict the rule; the resources are
        // the back-quoted words before them.
        let before_names = resources.split(" (").next().unwrap_or_default();
        let mut listed: Vec<String> = before_names
            .split(", ")
            .map(|r| r.trim_matches('`').to_string())
            .collect();
        listed.sort();
        documented.insert((group, listed.join(","), verbs.to_string()));
    }
    let missing: Vec<_> = granted.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&granted).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "charts/cafe-operator/README.md's RBAC tables drifted from the chart:\n\
         granted but not listed: {missing:#?}\nlisted but not granted: {extra:#?}"
    );
}
