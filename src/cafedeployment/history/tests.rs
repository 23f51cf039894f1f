use super::*;
use crate::api::{ConfirmationWait, ReleaseStatus, WindowStatus};
use serde_json::json;

fn cd(annotations: serde_json::Value, strategy: serde_json::Value) -> CafeDeployment {
    crate::cafedeployment::hold::tests::cd(strategy, annotations)
}

fn witness<'a>(cd: &'a CafeDeployment, verified: bool) -> Witness<'a> {
    Witness {
        cd,
        verified,
        holding: None,
        freezes: &[],
        analysis_confirmed: None,
    }
}

/// A status releasing `revision` with `opened` groups, waiting for `awaiting`.
fn releasing(revision: &str, opened: i32, awaiting: Option<i32>) -> CafeDeploymentStatus {
    CafeDeploymentStatus {
        update_revision: Some(revision.into()),
        current_revision: Some("demo-0".into()),
        release: Some(ReleaseStatus {
            revision: revision.into(),
            opened,
            groups: opened.clamp(3, 5),
            awaiting_confirmation: awaiting.map(|group| ConfirmationWait {
                revision: revision.into(),
                group,
            }),
            ..ReleaseStatus::default()
        }),
        ..CafeDeploymentStatus::default()
    }
}

fn summary(steps: &[Step]) -> Vec<(A, &str, Option<i32>)> {
    steps
        .iter()
        .map(|s| (s.action, s.by.as_str(), s.group))
        .collect()
}

#[test]
fn a_new_template_is_recorded_with_its_author_and_its_first_group() {
    let cd = cd(json!({stamp::TEMPLATE: "alice"}), json!({}));
    let before = releasing("demo-0", 3, None);
    let after = releasing("demo-1", 1, None);
    let steps = steps(&before, &after, &witness(&cd, true));
    assert_eq!(
        summary(&steps),
        vec![
            (A::TemplateChanged, "alice", None),
            (A::GroupOpened, BY_OPERATOR, Some(1))
        ]
    );
    assert_eq!(steps[0].message, "was demo-0");
    // No policy vouches for the stamp: nobody's name is written.
    let steps = super::steps(&before, &after, &witness(&cd, false));
    assert_eq!(steps[0].by, UNVERIFIED);
}

#[test]
fn a_confirmation_is_the_stamped_persons_and_a_bypass_says_so() {
    let before = releasing("demo-1", 1, Some(2));
    let after = releasing("demo-1", 2, None);
    let bob = cd(
        json!({UPGRADE_CONFIRMED_ANNOTATION: "true", stamp::CONFIRMED: "bob", stamp::TEMPLATE: "alice"}),
        json!({}),
    );
    assert_eq!(
        summary(&steps(&before, &after, &witness(&bob, true))),
        vec![(A::Confirmed, "bob", Some(2))]
    );
    let alice = cd(
        json!({UPGRADE_CONFIRMED_ANNOTATION: "true", stamp::CONFIRMED: "alice",
               stamp::TEMPLATE: "alice", stamp::CONFIRM_BYPASS: "break-glass"}),
        json!({}),
    );
    let steps = steps(&before, &after, &witness(&alice, true));
    assert_eq!(steps[0].by, "alice");
    assert!(
        steps[0].message.starts_with("break-glass"),
        "{}",
        steps[0].message
    );
    // The stamp missing (a confirmation before the policies): unverified.
    let nobody = cd(json!({UPGRADE_CONFIRMED_ANNOTATION: "true"}), json!({}));
    let steps = super::steps(&before, &after, &witness(&nobody, true));
    assert_eq!(steps[0].by, UNVERIFIED);
}

#[test]
fn the_analysis_confirms_as_nobody_and_a_lifted_wait_is_no_confirmation() {
    let before = releasing("demo-1", 1, Some(2));
    let after = releasing("demo-1", 2, None);
    let cd = cd(json!({}), json!({}));
    let by_analysis = Witness {
        analysis_confirmed: Some("analysis of group 1: passed [errors=0.01]".into()),
        ..witness(&cd, true)
    };
    let steps = steps(&before, &after, &by_analysis);
    assert_eq!(summary(&steps), vec![(A::Confirmed, BY_ANALYSIS, Some(2))]);
    assert!(steps[0].message.contains("errors=0.01"));
    let lifted = super::steps(&before, &after, &witness(&cd, true));
    assert_eq!(
        summary(&lifted),
        vec![(A::GroupOpened, BY_OPERATOR, Some(2))]
    );
}

