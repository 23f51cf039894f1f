//! What a group's metric analysis means for the release, pure: which
//! analysis record stands, whether its verdict confirms the next group, and
//! which action a verdict asks for (once: the action taken is recorded, so a
//! person who resumes or confirms is never overruled by the same verdict).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{Analysis, AnalysisPhase, AnalysisStatus, Phase, SuccessAction, VerdictAction};
use crate::release::analysis as verdicts;
use crate::release::progress;

/// The analysis on record for `group` of `revision`, if that is the one.
pub fn of<'a>(
    previous: Option<&'a AnalysisStatus>,
    revision: &str,
    group: usize,
) -> Option<&'a AnalysisStatus> {
    previous.filter(|a| a.revision == revision && usize::try_from(a.group).ok() == Some(group))
}

/// The analysis passed for the group before the awaited one, and its
/// success starts the next group by itself.
pub fn confirms(
    spec: Option<&Analysis>,
    previous: Option<&AnalysisStatus>,
    revision: &str,
    awaiting: Option<usize>,
) -> bool {
    let Some(spec) = spec else { return false };
    let Some(next) = awaiting else { return false };
    spec.on_success == SuccessAction::Continue
        && of(previous, revision, next.saturating_sub(1))
            .is_some_and(|a| a.phase == AnalysisPhase::Successful)
}

/// What the verdict asks the shell to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Set `spec.strategy.pause: true`.
    Pause,
    /// Restore the stable revision (its name).
    Rollback(String),
}

/// The analysis as the release shows it and acts on it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gate {
    /// The record to keep in status (`release.analysis`).
    pub record: Option<AnalysisStatus>,
    /// The phase and message while the analysis holds the release.
    pub shown: Option<(Phase, String)>,
    pub act: Option<Act>,
}

/// Everything the gate is decided from.
pub struct Input<'a> {
    pub spec: Option<&'a Analysis>,
    pub previous: Option<&'a AnalysisStatus>,
    pub progress: &'a progress::Phase,
    /// The wait on record after this decision.
    pub awaiting: Option<usize>,
    pub groups: usize,
    pub revision: &'a str,
    pub stable: Option<&'a str>,
    /// The revision the release record describes changed this round to a
    /// forward release (not a rollback): the last record is history.
    pub new_release: bool,
    pub paused: bool,
    pub name: &'a str,
    pub now: &'a Time,
}

/// The gate of this decision: while the release waits for a group's
/// verdict, that group's analysis (begun now if it has no record) and what
/// it shows and asks for; else the last record, kept as history.
pub fn gate(input: &Input) -> Gate {
    let Some(spec) = input.spec else {
        return kept(input);
    };
    let next = match (input.progress, input.awaiting) {
        (progress::Phase::WaitingForConfirm(next), _) => *next,
        (progress::Phase::Paused, Some(next)) => next,
        _ => return kept(input),
    };
    let group = next - 1;
    let record = match of(input.previous, input.revision, group) {
        Some(r) => r.clone(),
        // Paused before the group's analysis began: it begins on resume.
        None if input.paused => return kept(input),
        None => verdicts::start(spec, input.revision, group, input.now),
    };
    let words = Words::new(input, group, next);
    let of_groups = &words.of_groups;
    let (action, verdict) = match record.phase {
        AnalysisPhase::Running => {
            return Gate {
                shown: Some((
                    Phase::Analyzing,
                    format!(
                        "{of_groups} done; analysing it: {}; on success it confirms group {next}",
                        record.message
                    ),
                )),
                record: Some(record),
                act: None,
            };
        }
        AnalysisPhase::Successful => {
            // Continue confirmed it already (the group opened); only a
            // person's confirmation is left.
            return Gate {
                shown: Some((
                    Phase::WaitingForConfirm,
                    format!(
                        "{of_groups} done; analysis passed ({}); confirm group {next}: {}",
                        record.message, words.confirm
                    ),
                )),
                record: Some(record),
                act: None,
            };
        }
        AnalysisPhase::Failed => (spec.on_failure, "failed"),
        AnalysisPhase::Inconclusive => (spec.on_inconclusive, "was inconclusive"),
        AnalysisPhase::Error => (spec.on_error, "could not measure"),
    };
    verdict_gate(input, record, (action, verdict), &words)
}

/// No wait for a verdict: the last record stays as history. One still
/// running was overtaken (a person confirmed or rolled back): it says so.
fn kept(input: &Input) -> Gate {
    Gate {
        record: input
            .previous
            .filter(|_| !input.new_release)
            .cloned()
            .map(|mut r| {
                if r.phase == AnalysisPhase::Running && r.action.is_none() {
                    r.action = Some("Superseded".to_string());
                    r.message = format!(
                        "{}; superseded before its verdict (a person confirmed or rolled back)",
                        r.message
                    );
                }
                r
            }),
        ..Gate::default()
    }
}

