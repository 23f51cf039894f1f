//! The buttons: what the person can do now, whether they may, and what
//! each does, in words.

use std::sync::Arc;

use kube::ResourceExt;

use super::{Action, Rights};
use crate::api::names::UPGRADE_CONFIRMED_ANNOTATION;
use crate::api::{CafeDeployment, Phase, ReleaseFreeze};
use crate::release::plan::Plan;

/// What the person can do with this release now, and what each does.
pub(super) fn actions(cd: &CafeDeployment, plan: Option<&Plan>, rights: &Rights) -> Vec<Action> {
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

/// The cluster-wide actions: freeze, and thaw each freeze in force.
pub(super) fn cluster_actions(rights: &Rights, freezes: &[&Arc<ReleaseFreeze>]) -> Vec<Action> {
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
    actions
}
