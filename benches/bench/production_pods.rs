//! (h) production-pods: the production-shaped pod of
//! `examples/production-pod.yaml` (a ConfigMap volume, an init container, the
//! application and a proxy sidecar that warms up, readiness probes on both)
//! on the two real nodes, its application image released while the new image
//! is on no node (the local registry forgets it first) and the registry is
//! throttled, as a new image in production is hundreds of MB away. Both sides
//! are lossless and under the same steady load of real requests through the
//! Service: a Deployment (`maxSurge: 0`, the same budget, a preStop sleep on
//! every container so that the endpoints converge before the pod stops) and
//! the CafeDeployment in place, drained by the `service` component; with
//! `spec.strategy.preDownload` too when the operator's CRD has it.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cafe_operator::api::CafeDeployment;
use cafe_operator::api::names::TRAFFIC_GATE;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::real_containers::{quiet, real_nodes};
use crate::support::cluster::{
    awaiting_confirmation, cd_done, confirm, confirmed, container_image_op, deployment,
    deployment_done, json_patch, operator, remove, wait_until,
};
use crate::support::load::{Load, Report as LoadReport};
use crate::support::namespace::TestNs;
use crate::support::pods::pod_condition;
use crate::support::stages::{Stages, percentile, report_stages_at, report_window, watch_stages};
use crate::{Args, Part, Report, WAIT};

const EXAMPLE: &str = "examples/production-pod.yaml";

const REGISTRY: &str = "tests/cluster/registry.sh";

/// The pods' `app` label, the workloads' and the Service's name.
const NAME: &str = "bench";

/// The percentiles of the stage tables.
const AT: [f64; 2] = [0.5, 0.95];

/// The stages of an in-place update of a production pod, in the order they
/// happen: the gate opens once the new container runs, before its probe passes.
const IN_PLACE: [&str; 9] = [
    "gate closed",
    "kubelet: not Ready",
    "endpoint gone from every EndpointSlice",
    "settled: spec patched",
    "image pulled (or present)",
    "app container restarted",
    "gate opened",
    "containers ready (probes passed)",
    "kubelet: Ready",
];
const ENDPOINT_GONE: usize = 2;
const IN_PLACE_PULLED: usize = 4;

/// The stages of a Deployment's new pod; the first is the deletion of the
/// old pod it replaces (the n-th deletion for the n-th new pod).
const NEW_POD: [&str; 7] = [
    "old pod deleted",
    "new pod created",
    "scheduled",
    "init container done",
    "image pulled (or present)",
    "containers started",
    "kubelet: Ready",
];
const NEW_POD_PULLED: usize = 4;

/// What the bench takes from the example.
struct Example {
    /// ConfigMaps and Secrets the pods mount.
    volumes: Vec<Value>,
    service: Value,
    /// The example's CafeDeployment.
    cafedeployment: Value,
    /// Its pod template, labelled `app: bench`.
    template: Value,
    /// Which container is the application (its image is released).
    app: usize,
    from: String,
    to: String,
}

impl Example {
    fn read() -> Option<Example> {
        let text = std::fs::read_to_string(EXAMPLE).ok()?;
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .filter_map(|d| Value::deserialize(d).ok())
            .filter(|d| !d.is_null())
            .collect();
        let kind = |k: &'static str| docs.iter().filter(move |d| d["kind"] == k);
        let mut cafedeployment = kind("CafeDeployment").next()?.clone();
        let mut service = kind("Service").next()?.clone();
        service["metadata"] = json!({"name": NAME});
        service["spec"]["selector"] = json!({"app": NAME});
        let volumes = kind("ConfigMap")
            .chain(kind("Secret"))
            .map(|d| {
                let mut d = d.clone();
                d["metadata"] = json!({"name": d["metadata"]["name"]});
                d
            })
            .collect();
        let mut template = cafedeployment["spec"]["template"].take();
        template["metadata"]["labels"]["app"] = json!(NAME);
        let containers = template["spec"]["containers"].as_array()?;
        let app = containers
            .iter()
            .position(|c| c["image"].as_str().is_some_and(|i| i.contains("/shop:")))
            .unwrap_or(0);
        let from = containers[app]["image"].as_str()?.to_string();
        let to = format!("{}:v2", from.rsplit_once(':').map_or(&*from, |(i, _)| i));
        Some(Example {
            volumes,
            service,
            cafedeployment,
            template,
            app,
            from,
            to,
        })
    }

