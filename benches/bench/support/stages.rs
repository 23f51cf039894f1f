//! Where each pod's time went: when every pod reached each stage of a
//! creation or an in-place update, as a watch sees it, and how full the
//! unavailability budget was kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cafe_operator::api::names::TRAFFIC_GATE;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use crate::Report;
use crate::support::namespace::TestNs;
use crate::support::pods::pod_condition;

/// When each pod (by name) reached each of `names`, as seen by a watch:
/// where a creation's or a release's time goes.
pub(crate) struct Stages {
    pub(crate) names: &'static [&'static str],
    /// pod -> when it reached each of `names`
    pub(crate) seen: HashMap<String, Vec<Option<Instant>>>,
}

impl Stages {
    /// Pod `pod` (already seen by the pod watch) reached stage `stage` at
    /// `at`, as another watch (EndpointSlices, events) saw it; the first
    /// time counts.
    pub(crate) fn mark(&mut self, pod: &str, stage: usize, at: Instant) {
        if let Some(slot) = self.seen.get_mut(pod).and_then(|m| m.get_mut(stage))
            && slot.is_none()
        {
            *slot = Some(at);
        }
    }
}

/// The stages of an in-place update. The Deployment's release is watched with
/// them too, only so that both releases serve the same watchers.
pub(crate) const RELEASE_STAGES: [&str; 6] = [
    "gate closed",
    "kubelet: not Ready",
    "image patched",
    "kubelet: restarted",
    "gate opened",
    "kubelet: Ready",
];

/// The stages of a new pod.
pub(crate) const CREATION_STAGES: [&str; 4] =
    ["created", "scheduled", "kubelet: started", "kubelet: Ready"];

pub(crate) fn image(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.containers.first()?.image.clone()
}

/// Kubelet reports every container running an image named like `target`.
pub(crate) fn runs(p: &Pod, target: &str) -> bool {
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
pub(crate) fn release_marks(p: &Pod, target: &str) -> Vec<bool> {
    let gate = pod_condition(p, TRAFFIC_GATE);
    let on_target = image(p).as_deref() == Some(target);
    let ready = pod_condition(p, "Ready").as_deref() == Some("True");
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
pub(crate) fn creation_marks(p: &Pod) -> Vec<bool> {
    let scheduled = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    let started = image(p).is_some_and(|i| runs(p, &i));
    vec![
        true,
        scheduled,
        scheduled && started,
        pod_condition(p, "Ready").as_deref() == Some("True"),
    ]
}

/// Records, from now on, when every pod of `ns` reached each of `names`
/// (`marks` says which a pod's version has reached).
pub(crate) fn watch_stages(
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

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Per stage: how long pods took from the stage before (p50, p90, max), and
/// when the first and the last pod reached it, from `start`.
pub(crate) fn report_stages(report: &mut Report, title: &str, stages: &Stages, start: Instant) {
    report_stages_at(report, title, stages, start, [0.5, 0.9]);
}

/// [`report_stages`] with other percentiles than p50 and p90.
pub(crate) fn report_stages_at(
    report: &mut Report,
    title: &str,
    stages: &Stages,
    start: Instant,
    at: [f64; 2],
) {
    let p = |q: f64| format!("p{:.0}", q * 100.0);
    report.line(format!("\n{title} (per pod, from a watch):\n"));
    report.line(format!(
        "| stage | {} | {} | max | first pod at | last pod at |",
        p(at[0]),
        p(at[1])
    ));
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
            percentile(&v, at[0]),
            percentile(&v, at[1]),
            v.last().copied().unwrap_or(0.0),
            if v.is_empty() { 0.0 } else { first },
        ));
    }
}

/// How full the unavailability budget (`group` pods) was kept: on average
/// over the release and at most, how many pods were between their gate
/// closing and kubelet's Ready. Below the budget, pods waited on the operator.
pub(crate) fn report_window(report: &mut Report, stages: &Stages, group: usize) {
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
