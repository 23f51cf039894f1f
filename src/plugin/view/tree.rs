//! `get`'s frame: the release's header (phase, next action, revisions,
//! the group bar, who did what) and its tree (cluster -> cell ->
//! InPlaceSet -> pods).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::api::InPlaceSet;
use crate::api::names::REVISION_LABEL;
use crate::api::pod::Pod;

use super::{Snapshot, bar, icon, next_action, pod_state, registered, restarts, signoff, strategy};

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
        let revision = pod.labels().get(REVISION_LABEL);
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

fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
