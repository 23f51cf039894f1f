//! What the console's page shows, pure: the watched objects in, one JSON
//! document per release and one for the whole cluster out (the page's
//! contract is in `assets/app.js`). Every word a button or dialog says is
//! decided here, where it is unit-tested, not in the script.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kube::ResourceExt;
use serde::Serialize;

use crate::api::names::{
    CELL_LABEL, REVISION_LABEL, TRAFFIC_GATE, UPGRADE_CONFIRMED_ANNOTATION, condition,
};
use crate::api::pod::Pod;
use crate::api::{
    CafeDeployment, InPlaceSet, MemberCluster, Phase, ReleaseFreeze, UNVERIFIED, UpgradeType,
};
use crate::plugin::view;
use crate::release::plan::Plan;
use crate::traffic::declared_components;

/// Everything the console watches, at one moment.
pub struct World<'a> {
    pub cds: &'a [Arc<CafeDeployment>],
    pub sets: &'a [Arc<SetDigest>],
    pub pods: &'a [Arc<PodDigest>],
    pub freezes: &'a [Arc<ReleaseFreeze>],
    pub members: &'a [Arc<MemberCluster>],
    pub rights: &'a Rights,
}

/// A pod as the page needs it: the console keeps 10,000 of these, not pods
/// (a pod as read is five to six times the size).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodDigest {
    pub name: String,
    /// The InPlaceSet that owns it.
    pub owner: String,
    pub revision: Option<String>,
    pub deleting: bool,
    /// The traffic gate's status and reason.
    pub gate: Option<(String, String)>,
    pub declared: Vec<String>,
    pub registered: Vec<String>,
    pub ready: bool,
    pub restarts: i32,
    pub node: Option<String>,
}

impl PodDigest {
    pub fn of(pod: &Pod) -> PodDigest {
        let condition = |type_: &str| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        };
        PodDigest {
            name: pod.name_any(),
            owner: pod
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone())
                .unwrap_or_default(),
            revision: pod.labels().get(REVISION_LABEL).cloned(),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            gate: condition(TRAFFIC_GATE)
                .map(|g| (g.status.clone(), g.reason.clone().unwrap_or_default())),
            declared: declared_components(pod),
            registered: view::registered(pod),
            ready: condition("Ready").is_some_and(|c| c.status == "True"),
            restarts: view::restarts(pod),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        }
    }
}

/// An InPlaceSet as the page needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetDigest {
    pub uid: String,
    pub cell: Option<String>,
    /// Its owners' uids (its CafeDeployment's).
    pub owners: Vec<String>,
    pub update_revision: Option<String>,
}

impl SetDigest {
    pub fn of(set: &InPlaceSet) -> SetDigest {
        SetDigest {
            uid: set.metadata.uid.clone().unwrap_or_default(),
            cell: set.labels().get(CELL_LABEL).cloned(),
            owners: set
                .owner_references()
                .iter()
                .map(|o| o.uid.clone())
                .collect(),
            update_revision: set.status.as_ref().and_then(|s| s.update_revision.clone()),
        }
    }
}

/// What the person may do, as the API server answered (see `rights`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    pub who: Option<String>,
    pub read_only: bool,
    /// Namespace -> may patch CafeDeployments there.
    pub operate: BTreeMap<String, bool>,
    pub freeze: bool,
    pub thaw: bool,
}

impl Rights {
    fn you(&self) -> String {
        self.who
            .as_deref()
            .map_or("you".to_string(), |w| format!("you ({w})"))
    }

