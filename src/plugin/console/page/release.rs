//! A release's document: its header, its groups and its grid of cells by
//! groups, each cell with its pods.

use std::collections::{BTreeMap, HashMap, HashSet};

use kube::ResourceExt;

use super::actions::actions;
use super::record::{analysis, banners, stalled_message, step};
use super::{
    Cell, CellGroup, GroupCount, GroupHead, PodDigest, PodRow, Release, Revisions, SetDigest, World,
};
use crate::api::{CafeDeployment, Phase, UpgradeType};
use crate::plugin::view;
use crate::release::plan::Plan;

pub fn key(cd: &CafeDeployment) -> String {
    format!("{}/{}", cd.namespace().unwrap_or_default(), cd.name_any())
}

/// The releases of the world, by key: every one, or `only` those of these
/// CafeDeployment uids.
pub fn releases(world: &World, only: Option<&HashSet<String>>) -> BTreeMap<String, Release> {
    // Pods by the set that owns them, sets by the CafeDeployment that owns them.
    let mut pods_of: HashMap<&str, Vec<&PodDigest>> = HashMap::new();
    for pod in world.pods {
        pods_of.entry(pod.owner.as_str()).or_default().push(pod);
    }
    let mut sets_of: HashMap<&str, Vec<&SetDigest>> = HashMap::new();
    for set in world.sets {
        for owner in &set.owners {
            sets_of.entry(owner.as_str()).or_default().push(set);
        }
    }
    world
        .cds
        .iter()
        .filter(|cd| {
            only.is_none_or(|uids| cd.metadata.uid.as_ref().is_some_and(|u| uids.contains(u)))
        })
        .map(|cd| {
            let uid = cd.metadata.uid.as_deref().unwrap_or_default();
            let sets = sets_of.get(uid).map(Vec::as_slice).unwrap_or_default();
            (key(cd), release(cd, sets, &pods_of, world))
        })
        .collect()
}

fn release(
    cd: &CafeDeployment,
    sets: &[&SetDigest],
    pods_of: &HashMap<&str, Vec<&PodDigest>>,
    world: &World,
) -> Release {
    let namespace = cd.namespace().unwrap_or_default();
    let status = cd.status.clone().unwrap_or_default();
    let release = status.release.clone().unwrap_or_default();
    let plan = plan(cd);
    let groups: Vec<GroupHead> = (1..=usize::try_from(release.groups).unwrap_or(0))
        .map(|g| GroupHead {
            group: g,
            label: if g == 1 && beta(cd) {
                "Beta".to_string()
            } else {
                g.to_string()
            },
        })
        .collect();
    let cells = status
        .cells
        .iter()
        .enumerate()
        .map(|(i, row)| {
            // A pod is on the update revision when it carries its set's.
            let pods: Vec<PodRow> = sets
                .iter()
                .filter(|s| s.cell.as_ref() == Some(&row.name))
                .flat_map(|s| {
                    let update = s.update_revision.as_deref();
                    pods_of
                        .get(s.uid.as_str())
                        .into_iter()
                        .flatten()
                        .map(move |p| pod_row(p, update))
                })
                .collect();
            cell(cd, row, i, plan.as_ref(), pods)
        })
        .collect();
    Release {
        key: key(cd),
        namespace: namespace.clone(),
        name: cd.name_any(),
        phase: status.phase.map(|p| format!("{p:?}")),
        icon: icon(status.phase),
        message: if release.message.is_empty() {
            stalled_message(cd).unwrap_or_default()
        } else {
            release.message.clone()
        },
        next: view::next_action(cd),
        strategy: view::strategy(cd),
        replicas: cd.spec.replicas,
        updated: status.updated_replicas,
        ready: status.ready_replicas,
        revisions: Revisions {
            current: status.current_revision.clone(),
            update: status.update_revision.clone(),
        },
        group: GroupCount {
            done: release.group,
            of: release.groups,
        },
        signoff: view::signoff(&status),
        banners: banners(cd, world.freezes),
        analysis: analysis(cd),
        history: status.history.iter().rev().take(50).map(step).collect(),
        groups,
        cells,
        actions: actions(cd, plan.as_ref(), world.rights),
    }
}

