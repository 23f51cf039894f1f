use super::*;

fn t(s: &str) -> Time {
    Time(s.parse().expect("time"))
}

fn lost(cell: &str) -> BTreeMap<String, Unreachable> {
    BTreeMap::from([(
        cell.to_string(),
        Unreachable {
            why: "member cluster dc-3 has not answered since 2026-12-03T09:00:00Z".into(),
            last_contact: Some(t("2026-12-03T09:00:00Z")),
        },
    )])
}

fn listed() -> Vec<String> {
    vec!["cell-c".to_string()]
}

/// One look: the records, then the give-back judged.
fn look(
    previous: &[FailoverStatus],
    unreachable: &BTreeMap<String, Unreachable>,
    given_back: bool,
    now: &str,
) -> Vec<FailoverStatus> {
    let mut r = records(&listed(), previous, unreachable, &t(now));
    spend(&mut r, unreachable, given_back, &t(now));
    r
}

#[test]
fn a_decision_is_armed_acts_for_one_outage_and_is_spent_once_the_pods_are_given_back() {
    let none = BTreeMap::new();
    let armed = look(&[], &none, true, "2026-12-03T08:00:00Z");
    assert_eq!(armed[0].state, FailoverState::Armed);
    assert!(acting(&armed).is_empty(), "an armed decision moves nothing");

    let active = look(&armed, &lost("cell-c"), true, "2026-12-03T09:00:10Z");
    assert_eq!(active[0].state, FailoverState::Active);
    assert_eq!(acting(&active), ["cell-c"]);
    assert_eq!(active[0].outage_began, Some(t("2026-12-03T09:00:00Z")));

    // It answers; the surge is still there: Active, the outage's end noted.
    let returning = look(&active, &none, false, "2026-12-03T09:05:00Z");
    assert_eq!(returning[0].state, FailoverState::Active);
    assert_eq!(returning[0].outage_ended, Some(t("2026-12-03T09:05:00Z")));
    // Down again before the pods were given back: the same outage goes on.
    let again = look(&returning, &lost("cell-c"), false, "2026-12-03T09:05:05Z");
    assert_eq!(again[0].state, FailoverState::Active);
    assert_eq!(again[0].outage_ended, None);
    assert_eq!(again[0].since, active[0].since);

    let back = look(&again, &none, false, "2026-12-03T09:06:00Z");
    let spent = look(&back, &none, true, "2026-12-03T09:06:30Z");
    assert_eq!(spent[0].state, FailoverState::Spent);
    assert_eq!(spent[0].since, t("2026-12-03T09:06:30Z"));
    assert_eq!(spent[0].outage_ended, Some(t("2026-12-03T09:06:00Z")));

    // The next outage: the spent decision does not act.
    let second = look(&spent, &lost("cell-c"), true, "2026-12-04T10:00:00Z");
    assert_eq!(second, spent, "kept as it was");
    assert!(
        acting(&second).is_empty(),
        "no failover without a new decision"
    );
}

#[test]
fn a_cell_removed_from_the_list_is_forgotten_and_listed_again_is_a_new_decision() {
    let spent = vec![FailoverStatus {
        cell: "cell-c".into(),
        state: FailoverState::Spent,
        since: t("2026-12-03T09:06:30Z"),
        outage_began: Some(t("2026-12-03T09:00:00Z")),
        outage_ended: Some(t("2026-12-03T09:06:00Z")),
    }];
    let removed = records(&[], &spent, &lost("cell-c"), &t("2026-12-04T10:00:00Z"));
    assert!(removed.is_empty());
    let anew = look(&removed, &lost("cell-c"), true, "2026-12-04T10:00:05Z");
    assert_eq!(anew[0].state, FailoverState::Active);
    assert_eq!(acting(&anew), ["cell-c"]);
}

#[test]
fn a_spent_decision_says_so_in_a_condition_and_an_event_that_say_what_to_do() {
    let spent = vec![FailoverStatus {
        cell: "cell-c".into(),
        state: FailoverState::Spent,
        since: t("2026-12-03T09:06:30Z"),
        outage_began: Some(t("2026-12-03T09:00:00Z")),
        outage_ended: Some(t("2026-12-03T09:06:00Z")),
    }];
    let previous = CafeDeploymentStatus::default();
    let now = t("2026-12-04T10:00:00Z");
    let c = spent_condition(&spent, &lost("cell-c"), &previous, Some(3), &now).expect("cond");
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        (condition::FAILOVER_SPENT, "True", "DecisionSpent")
    );
    assert!(
        c.message.contains(
            "spent on the outage of 2026-12-03T09:00:00Z to 2026-12-03T09:06:00Z (its pods were \
             given back at 2026-12-03T09:06:30Z): its pods are not moved"
        ) && c.message.contains(
            "to fail cell-c over again, remove it from spec.topology.failover, wait until \
             status.failover no longer lists it, and list it again"
        ),
        "{}",
        c.message
    );
    let armed = vec![FailoverStatus {
        state: FailoverState::Armed,
        ..spent[0].clone()
    }];
    assert!(spent_condition(&armed, &lost("cell-c"), &previous, Some(3), &now).is_none());

    // The event: a Warning when a spent decision's cell stops answering.
    let previous = CafeDeploymentStatus {
        failover: spent.clone(),
        ..CafeDeploymentStatus::default()
    };
    let events = notes(&previous, &spent, &BTreeMap::new(), &lost("cell-c"));
    assert_eq!(events.len(), 1);
    assert!(events[0].warning && events[0].reason == "FailoverNotActed");
    assert!(
        notes(&previous, &spent, &BTreeMap::new(), &BTreeMap::new()).is_empty(),
        "nothing new while it answers"
    );
}
