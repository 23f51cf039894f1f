//! `make bench`: a CafeDeployment release against a native Deployment on the
//! same cluster, in one run, with the figures a reviewer asks for:
//!
//! (a) create and release of `--pods` pods over `--cells` cells in groups of
//!     `--group`, against a Deployment with the same unavailability budget
//!     (`maxSurge: 0`, `maxUnavailable: group`) on the same nodes;
//! (b) the same release with the `service` traffic component behind a real
//!     Service, checked by the lossless checker;
//! (c) the operator's API requests per in-place-updated pod, by verb and resource;
//! (d) `--fleet` CafeDeployments of `--fleet-pods` pods: operator memory once
//!     all are healthy, writes during a quiet period, and the time to release
//!     all of them at once;
//! (e) the reaction latency from a confirmation to the first gate flip.
//!
//! It creates its own kwok nodes (`cafe-bench=true`, cells `bench-cell-*`),
//! runs one operator process per part (release build, watching only that
//! part's namespace), and removes everything it created when it ends.

#[allow(dead_code)]
#[path = "../tests/e2e/lossless.rs"]
mod lossless;
#[allow(dead_code)]
#[path = "../tests/e2e/operator.rs"]
mod operator;
#[allow(dead_code)]
#[path = "../tests/e2e/support.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use cafe_operator::api::CafeDeployment;
use cafe_operator::api::names::TRAFFIC_GATE;
use operator::Operator;
use support::TestNs;

#[derive(Parser, Clone)]
#[command(about = "CafeDeployment against Deployment on the local control plane")]
struct Args {
    /// Pods in parts (a), (b) and (c).
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Cells (two kwok nodes each).
    #[arg(long, default_value_t = 10)]
    cells: usize,
    /// Pods per release group, and the Deployment's maxUnavailable.
    #[arg(long, default_value_t = 100)]
    group: usize,
    /// CafeDeployments in part (d).
    #[arg(long, default_value_t = 100)]
    fleet: usize,
    /// Pods per CafeDeployment in part (d).
    #[arg(long, default_value_t = 100)]
    fleet_pods: usize,
    /// Seconds of the quiet period in part (d).
    #[arg(long, default_value_t = 60)]
    quiet_seconds: u64,
    /// Runs of part (a). With more than one, every run's times and ratios,
    /// then the median ratios (the Deployment's own time moves by 10-20%
    /// from run to run on a 2-CPU machine); the detailed tables are the
    /// last run's. Every second run has the CafeDeployment go first: a
    /// cluster that served runs before answers more slowly.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Confirmations timed in part (e).
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// Parts to run, e.g. `a,c` (c needs a; b needs a Service).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d,e")]
    parts: Vec<char>,
    /// Also record CPU profiles during each creation and release of part (a),
    /// their first `--profile-seconds`: the API server's as
    /// DIR/{deployment,cafedeployment}{-create,}.pprof
    /// (`go tool pprof -top DIR/cafedeployment.pprof`), kwok's as
    /// DIR/{deployment,cafedeployment}{-create,}-kwok.perf when perf is
    /// installed (`perf report -i`).
    #[arg(long, value_name = "DIR")]
    profile: Option<String>,
    #[arg(long, default_value_t = 20)]
    profile_seconds: u32,
    /// Where the results are written (Markdown), besides the screen.
    #[arg(long, default_value = "target/bench/results.md")]
    out: String,
    /// Ignored: cargo passes it to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Results, printed and written to `--out` as they come (a failed part
/// keeps the figures of the parts before it).
struct Report {
    text: String,
    out: String,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = writeln!(self.text, "{}", s.as_ref());
        if let Err(e) = std::fs::write(&self.out, &self.text) {
            eprintln!("cannot write {}: {e}", self.out);
        }
    }
}

const IMAGE_1: &str = "nginx:1.25";
const IMAGE_2: &str = "nginx:1.26";
const NODE_LABEL: &str = "cafe-bench";
const WAIT: u64 = 1800;

fn cell(i: usize) -> String {
    format!("bench-cell-{i}")
}

/// Two kwok nodes per cell, room for many pods, their own pod CIDRs.
async fn create_nodes(client: &Client, cells: usize) -> Vec<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut names = Vec::new();
    for c in 0..cells {
        for n in 0..2 {
            let i = c * 2 + n;
            let name = format!("bench-{}-{n}", cell(c));
            let node: Node = serde_json::from_value(json!({
                "metadata": {
                    "name": name,
                    "labels": {
                        "type": "kwok", NODE_LABEL: "true",
                        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                        "cafe.sofastack.io/cell": cell(c),
                    },
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                },
                "spec": {"podCIDR": format!("10.{}.0.0/16", 128 + i),
                         "podCIDRs": [format!("10.{}.0.0/16", 128 + i)]},
                "status": {
                    "allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "20000"},
                    "capacity": {"cpu": "1000", "memory": "4Ti", "pods": "20000"},
                },
            }))
            .expect("node literal");
            if let Err(e) = nodes.create(&PostParams::default(), &node).await {
                let exists = matches!(&e, kube::Error::Api(s) if s.code == 409);
                assert!(exists, "cannot create node {name}: {e}");
            }
            names.push(name);
        }
    }
    let lp = ListParams::default().labels(&format!("{NODE_LABEL}=true"));
    wait_until("the bench nodes to be Ready", 120, || async {
        let list = nodes.list(&lp).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        (ready == names.len()).then_some(())
    })
    .await;
    names
}

async fn delete_nodes(client: &Client, names: &[String]) {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in names {
        let _ = nodes.delete(name, &DeleteParams::default()).await;
    }
}

/// Polls every 100 ms; panics after `seconds` naming what it waited for.
async fn wait_until<T, F, Fut>(what: &str, seconds: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes the namespace and waits until it is gone (its pods with it).
async fn remove(ns: TestNs) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ns.client.clone());
    let name = ns.name.clone();
    drop(ns);
    wait_until(&format!("namespace {name} to be deleted"), 600, || async {
        match namespaces.get_opt(&name).await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
}

fn cafedeployment(name: &str, args: &Args, replicas: usize, group: usize, traffic: Value) -> Value {
    let cells: Vec<String> = (0..args.cells).map(cell).collect();
    json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "CafeDeployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": IMAGE_1}]}},
            "topology": {"values": cells},
            "strategy": {"upgradeType": "Batch", "batchSize": group},
            "traffic": traffic,
        }
    })
}

