//! What `kubectl cafe` draws, pure: a release's header and its tree
//! (cell -> InPlaceSet -> pods), the one-line summary of `list`, the next
//! action, and the verdict that `get -w` and `status` share.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::api::names::{
    REVISION_LABEL, TRAFFIC_FINALIZER_PREFIX, TRAFFIC_GATE, UPGRADE_CONFIRMED_ANNOTATION,
    gate_reason,
};
use crate::api::pod::Pod;
use crate::api::{
    CafeDeployment, CafeDeploymentStatus, HistoryAction, InPlaceSet, Phase, UNVERIFIED, UpgradeType,
};
use crate::traffic::declared_components;

/// The objects of one CafeDeployment as the plugin read them.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub cd: CafeDeployment,
    pub sets: Vec<InPlaceSet>,
    pub pods: Vec<Pod>,
    /// Member clusters whose sets and pods could not be read, and why
    /// (their cells are drawn from the CafeDeployment's status).
    pub unread: std::collections::BTreeMap<String, String>,
    /// Seconds since the epoch, for ages.
    pub now: i64,
}

/// How a watch or `status` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The release is complete (exit 0).
    Complete,
    /// Waiting for a person, and the caller counts that as success (exit 0).
    Waiting,
    /// Stalled (exit 1).
    Stalled,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Complete | Verdict::Waiting => 0,
            Verdict::Stalled => 1,
        }
    }
}

/// The verdict on a CafeDeployment now, if its release has ended (or waits
/// and `success_on_wait`). A status older than the spec decides nothing.
pub fn verdict(cd: &CafeDeployment, success_on_wait: bool) -> Option<Verdict> {
    let status = cd.status.as_ref()?;
    if status.observed_generation != cd.metadata.generation {
        return None;
    }
    match status.phase? {
        Phase::Healthy => Some(Verdict::Complete),
        Phase::Stalled => Some(Verdict::Stalled),
        Phase::WaitingForConfirm | Phase::Paused | Phase::Frozen if success_on_wait => {
            Some(Verdict::Waiting)
        }
        _ => None,
    }
}

pub fn icon(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::Healthy) => "✔",
        Some(Phase::Progressing) => "↻",
        Some(Phase::Analyzing) => "⌕",
        Some(Phase::WaitingForConfirm) => "⏸",
        Some(Phase::Paused) => "‖",
        Some(Phase::Frozen) => "❄",
        Some(Phase::RollingBack) => "↺",
        Some(Phase::Stalled) => "✖",
        None => "?",
    }
}

/// What the user can do next, as a command.
pub fn next_action(cd: &CafeDeployment) -> String {
    let name = cd.name_any();
    let phase = cd.status.as_ref().and_then(|s| s.phase);
    match phase {
        Some(Phase::WaitingForConfirm) => {
            let confirmed = cd
                .annotations()
                .get(UPGRADE_CONFIRMED_ANNOTATION)
                .map(String::as_str)
                == Some("true");
            if confirmed {
                "confirmed; the next group starts".to_string()
            } else {
                format!("kubectl cafe confirm {name}   (or: kubectl cafe rollback {name})")
            }
        }
        Some(Phase::Paused) => format!("kubectl cafe resume {name}"),
        Some(Phase::Frozen) => {
            "wait for the freeze to end (its name and reason are above); whoever froze it \
             thaws it with: kubectl cafe unfreeze NAME"
                .to_string()
        }
        Some(Phase::Stalled) => format!("kubectl cafe rollback {name}   (or fix the template)"),
        Some(Phase::Healthy) => "nothing: the release is complete".to_string(),
        Some(Phase::Progressing | Phase::RollingBack) => "wait: pods are moving".to_string(),
        Some(Phase::Analyzing) => format!(
            "wait: the analysis confirms the next group on success (kubectl cafe confirm {name} \
             to go on now, kubectl cafe rollback {name} to stop)"
        ),
        None => "wait: not reconciled yet".to_string(),
    }
}

/// `[█████░░░░░]` for `done` of `total`.
pub fn bar(done: i32, total: i32, width: usize) -> String {
    let filled = if total <= 0 {
        width
    } else {
        (usize::try_from(done.clamp(0, total)).unwrap_or(0) * width)
            / usize::try_from(total).unwrap_or(1)
    };
    format!("[{}{}]", "█".repeat(filled), "░".repeat(width - filled))
}