    /// The CafeDeployment `bench`: `pods` over the example's cells, Beta,
    /// batches of `group`, a confirmation after every group but the last,
    /// the example's traffic components; `strategy` added.
    fn cafedeployment(&self, pods: usize, group: usize, strategy: Value) -> Value {
        let mut cd = self.cafedeployment.clone();
        cd["metadata"] = json!({"name": NAME});
        cd["spec"]["replicas"] = json!(pods);
        cd["spec"]["selector"] = json!({"matchLabels": {"app": NAME}});
        cd["spec"]["template"] = self.template.clone();
        let mut s = json!({"upgradeType": "Beta", "batchSize": group,
                           "needWaitingForConfirm": true});
        if let (Some(s), Some(extra)) = (s.as_object_mut(), strategy.as_object()) {
            s.extend(extra.clone());
        }
        cd["spec"]["strategy"] = s;
        cd
    }

    /// The same pods for a Deployment: every container gets a preStop sleep
    /// of `seconds` (none at 0), so that kube-proxy drops the endpoint
    /// before the containers are told to stop.
    fn deployment_template(&self, seconds: u32) -> Value {
        let mut t = self.template.clone();
        for c in t["spec"]["containers"].as_array_mut().into_iter().flatten() {
            if let Some(l) = c["lifecycle"].as_object_mut() {
                l.remove("preStop");
            }
            if seconds > 0 {
                c["lifecycle"]["preStop"] = json!({"sleep": {"seconds": seconds}});
            }
        }
        let grace = t["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        t["spec"]["terminationGracePeriodSeconds"] = json!(grace.max(u64::from(seconds) + 10));
        t
    }
}

/// `tests/cluster/registry.sh ARGS`: the local registry's throttle, or an
/// image forgotten by every real node.
fn registry(args: &[&str]) {
    let status = std::process::Command::new(REGISTRY)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{REGISTRY}: {e}"));
    assert!(status.success(), "{REGISTRY} {args:?} failed");
}

/// The application container's spec image and status.
fn app_image(p: &Pod, app: usize) -> Option<&str> {
    p.spec.as_ref()?.containers.get(app)?.image.as_deref()
}

fn statuses(p: &Pod) -> &[k8s_openapi::api::core::v1::ContainerStatus] {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
}

/// Kubelet runs the application container on `to`.
fn app_runs(p: &Pod, app: usize, to: &str) -> bool {
    let name = p
        .spec
        .as_ref()
        .and_then(|s| s.containers.get(app))
        .map(|c| &c.name);
    statuses(p).iter().any(|c| {
        Some(&c.name) == name
            && c.image.ends_with(to)
            && c.state.as_ref().is_some_and(|s| s.running.is_some())
    })
}

fn all_containers(
    p: &Pod,
    pred: impl Fn(&k8s_openapi::api::core::v1::ContainerStatus) -> bool,
) -> bool {
    let want = p.spec.as_ref().map_or(0, |s| s.containers.len());
    let s = statuses(p);
    want > 0 && s.len() == want && s.iter().all(pred)
}

fn labelled(p: &Pod) -> bool {
    p.labels().get("app").map(String::as_str) == Some(NAME)
}

/// Which of IN_PLACE the pod reached (the EndpointSlice and the pull are
/// marked by their own watches).
fn in_place_marks(p: &Pod, app: usize, to: &str) -> Vec<bool> {
    let gate = pod_condition(p, TRAFFIC_GATE);
    let on_target = labelled(p) && app_image(p, app) == Some(to);
    let ready = pod_condition(p, "Ready").as_deref() == Some("True");
    let closed = labelled(p) && gate.as_deref() == Some("False");
    let runs = on_target && app_runs(p, app, to);
    vec![
        closed || on_target,
        (closed && !ready) || on_target,
        false,
        on_target,
        false,
        runs,
        on_target && gate.as_deref() == Some("True"),
        runs && all_containers(p, |c| c.ready),
        on_target && ready && gate.as_deref() == Some("True"),
    ]
}

/// Which of NEW_POD a Deployment's pod reached: an old pod only its
/// deletion, a new one the rest.
fn new_pod_marks(p: &Pod, app: usize, to: &str) -> Vec<bool> {
    let mut marks = vec![false; NEW_POD.len()];
    if !labelled(p) {
        return marks;
    }
    if app_image(p, app) != Some(to) {
        marks[0] = p.metadata.deletion_timestamp.is_some();
        return marks;
    }
    let scheduled = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    marks[1] = true;
    marks[2] = scheduled;
    marks[3] = pod_condition(p, "Initialized").as_deref() == Some("True");
    marks[5] = all_containers(p, |c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
    marks[6] = pod_condition(p, "Ready").as_deref() == Some("True");
    marks
}

/// The n-th old pod deleted stands before the n-th new pod created; the old
/// pods then leave the table.
fn pair_deletions(stages: &mut Stages) {
    let mut deleted: Vec<Instant> = stages
        .seen
        .values()
        .filter(|m| m[1].is_none())
        .filter_map(|m| m[0])
        .collect();
    deleted.sort();
    stages.seen.retain(|_, m| m[1].is_some());
    let mut new: Vec<(&String, Instant)> = stages
        .seen
        .iter()
        .filter_map(|(n, m)| Some((n, m[1]?)))
        .collect();
    new.sort_by_key(|(_, at)| *at);
    let names: Vec<String> = new.into_iter().map(|(n, _)| n.clone()).collect();
    for (name, at) in names.iter().zip(deleted) {
        if let Some(m) = stages.seen.get_mut(name) {
            m[0] = Some(at);
        }
    }
}

/// Go's duration as kubelet prints it ("8.314s", "512ms", "1m2.5s"), in seconds.
fn go_seconds(d: &str) -> Option<f64> {
    if let Some(ms) = d.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|v| v / 1000.0);
    }
    let d = d.strip_suffix('s')?;
    let (m, s) = d.split_once('m').unwrap_or(("0", d));
    Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// Kubelet's `Pulled` events for image `to`, by pod: how long the pull took
/// (None: the image was already present). Each marks stage `stage`.
type Pulls = Arc<Mutex<HashMap<String, Option<f64>>>>;

fn watch_pulls(
    ns: &TestNs,
    to: &str,
    stages: Arc<Mutex<Stages>>,
    stage: usize,
) -> (Pulls, tokio::task::JoinHandle<()>) {
    let pulls: Pulls = Arc::default();
    let log = pulls.clone();
    let events: Api<Event> = ns.api();
    let quoted = format!("\"{to}\"");
    let task = tokio::spawn(async move {
        let mut s = watcher(events, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(e)) = s.next().await {
            let now = Instant::now();
            let message = e.message.unwrap_or_default();
            if e.reason.as_deref() != Some("Pulled") || !message.contains(&quoted) {
                continue;
            }
            let took = message
                .split_once(" in ")
                .and_then(|(_, rest)| go_seconds(rest.split_whitespace().next()?));
            let pod = e.involved_object.name.unwrap_or_default();
            if let Ok(mut st) = stages.lock() {
                st.mark(&pod, stage, now);
            }
            if let Ok(mut p) = log.lock() {
                p.entry(pod).or_insert(took);
            }
        }
    });
    (pulls, task)
}

/// When each pod that had left traffic was gone from every EndpointSlice of
/// the Service (neither ready nor serving in any): marks stage `stage` of
/// pods past stage 0.
fn watch_endpoints(
    ns: &TestNs,
    stages: Arc<Mutex<Stages>>,
    stage: usize,
) -> tokio::task::JoinHandle<()> {
    let slices: Api<EndpointSlice> = ns.api();
    let config = watcher::Config::default().labels(&format!("kubernetes.io/service-name={NAME}"));
    tokio::spawn(async move {
        let mut routed: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut s = watcher(slices, config).default_backoff().boxed();
        while let Some(Ok(event)) = s.next().await {
            let now = Instant::now();
            match event {
                watcher::Event::Apply(slice) | watcher::Event::InitApply(slice) => {
                    let pods = slice
                        .endpoints
                        .iter()
                        .filter(|e| {
                            let c = e.conditions.clone().unwrap_or_default();
                            let ready = c.ready.unwrap_or(true);
                            ready || c.serving.unwrap_or(ready)
                        })
                        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
                        .collect();
                    routed.insert(slice.name_any(), pods);
                }
                watcher::Event::Delete(slice) => {
                    routed.remove(&slice.name_any());
                }
                watcher::Event::Init | watcher::Event::InitDone => continue,
            }
            let Ok(mut st) = stages.lock() else { return };
            for (pod, marks) in &mut st.seen {
                if marks[0].is_some()
                    && marks[stage].is_none()
                    && !routed.values().any(|r| r.contains(pod))
                {
                    marks[stage] = Some(now);
                }
            }
        }
    })
}

/// One side's figures.
struct Side {
    name: String,
    release: Duration,
    /// Time the release waited for the bench's confirmations, left out of `release`.
    waited: Duration,
    load: LoadReport,
}

/// A namespace with the example's volumes and the Service; its address.
async fn namespace(ex: &Example, story: &str) -> (TestNs, SocketAddr) {
    let ns = TestNs::new(story).await;
    for v in &ex.volumes {
        if v["kind"] == "Secret" {
            ns.create::<Secret>(v.clone()).await;
        } else {
            ns.create::<ConfigMap>(v.clone()).await;
        }
    }
    let svc: Service = ns.create(ex.service.clone()).await;
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");
    let port = ex.service["spec"]["ports"][0]["port"]
        .as_u64()
        .unwrap_or(80);
    let target = format!("{ip}:{port}").parse().expect("ClusterIP:port");
    (ns, target)
}

/// Waits until kube-proxy routes the Service: 20 requests in a row answered.
async fn routed(target: SocketAddr) {
    wait_until("kube-proxy to route the Service", 120, || async {
        let report = Load::start(target, 100, 20, Duration::from_secs(2))
            .finish_when_done()
            .await;
        (report.failed().is_empty() && report.sent() == 20).then_some(())
    })
    .await;
}

/// The steady load of a release, bounded in count and time.
fn load(args: &Args, target: SocketAddr) -> Load {
    let seconds = 1200;
    Load::start(
        target,
        args.prod_load,
        u64::from(args.prod_load) * seconds,
        Duration::from_secs(seconds),
    )
}

/// Stops the load a little after the release (the last pods' first requests).
async fn finish(load: Load) -> LoadReport {
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.finish().await
}

/// Pull times of the pods that reached `stage` of `stages`.
fn report_pulls(report: &mut Report, stages: &Stages, pulls: &Pulls, stage: usize) {
    let Ok(pulls) = pulls.lock() else { return };
    let ours: Vec<Option<f64>> = stages
        .seen
        .iter()
        .filter(|(_, m)| m[stage].is_some())
        .filter_map(|(n, _)| pulls.get(n).copied())
        .collect();
    let mut took: Vec<f64> = ours.iter().flatten().copied().collect();
    took.sort_by(f64::total_cmp);
    report.line(format!(
        "\nimage: pulled by {} pods (kubelet: p50 {:.1} s, p95 {:.1} s), already present for {}",
        took.len(),
        percentile(&took, AT[0]),
        percentile(&took, AT[1]),
        ours.len() - took.len()
    ));
}

/// How a pod's stages are read from the pod: `(pod, app container, new image)`.
type Marks = fn(&Pod, usize, &str) -> Vec<bool>;

/// Once the pods are up: the Service routed, the registry throttled, the
/// machine idle; then the watches of the release's `stages` (kubelet's pulls
/// mark stage `pulled`).
async fn before_release(
    args: &Args,
    ex: &Example,
    (ns, target): (&TestNs, SocketAddr),
    (names, marks): (&'static [&'static str], Marks),
    pulled: usize,
) -> (Arc<Mutex<Stages>>, Pulls, Vec<tokio::task::JoinHandle<()>>) {
    routed(target).await;
    registry(&["rate", &args.prod_rate]);
    quiet().await;
    let (app, to) = (ex.app, ex.to.clone());
    let (stages, watch) = watch_stages(ns, names, move |p| marks(p, app, &to));
    let (pulls, pull_watch) = watch_pulls(ns, &ex.to, stages.clone(), pulled);
    (stages, pulls, vec![watch, pull_watch])
}