fn set_image(image: &str) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
}

/// All `replicas` pods ready and available on the current template, as the
/// CafeDeployment reports it.
fn cd_done(cd: &CafeDeployment, replicas: usize) -> bool {
    let Some(s) = &cd.status else { return false };
    let n = i32::try_from(replicas).unwrap_or(i32::MAX);
    s.observed_generation == cd.metadata.generation
        && s.replicas == n
        && s.updated_ready_replicas == n
        && s.available_replicas == n
        && s.current_revision.is_some()
        && s.current_revision == s.update_revision
}

fn deployment_done(d: &Deployment, replicas: usize) -> bool {
    let Some(s) = &d.status else { return false };
    let n = i32::try_from(replicas).unwrap_or(i32::MAX);
    s.observed_generation == d.metadata.generation
        && s.replicas == Some(n)
        && s.updated_replicas == Some(n)
        && s.ready_replicas == Some(n)
        && s.available_replicas == Some(n)
}

async fn wait_cd(api: &Api<CafeDeployment>, name: &str, replicas: usize) -> Duration {
    let start = Instant::now();
    wait_until(
        &format!("CafeDeployment {name} to be done"),
        WAIT,
        || async {
            let cd = api.get(name).await.ok()?;
            cd_done(&cd, replicas).then_some(())
        },
    )
    .await;
    start.elapsed()
}

/// The samples of the counter `name` in Prometheus text: a label reader
/// and the value of each.
fn samples<'a>(
    text: &'a str,
    name: &str,
) -> impl Iterator<Item = (impl Fn(&str) -> String + 'a, f64)> + 'a {
    let prefix = format!("{name}{{");
    text.lines().filter_map(move |line| {
        let (labels, value) = line.strip_prefix(&prefix)?.split_once("} ")?;
        let label = move |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        Some((label, value.trim().parse().unwrap_or(0.0)))
    })
}

/// The operator's `/metrics` text.
async fn operator_metrics(port: u16) -> String {
    fetch(&format!("http://127.0.0.1:{port}/metrics")).await
}

/// The operator's `cafe_api_requests_total`, by (verb, resource), successes and failures.
async fn requests(port: u16) -> BTreeMap<(String, String), u64> {
    requests_in(&operator_metrics(port).await)
}

fn requests_in(text: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for (label, n) in samples(text, "cafe_api_requests_total") {
        *out.entry((label("verb"), label("resource"))).or_default() += n as u64;
    }
    out
}

/// A plain HTTP GET (the metrics endpoint is local, plain text).
async fn fetch(url: &str) -> String {
    let Some(rest) = url.strip_prefix("http://") else {
        return String::new();
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else {
        return String::new();
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body).await;
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "patch" | "update" | "delete")
}

/// Requests made between two snapshots, per in-place-updated pod.
fn per_pod(
    report: &mut Report,
    title: &str,
    before: &BTreeMap<(String, String), u64>,
    after: &BTreeMap<(String, String), u64>,
    pods: usize,
) -> f64 {
    report.line(format!("\n{title}\n"));
    report.line("| verb | resource | requests | per pod |");
    report.line("|---|---|---:|---:|");
    let mut writes = 0;
    for ((verb, resource), n) in after {
        let d = n - before.get(&(verb.clone(), resource.clone())).unwrap_or(&0);
        if d == 0 || verb == "watch" {
            continue;
        }
        if is_write(verb) {
            writes += d;
        }
        report.line(format!(
            "| {verb} | {resource} | {d} | {:.2} |",
            d as f64 / pods as f64
        ));
    }
    let per = writes as f64 / pods as f64;
    report.line(format!("| **writes** | all | {writes} | **{per:.2}** |"));
    per
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds each process of the run has used: the control plane (from
/// `.cluster/pids`), the operator and the benchmark itself. Differences
/// between two readings say where a phase's CPU went on this small machine.
#[derive(Clone, Default)]
struct Cpu(BTreeMap<String, f64>);

impl Cpu {
    const PROCESSES: [&str; 5] = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ];

    fn read(operator: Option<u32>) -> Self {
        let seconds = |pid: u32| -> Option<f64> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The fields after the command name, which is in parentheses.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        };
        let mut out = BTreeMap::new();
        for name in Self::PROCESSES {
            let pid = std::fs::read_to_string(format!(".cluster/pids/{name}.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if let Some(s) = pid.and_then(seconds) {
                out.insert(name.to_string(), s);
            }
        }
        if let Some(s) = operator.and_then(seconds) {
            out.insert("cafe-operator".into(), s);
        }
        if let Some(s) = seconds(std::process::id()) {
            out.insert("benchmark (watches)".into(), s);
        }
        Self(out)
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu(self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v - before.0.get(k).unwrap_or(&0.0)))
            .collect())
    }
}

/// Writes the API server served, every client's (kubelets, controllers,
/// the scheduler, the operator), from its `apiserver_request_total`: to pods
/// by verb and subresource, to everything else by verb and resource.
#[derive(Default)]
struct Writes {
    pods: BTreeMap<String, f64>,
    others: BTreeMap<String, f64>,
}

