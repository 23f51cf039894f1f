//! Safety stories a user runs into every week: pods sick on their own while
//! a release runs, a PodDisruptionBudget, a scale to zero in the middle of a
//! release, a template the API server refuses to make pods of (or whose
//! ServiceAccount comes late), and a namespace deleted under a release.

use std::time::{Duration, Instant};

use cafe_operator::api::names::TRAFFIC_GATE;
use cafe_operator::api::{CafeDeployment, Phase};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::demo::{
    cafedeployment, demo_service, pods_by_cell, release_image, settle, wait_all_on, wait_n_on,
};
use crate::support::kubectl::{kubectl, kubectl_annotate_confirm};
use crate::support::lossless::Lossless;
use crate::support::namespace::TestNs;
use crate::support::net::{free_port, http_get};
use crate::support::operator::Operator;
use crate::support::pods::{count_pods, image, pod_condition, pod_ready};

/// The application's own readiness, as a readiness gate the test controls:
/// kubelet (kwok's stages) keeps a pod not Ready while it is False.
const HEALTHY: &str = "e2e.cafe.sofastack.io/healthy";

/// Sets the application's own readiness of `pod`.
async fn set_healthy(pods: &Api<Pod>, pod: &str, healthy: bool) {
    let status = if healthy { "True" } else { "False" };
    let patch = json!({"status": {"conditions": [{
        "type": HEALTHY, "status": status, "reason": "E2E", "message": "set by the test",
        "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
    }]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap_or_else(|e| panic!("set {HEALTHY} of {pod}: {e}"));
}

/// The most pods flagged at once over a `count_pods` recording.
fn most_flagged(counts: &std::sync::Mutex<Vec<(usize, usize)>>) -> usize {
    counts
        .lock()
        .map(|c| c.iter().map(|(_, out)| *out).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Out of traffic: the traffic gate not True, or kubelet's Ready not True.
fn out_of_traffic(p: &Pod) -> bool {
    !(pod_condition(p, TRAFFIC_GATE).as_deref() == Some("True") && pod_ready(p))
}

/// 12 pods over cell-a and cell-b (groups of 4, no confirmation), behind the
/// Service `demo` with the `service` component; each pod's own readiness
/// (`HEALTHY`) set True once it exists, until all 12 are Ready.
async fn create_twelve(ns: &TestNs) {
    demo_service(ns).await;
    let mut body = cafedeployment(
        "demo",
        "demo",
        12,
        &["cell-a", "cell-b"],
        json!({"upgradeType": "Batch", "batchSize": 4, "needWaitingForConfirm": false}),
        json!({"components": ["service"]}),
    );
    body["spec"]["template"]["spec"]["readinessGates"] = json!([{"conditionType": HEALTHY}]);
    ns.create::<CafeDeployment>(body).await;
    let pods: Api<Pod> = ns.api();
    ns.wait(
        "12 pods Ready with their own readiness True",
        120,
        || async {
            let listed = pods.list(&ListParams::default()).await.ok()?.items;
            for p in &listed {
                if pod_condition(p, HEALTHY).is_none() {
                    set_healthy(&pods, &p.name_any(), true).await;
                }
            }
            (listed.len() == 12 && listed.iter().all(pod_ready)).then_some(())
        },
    )
    .await;
    wait_n_on(ns, 12, "nginx:1.25").await;
}

/// The user's first row: three pods of cell-a fail their own readiness, then
/// a new image goes out. The budget (one group, 4) counts them: at most one
/// more pod leaves traffic, and the Service keeps 8 ready endpoints.
#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn pods_sick_on_their_own_count_against_the_one_budget() {
    let ns = TestNs::new("sick-budget").await;
    let _op = Operator::start(&ns.name);
    create_twelve(&ns).await;
    let pods: Api<Pod> = ns.api();
    let sick: Vec<String> = pods_by_cell(&ns)
        .await
        .into_iter()
        .filter(|(_, cell)| cell == "cell-a")
        .take(3)
        .map(|(p, _)| p.name_any())
        .collect();
    for p in &sick {
        set_healthy(&pods, p, false).await;
    }
    ns.wait("the three sick pods not Ready", 30, || async {
        let listed = pods.list(&ListParams::default()).await.ok()?.items;
        (listed.iter().filter(|p| !pod_ready(p)).count() == 3).then_some(())
    })
    .await;

    let lossless = Lossless::start(&ns, "demo").await;
    let (counts, watch) = count_pods(&ns, out_of_traffic).await;
    let cds: Api<CafeDeployment> = ns.api();
    release_image(&cds, "nginx:1.26").await;
    // Every pod but the sick ones' cell-mates can move: cell-b finishes,
    // one pod at a time, while cell-a's three stay sick.
    ns.wait("cell-b all on nginx:1.26", 120, || async {
        let pods = pods_by_cell(&ns).await;
        let done = pods
            .iter()
            .filter(|(p, cell)| cell == "cell-b" && image(p) == "nginx:1.26" && pod_ready(p))
            .count();
        (done == 6).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The sick pods recover: the release finishes.
    for p in &sick {
        set_healthy(&pods, p, true).await;
    }
    wait_n_on(&ns, 12, "nginx:1.26").await;
    watch.abort();
    let most = most_flagged(&counts);
    println!("sick-budget: at most {most} of 12 pods out of traffic at once (budget 4)");
    assert!(
        most <= 4,
        "{most} pods out of traffic at once with 3 sick: the budget is one group (4)"
    );
    let summary = lossless.verify().await;
    assert!(
        summary.min_ready >= 8,
        "the Service fell to {} ready endpoints; replicas - budget is 8",
        summary.min_ready
    );
}

/// A PodDisruptionBudget of maxUnavailable 1 over the pods: in-place
/// updates honour it (the eviction API is never called), so the release
/// moves one pod at a time although its groups are 4, and says it waits for
/// the budget.
#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_release_honours_a_pod_disruption_budget() {
    let ns = TestNs::new("pdb").await;
    let _op = Operator::start(&ns.name);
    create_twelve(&ns).await;
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = ns.api();
    ns.create::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(json!({
        "metadata": {"name": "demo"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "demo"}}}
    }))
    .await;
    ns.wait(
        "the disruption controller to count the pods",
        60,
        || async {
            let s = pdbs.get("demo").await.ok()?.status?;
            (s.expected_pods == 12 && s.disruptions_allowed == 1).then_some(())
        },
    )
    .await;

    let lossless = Lossless::start(&ns, "demo").await;
    let (counts, watch) = count_pods(&ns, out_of_traffic).await;
    let cds: Api<CafeDeployment> = ns.api();
    release_image(&cds, "nginx:1.26").await;
    let said = ns
        .wait("the release message to name the budget", 60, || async {
            let s = cds.get("demo").await.ok()?.status?;
            let message = s.release?.message;
            message
                .contains("PodDisruptionBudget demo")
                .then_some(message)
        })
        .await;
    println!("pdb: {said}");
    wait_n_on(&ns, 12, "nginx:1.26").await;
    watch.abort();
    let most = most_flagged(&counts);
    println!("pdb: at most {most} of 12 pods out of traffic at once (maxUnavailable 1)");
    assert_eq!(
        most, 1,
        "the PodDisruptionBudget allows one pod out at a time"
    );
    let summary = lossless.verify().await;
    assert_eq!(summary.changed, 12, "every pod updated in place");
    assert!(summary.min_ready >= 11);
}

/// The user's second row: a release waits for confirmation after its Beta
/// group; scaled to zero and back through the scale subresource, it keeps
/// the stable revision and the wait: the pods come back on the stable image
/// but for the Beta group, and nothing more moves until confirmed.
#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn scaling_to_zero_mid_release_keeps_the_release_and_its_wait() {
    let ns = TestNs::new("scale-zero").await;
    let _op = Operator::start(&ns.name);
    crate::support::demo::create_demo(&ns).await;
    let cds: Api<CafeDeployment> = ns.api();
    let stable = cds
        .get("demo")
        .await
        .expect("cd")
        .status
        .and_then(|s| s.current_revision)
        .expect("currentRevision");
    release_image(&cds, "nginx:1.26").await;
    settle(&ns, Phase::WaitingForConfirm, 1).await;

    kubectl(
        &ns.name,
        &["scale", "cafedeployment", "demo", "--replicas=0"],
    );
    ns.wait("every pod gone", 120, || async {
        pods_by_cell(&ns).await.is_empty().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = cds.get("demo").await.expect("cd").status.expect("status");
    assert_eq!(
        s.current_revision.as_deref(),
        Some(stable.as_str()),
        "the unconfirmed revision never became stable"
    );
    assert_eq!(s.phase, Some(Phase::WaitingForConfirm), "{:?}", s.release);
    assert!(s.update_revision != s.current_revision);

    kubectl(
        &ns.name,
        &["scale", "cafedeployment", "demo", "--replicas=10"],
    );
    settle(&ns, Phase::WaitingForConfirm, 1).await;
    // From here on, the release goes on losslessly and within its budget
    // (one group, 4). (At zero the Service had no endpoint: the user's doing.)
    let lossless = Lossless::start(&ns, "demo").await;
    let (counts, watch) = count_pods(&ns, out_of_traffic).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods = pods_by_cell(&ns).await;
    let new = pods
        .iter()
        .filter(|(p, _)| image(p) == "nginx:1.26")
        .count();
    assert_eq!(
        (pods.len(), new),
        (10, 2),
        "back at 10: the Beta group (one per cell) on the new image, the rest stable"
    );
    kubectl_annotate_confirm(&ns.name);
    crate::support::demo::confirm_until_healthy(&ns).await;
    wait_all_on(&ns, "nginx:1.26").await;
    watch.abort();
    let most = most_flagged(&counts);
    println!(
        "scale-zero: at most {most} of 10 pods out of traffic at once after the scale back (budget 4)"
    );
    assert!(
        most <= 4,
        "{most} pods out of traffic at once; the budget is 4"
    );
    let summary = lossless.verify().await;
    assert!(
        summary.min_ready >= 6,
        "fewest ready endpoints {}",
        summary.min_ready
    );
}

/// The user's third row: a pod creation the API server refuses (here a
/// ResourceQuota of 2 pods) stalls the CafeDeployment within seconds, with
/// the API server's words, so that `kubectl wait --for=condition=Stalled`
/// returns; the creations back off (no refusal per pod event); lifting the
/// quota lets the rest come.
#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_refused_pod_creation_stalls_with_the_api_servers_message() {
    let ns = TestNs::new("refused").await;
    ns.create::<k8s_openapi::api::core::v1::ResourceQuota>(json!({
        "metadata": {"name": "two-pods"}, "spec": {"hard": {"pods": "2"}}
    }))
    .await;
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> = ns.api();
    ns.wait("the quota to be counted", 60, || async {
        quotas.get("two-pods").await.ok()?.status?.hard.map(|_| ())
    })
    .await;
    let op = Operator::start(&ns.name);
    ns.create::<CafeDeployment>(cafedeployment(
        "demo",
        "demo",
        6,
        &["cell-a", "cell-b"],
        json!({"upgradeType": "Batch", "batchSize": 6, "needWaitingForConfirm": false}),
        json!({"components": []}),
    ))
    .await;
    let started = Instant::now();
    let out = std::process::Command::new("kubectl")
        .args([
            "-n",
            &ns.name,
            "wait",
            "--for=condition=Stalled",
            "cafedeployment/demo",
        ])
        .args(["--timeout=60s"])
        .output()
        .expect("kubectl wait");
    assert!(
        out.status.success(),
        "kubectl wait --for=condition=Stalled: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        ns.report().await
    );
    println!(
        "refused: Stalled {:.1}s after the creation",
        started.elapsed().as_secs_f64()
    );
    let cds: Api<CafeDeployment> = ns.api();
    let s = cds.get("demo").await.expect("cd").status.expect("status");
    let stalled = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .expect("Stalled");
    assert_eq!(stalled.reason, "FailedCreate");
    assert!(
        stalled.message.contains("exceeded quota"),
        "the API server's message: {}",
        stalled.message
    );
    // A warning event says so too.
    let events: Api<k8s_openapi::api::core::v1::Event> = ns.api();
    ns.wait("a Warning event FailedCreate", 30, || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("FailedCreate")
            })
            .then_some(())
    })
    .await;
    // Pod events keep waking the sets; the refusals still back off.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    let refused = log.matches("pod creation refused").count();
    println!("refused: {refused} refused creation attempts in the first ~15 s");
    assert!(
        refused <= 12,
        "{refused} refused creations: they must back off (two sets, 1, 2, 4, 8 s)"
    );

    quotas
        .delete("two-pods", &Default::default())
        .await
        .expect("lift the quota");
    ns.wait("6 pods and Healthy once the quota is gone", 400, || async {
        let s = cds.get("demo").await.ok()?.status?;
        (s.phase == Some(Phase::Healthy) && s.available_replicas == 6).then_some(())
    })
    .await;
}

