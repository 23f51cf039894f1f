//! Who did what, pure: who may end a wait for confirmation (a person where
//! the sign-off rules ask for one, else also a passed analysis), whether the
//! API server vouches for who did each step (the `SignoffVerified`
//! condition), and the steps of the release history with who took each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::analysis as gate;
use super::history::{self, Witness};
use super::model::Observation;
use crate::api::names::{UPGRADE_CONFIRMED_ANNOTATION, condition};
use crate::api::{Analysis, AnalysisStatus, CafeDeployment, CafeDeploymentStatus, UpgradeType};
use crate::release::baseline::Record;

/// Who confirms the awaited group this time.
pub(super) struct Confirmation {
    /// A person's "true", or a passed analysis: the group may open.
    pub confirmed: bool,
    /// The analysis alone confirmed it: its verdict, as the history records
    /// a confirmation by it.
    pub by_analysis: Option<String>,
}

impl Confirmation {
    /// A person's "true" always confirms; a passed analysis does on its own
    /// unless it asks for a person too, or the sign-off rules want a person
    /// to confirm the Beta group (the wait for group 2 of a Beta release).
    pub fn of(
        cd: &CafeDeployment,
        analysis: Option<&Analysis>,
        previous: Option<&AnalysisStatus>,
        update: &str,
        record: &Record,
    ) -> Self {
        let by_person = cd
            .annotations()
            .get(UPGRADE_CONFIRMED_ANNOTATION)
            .map(String::as_str)
            == Some("true");
        let by_analysis = gate::confirms(analysis, previous, update, record.awaiting)
            && !person_confirms(cd, record);
        Self {
            confirmed: by_person || by_analysis,
            by_analysis: (by_analysis && !by_person)
                .then(|| previous.map(confirmed_by_analysis))
                .flatten(),
        }
    }
}

/// The status's deny window and `SignoffVerified` condition, and its history
/// with the steps this decision took (`status` is what it computed).
pub(super) fn record_steps(
    obs: &Observation,
    previous: &CafeDeploymentStatus,
    status: &mut CafeDeploymentStatus,
    analysis_confirmed: Option<String>,
) {
    let cd = obs.cd;
    status.window = obs.window.cloned();
    status
        .conditions
        .push(signoff_condition(previous, obs.verified, cd, obs.now));
    let steps = history::steps(
        previous,
        status,
        &Witness {
            cd,
            verified: obs.verified,
            holding: obs
                .frozen
                .and_then(|f| obs.freezes.iter().find(|x| x.name == f.name)),
            freezes: obs.freezes,
            analysis_confirmed,
        },
    );
    status.history = history::append(&previous.history, steps, obs.now);
}

/// Whether the API server vouches for who did each step, and if not, why
/// and what to install.
fn signoff_condition(
    previous: &CafeDeploymentStatus,
    verified: bool,
    cd: &CafeDeployment,
    now: &Time,
) -> Condition {
    let (reason, message) = if verified {
        (
            "PoliciesInForce",
            "the API server stamps who changes, confirms, pauses, resumes and rolls back this \
             release, and refuses stamps written by hand (the sign-off admission policies)"
                .to_string(),
        )
    } else {
        (
            "PoliciesNotInForce",
            "no sign-off admission policy stamped a dry-run write to this CafeDeployment: who did \
             each step cannot be vouched for, and the history reads \"unverified\". Install the \
             policies (Kubernetes 1.36+): helm value signoff.enabled=true, or kubectl apply -f \
             deploy/signoff/policies.yaml"
                .to_string(),
        )
    };
    crate::api::observed_condition(
        &previous.conditions,
        condition::SIGNOFF_VERIFIED,
        verified,
        reason,
        message,
        cd.metadata.generation,
        now,
    )
}

/// Whether the wait on record is one only a person may end: the Beta
/// group's (the wait for group 2 of a forward Beta release) when the
/// sign-off rules ask for a human Beta — the CafeDeployment's own, or its
/// namespace's as the API server stamped them.
pub(super) fn person_confirms(cd: &CafeDeployment, record: &Record) -> bool {
    let human_beta = cd.spec.signoff.as_ref().is_some_and(|s| s.human_beta)
        || cd
            .annotations()
            .get(crate::api::SIGNOFF_RULES_ANNOTATION)
            .is_some_and(|r| r.split(',').any(|k| k == "humanBeta"));
    human_beta
        && cd.spec.strategy.upgrade_type == UpgradeType::Beta
        && !record.rollback
        && record.awaiting == Some(2)
}

/// The analysis's verdict as the history records a confirmation by it: the
/// rule, and each query's last value.
fn confirmed_by_analysis(a: &AnalysisStatus) -> String {
    let mut last: Vec<String> = Vec::new();
    for m in a.measurements.iter().rev() {
        if !last.iter().any(|l| l.starts_with(&format!("{}=", m.query))) {
            last.push(format!("{}={}", m.query, m.value));
        }
    }
    last.reverse();
    format!("{} [{}]", a.summary(), last.join(", "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cafedeployment::decide::tests::{record, two_cells};

    #[test]
    fn the_beta_wait_is_a_persons_where_the_rules_ask_for_a_human_beta() {
        let waiting = |group| Record {
            awaiting: Some(group),
            ..record()
        };
        let mut cd = two_cells(json!({}), json!({}));
        assert!(
            !person_confirms(&cd, &waiting(2)),
            "no rule: the analysis may"
        );
        cd.spec.signoff = Some(crate::api::Signoff {
            human_beta: true,
            ..Default::default()
        });
        assert!(person_confirms(&cd, &waiting(2)), "the Beta group's wait");
        assert!(
            !person_confirms(&cd, &waiting(3)),
            "later groups: the analysis may"
        );
        let rollback = Record {
            rollback: true,
            ..waiting(2)
        };
        assert!(
            !person_confirms(&cd, &rollback),
            "a rollback waits for nobody"
        );
        cd.spec.strategy.upgrade_type = UpgradeType::Batch;
        assert!(!person_confirms(&cd, &waiting(2)), "no Beta group");
        // The namespace's rules, as the API server stamped them.
        let mut cd = two_cells(json!({}), json!({}));
        cd.annotations_mut().insert(
            crate::api::SIGNOFF_RULES_ANNOTATION.into(),
            "fourEyes,humanBeta".into(),
        );
        assert!(person_confirms(&cd, &waiting(2)));
    }
}