impl Writes {
    async fn read(client: &Client) -> Self {
        let Ok(request) = http::Request::get("/metrics").body(Vec::new()) else {
            return Self::default();
        };
        let Ok(text) = client.request_text(request).await else {
            return Self::default();
        };
        let mut out = Self::default();
        for (label, n) in samples(&text, "apiserver_request_total") {
            let verb = label("verb");
            if !["POST", "PATCH", "APPLY", "PUT", "DELETE"].contains(&verb.as_str()) {
                continue;
            }
            let (resource, sub) = (label("resource"), label("subresource"));
            // Refused writes (a conflict, say) are counted apart: they cost
            // the API server a request but changed nothing.
            let code = label("code");
            let verb = if code.starts_with('2') {
                verb
            } else {
                format!("{verb} ({code})")
            };
            let (map, key) = match (resource == "pods", sub.is_empty()) {
                (true, true) => (&mut out.pods, verb),
                (true, false) => (&mut out.pods, format!("{verb} {sub}")),
                (false, true) => (&mut out.others, format!("{verb} {resource}")),
                (false, false) => (&mut out.others, format!("{verb} {resource}/{sub}")),
            };
            *map.entry(key).or_default() += n;
        }
        out
    }

    fn since(&self, before: &Self) -> Self {
        let since = |now: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v > 0.0)
                .collect()
        };
        Self {
            pods: since(&self.pods, &before.pods),
            others: since(&self.others, &before.others),
        }
    }
}

/// Pod writes per pod in each phase, by verb and subresource; then the
/// writes to every other resource, counted.
fn report_writes(report: &mut Report, pods: usize, phases: &[(&str, &Writes)]) {
    let title = format!("pod writes per pod, every client (the API server's count, {pods} pods)");
    let on_pods: Vec<_> = phases.iter().map(|(n, w)| (*n, &w.pods)).collect();
    let per_pod = |n: f64| format!("{:.2}", n / pods.max(1) as f64);
    report_phases(report, &title, "request", &on_pods, per_pod);
    let title = "writes to other resources, every client (the API server's count)";
    let others: Vec<_> = phases.iter().map(|(n, w)| (*n, &w.others)).collect();
    report_phases(report, title, "request", &others, |n| format!("{n:.0}"));
}

/// One row per process, one column per phase: CPU seconds.
fn report_cpu(report: &mut Report, phases: &[(&str, &Cpu)]) {
    let title = "CPU seconds per process (2 CPUs: a phase of t seconds has 2t to spend)";
    let phases: Vec<_> = phases.iter().map(|(n, c)| (*n, &c.0)).collect();
    report_phases(report, title, "process", &phases, |s| format!("{s:.1}"));
}

/// A table of figures by row and phase, with a total per phase.
fn report_phases(
    report: &mut Report,
    title: &str,
    row: &str,
    phases: &[(&str, &BTreeMap<String, f64>)],
    cell: impl Fn(f64) -> String,
) {
    report.line(format!("\n{title}:\n"));
    let head: Vec<&str> = phases.iter().map(|(n, _)| *n).collect();
    report.line(format!("| {row} | {} |", head.join(" | ")));
    report.line(format!("|---|{}", "---:|".repeat(phases.len())));
    let mut names: Vec<&String> = phases.iter().flat_map(|(_, c)| c.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let cols: Vec<String> = phases
            .iter()
            .map(|(_, c)| c.get(name).map_or("-".into(), |v| cell(*v)))
            .collect();
        report.line(format!("| {name} | {} |", cols.join(" | ")));
    }
    let totals: Vec<String> = phases.iter().map(|(_, c)| cell(c.values().sum())).collect();
    report.line(format!("| **all** | {} |", totals.join(" | ")));
}

static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// An operator watching `ns`, its metrics on a local port.
fn operator(ns: &str) -> (Operator, u16) {
    let base = 18_480 + (std::process::id() % 1000) as u16 * 4;
    let port = base + NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bind = format!("127.0.0.1:{port}");
    let op = Operator::launch(ns, &["--metrics-bind-address", &bind], &[]);
    (op, port)
}

/// When each pod (by name) reached each of `names`, as seen by a watch:
/// where a creation's or a release's time goes.
struct Stages {
    names: &'static [&'static str],
    /// pod -> when it reached each of `names`
    seen: HashMap<String, Vec<Option<Instant>>>,
}

/// The stages of an in-place update. The Deployment's release is watched with
/// them too, only so that both releases serve the same watchers.
const RELEASE_STAGES: [&str; 6] = [
    "gate closed",
    "kubelet: not Ready",
    "image patched",
    "kubelet: restarted",
    "gate opened",
    "kubelet: Ready",
];

/// The stages of a new pod.
const CREATION_STAGES: [&str; 4] = ["created", "scheduled", "kubelet: started", "kubelet: Ready"];

fn condition(p: &Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn image(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.containers.first()?.image.clone()
}

/// Kubelet reports every container running an image named like `target`.
fn runs(p: &Pod, target: &str) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            !cs.is_empty()
                && cs.iter().all(|c| {
                    c.image.contains(target.trim_start_matches("nginx"))
                        && c.state.as_ref().is_some_and(|s| s.running.is_some())
                })
        })
}

/// Which of RELEASE_STAGES a pod moving to `target` has reached.
fn release_marks(p: &Pod, target: &str) -> Vec<bool> {
    let gate = condition(p, TRAFFIC_GATE);
    let on_target = image(p).as_deref() == Some(target);
    let ready = condition(p, "Ready").as_deref() == Some("True");
    let closed = gate.as_deref() == Some("False");
    vec![
        closed || on_target,
        (closed && !ready) || on_target,
        on_target,
        on_target && runs(p, target),
        on_target && gate.as_deref() == Some("True"),
        on_target && ready && gate.as_deref() == Some("True"),
    ]
}

/// Which of CREATION_STAGES a new pod has reached.
fn creation_marks(p: &Pod) -> Vec<bool> {
    let scheduled = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    let started = image(p).is_some_and(|i| runs(p, &i));
    vec![
        true,
        scheduled,
        scheduled && started,
        condition(p, "Ready").as_deref() == Some("True"),
    ]
}