    /// Why an action is not offered, or None when it is.
    fn refusal(&self, allowed: bool, what: &str) -> Option<String> {
        if self.read_only {
            Some("read-only console (--read-only)".to_string())
        } else if !allowed {
            Some(format!("{} may not {what}", self.you()))
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub verb: &'static str,
    pub label: String,
    pub enabled: bool,
    pub why: Option<String>,
    pub explain: String,
    pub danger: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub phase: Option<String>,
    pub icon: &'static str,
    pub message: String,
    pub next: String,
    pub strategy: String,
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub revisions: Revisions,
    pub group: GroupCount,
    pub signoff: Option<String>,
    pub banners: Vec<Banner>,
    pub analysis: Option<Analysis>,
    pub history: Vec<Step>,
    pub groups: Vec<GroupHead>,
    pub cells: Vec<Cell>,
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Revisions {
    pub current: Option<String>,
    pub update: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupCount {
    pub done: i32,
    pub of: i32,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Banner {
    pub kind: &'static str,
    pub text: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Analysis {
    pub phase: String,
    pub message: String,
    pub measurements: Vec<Measurement>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Measurement {
    pub query: String,
    pub value: String,
    pub condition: String,
    pub verdict: String,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Step {
    pub at: String,
    pub action: String,
    pub by: String,
    pub revision: String,
    pub group: Option<i32>,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupHead {
    pub group: usize,
    pub label: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    pub name: String,
    pub cluster: Option<String>,
    pub reachability: Option<String>,
    pub last_contact: Option<String>,
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub groups: Vec<CellGroup>,
    pub pods: Vec<PodRow>,
    pub pods_note: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CellGroup {
    pub group: usize,
    /// Pods this group moves in this cell (None: the plan is not known here).
    pub pods: Option<usize>,
    pub state: &'static str,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PodRow {
    pub name: String,
    pub revision: &'static str,
    pub state: &'static str,
    pub holds: Vec<String>,
    pub ready: bool,
    pub restarts: i32,
    pub node: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Global {
    pub freezes: Vec<Freeze>,
    pub members: Vec<Member>,
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Freeze {
    pub name: String,
    pub reason: String,
    pub by: String,
    pub since: String,
    pub scope: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub name: String,
    pub state: String,
    pub message: String,
    pub last_contact: Option<String>,
}

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

fn pod_row(pod: &PodDigest, update: Option<&str>) -> PodRow {
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

fn stalled_message(cd: &CafeDeployment) -> Option<String> {
    cd.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == condition::STALLED && c.status == "True")
        .map(|c| c.message.clone())
}

fn who(by: &str) -> String {
    if by == UNVERIFIED || by.is_empty() {
        "an unverified user".to_string()
    } else {
        by.to_string()
    }
}

/// Freezes holding the release, a deny window, a stall, an unverified sign-off.
fn banners(cd: &CafeDeployment, freezes: &[Arc<ReleaseFreeze>]) -> Vec<Banner> {
    let namespace = cd.namespace().unwrap_or_default();
    let mut out: Vec<Banner> = freezes
        .iter()
        .filter(|f| f.holds(&namespace, cd.labels()))
        .map(|f| Banner {
            kind: "freeze",
            text: format!(
                "❄ Frozen by ReleaseFreeze {} (by {}): {}",
                f.name_any(),
                who(f.spec.requested_by.as_deref().unwrap_or_default()),
                f.spec.reason
            ),
        })
        .collect();
    let status = cd.status.clone().unwrap_or_default();
    if let Some(w) = &status.window {
        out.push(Banner {
            kind: "window",
            text: match &w.overridden_by {
                Some(by) => format!(
                    "⚠ Deny window {} (until {}) overridden by {by}: {}",
                    w.name,
                    w.reopens_at.0,
                    w.override_reason.as_deref().unwrap_or_default()
                ),
                None => format!(
                    "⊘ Deny window {} since {}: no group opens until {}",
                    w.name, w.since.0, w.reopens_at.0
                ),
            },
        });
    }
    if status.phase == Some(Phase::Stalled) {
        out.push(Banner {
            kind: "stalled",
            text: format!(
                "✖ Stalled: {}",
                stalled_message(cd).unwrap_or_else(|| "see the conditions".to_string())
            ),
        });
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::SIGNOFF_VERIFIED && c.status == "False")
    {
        out.push(Banner {
            kind: "info",
            text: format!("ⓘ Sign-off not verified: {}", c.message),
        });
    }
    out
}

fn analysis(cd: &CafeDeployment) -> Option<Analysis> {
    let record = cd.status.as_ref()?.release.as_ref()?.analysis.as_ref()?;
    let conditions: BTreeMap<&str, String> = cd
        .spec
        .strategy
        .analysis
        .iter()
        .flat_map(|a| &a.queries)
        .map(|q| {
            let text = [
                q.success_condition
                    .as_ref()
                    .map(|c| format!("success: {c}")),
                q.failure_condition
                    .as_ref()
                    .map(|c| format!("failure: {c}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
            (q.name.as_str(), text)
        })
        .collect();
    Some(Analysis {
        phase: format!("{:?}", record.phase),
        message: record.message.clone(),
        measurements: record
            .measurements
            .iter()
            .rev()
            .take(20)
            .map(|m| Measurement {
                query: m.query.clone(),
                value: m.value.clone(),
                condition: conditions
                    .get(m.query.as_str())
                    .cloned()
                    .unwrap_or_default(),
                verdict: format!("{:?}", m.phase),
                at: m.at.0.to_string(),
            })
            .collect(),
    })
}

fn step(e: &crate::api::HistoryEntry) -> Step {
    Step {
        at: e.at.0.to_string(),
        action: format!("{:?}", e.action),
        by: who(&e.by),
        revision: e.revision.clone(),
        group: e.group,
        message: e.message.clone(),
    }
}

/// What the person can do with this release now, and what each does.
fn actions(cd: &CafeDeployment, plan: Option<&Plan>, rights: &Rights) -> Vec<Action> {
    let name = cd.name_any();
    let namespace = cd.namespace().unwrap_or_default();
    let allowed = rights.operate.get(&namespace).copied().unwrap_or(false);
    let why = rights.refusal(
        allowed,
        &format!("patch cafedeployments in namespace {namespace}"),
    );
    let status = cd.status.clone().unwrap_or_default();
    let release = status.release.clone().unwrap_or_default();
    let update = status.update_revision.clone().unwrap_or_default();
    let offer = |verb, label: String, explain: String, danger| Action {
        verb,
        label,
        enabled: why.is_none(),
        why: why.clone(),
        explain,
        danger,
        freeze: None,
    };
    let mut out = Vec::new();
    let confirmed = cd
        .annotations()
        .get(UPGRADE_CONFIRMED_ANNOTATION)
        .map(String::as_str)
        == Some("true");
    if status.phase == Some(Phase::WaitingForConfirm) && !confirmed {
        let next = release
            .awaiting_confirmation
            .as_ref()
            .map_or(release.group + 1, |w| w.group);
        out.push(offer(
            "confirm",
            format!("Confirm group {next} of {}", release.groups),
            confirm_explain(cd, plan, next, &update),
            false,
        ));
    }
    let in_progress = status.phase.is_some_and(|p| p != Phase::Healthy);
    if cd.spec.strategy.pause {
        out.push(offer(
            "resume",
            "Resume".to_string(),
            format!(
                "{name} goes on where it was paused: the next group opens when its turn comes."
            ),
            false,
        ));
    } else if in_progress {
        out.push(offer(
            "pause",
            "Pause".to_string(),
            format!(
                "{name} pauses: pods already moving finish, no new pod starts moving and no \
                 group opens until it is resumed."
            ),
            false,
        ));
    }
    out.push(offer(
        "rollback",
        "Roll back…".to_string(),
        format!(
            "{name} goes back to the revision you choose, in every cell ({} pods), without Beta \
             or confirmation waits; each pod is drained from its traffic components before it \
             is updated.",
            cd.spec.replicas
        ),
        true,
    ));
    out
}

fn confirm_explain(cd: &CafeDeployment, plan: Option<&Plan>, group: i32, update: &str) -> String {
    let cells = &cd
        .status
        .as_ref()
        .map(|s| s.cells.clone())
        .unwrap_or_default();
    let moves = plan
        .map(|p| p.group(usize::try_from(group).unwrap_or(0)))
        .unwrap_or_default();
    let parts: Vec<String> = cells
        .iter()
        .zip(&moves)
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{} {n} pod{}", c.name, if *n == 1 { "" } else { "s" }))
        .collect();
    let total: usize = moves.iter().sum();
    if parts.is_empty() {
        format!(
            "Group {group} starts: its pods move to {update}, each drained from its traffic components first."
        )
    } else {
        format!(
            "Group {group} starts: {} ({total} pod{}) move to {update}, each drained from its \
             traffic components first.",
            parts.join(", "),
            if total == 1 { "" } else { "s" }
        )
    }
}

/// Freezes in force, member clusters, and the cluster-wide actions.
pub fn global(world: &World) -> Global {
    let rights = world.rights;
    let mut freezes: Vec<&Arc<ReleaseFreeze>> = world
        .freezes
        .iter()
        .filter(|f| f.spec.thawed.is_none())
        .collect();
    freezes.sort_by_key(|f| f.name_any());
    let thaw_why = rights.refusal(rights.thaw, "patch releasefreezes (thaw)");
    let mut actions = vec![Action {
        verb: "freeze",
        label: "Freeze releases…".to_string(),
        enabled: rights
            .refusal(rights.freeze, "create releasefreezes")
            .is_none(),
        why: rights.refusal(rights.freeze, "create releasefreezes"),
        explain: "A ReleaseFreeze stops every release in progress in what it selects, in every \
                  cluster: no group opens and no pod starts moving until it is thawed. It is \
                  recorded with your name and the reason."
            .to_string(),
        danger: true,
        freeze: None,
    }];
    actions.extend(freezes.iter().map(|f| Action {
        verb: "thaw",
        label: format!("Thaw {}", f.name_any()),
        enabled: thaw_why.is_none(),
        why: thaw_why.clone(),
        explain: format!(
            "ReleaseFreeze {} ends: the releases it holds go on. The record stays, with your name \
             as who thawed it.",
            f.name_any()
        ),
        danger: false,
        freeze: Some(f.name_any()),
    }));
    let mut members: Vec<Member> = world
        .members
        .iter()
        .map(|m| {
            let ready = m
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == condition::READY));
            Member {
                name: m.name_any(),
                state: match ready.map(|c| c.status.as_str()) {
                    Some("True") => "Reachable".to_string(),
                    Some("False") => "Unreachable".to_string(),
                    _ => "Unknown".to_string(),
                },
                message: ready.map(|c| c.message.clone()).unwrap_or_default(),
                last_contact: m
                    .status
                    .as_ref()
                    .and_then(|s| s.last_contact.as_ref())
                    .map(|t| t.0.to_string()),
            }
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Global {
        freezes: freezes
            .iter()
            .map(|f| Freeze {
                name: f.name_any(),
                reason: f.spec.reason.clone(),
                by: who(f.spec.requested_by.as_deref().unwrap_or_default()),
                since: f
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
                scope: freeze_scope(f),
            })
            .collect(),
        members,
        actions,
    }
}

fn freeze_scope(f: &ReleaseFreeze) -> String {
    let mut parts = Vec::new();
    if !f.spec.namespaces.is_empty() {
        parts.push(format!("namespaces {}", f.spec.namespaces.join(",")));
    }
    if let Some(s) = &f.spec.selector {
        parts.push(format!("labels {}", crate::api::selector_string(s)));
    }
    if parts.is_empty() {
        "everything".to_string()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests;
