//! Metric-analysis stories against the local control plane's real
//! Prometheus: each test runs its own exporter (a pod's error ratio is what
//! the test says for the image the pod runs), registers it with Prometheus
//! through a file_sd target file, and lets the analysis confirm, hold, pause
//! or roll back the release.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cafe_operator::api::{AnalysisPhase, AnalysisStatus, CafeDeployment, Phase};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::support::demo::{cafedeployment, demo_service, phase, pod_identities, pods_by_cell};
use crate::support::kubectl::kubectl_annotate_confirm;
use crate::support::lossless::Lossless;
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::support::pods::{image, pod_ready};

fn prometheus_url() -> String {
    std::env::var("CAFE_PROMETHEUS_URL").unwrap_or_else(|_| "http://127.0.0.1:19090".into())
}

fn targets_dir() -> PathBuf {
    std::env::var_os("CAFE_PROMETHEUS_TARGETS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cluster/prometheus/targets"),
        PathBuf::from,
    )
}

/// Serves `app_error_ratio{namespace, pod}` for the test's live pods: the
/// value the test set for the image the pod runs (0 for any other).
struct Exporter {
    ratios: Arc<Mutex<BTreeMap<String, f64>>>,
    target: PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Exporter {
    async fn start(ns: &TestNs) -> Self {
        let ratios: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("exporter port");
        let port = listener.local_addr().expect("address").port();
        let (client, namespace, values) = (ns.client.clone(), ns.name.clone(), ratios.clone());
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || render(client.clone(), namespace.clone(), values.clone())),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = targets_dir();
        assert!(
            dir.is_dir(),
            "{} is missing: the local control plane runs no Prometheus (make cluster-down, \
             then make cluster-up)",
            dir.display()
        );
        let target = dir.join(format!("{}.json", ns.name));
        let file = json!([{"targets": [format!("127.0.0.1:{port}")], "labels": {"job": ns.name}}]);
        std::fs::write(&target, file.to_string()).expect("file_sd target");
        let this = Self {
            ratios,
            target,
            server,
        };
        let ns_name = ns.name.clone();
        ns.wait("Prometheus to scrape the test's exporter", 60, || async {
            let up = query(&format!("up{{job=\"{ns_name}\"}}")).await;
            (up == Some(vec![1.0])).then_some(())
        })
        .await;
        this
    }

    fn set(&self, image: &str, ratio: f64) {
        if let Ok(mut r) = self.ratios.lock() {
            r.insert(image.to_string(), ratio);
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.target);
        self.server.abort();
    }
}

async fn render(
    client: Client,
    namespace: String,
    ratios: Arc<Mutex<BTreeMap<String, f64>>>,
) -> ([(&'static str, &'static str); 1], String) {
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let listed = pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let ratios = ratios.lock().map(|r| r.clone()).unwrap_or_default();
    let mut out = String::from("# TYPE app_error_ratio gauge\n");
    for p in listed {
        let value = ratios.get(&image(&p)).copied().unwrap_or(0.0);
        out.push_str(&format!(
            "app_error_ratio{{namespace=\"{namespace}\",pod=\"{}\"}} {value}\n",
            p.name_any()
        ));
    }
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
}

/// The values of an instant query, or `None` when Prometheus cannot answer.
async fn query(promql: &str) -> Option<Vec<f64>> {
    let prometheus = cafe_operator::runtime::prometheus::Prometheus::new().ok()?;
    let body = prometheus
        .query(&prometheus_url(), promql, Duration::from_secs(5))
        .await
        .ok()?;
    cafe_operator::release::analysis::parse_answer(&body).ok()
}

/// A story's namespace, its operator, and its exporter reporting `ratio`
/// for the pods on nginx:1.26.
async fn story(name: &str, ratio: f64) -> (TestNs, Operator, Exporter) {
    let ns = TestNs::new(name).await;
    let op = Operator::start(&ns.name);
    let exporter = Exporter::start(&ns).await;
    exporter.set("nginx:1.26", ratio);
    (ns, op, exporter)
}