/// Records, from now on, when every pod of `ns` reached each of `names`
/// (`marks` says which a pod's version has reached).
fn watch_stages(
    ns: &TestNs,
    names: &'static [&'static str],
    marks: impl Fn(&Pod) -> Vec<bool> + Send + 'static,
) -> (Arc<Mutex<Stages>>, tokio::task::JoinHandle<()>) {
    let stages = Arc::new(Mutex::new(Stages {
        names,
        seen: HashMap::new(),
    }));
    let log = stages.clone();
    let pods: Api<Pod> = ns.api();
    let task = tokio::spawn(async move {
        let mut s = watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(p)) = s.next().await {
            let now = Instant::now();
            let hits = marks(&p);
            let Ok(mut st) = log.lock() else { return };
            let e = st
                .seen
                .entry(p.name_any())
                .or_insert_with(|| vec![None; names.len()]);
            for (slot, hit) in e.iter_mut().zip(hits) {
                if hit && slot.is_none() {
                    *slot = Some(now);
                }
            }
        }
    });
    (stages, task)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Per stage: how long pods took from the stage before (p50, p90, max), and
/// when the first and the last pod reached it, from `start`.
fn report_stages(report: &mut Report, title: &str, stages: &Stages, start: Instant) {
    report.line(format!("\n{title} (per pod, from a watch):\n"));
    report.line("| stage | p50 | p90 | max | first pod at | last pod at |");
    report.line("|---|---:|---:|---:|---:|---:|");
    let names = stages.names;
    let mut rows: Vec<(String, Vec<f64>, f64, f64)> =
        vec![(format!("start -> {}", names[0]), vec![], f64::MAX, 0.0)];
    for w in names.windows(2) {
        rows.push((format!("{} -> {}", w[0], w[1]), vec![], f64::MAX, 0.0));
    }
    for marks in stages.seen.values() {
        for (i, mark) in marks.iter().enumerate() {
            let Some(at) = mark else { continue };
            let since_start = at.saturating_duration_since(start).as_secs_f64();
            rows[i].2 = rows[i].2.min(since_start);
            rows[i].3 = rows[i].3.max(since_start);
            let before = if i == 0 { Some(start) } else { marks[i - 1] };
            if let Some(b) = before {
                rows[i]
                    .1
                    .push(at.saturating_duration_since(b).as_secs_f64());
            }
        }
    }
    for (name, mut v, first, last) in rows {
        v.sort_by(f64::total_cmp);
        report.line(format!(
            "| {name} | {:.2} s | {:.2} s | {:.2} s | {:.1} s | {last:.1} s |",
            percentile(&v, 0.5),
            percentile(&v, 0.9),
            v.last().copied().unwrap_or(0.0),
            if v.is_empty() { 0.0 } else { first },
        ));
    }
}

/// How full the unavailability budget (`group` pods) was kept: on average
/// over the release and at most, how many pods were between their gate
/// closing and kubelet's Ready. Below the budget, pods waited on the operator.
fn report_window(report: &mut Report, stages: &Stages, group: usize) {
    let last = stages.names.len() - 1;
    let spans: Vec<(Instant, Instant)> = stages
        .seen
        .values()
        .filter_map(|m| Some((m[0]?, m[last]?)))
        .collect();
    let (Some(first), Some(end)) = (
        spans.iter().map(|s| s.0).min(),
        spans.iter().map(|s| s.1).max(),
    ) else {
        return;
    };
    let busy: f64 = spans
        .iter()
        .map(|(a, b)| b.saturating_duration_since(*a).as_secs_f64())
        .sum();
    let took = end.saturating_duration_since(first).as_secs_f64().max(1e-9);
    let mean = busy / took;
    // The most at any moment: +1 at each gate closing, -1 at each Ready.
    let mut edges: Vec<(Instant, i64)> = spans
        .iter()
        .flat_map(|(a, b)| [(*a, 1), (*b, -1)])
        .collect();
    edges.sort_by_key(|(at, step)| (*at, *step));
    let most = edges
        .iter()
        .scan(0i64, |n, (_, step)| {
            *n += step;
            Some(*n)
        })
        .max()
        .unwrap_or(0);
    report.line(format!(
        "\nout of traffic at once: {mean:.1} pods on average of the budget of {group} \
         ({:.0}%), {most} at most (as a watch sees them), each for {:.2} s on average",
        100.0 * mean / group.max(1) as f64,
        busy / spans.len().max(1) as f64,
    ));
    // Where the budget went unused: the average over each tenth of that time.
    let tenth = took / 10.0;
    let by_tenth: Vec<String> = (0..10)
        .map(|k| {
            let (from, to) = (k as f64 * tenth, (k + 1) as f64 * tenth);
            let inside: f64 = spans
                .iter()
                .map(|(a, b)| {
                    let a = a.saturating_duration_since(first).as_secs_f64();
                    let b = b.saturating_duration_since(first).as_secs_f64();
                    (b.min(to) - a.max(from)).max(0.0)
                })
                .sum();
            format!("{:.0}", inside / tenth)
        })
        .collect();
    report.line(format!(
        "\nout of traffic, on average in each tenth of that time: {}",
        by_tenth.join(", ")
    ));
    // Per cell (its pods are named after its set), when its gates closed and
    // when its pods were back (kubelet Ready).
    let mut by_cell: BTreeMap<&str, (Vec<Instant>, Vec<Instant>)> = BTreeMap::new();
    for (name, marks) in &stages.seen {
        if let (Some(cell), Some(closed), Some(ready)) =
            (name.rsplit_once('-').map(|c| c.0), marks[0], marks[last])
        {
            let e = by_cell.entry(cell).or_default();
            e.0.push(closed);
            e.1.push(ready);
        }
    }
    // The operator's reaction: from a pod of a cell back in traffic to the
    // next gate of that cell closing, the budget idle between.
    let mut reactions: Vec<f64> = Vec::new();
    for (closes, readies) in by_cell.values_mut() {
        readies.sort();
        for c in closes.iter() {
            let before = readies.partition_point(|r| r <= c);
            if let Some(r) = before.checked_sub(1).map(|i| readies[i]) {
                reactions.push(c.saturating_duration_since(r).as_secs_f64());
            }
        }
    }
    reactions.sort_by(f64::total_cmp);
    if !reactions.is_empty() {
        report.line(format!(
            "\nfrom a pod back in traffic to its cell's next gate closed: p50 {:.2} s, p90 {:.2} s \
             ({} gates)",
            percentile(&reactions, 0.5),
            percentile(&reactions, 0.9),
            reactions.len()
        ));
    }
    // When each cell had its last pod back (its readies are sorted above):
    // a cell still moving pods while others are done holds the tail.
    let mut done: Vec<f64> = by_cell
        .values()
        .filter_map(|(_, readies)| readies.last())
        .map(|r| r.saturating_duration_since(first).as_secs_f64())
        .collect();
    done.sort_by(f64::total_cmp);
    if done.len() > 1 {
        report.line(format!(
            "\ncells done (last pod Ready, from the first gate closed): first {:.1} s, \
             median {:.1} s, last {:.1} s ({} cells)",
            done[0],
            percentile(&done, 0.5),
            done[done.len() - 1],
            done.len()
        ));
    }
}

