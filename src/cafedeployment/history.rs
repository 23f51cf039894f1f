//! The release history, pure: which steps a decision took (comparing the
//! status before with the status it computed), who took each (the stamps the
//! API server wrote on the object, when a sign-off policy vouches for them),
//! appended to `status.history` in the same write as the decision itself —
//! an operator that dies between a step and its record never took the step.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::names::UPGRADE_CONFIRMED_ANNOTATION;
use crate::api::{
    BY_ANALYSIS, BY_OPERATOR, CafeDeployment, CafeDeploymentStatus, HistoryAction as A,
    HistoryEntry, STATUS_HISTORY_LIMIT, UNVERIFIED, stamp,
};

/// A ReleaseFreeze that selects the CafeDeployment, as the history tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreezeFact {
    pub name: String,
    pub reason: String,
    /// Who froze (`spec.requestedBy`, stamped by the API server).
    pub by: Option<String>,
    /// Who thawed it, once it is thawed.
    pub thawed_by: Option<Option<String>>,
}

/// What the history knows besides the two statuses.
pub struct Witness<'a> {
    pub cd: &'a CafeDeployment,
    /// A sign-off policy stamped a probe write to this object: its stamps
    /// are the API server's word.
    pub verified: bool,
    /// The freeze holding the release now, if any, and every freeze that
    /// selects it (to find who thawed one).
    pub holding: Option<&'a FreezeFact>,
    pub freezes: &'a [FreezeFact],
    /// The analysis confirmed the group that opened (its summary).
    pub analysis_confirmed: Option<String>,
}

/// One step before it is numbered.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub action: A,
    pub by: String,
    pub revision: String,
    pub group: Option<i32>,
    pub source: String,
    pub message: String,
}

impl Witness<'_> {
    /// Who the stamp `key` names, as far as it can be vouched for.
    fn stamped(&self, key: &str) -> String {
        if !self.verified {
            return UNVERIFIED.to_string();
        }
        self.cd
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| UNVERIFIED.to_string())
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.cd
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }
}

/// The last entry of `actions` in `history`.
fn last_of<'h>(history: &'h [HistoryEntry], actions: &[A]) -> Option<&'h HistoryEntry> {
    history.iter().rev().find(|e| actions.contains(&e.action))
}

/// The steps between `before` and `after` (the status the decision computed).
pub fn steps(
    before: &CafeDeploymentStatus,
    after: &CafeDeploymentStatus,
    w: &Witness,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let revision = after.update_revision.clone().unwrap_or_default();
    let step = |action, by: String, group: Option<i32>, source: &str, message: String| Step {
        action,
        by,
        revision: revision.clone(),
        group,
        source: source.to_string(),
        message,
    };
    let prev = before.release.as_ref();
    let next = after.release.as_ref();
    let new_template =
        after.update_revision.is_some() && before.update_revision != after.update_revision;
    let rollback = next.is_some_and(|r| r.rollback && r.revision == revision);
    if new_template && !rollback {
        let message = match &before.update_revision {
            None => "created".to_string(),
            Some(old) => format!("was {old}"),
        };
        steps.push(step(
            A::TemplateChanged,
            w.stamped(stamp::TEMPLATE),
            None,
            "",
            message,
        ));
    }
    // Groups opened by this decision: confirmed by a person or the
    // analysis after a wait, else opened by the plan.
    if let Some(next) = next.filter(|r| r.revision == revision) {
        let same = prev.filter(|p| p.revision == next.revision);
        let from = same.map_or(0, |p| p.opened).min(next.groups);
        let waited = same
            .and_then(|p| p.awaiting_confirmation.as_ref())
            .map(|a| a.group);
        // A revert to the stable revision records every group as open
        // (`opened` at its maximum): the steps stop at the plan's groups.
        for group in from.saturating_add(1)..=next.opened.min(next.groups) {
            if waited == Some(group) {
                steps.push(confirmed(w, group, &step));
            } else {
                let message = if group == 1 {
                    "the release began"
                } else {
                    "no confirmation needed"
                };
                steps.push(step(
                    A::GroupOpened,
                    BY_OPERATOR.into(),
                    Some(group),
                    "",
                    message.into(),
                ));
            }
        }
    }
    let completed = after.current_revision.is_some()
        && after.current_revision == after.update_revision
        && before.current_revision != after.current_revision
        && before.update_revision.is_some();
    if completed {
        steps.push(step(
            A::Completed,
            BY_OPERATOR.into(),
            None,
            "",
            "every pod runs it".into(),
        ));
    }
    pause_steps(before, w, &step, &mut steps);
    freeze_steps(before, w, &step, &mut steps);
    window_steps(before, after, w, &step, &mut steps);
    analysis_steps(before, w, &step, &mut steps);
    steps
}