/// The retry hold-offs ("retry_in=...") the operator logged for refused
/// pod creations, in seconds.
fn refusal_waits(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("pod creation refused"))
        .filter_map(|l| l.split("retry_in=").nth(1)?.split_whitespace().next())
        .filter_map(|d| {
            let unit = |suffix: &str, scale: f64| -> Option<f64> {
                d.strip_suffix(suffix)?
                    .parse::<f64>()
                    .ok()
                    .map(|v| v * scale)
            };
            unit("ms", 1e-3)
                .or_else(|| unit("µs", 1e-6))
                .or_else(|| unit("ns", 1e-9))
                .or_else(|| unit("s", 1.0))
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn pods_whose_service_account_comes_late_follow_it_within_seconds() {
    let ns = TestNs::new("late-sa").await;
    let op = Operator::start(&ns.name);
    let mut cd = cafedeployment(
        "demo",
        "demo",
        2,
        &["cell-a"],
        json!({"upgradeType": "Batch", "batchSize": 2, "needWaitingForConfirm": false}),
        json!({"components": []}),
    );
    cd["spec"]["template"]["spec"]["serviceAccountName"] = json!("deployer");
    ns.create::<CafeDeployment>(cd).await;
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait("Stalled, naming the missing ServiceAccount", 60, || async {
        let s = cds.get("demo").await.ok()?.status?;
        let c = s.conditions.iter().find(|c| c.type_ == "Stalled")?;
        (c.reason == "FailedCreate" && c.message.contains("service account")).then_some(())
    })
    .await;
    // Long enough for doubling hold-offs to reach a minute.
    tokio::time::sleep(Duration::from_secs(70)).await;
    let waits = refusal_waits(&std::fs::read_to_string(&op.log).unwrap_or_default());
    println!("late-sa: {} refusals, hold-offs {waits:.1?} s", waits.len());
    assert!(waits.len() >= 6, "refusals logged: {waits:?}");
    assert!(
        waits.iter().all(|w| *w <= 10.0),
        "a missing ServiceAccount is asked about again within 10 s: {waits:?}"
    );
    ns.create::<k8s_openapi::api::core::v1::ServiceAccount>(json!({
        "metadata": {"name": "deployer"}
    }))
    .await;
    let created = Instant::now();
    let pods: Api<Pod> = ns.api();
    ns.wait("the pods, once their ServiceAccount exists", 15, || async {
        let n = pods
            .list(&ListParams::default().labels("app=demo"))
            .await
            .ok()?
            .items
            .len();
        (n == 2).then_some(())
    })
    .await;
    println!(
        "late-sa: the pods followed their ServiceAccount in {:.1}s",
        created.elapsed().as_secs_f64()
    );
    ns.wait("Healthy", 60, || async {
        let s = cds.get("demo").await.ok()?.status?;
        (s.phase == Some(Phase::Healthy)).then_some(())
    })
    .await;
}

/// Annotations no pod could carry are refused at admission, naming the field.
#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_template_whose_annotations_no_pod_could_carry_is_refused_by_the_api_server() {
    let ns = TestNs::new("big-annotations").await;
    let mut body = cafedeployment(
        "demo",
        "demo",
        2,
        &["cell-a"],
        json!({"batchSize": 1}),
        json!({"components": []}),
    );
    body["spec"]["template"]["metadata"]["annotations"] = json!({"blob": "x".repeat(250_000)});
    let cd: CafeDeployment = serde_json::from_value(body).expect("cd");
    let cds: Api<CafeDeployment> = ns.api();
    let err = cds
        .create(&Default::default(), &cd)
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("spec.template.metadata.annotations") && text.contains("too large for a pod"),
        "{text}"
    );
}