/// A measured release of the CafeDeployment `bench`: how long it took,
/// where each pod's time went, and the operator's requests before and after.
struct Release {
    took: Duration,
    start: Instant,
    stages: Arc<Mutex<Stages>>,
    before: BTreeMap<(String, String), u64>,
    after: BTreeMap<(String, String), u64>,
    /// The operator's reconciles during the release, by controller: (count, seconds).
    reconciles: BTreeMap<String, (f64, f64)>,
}

/// The operator's reconciles so far, by controller: (count, seconds spent).
fn reconciles_in(text: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (label, n) in samples(text, "cafe_reconcile_duration_seconds_count") {
        out.entry(label("controller")).or_default().0 += n;
    }
    for (label, s) in samples(text, "cafe_reconcile_duration_seconds_sum") {
        out.entry(label("controller")).or_default().1 += s;
    }
    out
}

async fn release(ns: &TestNs, port: u16, pods: usize) -> Release {
    let cds: Api<CafeDeployment> = ns.api();
    let metrics = operator_metrics(port).await;
    let (before, reconciled) = (requests_in(&metrics), reconciles_in(&metrics));
    let (stages, task) = watch_stages(ns, &RELEASE_STAGES, |p| release_marks(p, IMAGE_2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    cds.patch(
        "bench",
        &PatchParams::default(),
        &Patch::Merge(&set_image(IMAGE_2)),
    )
    .await
    .expect("patch the CafeDeployment");
    let took = wait_cd(&cds, "bench", pods).await;
    let metrics = operator_metrics(port).await;
    let (after, mut reconciles) = (requests_in(&metrics), reconciles_in(&metrics));
    for (controller, (n, secs)) in &mut reconciles {
        let (n0, secs0) = reconciled.get(controller).copied().unwrap_or_default();
        *n -= n0;
        *secs -= secs0;
    }
    task.abort();
    Release {
        took,
        start,
        stages,
        before,
        after,
        reconciles,
    }
}

impl Release {
    /// Where each pod's time went and, with part (c), the requests per pod.
    fn report(&self, report: &mut Report, args: &Args, requests_title: &str) {
        if let Ok(st) = self.stages.lock() {
            report_stages(report, "where the release's time went", &st, self.start);
            report_window(report, &st, args.group);
        }
        let took = self.took.as_secs_f64();
        for (controller, (n, secs)) in &self.reconciles {
            report.line(format!(
                "\n{controller} reconciles: {n:.0} ({:.1} a second), {:.0} ms each on average, \
                 {:.0}% of the release's time summed over its concurrent reconciles",
                n / took,
                1000.0 * secs / n.max(1.0),
                100.0 * secs / took
            ));
        }
        if args.parts.contains(&'c') {
            per_pod(report, requests_title, &self.before, &self.after, args.pods);
        }
    }
}

/// With `--profile DIR`, the CPU profiles of the API server and of kwok (the
/// simulated kubelets) from now on, written to DIR/`name`.pprof
/// (`go tool pprof`) and DIR/`name`-kwok.perf (`perf report -i`, when perf is
/// installed) when the returned thread ends (kubectl from PATH, as
/// hack/bench.sh sets it).
fn profile(args: &Args, name: &str) -> Option<std::thread::JoinHandle<()>> {
    let dir = args.profile.clone()?;
    let path = format!("{dir}/{name}.pprof");
    let kwok_path = format!("{dir}/{name}-kwok.perf");
    let url = format!("/debug/pprof/profile?seconds={}", args.profile_seconds);
    let seconds = args.profile_seconds.to_string();
    let _ = std::fs::create_dir_all(&dir);
    // kwok serves no CPU profile; perf (when installed) samples it instead.
    let kwok_pid = std::fs::read_to_string(".cluster/pids/kwok.pid").unwrap_or_default();
    let kwok = std::thread::spawn(move || {
        let recorded = std::process::Command::new("perf")
            .args(["record", "-q", "-F", "499", "-g", "-o", &kwok_path, "-p"])
            .args([kwok_pid.trim(), "--", "sleep", &seconds])
            .output();
        match recorded {
            Ok(o) if o.status.success() => eprintln!("kwok profile: {kwok_path} (perf report -i)"),
            Ok(o) => eprintln!("no kwok profile: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("no kwok profile (perf): {e}"),
        }
    });
    Some(std::thread::spawn(move || {
        let out = std::process::Command::new("kubectl")
            .args(["get", "--raw", &url])
            .output();
        match out {
            Ok(o) if o.status.success() => match std::fs::write(&path, o.stdout) {
                Ok(()) => eprintln!("API server profile: {path}"),
                Err(e) => eprintln!("cannot write {path}: {e}"),
            },
            Ok(o) => eprintln!("no profile: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("no profile (kubectl): {e}"),
        }
        let _ = kwok.join();
    }))
}

/// Waits for a profile started by [`profile`] to be written.
async fn profiled(profile: Option<std::thread::JoinHandle<()>>) {
    if let Some(p) = profile {
        let _ = tokio::task::spawn_blocking(move || p.join()).await;
    }
}

/// One run of part (a): how long each side took.
struct RunA {
    cd_create: Duration,
    deploy_create: Duration,
    cd_release: Duration,
    deploy_release: Duration,
    /// The CafeDeployment's side ran first.
    cd_first: bool,
}

impl RunA {
    fn ratios(&self) -> (f64, f64) {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        (
            ratio(self.cd_create, self.deploy_create),
            ratio(self.cd_release, self.deploy_release),
        )
    }
}

/// Every run of part (a), and the median ratios.
fn report_runs(report: &mut Report, runs: &[RunA]) {
    report.line(format!("\n### part (a), {} runs\n", runs.len()));
    report.line(
        "| run | first | create: CafeDeployment | Deployment | ratio | release: CafeDeployment | Deployment | ratio |",
    );
    report.line("|---|---|---:|---:|---:|---:|---:|---:|");
    for (i, r) in runs.iter().enumerate() {
        let (create, release) = r.ratios();
        report.line(format!(
            "| {} | {} | {:.1} s | {:.1} s | {create:.2}x | {:.1} s | {:.1} s | {release:.2}x |",
            i + 1,
            first_side(r.cd_first),
            r.cd_create.as_secs_f64(),
            r.deploy_create.as_secs_f64(),
            r.cd_release.as_secs_f64(),
            r.deploy_release.as_secs_f64(),
        ));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let create = median(runs.iter().map(|r| r.ratios().0).collect());
    let release = median(runs.iter().map(|r| r.ratios().1).collect());
    report.line(format!(
        "| **median** | | | | **{create:.2}x** | | | **{release:.2}x** |"
    ));
}

/// One side of part (a), measured: its creation and its release, the CPU
/// and API server writes before the creation, after it and after the release,
/// and where each created pod's time went.
struct Side {
    create: Duration,
    release: Duration,
    cpu: [Cpu; 3],
    writes: [Writes; 3],
    created: Arc<Mutex<Stages>>,
    start: Instant,
}

/// The Deployment's side: the same nodes, the same budget (`maxSurge: 0`,
/// `maxUnavailable`: one group). Its namespace is removed before it returns.
async fn deployment_side(args: &Args) -> Side {
    let ns = TestNs::new("bench-deploy").await;
    let deployments: Api<Deployment> = ns.api();
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": args.pods,
            "selector": {"matchLabels": {"app": "bench"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 0, "maxUnavailable": args.group}},
            "template": {"metadata": {"labels": {"app": "bench"}},
                         "spec": {"nodeSelector": {NODE_LABEL: "true"},
                                  "containers": [{"name": "app", "image": IMAGE_1}]}},
        }
    });
    let client = ns.client.clone();
    let cpu_0 = Cpu::read(None);
    let writes_0 = Writes::read(&client).await;
    let (created, watch) = watch_stages(&ns, &CREATION_STAGES, creation_marks);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let profile_create = profile(args, "deployment-create");
    let start = Instant::now();
    ns.create::<Deployment>(body).await;
    let deploy_done = |what: &'static str| {
        let api = deployments.clone();
        let n = args.pods;
        async move {
            wait_until(what, WAIT, || async {
                let d = api.get("bench").await.ok()?;
                deployment_done(&d, n).then_some(())
            })
            .await
        }
    };
    deploy_done("the Deployment to be ready").await;
    let create = start.elapsed();
    watch.abort();
    profiled(profile_create).await;
    let cpu_1 = Cpu::read(None);
    let writes_1 = Writes::read(&client).await;
    // The same watch of the pods as during the CafeDeployment's release, so
    // that both releases serve one more watcher.
    let (_, watch) = watch_stages(&ns, &RELEASE_STAGES, |p| release_marks(p, IMAGE_2));
    let profile_release = profile(args, "deployment");
    let release_start = Instant::now();
    deployments
        .patch(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(&set_image(IMAGE_2)),
        )
        .await
        .expect("patch the Deployment");
    deploy_done("the Deployment's rollout").await;
    let release = release_start.elapsed();
    let cpu_2 = Cpu::read(None);
    let writes_2 = Writes::read(&client).await;
    watch.abort();
    profiled(profile_release).await;
    remove(ns).await;
    Side {
        create,
        release,
        cpu: [cpu_0, cpu_1, cpu_2],
        writes: [writes_0, writes_1, writes_2],
        created,
        start,
    }
}

/// The CafeDeployment's side, with its operator (counted in the CPU): the
/// side, the measured release, and with `details` the writes in the 10 s
/// after it. Its namespace is removed before it returns.
async fn cafedeployment_side(args: &Args, details: bool) -> (Side, Release, Option<String>) {
    let ns = TestNs::new("bench-cd").await;
    let client = ns.client.clone();
    let (mut op, port) = operator(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let traffic = json!({"components": [], "settleSeconds": 0});
    let cpu_0 = Cpu::read(op.pid());
    let writes_0 = Writes::read(&client).await;
    let (created, watch) = watch_stages(&ns, &CREATION_STAGES, creation_marks);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let profile_create = profile(args, "cafedeployment-create");
    let start = Instant::now();
    ns.create::<CafeDeployment>(cafedeployment(
        "bench", args, args.pods, args.group, traffic,
    ))
    .await;
    wait_cd(&cds, "bench", args.pods).await;
    let create = start.elapsed();
    watch.abort();
    profiled(profile_create).await;
    let cpu_1 = Cpu::read(op.pid());
    let writes_1 = Writes::read(&client).await;
    let profile_release = profile(args, "cafedeployment");
    let measured = release(&ns, port, args.pods).await;
    let cpu_2 = Cpu::read(op.pid());
    let writes_2 = Writes::read(&client).await;
    profiled(profile_release).await;
    // Idle: nothing to do, nothing written.
    let idle = if details {
        let before = requests(port).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = requests(port).await;
        let idle: u64 = writes_between(&before, &after);
        Some(format!(
            "\nwrites in the 10 s right after the release: {idle} ({})",
            writes_by_kind(&before, &after)
        ))
    } else {
        None
    };
    op.stop();
    remove(ns).await;
    let side = Side {
        create,
        release: measured.took,
        cpu: [cpu_0, cpu_1, cpu_2],
        writes: [writes_0, writes_1, writes_2],
        created,
        start,
    };
    (side, measured, idle)
}

/// Which side of part (a) went first.
fn first_side(cd_first: bool) -> &'static str {
    if cd_first {
        "CafeDeployment"
    } else {
        "Deployment"
    }
}

/// (a) and (c): create and release `pods` pods, the Deployment then the
/// CafeDeployment, or the other way round with `cd_first` (a cluster that
/// served runs before answers more slowly: alternating the order keeps that
/// from favouring one side); the detailed tables only with `details`.
async fn part_a(args: &Args, report: &mut Report, details: bool, cd_first: bool) -> RunA {
    report.line(format!(
        "\n## (a) {} pods, {} cells, groups of {}: CafeDeployment vs Deployment ({} first)\n",
        args.pods,
        args.cells,
        args.group,
        first_side(cd_first)
    ));
    let (deploy, (cd, measured, idle)) = if cd_first {
        let cd = cafedeployment_side(args, details).await;
        (deployment_side(args).await, cd)
    } else {
        let deploy = deployment_side(args).await;
        (deploy, cafedeployment_side(args, details).await)
    };
    let run = RunA {
        cd_create: cd.create,
        deploy_create: deploy.create,
        cd_release: cd.release,
        deploy_release: deploy.release,
        cd_first,
    };
    let (create_ratio, release_ratio) = run.ratios();
    report.line("| | CafeDeployment | Deployment | ratio |");
    report.line("|---|---:|---:|---:|");
    report.line(format!(
        "| create from zero -> all ready | {:.1} s | {:.1} s | **{create_ratio:.2}x** |",
        cd.create.as_secs_f64(),
        deploy.create.as_secs_f64(),
    ));
    report.line(format!(
        "| new image -> all ready | {:.1} s | {:.1} s | **{release_ratio:.2}x** |",
        cd.release.as_secs_f64(),
        deploy.release.as_secs_f64(),
    ));
    if !details {
        return run;
    }
    report_cpu(
        report,
        &[
            ("create, CafeDeployment", &cd.cpu[1].since(&cd.cpu[0])),
            ("create, Deployment", &deploy.cpu[1].since(&deploy.cpu[0])),
            ("release, CafeDeployment", &cd.cpu[2].since(&cd.cpu[1])),
            ("release, Deployment", &deploy.cpu[2].since(&deploy.cpu[1])),
        ],
    );
    report_writes(
        report,
        args.pods,
        &[
            ("create, CafeDeployment", &cd.writes[1].since(&cd.writes[0])),
            (
                "create, Deployment",
                &deploy.writes[1].since(&deploy.writes[0]),
            ),
            (
                "release, CafeDeployment",
                &cd.writes[2].since(&cd.writes[1]),
            ),
            (
                "release, Deployment",
                &deploy.writes[2].since(&deploy.writes[1]),
            ),
        ],
    );
    for (title, side) in [
        ("where the CafeDeployment's creation went", &cd),
        ("where the Deployment's creation went", &deploy),
    ] {
        if let Ok(st) = side.created.lock() {
            report_stages(report, title, &st, side.start);
        }
    }
    measured.report(
        report,
        args,
        "## (c) operator API requests per in-place-updated pod (no traffic component)",
    );
    if let Some(idle) = idle {
        report.line(idle);
    }
    run
}

type Requests = BTreeMap<(String, String), u64>;

/// The writes between two readings, by (verb, resource).
fn write_deltas<'a>(
    before: &'a Requests,
    after: &'a Requests,
) -> impl Iterator<Item = (&'a (String, String), u64)> {
    after
        .iter()
        .filter(|((verb, _), _)| is_write(verb))
        .map(|(k, n)| (k, n - before.get(k).unwrap_or(&0)))
}

