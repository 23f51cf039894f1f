//! What the processes report: the operator's `/metrics` (API requests,
//! reconciles), the API server's writes by client, CPU seconds and memory.

use std::collections::BTreeMap;

use kube::Client;

use crate::Report;

/// The samples of the counter `name` in Prometheus text: a label reader
/// and the value of each.
pub(crate) fn samples<'a>(
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
pub(crate) async fn operator_metrics(port: u16) -> String {
    fetch(&format!("http://127.0.0.1:{port}/metrics")).await
}

/// The operator's `cafe_api_requests_total`, by (verb, resource), successes and failures.
pub(crate) async fn requests(port: u16) -> BTreeMap<(String, String), u64> {
    requests_in(&operator_metrics(port).await)
}

pub(crate) fn requests_in(text: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for (label, n) in samples(text, "cafe_api_requests_total") {
        *out.entry((label("verb"), label("resource"))).or_default() += n as u64;
    }
    out
}

/// A plain HTTP GET (the metrics endpoint is local, plain text).
pub(crate) async fn fetch(url: &str) -> String {
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

pub(crate) fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "patch" | "update" | "delete")
}

/// Requests made between two snapshots, per in-place-updated pod.
pub(crate) fn per_pod(
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

pub(crate) fn rss_kib(pid: u32, field: &str) -> u64 {
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
pub(crate) struct Cpu(BTreeMap<String, f64>);

impl Cpu {
    const PROCESSES: [&str; 5] = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ];

    pub(crate) fn read(operator: Option<u32>) -> Self {
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

    pub(crate) fn since(&self, before: &Cpu) -> Cpu {
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
pub(crate) struct Writes {
    pub(crate) pods: BTreeMap<String, f64>,
    pub(crate) others: BTreeMap<String, f64>,
}

impl Writes {
    pub(crate) async fn read(client: &Client) -> Self {
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

    pub(crate) fn since(&self, before: &Self) -> Self {
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
pub(crate) fn report_writes(report: &mut Report, pods: usize, phases: &[(&str, &Writes)]) {
    let title = format!("pod writes per pod, every client (the API server's count, {pods} pods)");
    let on_pods: Vec<_> = phases.iter().map(|(n, w)| (*n, &w.pods)).collect();
    let per_pod = |n: f64| format!("{:.2}", n / pods.max(1) as f64);
    report_phases(report, &title, "request", &on_pods, per_pod);
    let title = "writes to other resources, every client (the API server's count)";
    let others: Vec<_> = phases.iter().map(|(n, w)| (*n, &w.others)).collect();
    report_phases(report, title, "request", &others, |n| format!("{n:.0}"));
}

/// One row per process, one column per phase: CPU seconds.
pub(crate) fn report_cpu(report: &mut Report, phases: &[(&str, &Cpu)]) {
    let title = "CPU seconds per process (2 CPUs: a phase of t seconds has 2t to spend)";
    let phases: Vec<_> = phases.iter().map(|(n, c)| (*n, &c.0)).collect();
    report_phases(report, title, "process", &phases, |s| format!("{s:.1}"));
}

/// A table of figures by row and phase, with a total per phase.
pub(crate) fn report_phases(
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

/// The operator's reconciles so far, by controller: (count, seconds spent).
pub(crate) fn reconciles_in(text: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (label, n) in samples(text, "cafe_reconcile_duration_seconds_count") {
        out.entry(label("controller")).or_default().0 += n;
    }
    for (label, s) in samples(text, "cafe_reconcile_duration_seconds_sum") {
        out.entry(label("controller")).or_default().1 += s;
    }
    out
}

pub(crate) type Requests = BTreeMap<(String, String), u64>;

/// The writes between two readings, by (verb, resource).
pub(crate) fn write_deltas<'a>(
    before: &'a Requests,
    after: &'a Requests,
) -> impl Iterator<Item = (&'a (String, String), u64)> {
    after
        .iter()
        .filter(|((verb, _), _)| is_write(verb))
        .map(|(k, n)| (k, n - before.get(k).unwrap_or(&0)))
}

/// "patch pods 3, ..." for the writes between two readings.
pub(crate) fn writes_by_kind(before: &Requests, after: &Requests) -> String {
    write_deltas(before, after)
        .filter(|(_, d)| *d > 0)
        .map(|((verb, resource), d)| format!("{verb} {resource} {d}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn writes_between(before: &Requests, after: &Requests) -> u64 {
    write_deltas(before, after).map(|(_, d)| d).sum()
}