/// The Deployment of the same pods and budget, its release under load.
async fn deployment_side(args: &Args, ex: &Example, report: &mut Report) -> Side {
    registry(&["rate", "off"]);
    registry(&["forget", &ex.to]);
    let (ns, target) = namespace(ex, "bench-prod-deploy").await;
    let deployments: Api<Deployment> = ns.api();
    let (pods, group) = (args.prod_pods, args.prod_group);
    let template = ex.deployment_template(args.prod_prestop);
    ns.create::<Deployment>(deployment(pods, group, template))
        .await;
    let done = || async {
        let d = deployments.get(NAME).await.ok()?;
        deployment_done(&d, pods).then_some(())
    };
    wait_until("the Deployment's pods to be ready", WAIT, done).await;
    let (stages, pulls, watches) = before_release(
        args,
        ex,
        (&ns, target),
        (&NEW_POD, new_pod_marks),
        NEW_POD_PULLED,
    )
    .await;
    let running = load(args, target);
    let start = Instant::now();
    let patch = json_patch(vec![container_image_op(ex.app, &ex.to)]);
    deployments
        .patch(NAME, &PatchParams::default(), &patch)
        .await
        .expect("patch the Deployment");
    wait_until("the Deployment's rollout", WAIT, done).await;
    let release = start.elapsed();
    let load = finish(running).await;
    registry(&["rate", "off"]);
    watches.iter().for_each(|w| w.abort());
    if let Ok(mut st) = stages.lock() {
        pair_deletions(&mut st);
        let title = format!(
            "where the Deployment's release went (its new pods; preStop sleep {} s)",
            args.prod_prestop
        );
        report_stages_at(report, &title, &st, start, AT);
        report_pulls(report, &st, &pulls, NEW_POD_PULLED);
    }
    remove(ns).await;
    Side {
        name: format!(
            "Deployment (`maxSurge: 0`, `maxUnavailable: {group}`, preStop sleep {} s)",
            args.prod_prestop
        ),
        release,
        waited: Duration::ZERO,
        load,
    }
}