#[test]
fn completion_pause_and_resume_are_recorded_once() {
    let before = releasing("demo-1", 3, None);
    let mut after = releasing("demo-1", 3, None);
    after.current_revision = Some("demo-1".into());
    let paused = cd(json!({stamp::PAUSE: "carol"}), json!({"pause": true}));
    let steps = steps(&before, &after, &witness(&paused, true));
    assert_eq!(
        summary(&steps),
        vec![
            (A::Completed, BY_OPERATOR, None),
            (A::Paused, "carol", None)
        ]
    );
    // Recorded: not again; resumed: once.
    let mut recorded = after.clone();
    recorded.history = append(
        &[],
        steps,
        &Time("2026-12-07T10:00:00Z".parse().expect("time")),
    );
    assert!(super::steps(&recorded, &recorded, &witness(&paused, true)).is_empty());
    let resumed = cd(json!({stamp::PAUSE: "dave"}), json!({"pause": false}));
    assert_eq!(
        summary(&super::steps(
            &recorded,
            &recorded,
            &witness(&resumed, true)
        )),
        vec![(A::Resumed, "dave", None)]
    );
}

#[test]
fn a_freeze_is_recorded_with_who_froze_and_who_thawed() {
    let cd = cd(json!({}), json!({}));
    let status = releasing("demo-1", 1, None);
    let freeze = FreezeFact {
        name: "incident".into(),
        reason: "payments down".into(),
        by: Some("carol".into()),
        thawed_by: None,
    };
    let frozen = Witness {
        holding: Some(&freeze),
        freezes: std::slice::from_ref(&freeze),
        ..witness(&cd, true)
    };
    let steps = steps(&status, &status, &frozen);
    assert_eq!(summary(&steps), vec![(A::Frozen, "carol", None)]);
    assert_eq!(steps[0].source, "ReleaseFreeze/incident");
    let mut recorded = status.clone();
    recorded.history = append(
        &[],
        steps,
        &Time("2026-12-07T10:00:00Z".parse().expect("time")),
    );
    let thawed = FreezeFact {
        thawed_by: Some(Some("dave".into())),
        ..freeze.clone()
    };
    let after = Witness {
        freezes: std::slice::from_ref(&thawed),
        ..witness(&cd, true)
    };
    assert_eq!(
        summary(&super::steps(&recorded, &recorded, &after)),
        vec![(A::Thawed, "dave", None)]
    );
}

#[test]
fn a_window_closes_opens_and_an_override_names_who_and_why() {
    let cd = cd(json!({stamp::WINDOW_OVERRIDE: "bob"}), json!({}));
    let before = releasing("demo-1", 1, None);
    let window = WindowStatus {
        name: "weekend".into(),
        since: Time("2026-12-04T15:00:00Z".parse().expect("time")),
        reopens_at: Time("2026-12-07T07:00:00Z".parse().expect("time")),
        overridden_by: None,
        override_reason: None,
    };
    let mut held = before.clone();
    held.window = Some(window.clone());
    assert_eq!(
        summary(&steps(&before, &held, &witness(&cd, true))),
        vec![(A::WindowClosed, BY_OPERATOR, None)]
    );
    let mut overridden = held.clone();
    overridden.window = Some(WindowStatus {
        overridden_by: Some("bob".into()),
        override_reason: Some("hotfix INC-4711".into()),
        ..window
    });
    let steps = steps(&held, &overridden, &witness(&cd, true));
    assert_eq!(summary(&steps), vec![(A::WindowOverride, "bob", None)]);
    assert_eq!(steps[0].message, "hotfix INC-4711");
    assert_eq!(
        summary(&super::steps(&overridden, &before, &witness(&cd, true))),
        vec![(A::WindowOpened, BY_OPERATOR, None)]
    );
}

#[test]
fn entries_are_numbered_on_and_the_oldest_drop_off_at_the_limit() {
    let at = Time("2026-12-07T10:00:00Z".parse().expect("time"));
    let step = |n: i32| Step {
        action: A::GroupOpened,
        by: BY_OPERATOR.into(),
        revision: "demo-1".into(),
        group: Some(n),
        source: String::new(),
        message: String::new(),
    };
    let history = append(&[], (1..=48).map(step).collect(), &at);
    let history = append(&history, (49..=53).map(step).collect(), &at);
    assert_eq!(history.len(), STATUS_HISTORY_LIMIT);
    assert_eq!(history.first().map(|e| e.seq), Some(4));
    assert_eq!(history.last().map(|e| e.seq), Some(53));
    assert!(history.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[test]
fn a_paused_release_reverted_to_the_stable_revision_records_no_more_groups_than_planned() {
    // The record of a revert opens every group at once (`opened` at its
    // maximum): once, this loop pushed i32::MAX steps and the operator ran
    // out of memory.
    let cd = cd(json!({}), json!({}));
    let before = releasing("demo-1", 0, None);
    let mut after = releasing("demo-0", i32::MAX, None);
    if let Some(r) = after.release.as_mut() {
        r.groups = 3;
    }
    let steps = steps(&before, &after, &witness(&cd, true));
    let opened = steps.iter().filter(|s| s.action == A::GroupOpened).count();
    assert_eq!(opened, 3, "{:?}", summary(&steps));
    // The next decision starts from that record: nothing more, no overflow.
    let again = super::steps(&after, &after, &witness(&cd, true));
    assert!(again.is_empty(), "{:?}", summary(&again));
}
