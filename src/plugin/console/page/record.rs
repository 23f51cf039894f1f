//! What the page tells of a release's record: what holds it or went wrong
//! (banners), its analysis, and its history's steps.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;

use super::{Analysis, Banner, Measurement, Step};
use crate::api::names::condition;
use crate::api::{CafeDeployment, Phase, ReleaseFreeze, UNVERIFIED};

pub(super) fn stalled_message(cd: &CafeDeployment) -> Option<String> {
    cd.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == condition::STALLED && c.status == "True")
        .map(|c| c.message.clone())
}

pub(super) fn who(by: &str) -> String {
    if by == UNVERIFIED || by.is_empty() {
        "an unverified user".to_string()
    } else {
        by.to_string()
    }
}

/// Freezes holding the release, a deny window, a stall, an unverified sign-off.
pub(super) fn banners(cd: &CafeDeployment, freezes: &[Arc<ReleaseFreeze>]) -> Vec<Banner> {
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

pub(super) fn analysis(cd: &CafeDeployment) -> Option<Analysis> {
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

pub(super) fn step(e: &crate::api::HistoryEntry) -> Step {
    Step {
        at: e.at.0.to_string(),
        action: format!("{:?}", e.action),
        by: who(&e.by),
        revision: e.revision.clone(),
        group: e.group,
        message: e.message.clone(),
    }
}