/// A pod's place in the lifecycle, in one word.
pub fn pod_state(pod: &Pod, update_revision: Option<&str>) -> &'static str {
    let gate = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == TRAFFIC_GATE))
        .map(|g| (g.status.as_str(), g.reason.as_deref().unwrap_or_default()));
    lifecycle(&Lifecycle {
        deleting: pod.metadata.deletion_timestamp.is_some(),
        gate,
        declared: &declared_components(pod),
        registered: &registered(pod),
        on_update: pod.labels().get(REVISION_LABEL).map(String::as_str) == update_revision,
    })
}

/// What a pod's lifecycle state is read from.
pub struct Lifecycle<'a> {
    pub deleting: bool,
    /// The traffic gate's status and reason.
    pub gate: Option<(&'a str, &'a str)>,
    /// Traffic components the pod declares, and those that hold it now.
    pub declared: &'a [String],
    pub registered: &'a [String],
    /// It carries its set's update revision.
    pub on_update: bool,
}

pub fn lifecycle(pod: &Lifecycle) -> &'static str {
    if pod.deleting {
        return "terminating";
    }
    match pod.gate {
        None => "starting",
        Some(("True", _)) => {
            if pod.declared.iter().all(|c| pod.registered.contains(c)) {
                "serving"
            } else {
                "restoring"
            }
        }
        Some((_, reason)) => {
            if pod.declared.iter().any(|c| pod.registered.contains(c)) {
                "draining"
            } else if reason == gate_reason::DRAINING_FOR_DELETE {
                "deleting"
            } else if pod.on_update {
                "verifying"
            } else {
                "updating"
            }
        }
    }
}

pub fn registered(pod: &Pod) -> Vec<String> {
    pod.finalizers()
        .iter()
        .filter_map(|f| f.strip_prefix(TRAFFIC_FINALIZER_PREFIX))
        .map(str::to_string)
        .collect()
}

fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

pub fn strategy(cd: &CafeDeployment) -> String {
    let s = &cd.spec.strategy;
    let batch = match &s.batch_size {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(p) => p.clone(),
    };
    format!(
        "{}, batch {batch}, {}{}",
        match s.upgrade_type {
            UpgradeType::Beta => "Beta first",
            UpgradeType::Batch => "batches",
        },
        match (&s.analysis, s.need_waiting_for_confirm) {
            (Some(a), _) => format!(
                "analysis confirms each group ({} quer{} on {})",
                a.queries.len(),
                if a.queries.len() == 1 { "y" } else { "ies" },
                a.prometheus.address
            ),
            (None, true) => "confirm each group".to_string(),
            (None, false) => "no confirmation".to_string(),
        },
        if s.pause { ", PAUSED" } else { "" }
    )
}