/// The phase's symbol on the page: the terminal's, except the wait for a
/// person, a flag (the pause sign is missing from common fonts).
fn icon(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::WaitingForConfirm) => "⚑",
        other => view::icon(other),
    }
}

/// The release's plan as the operator made it: cells in status order, Beta
/// unless rolling back. None when it does not match the status (cells
/// rescheduled or failed over: the status's counts are then what is told).
fn plan(cd: &CafeDeployment) -> Option<Plan> {
    let status = cd.status.as_ref()?;
    let release = status.release.as_ref()?;
    let sizes: Vec<usize> = status
        .cells
        .iter()
        .map(|c| usize::try_from(c.replicas).unwrap_or(0))
        .collect();
    let replicas = usize::try_from(cd.spec.replicas).unwrap_or(0);
    let batch = crate::api::count::resolve(&cd.spec.strategy.batch_size, replicas, false)
        .ok()?
        .max(1);
    let plan = Plan::new(&sizes, beta(cd), batch);
    (plan.groups() == usize::try_from(release.groups).unwrap_or(0)).then_some(plan)
}

fn beta(cd: &CafeDeployment) -> bool {
    cd.spec.strategy.upgrade_type == UpgradeType::Beta
        && !cd
            .status
            .as_ref()
            .and_then(|s| s.release.as_ref())
            .is_some_and(|r| r.rollback)
}

/// Where group `g` (1-based) stands.
fn group_state(cd: &CafeDeployment, g: usize) -> &'static str {
    let Some(release) = cd.status.as_ref().and_then(|s| s.release.as_ref()) else {
        return "pending";
    };
    let g = i32::try_from(g).unwrap_or(i32::MAX);
    if g <= release.group {
        "done"
    } else if g <= release.opened {
        "moving"
    } else if release.awaiting_confirmation.as_ref().map(|w| w.group) == Some(g) {
        "waiting"
    } else {
        "pending"
    }
}

fn cell(
    cd: &CafeDeployment,
    row: &crate::api::CellStatus,
    index: usize,
    plan: Option<&Plan>,
    mut rows: Vec<PodRow>,
) -> Cell {
    let groups = cd
        .status
        .as_ref()
        .and_then(|s| s.release.as_ref())
        .map_or(0, |r| usize::try_from(r.groups).unwrap_or(0));
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    // The operator's word for a member that does not answer is Unknown.
    let reachability = row.reachability.as_deref().map(|r| {
        if r == "Unknown" {
            "Unreachable".to_string()
        } else {
            r.to_string()
        }
    });
    let pods_note = match (&row.cluster, rows.is_empty()) {
        (Some(cluster), true) => Some(format!(
            "pods live in member cluster {cluster}: counts from the operator's status"
        )),
        _ => None,
    };
    Cell {
        name: row.name.clone(),
        cluster: row.cluster.clone(),
        reachability,
        last_contact: row.last_contact.as_ref().map(|t| t.0.to_string()),
        replicas: row.replicas,
        updated: row.updated,
        ready: row.ready,
        groups: (1..=groups)
            .map(|g| CellGroup {
                group: g,
                pods: plan.and_then(|p| p.group(g).get(index).copied()),
                state: group_state(cd, g),
            })
            .collect(),
        pods: rows,
        pods_note,
    }
}

pub(super) fn pod_row(pod: &PodDigest, update: Option<&str>) -> PodRow {
    let on_update = pod.revision.as_deref() == update;
    PodRow {
        name: pod.name.clone(),
        revision: if update.is_some() && on_update {
            "update"
        } else {
            "stable"
        },
        state: view::lifecycle(&view::Lifecycle {
            deleting: pod.deleting,
            gate: pod.gate.as_ref().map(|(s, r)| (s.as_str(), r.as_str())),
            declared: &pod.declared,
            registered: &pod.registered,
            on_update,
        }),
        holds: pod.registered.clone(),
        ready: pod.ready,
        restarts: pod.restarts,
        node: pod.node.clone(),
    }
}