/// The CafeDeployment's release: every wait confirmed at once, but with
/// `pre_download` the first (Beta's) only once the operator reports the new
/// image pre-downloaded. Returns the time taken without the waits, and the waits.
async fn release_cd(
    cds: &Api<CafeDeployment>,
    pods: usize,
    patch: Patch<Value>,
    pre_download: PreDownload,
) -> (Duration, Duration) {
    let start = Instant::now();
    let mut waited = Duration::ZERO;
    if pre_download == PreDownload::Held {
        // Held before any group opens: pause, the new image, its pulls,
        // resume. The time held is the pulls' (reported as waited).
        pause(cds, true).await;
    }
    cds.patch(NAME, &PatchParams::default(), &patch)
        .await
        .expect("patch the CafeDeployment");
    if pre_download == PreDownload::Held {
        let t = Instant::now();
        pre_downloaded(cds).await;
        pause(cds, false).await;
        waited += t.elapsed();
    }
    let mut first = true;
    let deadline = start + Duration::from_secs(WAIT);
    loop {
        if awaiting_confirmation(cds, NAME).await {
            let t = Instant::now();
            if pre_download == PreDownload::BetaWait && first {
                pre_downloaded(cds).await;
            }
            first = false;
            confirm(cds, NAME).await;
            waited += t.elapsed();
            confirmed(cds, NAME).await;
        }
        if let Ok(cd) = cds.get(NAME).await
            && cd_done(&cd, pods)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the release"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (start.elapsed() - waited, waited)
}

/// How a side uses `spec.strategy.preDownload`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PreDownload {
    Off,
    /// The Beta group's confirmation waits until the image is on the nodes.
    BetaWait,
    /// The release is paused before any group opens until the image is on
    /// the nodes, then resumed.
    Held,
}