/// Who released the revision being released and who confirmed its groups,
/// as `status.history` records it: "Template by alice · group 2 confirmed
/// by bob · group 3 confirmed by analysis". None before anything is recorded.
pub fn signoff(status: &CafeDeploymentStatus) -> Option<String> {
    let revision = status.update_revision.as_deref()?;
    let own: Vec<_> = status
        .history
        .iter()
        .filter(|e| e.revision == revision)
        .collect();
    let who = |by: &str| {
        if by == UNVERIFIED {
            "(unverified)".to_string()
        } else {
            by.to_string()
        }
    };
    // This release began with the template (or the rollback to it); the
    // confirmations since are its own.
    let began = own.iter().rev().find(|e| {
        matches!(
            e.action,
            HistoryAction::TemplateChanged | HistoryAction::RolledBack
        )
    });
    let mut parts: Vec<String> = began
        .map(|e| match e.action {
            HistoryAction::RolledBack => format!("Rolled back by {}", who(&e.by)),
            _ => format!("Template by {}", who(&e.by)),
        })
        .into_iter()
        .collect();
    let since = began.map_or(i64::MIN, |e| e.seq);
    parts.extend(
        own.iter()
            .filter(|e| e.action == HistoryAction::Confirmed && e.seq > since)
            .map(|e| {
                format!(
                    "group {} confirmed by {}{}",
                    e.group.map_or("?".to_string(), |g| g.to_string()),
                    who(&e.by),
                    if e.message.starts_with("break-glass") {
                        " (break-glass)"
                    } else {
                        ""
                    }
                )
            }),
    );
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// What `get` prints, and `get -w` redraws: the header, a blank line, the
/// tree.
pub fn frame(snap: &Snapshot) -> Vec<String> {
    header(snap)
        .into_iter()
        .chain([String::new()])
        .chain(tree(snap))
        .collect()
}

/// The header of `get`.
pub fn header(snap: &Snapshot) -> Vec<String> {
    let cd = &snap.cd;
    let status = cd.status.clone().unwrap_or_default();
    let release = status.release.clone().unwrap_or_default();
    let phase = status
        .phase
        .map_or("Unknown".to_string(), |p| format!("{p:?}"));
    let stable = status
        .current_revision
        .clone()
        .unwrap_or_else(|| "-".into());
    let update = status.update_revision.clone().unwrap_or_else(|| "-".into());
    let analysis = release.analysis.as_ref().map(|a| {
        let last = a.measurements.last().map_or(String::new(), |m| {
            format!("; last {} {:?} {}", m.query, m.phase, m.value)
        });
        format!(
            "Analysis:  group {} of {}: {:?}{}{last}",
            a.group,
            a.revision,
            a.phase,
            a.action
                .as_ref()
                .map_or(String::new(), |act| format!(" -> {act}"))
        )
    });
    let mut lines = vec![
        format!(
            "Name:      {}   (namespace {})",
            cd.name_any(),
            cd.namespace().unwrap_or_default()
        ),
        format!("Phase:     {} {phase}", icon(status.phase)),
        format!("Message:   {}", release.message),
        format!("Next:      {}", next_action(cd)),
        format!("Strategy:  {}", strategy(cd)),
        if stable == update {
            format!("Revision:  {update} (stable)")
        } else {
            format!("Revision:  {stable} (stable) -> {update} (update)")
        },
    ];
    lines.extend(signoff(&status).map(|line| format!("Sign-off:  {line}")));
    lines.extend([
        format!(
            "Group:     {}/{} {}",
            release.group,
            release.groups,
            bar(release.group, release.groups, 24)
        ),
        format!(
            "Replicas:  {} desired, {} ready, {} updated, {} available",
            cd.spec.replicas,
            status.ready_replicas,
            status.updated_replicas,
            status.available_replicas
        ),
    ]);
    lines.extend(analysis);
    lines
}

/// The tree of `get`: each cluster (this one first, then the member
/// clusters with their reachability), its cells' InPlaceSets and their pods.
/// A member whose objects could not be read shows its cells as the
/// CafeDeployment's status last saw them.
pub fn tree(snap: &Snapshot) -> Vec<String> {
    let rows = snap
        .cd
        .status
        .as_ref()
        .map(|s| s.cells.clone())
        .unwrap_or_default();
    let cell_of = |set: &InPlaceSet| {
        set.labels()
            .get(crate::api::names::CELL_LABEL)
            .cloned()
            .unwrap_or_else(|| "-".into())
    };
    let cluster_of = |cell: &str| {
        rows.iter()
            .find(|r| r.name == cell)
            .and_then(|r| r.cluster.clone())
    };
    let mut clusters: Vec<Option<String>> = vec![None];
    for row in &rows {
        if !clusters.contains(&row.cluster) {
            clusters.push(row.cluster.clone());
        }
    }
    let spans = clusters.len() > 1;
    let mut out = Vec::new();
    for cluster in &clusters {
        let indent = if spans { "  " } else { "" };
        if spans {
            out.push(cluster_line(cluster.as_deref(), &rows, snap));
        }
        let mut sets: Vec<&InPlaceSet> = snap
            .sets
            .iter()
            .filter(|s| cluster_of(&cell_of(s)) == *cluster)
            .collect();
        sets.sort_by_key(|s| s.name_any());
        for set in &sets {
            set_lines(set, snap, indent, &mut out);
        }
        // Cells of this cluster whose set could not be read: as last seen.
        for row in rows.iter().filter(|r| r.cluster == *cluster) {
            if sets.iter().any(|s| cell_of(s) == row.name) {
                continue;
            }
            out.push(format!(
                "{indent}{}  ⟶ (as last seen) updated {}/{}  ready {}  available {}",
                row.name, row.updated, row.replicas, row.ready, row.available
            ));
        }
    }
    out
}

/// A cluster's line: this one, or a member with its reachability.
fn cluster_line(cluster: Option<&str>, rows: &[crate::api::CellStatus], snap: &Snapshot) -> String {
    let Some(name) = cluster else {
        return "cluster (this one)".to_string();
    };
    let row = rows.iter().find(|r| r.cluster.as_deref() == Some(name));
    let reach = row
        .and_then(|r| r.reachability.clone())
        .unwrap_or_else(|| "-".into());
    let contact = row
        .and_then(|r| r.last_contact.as_ref())
        .map_or(String::new(), |t| {
            format!(", last contact {} ago", age(snap.now - t.0.as_second()))
        });
    let unread = snap
        .unread
        .get(name)
        .map_or(String::new(), |why| format!("  (not read: {why})"));
    format!("cluster {name}  {reach}{contact}{unread}")
}

/// A set's line and its pods' lines.
fn set_lines(set: &InPlaceSet, snap: &Snapshot, indent: &str, out: &mut Vec<String>) {
    let status = set.status.clone().unwrap_or_default();
    let cell = set
        .labels()
        .get(crate::api::names::CELL_LABEL)
        .cloned()
        .unwrap_or_else(|| "-".into());
    let partition = match &set.spec.strategy.partition {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(p) => p.clone(),
    };
    out.push(format!(
        "{indent}{cell}  ⟶ InPlaceSet {}  partition {partition}  updated {}/{}  ready {}{}",
        set.name_any(),
        status.updated_replicas,
        set.spec.replicas,
        status.ready_replicas,
        if set.spec.strategy.paused {
            "  paused"
        } else {
            ""
        },
    ));
    let uid = set.uid();
    let mut pods: Vec<&Pod> = snap
        .pods
        .iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .collect();
    pods.sort_by_key(|p| p.name_any());
    let update = status.update_revision.as_deref();
    for (i, pod) in pods.iter().enumerate() {
        let last = i + 1 == pods.len();
        let revision = pod.labels().get(REVISION_LABEL).map(String::as_str);
        let which = if revision == update {
            "update"
        } else if revision == status.stable_revision.as_deref() || update.is_none() {
            "stable"
        } else {
            "old"
        };
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let created = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(snap.now, |t| t.0.as_second());
        let traffic = registered(pod);
        out.push(format!(
            "{indent}   {} {}  {image} ({which})  {}  traffic [{}]  restarts {}  age {}",
            if last { "└─" } else { "├─" },
            pod.name_any(),
            pod_state(pod, update),
            traffic.join(","),
            restarts(pod),
            age(snap.now - created)
        ));
    }
}

/// One line of `list`: name, phase, group, what it waits for.
pub fn list_line(cd: &CafeDeployment, with_namespace: bool) -> String {
    let status = cd.status.clone().unwrap_or_default();
    let release = status.release.clone().unwrap_or_default();
    let phase = status.phase.map_or("Unknown".into(), |p| format!("{p:?}"));
    let waits = match status.phase {
        Some(Phase::WaitingForConfirm) => "a person: confirm or roll back".to_string(),
        Some(Phase::Paused) => "a person: resume".to_string(),
        Some(Phase::Frozen) => "the freeze to be thawed".to_string(),
        Some(Phase::Stalled) => "a fix: roll back or correct the template".to_string(),
        Some(Phase::Progressing | Phase::RollingBack) => "pods to move".to_string(),
        Some(Phase::Analyzing) => "the analysis (Prometheus)".to_string(),
        Some(Phase::Healthy) => "-".to_string(),
        None => "the operator".to_string(),
    };
    let name = if with_namespace {
        format!(
            "{:<20} {:<24}",
            cd.namespace().unwrap_or_default(),
            cd.name_any()
        )
    } else {
        format!("{:<24}", cd.name_any())
    };
    format!(
        "{name} {} {:<18} {:>7} {waits}",
        icon(status.phase),
        phase,
        format!("{}/{}", release.group, release.groups)
    )
}

pub fn list_heading(with_namespace: bool) -> String {
    let name = if with_namespace {
        format!("{:<20} {:<24}", "NAMESPACE", "NAME")
    } else {
        format!("{:<24}", "NAME")
    };
    format!("{name}   {:<18} {:>7} WAITING FOR", "PHASE", "GROUP")
}

#[cfg(test)]
mod tests;