/// "patch pods 3, ..." for the writes between two readings.
fn writes_by_kind(before: &Requests, after: &Requests) -> String {
    write_deltas(before, after)
        .filter(|(_, d)| *d > 0)
        .map(|((verb, resource), d)| format!("{verb} {resource} {d}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn writes_between(before: &Requests, after: &Requests) -> u64 {
    write_deltas(before, after).map(|(_, d)| d).sum()
}

/// (b): the same release behind a Service, drained by the `service` component.
async fn part_b(args: &Args, report: &mut Report) {
    report.line(format!(
        "\n## (b) the same release with the `service` component ({} pods behind a Service)\n",
        args.pods
    ));
    let ns = TestNs::new("bench-svc").await;
    ns.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bench"},
        "spec": {"selector": {"app": "bench"}, "ports": [{"port": 80}]}
    }))
    .await;
    let (mut op, port) = operator(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let traffic = json!({"components": ["service"]});
    ns.create::<CafeDeployment>(cafedeployment(
        "bench", args, args.pods, args.group, traffic,
    ))
    .await;
    wait_cd(&cds, "bench", args.pods).await;
    let checker = lossless::Lossless::start(&ns, "bench").await;
    let measured = release(&ns, port, args.pods).await;
    let took = measured.took;
    let summary = checker.verify().await;
    report.line(format!(
        "new image -> all ready: **{:.1} s** (settleSeconds 3 per group); lossless: {} pods \
         changed in place, {} deleted, never a changed pod still an endpoint (fewest ready \
         endpoints seen: {} of {}, counted from the first slice listed)",
        took.as_secs_f64(),
        summary.changed,
        summary.deleted,
        summary.min_ready,
        args.pods
    ));
    assert_eq!(
        summary.changed, args.pods,
        "every pod changed in place once"
    );
    measured.report(
        report,
        args,
        "## (c) API requests per in-place-updated pod with the `service` component",
    );
    op.stop();
    remove(ns).await;
}