/// The error ratio of the pods of the group analysed.
const GROUP_ERRORS: &str = r#"max(app_error_ratio{namespace="{{namespace}}",pod=~"{{pods}}"})"#;

/// Creates demo (`replicas` pods over cell-a and cell-b, no confirmations)
/// behind a Service, waits until it is Healthy, then releases nginx:1.26
/// with `analysis` in the same change.
async fn release_with_analysis(
    ns: &TestNs,
    replicas: i64,
    batch: i64,
    analysis: serde_json::Value,
) {
    release_with_analysis_and(ns, replicas, batch, analysis, json!({})).await;
}

/// `release_with_analysis` of a CafeDeployment whose spec also has `extra`.
async fn release_with_analysis_and(
    ns: &TestNs,
    replicas: i64,
    batch: i64,
    analysis: serde_json::Value,
    extra: serde_json::Value,
) {
    demo_service(ns).await;
    let mut body = cafedeployment(
        "demo",
        "demo",
        replicas,
        &["cell-a", "cell-b"],
        json!({"upgradeType": "Beta", "batchSize": batch}),
        json!({"components": ["service"], "settleSeconds": 1}),
    );
    if let (Some(spec), Some(extra)) = (body["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    ns.create::<CafeDeployment>(body).await;
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait("demo Healthy with every pod Ready", 180, || async {
        let pods = pods_by_cell(ns).await;
        let all =
            pods.len() == usize::try_from(replicas).ok()? && pods.iter().all(|(p, _)| pod_ready(p));
        (all && phase(&cds).await == Some(Phase::Healthy)).then_some(())
    })
    .await;
    let change = json!({"spec": {
        "strategy": {"analysis": analysis},
        "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}
    }});
    cds.patch("demo", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect("release with analysis");
}

fn analysis(queries: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    let mut a = json!({
        "prometheus": {"address": prometheus_url(), "timeoutSeconds": 3},
        "queries": queries,
        "initialDelaySeconds": 1,
        "intervalSeconds": 1,
        "count": 2
    });
    if let (Some(a), Some(extra)) = (a.as_object_mut(), extra.as_object()) {
        a.extend(extra.clone());
    }
    a
}

fn error_ratio_query(extra: serde_json::Value) -> serde_json::Value {
    let mut q =
        json!({"name": "error-ratio", "query": GROUP_ERRORS, "successCondition": "result < 0.1"});
    if let (Some(q), Some(extra)) = (q.as_object_mut(), extra.as_object()) {
        q.extend(extra.clone());
    }
    json!([q])
}

async fn analysis_status(cds: &Api<CafeDeployment>) -> Option<AnalysisStatus> {
    cds.get("demo").await.ok()?.status?.release?.analysis
}

/// Waits until every pod of demo runs `wanted`, Ready, and demo is Healthy.
async fn wait_healthy_on(ns: &TestNs, replicas: usize, wanted: &str) {
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(
        &format!("all pods Ready on {wanted}, Healthy"),
        180,
        || async {
            let pods = pods_by_cell(ns).await;
            let ok = pods.len() == replicas
                && pods.iter().all(|(p, _)| image(p) == wanted && pod_ready(p));
            (ok && phase(&cds).await == Some(Phase::Healthy)).then_some(())
        },
    )
    .await;
}

/// Live pods of demo on `wanted`.
async fn pods_on(ns: &TestNs, wanted: &str) -> usize {
    pods_by_cell(ns)
        .await
        .iter()
        .filter(|(p, _)| image(p) == wanted)
        .count()
}

async fn wait_phase(ns: &TestNs, want: Phase, seconds: u64) {
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(&format!("phase {want:?}"), seconds, || async {
        (phase(&cds).await == Some(want)).then_some(())
    })
    .await;
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn healthy_metrics_confirm_every_group_without_a_person() {
    let (ns, mut op, _exporter) = story("an-pass", 0.01).await;
    let cds: Api<CafeDeployment> = ns.api();
    release_with_analysis(&ns, 6, 2, analysis(error_ratio_query(json!({})), json!({}))).await;
    let lossless = Lossless::start(&ns, "demo").await;
    // The analysis holds each group: the phase says so while it measures.
    wait_phase(&ns, Phase::Analyzing, 60).await;
    // An operator killed mid-analysis resumes from the measurements on record.
    op.restart();
    // Every verdict on the way, as status showed it.
    let verdicts: Mutex<Vec<(i32, AnalysisPhase)>> = Mutex::default();
    ns.wait("all pods Ready on nginx:1.26, Healthy", 180, || async {
        if let Some(r) = analysis_status(&cds).await
            && let Ok(mut seen) = verdicts.lock()
            && !seen.contains(&(r.group, r.phase))
        {
            seen.push((r.group, r.phase));
        }
        let pods = pods_by_cell(&ns).await;
        let ok = pods.len() == 6
            && pods
                .iter()
                .all(|(p, _)| image(p) == "nginx:1.26" && pod_ready(p));
        (ok && phase(&cds).await == Some(Phase::Healthy)).then_some(())
    })
    .await;
    let seen = verdicts.lock().map(|v| v.clone()).unwrap_or_default();
    for group in [1, 2] {
        assert!(
            seen.contains(&(group, AnalysisPhase::Successful)),
            "group {group} of 3 analysed and passed: {seen:?}"
        );
    }
    let cd = cds.get("demo").await.expect("demo");
    assert_ne!(
        cd.annotations()
            .get("cafe.sofastack.io/upgrade-confirmed")
            .map(String::as_str),
        Some("true"),
        "nobody confirmed"
    );
    // One event per verdict (each names its group, never folded into one).
    let events = ns.report().await;
    assert_eq!(events.matches("AnalysisSuccessful").count(), 2, "{events}");
    let record = analysis_status(&cds).await.expect("the last analysis");
    assert_eq!((record.group, record.phase), (2, AnalysisPhase::Successful));
    assert!(
        record.measurements.iter().all(|m| m.value == "0.01"),
        "{record:?}"
    );
    let summary = lossless.verify().await;
    assert!(summary.min_ready >= 1);
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn with_a_human_beta_a_person_confirms_the_beta_group_and_the_analysis_the_rest() {
    let (ns, _op, _exporter) = story("an-human-beta", 0.01).await;
    let cds: Api<CafeDeployment> = ns.api();
    release_with_analysis_and(
        &ns,
        6,
        2,
        analysis(error_ratio_query(json!({})), json!({})),
        json!({"signoff": {"humanBeta": true}}),
    )
    .await;
    // The Beta group's analysis passes, and still a person must confirm.
    ns.wait("the Beta group's analysis passed", 90, || async {
        let r = analysis_status(&cds).await?;
        (r.group == 1 && r.phase == AnalysisPhase::Successful).then_some(())
    })
    .await;
    wait_phase(&ns, Phase::WaitingForConfirm, 30).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = cds.get("demo").await.expect("demo").status.expect("status");
    assert_eq!(
        held.phase,
        Some(Phase::WaitingForConfirm),
        "the analysis did not confirm the Beta group"
    );
    assert_eq!(held.release.map(|r| r.opened), Some(1));
    crate::support::kubectl::kubectl_annotate_confirm(&ns.name);
    // Group 2's analysis confirms group 3 on its own.
    wait_healthy_on(&ns, 6, "nginx:1.26").await;
    let history = cds
        .get("demo")
        .await
        .expect("demo")
        .status
        .expect("status")
        .history;
    let confirmations: Vec<(Option<i32>, &str)> = history
        .iter()
        .filter(|e| e.action == cafe_operator::api::HistoryAction::Confirmed)
        .map(|e| (e.group, e.by.as_str()))
        .collect();
    // No sign-off policy in this namespace: the person reads "unverified".
    assert_eq!(
        confirmations,
        vec![(Some(2), "unverified"), (Some(3), "analysis")]
    );
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn bad_metrics_in_the_beta_group_roll_back_only_the_beta_pods_losslessly() {
    let (ns, _op, _exporter) = story("an-fail", 0.5).await;
    let cds: Api<CafeDeployment> = ns.api();
    release_with_analysis(&ns, 6, 2, analysis(error_ratio_query(json!({})), json!({}))).await;
    let before = pod_identities(&ns).await;
    let lossless = Lossless::start(&ns, "demo").await;
    ns.wait("the analysis to roll the release back", 90, || async {
        let record = analysis_status(&cds).await?;
        (record.phase == AnalysisPhase::Failed && record.action.as_deref() == Some("Rollback"))
            .then_some(())
    })
    .await;
    wait_healthy_on(&ns, 6, "nginx:1.25").await;
    let cd = cds.get("demo").await.expect("demo");
    let template_image = cd
        .spec
        .template
        .spec
        .as_ref()
        .map(|s| s.containers[0].image.clone());
    assert_eq!(
        template_image,
        Some(Some("nginx:1.25".to_string())),
        "the template is restored"
    );
    let record = cd
        .status
        .and_then(|s| s.release?.analysis)
        .expect("the verdict stays on record");
    assert_eq!(record.group, 1, "the Beta group was judged");
    assert!(
        record.message.contains("error-ratio") && record.message.contains("0.5"),
        "{}",
        record.message
    );
    // Only the Beta pods (one per cell) moved, in place, and moved back.
    assert_eq!(pod_identities(&ns).await, before, "same pods, same IPs");
    let moved: Vec<(String, String)> = pods_by_cell(&ns)
        .await
        .into_iter()
        .filter(|(p, _)| restarts(p) > 0)
        .map(|(p, cell)| (p.name_any(), cell))
        .collect();
    assert_eq!(moved.len(), 2, "one Beta pod per cell moved: {moved:?}");
    assert_ne!(moved[0].1, moved[1].1, "one in each cell: {moved:?}");
    let events = ns.report().await;
    assert!(
        events.contains("AnalysisFailed") && events.contains("RollingBack"),
        "{events}"
    );
    let summary = lossless.verify().await;
    assert!(summary.min_ready >= 1);
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn an_empty_result_is_inconclusive_and_waits_for_a_person_who_can_confirm() {
    let ns = TestNs::new("an-empty").await;
    let _op = Operator::start(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let missing = json!([{
        "name": "latency",
        "query": r#"max(app_latency_seconds{namespace="{{namespace}}",pod=~"{{pods}}"})"#,
        "successCondition": "result < 0.5"
    }]);
    release_with_analysis(&ns, 4, 2, analysis(missing, json!({}))).await;
    let record = ns
        .wait("an inconclusive verdict", 90, || async {
            analysis_status(&cds)
                .await
                .filter(|r| r.phase == AnalysisPhase::Inconclusive)
        })
        .await;
    assert!(record.message.contains("no series"), "{}", record.message);
    // It waits for a person, and keeps waiting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cd = cds.get("demo").await.expect("demo");
    let status = cd.status.expect("status");
    assert_eq!(status.phase, Some(Phase::WaitingForConfirm));
    let message = status.release.expect("release").message;
    assert!(
        message.contains("inconclusive") && message.contains("confirm group 2"),
        "{message}"
    );
    assert_eq!(
        pods_on(&ns, "nginx:1.26").await,
        2,
        "only the Beta group released"
    );
    kubectl_annotate_confirm(&ns.name);
    wait_healthy_on(&ns, 4, "nginx:1.26").await;
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn prometheus_down_gives_error_measurements_then_the_configured_pause() {
    let ns = TestNs::new("an-down").await;
    let _op = Operator::start(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    // Port 9 (discard) on loopback: nothing listens, connections are refused.
    let mut spec = analysis(
        error_ratio_query(json!({})),
        json!({"errorLimit": 1, "onError": "Pause"}),
    );
    spec["prometheus"]["address"] = json!("http://127.0.0.1:9");
    release_with_analysis(&ns, 4, 2, spec).await;
    let record = ns
        .wait(
            "the analysis to give up with Error and pause",
            90,
            || async {
                let cd = cds.get("demo").await.ok()?;
                let record = cd.status.as_ref()?.release.as_ref()?.analysis.clone()?;
                (cd.spec.strategy.pause && record.phase == AnalysisPhase::Error).then_some(record)
            },
        )
        .await;
    assert_eq!(record.queries[0].consecutive_errors, 2, "{record:?}");
    assert!(
        record
            .measurements
            .iter()
            .all(|m| m.phase == AnalysisPhase::Error
                && m.message.contains("cannot reach Prometheus")),
        "{record:?}"
    );
    wait_phase(&ns, Phase::Paused, 30).await;
    let events = ns.report().await;
    assert!(
        events.contains("AnalysisError") && events.contains("PausedByAnalysis"),
        "{events}"
    );
    // The pause holds: no more pods move.
    assert_eq!(
        pods_on(&ns, "nginx:1.26").await,
        2,
        "only the Beta group released"
    );
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_single_bad_sample_under_the_failure_limit_does_not_roll_back() {
    let (ns, _op, exporter) = story("an-flap", 0.9).await;
    let cds: Api<CafeDeployment> = ns.api();
    release_with_analysis(
        &ns,
        4,
        2,
        analysis(
            error_ratio_query(json!({})),
            json!({"count": 3, "failureLimit": 1, "intervalSeconds": 3}),
        ),
    )
    .await;
    ns.wait("one failed measurement", 90, || async {
        let r = analysis_status(&cds).await?;
        (r.queries.first()?.failed == 1).then_some(())
    })
    .await;
    exporter.set("nginx:1.26", 0.0);
    wait_healthy_on(&ns, 4, "nginx:1.26").await;
    let record = analysis_status(&cds).await.expect("record");
    assert_eq!(record.phase, AnalysisPhase::Successful, "{record:?}");
    let t = &record.queries[0];
    assert_eq!((t.failed, t.successful), (1, 2), "{record:?}");
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_person_who_confirms_during_the_analysis_is_obeyed_and_the_analysis_says_so() {
    let (ns, _op, _exporter) = story("an-person", 0.01).await;
    let cds: Api<CafeDeployment> = ns.api();
    // 100 measurements a second apart: the verdict is minutes away.
    let slow = analysis(error_ratio_query(json!({})), json!({"count": 100}));
    release_with_analysis(&ns, 4, 2, slow).await;
    wait_phase(&ns, Phase::Analyzing, 60).await;
    kubectl_annotate_confirm(&ns.name);
    wait_healthy_on(&ns, 4, "nginx:1.26").await;
    let record = analysis_status(&cds).await.expect("record");
    assert_eq!(record.action.as_deref(), Some("Superseded"), "{record:?}");
    assert!(record.message.contains("superseded"), "{}", record.message);
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_new_template_during_the_analysis_starts_a_new_release_analysed_afresh() {
    let (ns, _op, exporter) = story("an-retemplate", 0.01).await;
    exporter.set("nginx:1.27", 0.01);
    let cds: Api<CafeDeployment> = ns.api();
    let slow = analysis(error_ratio_query(json!({})), json!({"count": 100}));
    release_with_analysis(&ns, 4, 2, slow).await;
    let first = ns
        .wait("the analysis of nginx:1.26's Beta group", 60, || async {
            analysis_status(&cds)
                .await
                .filter(|r| r.phase == AnalysisPhase::Running && !r.measurements.is_empty())
        })
        .await;
    // Mid-analysis: a new image, and an analysis that concludes quickly.
    let change = json!({"spec": {
        "strategy": {"analysis": {"count": 2}},
        "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}
    }});
    cds.patch("demo", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect("a new template");
    wait_healthy_on(&ns, 4, "nginx:1.27").await;
    let last = analysis_status(&cds).await.expect("record");
    assert_ne!(
        last.revision, first.revision,
        "the new release was analysed"
    );
    assert_eq!((last.group, last.phase), (1, AnalysisPhase::Successful));
    assert!(
        last.measurements.iter().all(|m| m.value == "0.01"),
        "measured afresh: {last:?}"
    );
}