/// The user's fourth row: the namespace of a 100-pod CafeDeployment deleted
/// while its release drains pods. The operator creates nothing into a
/// namespace being deleted and backs off: fewer than one refused request per
/// pod, counted by its own `cafe_api_requests_total`.
#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_namespace_deleted_mid_release_costs_less_than_a_refused_request_per_pod() {
    let ns = TestNs::new("ns-delete").await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _op = Operator::launch(&ns.name, &["--metrics-bind-address", &addr], &[]);
    demo_service(&ns).await;
    ns.create::<CafeDeployment>(cafedeployment(
        "demo",
        "demo",
        100,
        &["cell-a", "cell-b", "cell-c"],
        json!({"upgradeType": "Batch", "batchSize": 10, "needWaitingForConfirm": false}),
        json!({"components": ["service"]}),
    ))
    .await;
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait("100 pods available", 240, || async {
        let s = cds.get("demo").await.ok()?.status?;
        (s.available_replicas == 100 && s.phase == Some(Phase::Healthy)).then_some(())
    })
    .await;
    let refused = || -> f64 {
        let (_, page) = http_get(port, "/metrics").unwrap_or_default();
        page.lines()
            .filter(|l| l.starts_with("cafe_api_requests_total{"))
            .filter(|l| !l.contains("outcome=\"success\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = refused();
    release_image(&cds, "nginx:1.26").await;
    ns.wait("the release under way", 60, || async {
        let pods = pods_by_cell(&ns).await;
        (pods
            .iter()
            .filter(|(p, _)| image(p) == "nginx:1.26")
            .count()
            >= 10)
            .then_some(())
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    let deleted = Instant::now();
    namespaces
        .delete(&ns.name, &Default::default())
        .await
        .expect("delete the namespace");
    ns.wait("the namespace gone", 180, || async {
        namespaces
            .get_opt(&ns.name)
            .await
            .ok()
            .and_then(|n| n.is_none().then_some(()))
    })
    .await;
    let gone_in = deleted.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = refused() - before;
    println!(
        "ns-delete: namespace of 100 pods gone in {:.1}s; {during} refused operator requests \
         ({:.2} per pod)",
        gone_in.as_secs_f64(),
        during / 100.0
    );
    assert!(
        during < 100.0,
        "{during} refused requests over the deletion of 100 pods"
    );
}

/// A template of 700 KB (a large environment value) is accepted by the API
/// server, so it must be releasable: the cell's InPlaceSet carries the
/// template once and the stable one as a patch, so the release's set write
/// fits in etcd's request limit (1.5 MiB) where two copies would not.
#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_large_template_is_created_and_released() {
    let ns = TestNs::new("large-template").await;
    let _op = Operator::start(&ns.name);
    let mut body = cafedeployment(
        "demo",
        "demo",
        4,
        &["cell-a", "cell-b"],
        json!({"upgradeType": "Batch", "batchSize": 2, "needWaitingForConfirm": false}),
        json!({"components": []}),
    );
    body["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "BLOB", "value": "x".repeat(700_000)}]);
    ns.create::<CafeDeployment>(body).await;
    wait_n_on(&ns, 4, "nginx:1.25").await;
    let cds: Api<CafeDeployment> = ns.api();
    release_image(&cds, "nginx:1.26").await;
    wait_n_on(&ns, 4, "nginx:1.26").await;
    let s = cds.get("demo").await.expect("cd").status.expect("status");
    assert!(
        !s.conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True"),
        "{:?}",
        s.conditions
    );
}
