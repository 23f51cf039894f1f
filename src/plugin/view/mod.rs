//! What `kubectl cafe` draws, pure: a release's header and its tree
//! (cell -> InPlaceSet -> pods), the one-line summary of `list`, the next
//! action, and the verdict that `get -w` and `status` share.
//!
//! `tree` draws `get`'s header and tree; `pod` judges a pod's place in its
//! lifecycle (shared with the console).

mod pod;
mod tree;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::api::names::UPGRADE_CONFIRMED_ANNOTATION;
use crate::api::pod::Pod;
use crate::api::{
    CafeDeployment, CafeDeploymentStatus, HistoryAction, InPlaceSet, Phase, UNVERIFIED, UpgradeType,
};

pub use pod::{Lifecycle, lifecycle, pod_state, registered, restarts};
pub use tree::{frame, header, tree};

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