/// Waits until the CafeDeployment says the new image is on the nodes.
async fn pre_downloaded(cds: &Api<CafeDeployment>) {
    wait_until("ImagesPreDownloaded", 600, || async {
        let s = cds.get(NAME).await.ok()?.status?;
        s.conditions
            .iter()
            .any(|c| c.type_ == "ImagesPreDownloaded" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// Sets the CafeDeployment's pause switch.
async fn pause(cds: &Api<CafeDeployment>, on: bool) {
    let patch = json!({"spec": {"strategy": {"pause": on}}});
    cds.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("pause or resume the CafeDeployment");
}

/// The CafeDeployment of the example, released in place under load; with
/// `strategy` added to its strategy (preDownload).
async fn cafedeployment_side(
    args: &Args,
    ex: &Example,
    report: &mut Report,
    (strategy, mode): (Value, PreDownload),
    name: &str,
) -> Side {
    registry(&["rate", "off"]);
    registry(&["forget", &ex.to]);
    let (ns, target) = namespace(ex, "bench-prod-cd").await;
    let (mut op, _port) = operator(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let (pods, group) = (args.prod_pods, args.prod_group);
    ns.create::<CafeDeployment>(ex.cafedeployment(pods, group, strategy))
        .await;
    wait_until("the creation, confirmed group by group", WAIT, || async {
        if awaiting_confirmation(&cds, NAME).await {
            confirm(&cds, NAME).await;
            confirmed(&cds, NAME).await;
        }
        let cd = cds.get(NAME).await.ok()?;
        cd_done(&cd, pods).then_some(())
    })
    .await;
    let (stages, pulls, mut watches) = before_release(
        args,
        ex,
        (&ns, target),
        (&IN_PLACE, in_place_marks),
        IN_PLACE_PULLED,
    )
    .await;
    watches.push(watch_endpoints(&ns, stages.clone(), ENDPOINT_GONE));
    let running = load(args, target);
    let start = Instant::now();
    let patch = json_patch(vec![container_image_op(ex.app, &ex.to)]);
    let (release, waited) = release_cd(&cds, pods, patch, mode).await;
    let load = finish(running).await;
    registry(&["rate", "off"]);
    watches.iter().for_each(|w| w.abort());
    if let Ok(st) = stages.lock() {
        let title = format!("where the CafeDeployment's release went ({name})");
        report_stages_at(report, &title, &st, start, AT);
        report_pulls(report, &st, &pulls, IN_PLACE_PULLED);
        report_window(report, &st, group);
    }
    op.stop();
    remove(ns).await;
    Side {
        name: format!("CafeDeployment, {name}"),
        release,
        waited,
        load,
    }
}

/// Whether the operator's CRD has `spec.strategy.preDownload`.
fn has_pre_download() -> bool {
    std::process::Command::new(env!("CARGO_BIN_EXE_cafe-operator"))
        .arg("crd")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("preDownload"))
}

/// (h) production-pods: see the module's documentation.
pub(crate) async fn production_pods(args: &Args, report: &mut Report, client: &Client) {
    let (pods, group) = (args.prod_pods, args.prod_group);
    report.line(format!(
        "\n## {}: {pods} production-shaped pods on the real nodes, budget {group}, \
         registry at {}\n",
        Part::ProductionPods,
        args.prod_rate
    ));
    if real_nodes(client).await == 0 {
        report.line("skipped: the cluster has no real nodes (started with CAFE_REAL_NODES=0)");
        return;
    }
    let Some(ex) = Example::read() else {
        report.line(format!(
            "skipped: no {EXAMPLE} with a CafeDeployment and a Service"
        ));
        return;
    };
    if !std::path::Path::new(REGISTRY).exists() {
        report.line(format!("skipped: no {REGISTRY} (the local registry)"));
        return;
    }
    let mut sides = vec![deployment_side(args, &ex, report).await];
    sides.push(
        cafedeployment_side(
            args,
            &ex,
            report,
            (json!({}), PreDownload::Off),
            "in place, image pulled at the restart",
        )
        .await,
    );
    let pre_download = if has_pre_download() {
        let strategy = json!({"preDownload": {"parallelism": 2}});
        let name = "in place, image pre-downloaded during the Beta wait";
        let mode = (strategy.clone(), PreDownload::BetaWait);
        sides.push(cafedeployment_side(args, &ex, report, mode, name).await);
        let name = "in place, image pre-downloaded while held before the first group";
        let mode = (strategy, PreDownload::Held);
        sides.push(cafedeployment_side(args, &ex, report, mode, name).await);
        None
    } else {
        Some("not available (the operator's CRD has no `spec.strategy.preDownload`)")
    };
    let deploy = sides[0].release.as_secs_f64().max(1e-9);
    report.line(format!(
        "\n{pods} pods of {EXAMPLE} ({} -> {}, not on the nodes before each side), registry \
         throttled to {}, {} requests a second through the Service on each side\n",
        ex.from, ex.to, args.prod_rate, args.prod_load
    ));
    report.line("| side | new image -> all ready | ratio | requests sent | failed |");
    report.line("|---|---:|---:|---:|---:|");
    for s in &sides {
        let waited = if s.waited > Duration::ZERO {
            format!(
                " (+{:.1} s waiting for confirmations)",
                s.waited.as_secs_f64()
            )
        } else {
            String::new()
        };
        report.line(format!(
            "| {} | {:.1} s{waited} | {:.2}x | {} | {} |",
            s.name,
            s.release.as_secs_f64(),
            s.release.as_secs_f64() / deploy,
            s.load.sent(),
            s.load.failed().len()
        ));
    }
    if let Some(why) = pre_download {
        report.line(format!(
            "| CafeDeployment, in place with preDownload | {why} | | | |"
        ));
    }
    for s in &sides {
        report.line(format!("\n{}: {}", s.name, s.load.summary()));
    }
}