/// (d): a fleet of CafeDeployments: memory, quiet writes, a mass release.
async fn part_d(args: &Args, report: &mut Report) {
    let total = args.fleet * args.fleet_pods;
    report.line(format!(
        "\n## (d) {} CafeDeployments x {} pods = {total} pods\n",
        args.fleet, args.fleet_pods
    ));
    let ns = TestNs::new("bench-fleet").await;
    let (mut op, port) = operator(&ns.name);
    let pid = op.pid().expect("operator pid");
    let cds: Api<CafeDeployment> = ns.api();
    let group = (args.fleet_pods / 4).max(1);
    let start = Instant::now();
    for i in 0..args.fleet {
        let traffic = json!({"components": [], "settleSeconds": 0});
        let body = cafedeployment(&format!("fleet-{i}"), args, args.fleet_pods, group, traffic);
        ns.create::<CafeDeployment>(body).await;
    }
    let all_done = || async {
        let list = cds.list(&ListParams::default()).await.ok()?;
        let done = list
            .items
            .iter()
            .filter(|c| cd_done(c, args.fleet_pods))
            .count();
        (done == args.fleet).then_some(())
    };
    wait_until("the fleet to be ready", WAIT * 2, all_done).await;
    let created = start.elapsed();
    // Let the watch caches and allocator settle before reading memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = rss_kib(pid, "VmRSS");
    let before = requests(port).await;
    tokio::time::sleep(Duration::from_secs(args.quiet_seconds)).await;
    let after = requests(port).await;
    let quiet = writes_between(&before, &after);
    let rss_quiet = rss_kib(pid, "VmRSS");
    let start = Instant::now();
    for i in 0..args.fleet {
        cds.patch(
            &format!("fleet-{i}"),
            &PatchParams::default(),
            &Patch::Merge(&set_image(IMAGE_2)),
        )
        .await
        .expect("patch a fleet CafeDeployment");
    }
    wait_until("the fleet's release", WAIT * 2, all_done).await;
    let released = start.elapsed();
    let peak = rss_kib(pid, "VmHWM");
    let after_release = requests(port).await;
    report.line("| | |");
    report.line("|---|---:|");
    report.line(format!(
        "| create all -> all ready | {:.1} s |",
        created.as_secs_f64()
    ));
    report.line(format!(
        "| operator RSS once all are ready | **{:.0} MiB** |",
        rss as f64 / 1024.0
    ));
    report.line(format!(
        "| operator RSS after {} s quiet | {:.0} MiB |",
        args.quiet_seconds,
        rss_quiet as f64 / 1024.0
    ));
    report.line(format!(
        "| API writes during {} s quiet | **{quiet}** {} |",
        args.quiet_seconds,
        writes_by_kind(&before, &after)
    ));
    report.line(format!(
        "| release all at once (groups of {group}) -> all ready | **{:.1} s** |",
        released.as_secs_f64()
    ));
    report.line(format!(
        "| writes per pod in that release | {:.2} |",
        writes_between(&after, &after_release) as f64 / total as f64
    ));
    report.line(format!(
        "| operator peak RSS (VmHWM) | {:.0} MiB |",
        peak as f64 / 1024.0
    ));
    op.stop();
    remove(ns).await;
}