/// The words a gate's messages share: the group analysed, the group it
/// confirms, and the commands to confirm it and to roll back.
struct Words {
    of_groups: String,
    next: usize,
    confirm: String,
    rollback: String,
}

impl Words {
    fn new(input: &Input, group: usize, next: usize) -> Self {
        let name = input.name;
        Self {
            of_groups: format!("group {group} of {}", input.groups),
            next,
            confirm: format!(
                "kubectl annotate cafedeployment {name} cafe.sofastack.io/upgrade-confirmed=true --overwrite"
            ),
            rollback: format!(
                "kubectl patch cafedeployment {name} --type merge -p '{{\"spec\":{{\"rollbackTo\":{{\"revision\":0}}}}}}'"
            ),
        }
    }
}

/// A verdict (`verdict`: how its message says it) and the `action` its spec
/// gives it: what the release shows, and the action to take once (the
/// action taken is recorded, so a person who resumes or confirms is never
/// overruled by the same verdict).
fn verdict_gate(
    input: &Input,
    mut record: AnalysisStatus,
    (action, verdict): (VerdictAction, &str),
    words: &Words,
) -> Gate {
    let Words {
        of_groups,
        next,
        confirm,
        rollback,
    } = words;
    let taken = record.action.is_some();
    let (action, fallback) = match (action, input.stable) {
        (VerdictAction::Rollback, None) => (
            VerdictAction::WaitForConfirm,
            " (nothing to roll back to: this is the first creation)",
        ),
        (a, _) => (a, ""),
    };
    let verdict_text = format!("analysis of {of_groups} {verdict}: {}", record.message);
    let (shown, act) = match action {
        VerdictAction::WaitForConfirm => (
            (
                Phase::WaitingForConfirm,
                format!(
                    "{verdict_text}{fallback}; a person decides: confirm group {next} anyway with \
                     {confirm}, or roll back with {rollback}"
                ),
            ),
            None,
        ),
        // Paused once; a person who resumed decides as after WaitForConfirm.
        VerdictAction::Pause if taken && !input.paused => (
            (
                Phase::WaitingForConfirm,
                format!(
                    "{verdict_text}; resumed: confirm group {next} anyway with {confirm}, or \
                     roll back with {rollback}"
                ),
            ),
            None,
        ),
        VerdictAction::Pause => (
            (
                Phase::Paused,
                format!(
                    "{verdict_text}; paused. Roll back with {rollback}, or resume and confirm \
                     group {next} anyway"
                ),
            ),
            (!taken && !input.paused).then_some(Act::Pause),
        ),
        VerdictAction::Rollback => (
            (Phase::RollingBack, format!("{verdict_text}; rolling back")),
            (!taken).then(|| Act::Rollback(input.stable.unwrap_or_default().to_string())),
        ),
    };
    if !taken {
        record.action = Some(format!("{action:?}"));
    }
    Gate {
        record: Some(record),
        shown: Some(shown),
        act,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(on_failure: &str) -> Analysis {
        serde_json::from_value(json!({
            "prometheus": {"address": "http://127.0.0.1:9090"},
            "queries": [{"name": "errors", "query": "x", "successCondition": "result < 1"}],
            "onFailure": on_failure
        }))
        .expect("analysis")
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_000).expect("time"))
    }

    fn input<'a>(
        spec: &'a Analysis,
        previous: Option<&'a AnalysisStatus>,
        phase: &'a progress::Phase,
        now: &'a Time,
    ) -> Input<'a> {
        Input {
            spec: Some(spec),
            previous,
            progress: phase,
            awaiting: Some(2),
            groups: 3,
            revision: "demo-2",
            stable: Some("demo-1"),
            new_release: false,
            paused: false,
            name: "demo",
            now,
        }
    }

    fn concluded(spec: &Analysis, phase: AnalysisPhase) -> AnalysisStatus {
        AnalysisStatus {
            phase,
            message: "errors failed".into(),
            ..verdicts::start(spec, "demo-2", 1, &now())
        }
    }

    #[test]
    fn a_wait_starts_the_analysis_of_the_group_just_released() {
        let spec = spec("Rollback");
        let waiting = progress::Phase::WaitingForConfirm(2);
        let now = now();
        let g = gate(&input(&spec, None, &waiting, &now));
        let record = g.record.expect("started");
        assert_eq!((record.revision.as_str(), record.group), ("demo-2", 1));
        assert_eq!(g.shown.map(|s| s.0), Some(Phase::Analyzing));
        assert_eq!(g.act, None);
    }

    #[test]
    fn a_pass_confirms_only_its_own_group_of_its_own_revision() {
        let spec = spec("Rollback");
        let passed = concluded(&spec, AnalysisPhase::Successful);
        assert!(confirms(Some(&spec), Some(&passed), "demo-2", Some(2)));
        assert!(!confirms(Some(&spec), Some(&passed), "demo-2", Some(3)));
        assert!(!confirms(Some(&spec), Some(&passed), "demo-3", Some(2)));
        let person = Analysis {
            on_success: SuccessAction::WaitForConfirm,
            ..spec.clone()
        };
        assert!(!confirms(Some(&person), Some(&passed), "demo-2", Some(2)));
    }

    #[test]
    fn a_failure_rolls_back_once_to_the_stable_revision() {
        let spec = spec("Rollback");
        let failed = concluded(&spec, AnalysisPhase::Failed);
        let waiting = progress::Phase::WaitingForConfirm(2);
        let now = now();
        let g = gate(&input(&spec, Some(&failed), &waiting, &now));
        assert_eq!(g.act, Some(Act::Rollback("demo-1".into())));
        let record = g.record.expect("kept");
        assert_eq!(record.action.as_deref(), Some("Rollback"));
        let (phase, message) = g.shown.expect("shown");
        assert_eq!(phase, Phase::RollingBack);
        assert!(message.contains("errors failed"), "{message}");
        // The action is on record: the same verdict never acts again.
        let again = gate(&input(&spec, Some(&record), &waiting, &now));
        assert_eq!(again.act, None);
    }

    #[test]
    fn a_pause_is_asked_once_and_a_resume_is_not_overruled() {
        let spec = spec("Pause");
        let failed = concluded(&spec, AnalysisPhase::Failed);
        let waiting = progress::Phase::WaitingForConfirm(2);
        let now = now();
        let g = gate(&input(&spec, Some(&failed), &waiting, &now));
        assert_eq!(g.act, Some(Act::Pause));
        let record = g.record.expect("kept");
        let resumed = gate(&input(&spec, Some(&record), &waiting, &now));
        assert_eq!(resumed.act, None, "resumed by a person: not paused again");
        assert!(
            resumed
                .shown
                .expect("shown")
                .1
                .contains("confirm group 2 anyway")
        );
    }

    #[test]
    fn inconclusive_waits_for_a_person_and_a_first_creation_never_rolls_back() {
        let spec = spec("Rollback");
        let waiting = progress::Phase::WaitingForConfirm(2);
        let now = now();
        let unsure = concluded(&spec, AnalysisPhase::Inconclusive);
        let g = gate(&input(&spec, Some(&unsure), &waiting, &now));
        assert_eq!(g.act, None);
        assert_eq!(g.shown.expect("shown").0, Phase::WaitingForConfirm);
        let failed = concluded(&spec, AnalysisPhase::Failed);
        let creating = Input {
            stable: None,
            ..input(&spec, Some(&failed), &waiting, &now)
        };
        let g = gate(&creating);
        assert_eq!(g.act, None);
        assert!(
            g.shown
                .expect("shown")
                .1
                .contains("nothing to roll back to")
        );
    }

    #[test]
    fn without_a_wait_the_last_record_stays_until_a_new_release() {
        let spec = spec("Rollback");
        let failed = concluded(&spec, AnalysisPhase::Failed);
        let moving = progress::Phase::Progressing;
        let now = now();
        let g = gate(&input(&spec, Some(&failed), &moving, &now));
        assert_eq!(g.record.as_ref(), Some(&failed));
        let fresh = Input {
            new_release: true,
            ..input(&spec, Some(&failed), &moving, &now)
        };
        assert_eq!(gate(&fresh).record, None);
    }

    #[test]
    fn a_running_analysis_overtaken_by_a_person_says_so_and_stays() {
        let spec = spec("Rollback");
        let running = verdicts::start(&spec, "demo-2", 1, &now());
        let moving = progress::Phase::Progressing;
        let now = now();
        let g = gate(&input(&spec, Some(&running), &moving, &now));
        let record = g.record.expect("kept");
        assert_eq!(record.action.as_deref(), Some("Superseded"));
        assert!(record.message.contains("superseded"), "{}", record.message);
        assert_eq!(g.act, None);
        // Paused mid-analysis: the analysis is held, not superseded.
        let paused = progress::Phase::Paused;
        let held = gate(&Input {
            paused: true,
            ..input(&spec, Some(&running), &paused, &now)
        });
        assert_eq!(held.record.and_then(|r| r.action), None);
        assert_eq!(held.shown.map(|s| s.0), Some(Phase::Analyzing));
    }
}