type StepOf<'a> = dyn Fn(A, String, Option<i32>, &str, String) -> Step + 'a;

/// The confirmation that opened `group`: a person's "true" (stamped), or the
/// analysis, or the wait lifted by a spec change.
fn confirmed(w: &Witness, group: i32, step: &StepOf) -> Step {
    if w.annotation(UPGRADE_CONFIRMED_ANNOTATION) == Some("true") {
        let by = w.stamped(stamp::CONFIRMED);
        let author = w.stamped(stamp::TEMPLATE);
        let message = if w.annotation(stamp::CONFIRM_BYPASS) == Some("break-glass") && w.verified {
            format!("break-glass: {by} also changed the template (four-eyes bypassed)")
        } else if by == author && by != UNVERIFIED {
            format!("{by} also changed the template")
        } else {
            String::new()
        };
        return step(A::Confirmed, by, Some(group), "", message);
    }
    match &w.analysis_confirmed {
        Some(summary) => step(
            A::Confirmed,
            BY_ANALYSIS.into(),
            Some(group),
            "analysis",
            summary.clone(),
        ),
        None => step(
            A::GroupOpened,
            BY_OPERATOR.into(),
            Some(group),
            "",
            "the wait was lifted by a spec change (no confirmation needed any more)".into(),
        ),
    }
}

fn pause_steps(before: &CafeDeploymentStatus, w: &Witness, step: &StepOf, steps: &mut Vec<Step>) {
    let recorded =
        last_of(&before.history, &[A::Paused, A::Resumed]).is_some_and(|e| e.action == A::Paused);
    let paused = w.cd.spec.strategy.pause;
    if paused != recorded {
        let action = if paused { A::Paused } else { A::Resumed };
        steps.push(step(
            action,
            w.stamped(stamp::PAUSE),
            None,
            "",
            String::new(),
        ));
    }
}

fn freeze_steps(before: &CafeDeploymentStatus, w: &Witness, step: &StepOf, steps: &mut Vec<Step>) {
    let recorded = last_of(&before.history, &[A::Frozen, A::Thawed])
        .filter(|e| e.action == A::Frozen)
        .map(|e| e.source.trim_start_matches("ReleaseFreeze/").to_string());
    let holding = w.holding.map(|f| f.name.clone());
    if recorded == holding {
        return;
    }
    let by = |who: &Option<String>| match (w.verified, who) {
        (true, Some(who)) => who.clone(),
        _ => UNVERIFIED.to_string(),
    };
    if let Some(name) = &recorded {
        let thaw = w.freezes.iter().find(|f| &f.name == name);
        let (who, message) = match thaw.and_then(|f| f.thawed_by.clone()) {
            Some(who) => (by(&who), "thawed".to_string()),
            None if thaw.is_none() => (UNVERIFIED.to_string(), "deleted".to_string()),
            // Still in force, but another (older) freeze holds now.
            None => (
                BY_OPERATOR.to_string(),
                "another freeze holds the release".to_string(),
            ),
        };
        steps.push(step(
            A::Thawed,
            who,
            None,
            &format!("ReleaseFreeze/{name}"),
            message,
        ));
    }
    if let Some(f) = w.holding {
        steps.push(step(
            A::Frozen,
            by(&f.by),
            None,
            &format!("ReleaseFreeze/{}", f.name),
            f.reason.clone(),
        ));
    }
}

fn window_steps(
    before: &CafeDeploymentStatus,
    after: &CafeDeploymentStatus,
    w: &Witness,
    step: &StepOf,
    steps: &mut Vec<Step>,
) {
    let (was, now) = (before.window.as_ref(), after.window.as_ref());
    let occurrence = |s: &crate::api::WindowStatus| (s.name.clone(), s.since.clone());
    if was.map(occurrence) != now.map(occurrence) {
        if let Some(was) = was {
            let source = format!("window/{}", was.name);
            steps.push(step(
                A::WindowOpened,
                BY_OPERATOR.into(),
                None,
                &source,
                "the window ended".into(),
            ));
        }
        if let Some(now) = now {
            let message = format!("no group opens until {}", now.reopens_at.0);
            steps.push(step(
                A::WindowClosed,
                BY_OPERATOR.into(),
                None,
                &format!("window/{}", now.name),
                message,
            ));
        }
    }
    let overridden =
        |s: Option<&crate::api::WindowStatus>| s.and_then(|s| s.overridden_by.as_ref()).is_some();
    if let Some(now) = now.filter(|n| {
        overridden(Some(n)) && !(overridden(was) && was.map(occurrence) == Some(occurrence(n)))
    }) {
        steps.push(step(
            A::WindowOverride,
            w.stamped(stamp::WINDOW_OVERRIDE),
            None,
            &format!("window/{}", now.name),
            now.override_reason.clone().unwrap_or_default(),
        ));
    }
}