/// (e): confirmation -> first gate flip, on an otherwise idle operator.
async fn part_e(args: &Args, report: &mut Report) {
    report.line(format!(
        "\n## (e) confirmation -> first gate flip ({} confirmations)\n",
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
            let is_open = condition(&p, TRAFFIC_GATE).as_deref() == Some("True");
            if open.insert(p.name_any(), is_open) == Some(true)
                && !is_open
                && let Ok(mut f) = log.lock()
            {
                f.push(now);
            }
        }
    });
    let mut release = set_image(IMAGE_2);
    release["spec"]["strategy"] = json!({"needWaitingForConfirm": true});
    cds.patch("confirm", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("release");
    let waiting = || async {
        let cd = cds.get("confirm").await.ok()?;
        let s = cd.status?;
        (s.observed_generation == cd.metadata.generation
            && s.release.as_ref()?.awaiting_confirmation.is_some()
            && s.phase == Some(cafe_operator::api::Phase::WaitingForConfirm))
        .then_some(())
    };
    let mut latencies = Vec::new();
    for _ in 0..args.samples {
        wait_until("a confirmation wait", 120, waiting).await;
        // Idle: let every watch settle first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        let patch =
            json!({"metadata": {"annotations": {"cafe.sofastack.io/upgrade-confirmed": "true"}}});
        cds.patch("confirm", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("confirm");
        let flip = wait_until("the first gate flip after a confirmation", 60, || async {
            flips.lock().ok()?.iter().find(|f| **f >= t0).copied()
        })
        .await;
        latencies.push(flip.duration_since(t0).as_secs_f64() * 1000.0);
        // The group must finish before the next wait can be confirmed.
        wait_until("the group to finish", 120, || async {
            let cd = cds.get("confirm").await.ok()?;
            let s = cd.status?;
            (s.phase != Some(cafe_operator::api::Phase::WaitingForConfirm)).then_some(())
        })
        .await;
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

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {:.0} GiB",
        mem as f64 / 1024.0 / 1024.0
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = support::client().await;
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut report = Report {
        text: String::new(),
        out: args.out.clone(),
    };
    report.line("# cafe-operator benchmark");
    report.line(format!(
        "\n{} · machine: {} · local control plane (kwok), {} cells of 2 nodes · operator: release build",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        machine(),
        args.cells
    ));
    let nodes = create_nodes(&client, args.cells).await;
    let run = async {
        if args.parts.contains(&'a') {
            let repeat = args.repeat.max(1);
            let mut runs = Vec::new();
            for i in 0..repeat {
                runs.push(part_a(&args, &mut report, i + 1 == repeat, i % 2 == 1).await);
            }
            if repeat > 1 {
                report_runs(&mut report, &runs);
            }
        }
        if args.parts.contains(&'b') {
            part_b(&args, &mut report).await;
        }
        if args.parts.contains(&'e') {
            part_e(&args, &mut report).await;
        }
        if args.parts.contains(&'d') {
            part_d(&args, &mut report).await;
        }
    };
    // A failed part still removes the nodes (its namespace goes with its guard).
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
    delete_nodes(&client, &nodes).await;
    println!("\nresults written to {}", args.out);
    if outcome.is_err() {
        std::process::exit(1);
    }
}