fn analysis_steps(
    before: &CafeDeploymentStatus,
    w: &Witness,
    step: &StepOf,
    steps: &mut Vec<Step>,
) {
    let digest =
        w.cd.spec
            .strategy
            .analysis
            .as_ref()
            .map(|a| format!("analysis/{}", digest(a)));
    let recorded = last_of(&before.history, &[A::AnalysisChanged]).map(|e| e.source.clone());
    let recorded = recorded.filter(|s| s != "analysis/none");
    if digest != recorded {
        let message = if digest.is_some() { "set" } else { "removed" };
        let source = digest.unwrap_or_else(|| "analysis/none".to_string());
        steps.push(step(
            A::AnalysisChanged,
            w.stamped(stamp::ANALYSIS),
            None,
            &source,
            message.into(),
        ));
    }
}

/// A short, stable digest of a value (FNV-1a over its JSON), to tell
/// changes of the analysis apart without keeping it.
fn digest(value: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:08x}", hash >> 32)
}

/// A rollback's step: requested by a person (`spec.rollbackTo`), or by the
/// analysis's verdict.
pub fn rolled_back(cd: &CafeDeployment, verified: bool, revision: &str, why: &str) -> Step {
    let witness = Witness {
        cd,
        verified,
        holding: None,
        freezes: &[],
        analysis_confirmed: None,
    };
    let (by, source) = if cd.spec.rollback_to.is_some() {
        (witness.stamped(stamp::ROLLBACK), "")
    } else {
        (BY_ANALYSIS.to_string(), "analysis")
    };
    Step {
        action: A::RolledBack,
        by,
        revision: revision.to_string(),
        group: None,
        source: source.to_string(),
        message: why.to_string(),
    }
}

/// `history` with `steps` appended, numbered on, at most
/// `STATUS_HISTORY_LIMIT` entries (the oldest drop off).
pub fn append(history: &[HistoryEntry], steps: Vec<Step>, now: &Time) -> Vec<HistoryEntry> {
    let mut seq = history.last().map_or(0, |e| e.seq);
    let mut all = history.to_vec();
    all.extend(steps.into_iter().map(|s| {
        seq += 1;
        HistoryEntry {
            seq,
            action: s.action,
            by: s.by,
            at: now.clone(),
            revision: s.revision,
            group: s.group,
            source: s.source,
            message: s.message,
        }
    }));
    let excess = all.len().saturating_sub(STATUS_HISTORY_LIMIT);
    all.drain(..excess);
    all
}

/// Whether `after` records steps beyond `before` (before writing them, the
/// shell makes sure it knows whether the stamps can be vouched for).
pub fn records_steps(before: &CafeDeploymentStatus, after: &CafeDeploymentStatus) -> bool {
    let last = before.history.last().map_or(0, |e| e.seq);
    after.history.last().is_some_and(|e| e.seq > last)
}

/// The entries of `revision` in `history` that `recorded` (what its
/// ControllerRevision holds) lacks: those numbered after its last.
pub fn unrecorded<'h>(
    history: &'h [HistoryEntry],
    revision: &str,
    recorded: &[HistoryEntry],
) -> Vec<&'h HistoryEntry> {
    let last = recorded.last().map_or(0, |e| e.seq);
    history
        .iter()
        .filter(|e| e.revision == revision && e.seq > last)
        .collect()
}

/// The entries by revision (for the revisions' own records).
pub fn by_revision(history: &[HistoryEntry]) -> BTreeMap<&str, Vec<&HistoryEntry>> {
    let mut map: BTreeMap<&str, Vec<&HistoryEntry>> = BTreeMap::new();
    for e in history {
        map.entry(e.revision.as_str()).or_default().push(e);
    }
    map
}

#[cfg(test)]
mod tests;
