use super::*;

fn cells(sizes: &[usize]) -> Vec<(String, usize)> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("c{i}"), *n))
        .collect()
}

fn serving(name: &str, n: usize, updated: usize) -> Observed {
    Observed {
        name: name.into(),
        given: Some(n),
        live: n,
        available: n,
        updated_available: updated,
        stable_available: n - updated,
        held: None,
    }
}

/// The targets of a release over the stable revision r1, no cell removed (a
/// release is never a paced creation: the proof plays no part).
fn in_release(
    plan: &Plan,
    opened: usize,
    sizes: &[usize],
    active: &[Option<Observed>],
) -> Vec<Target> {
    targets(
        &stable("r1"),
        plan,
        opened,
        Proof::ByCell,
        &cells(sizes),
        active,
        &[],
    )
}

fn stable(r: &str) -> Record {
    Record {
        stable: Some(r.into()),
        revision: Some("r2".into()),
        ..Record::default()
    }
}

#[test]
fn a_release_moves_only_the_opened_groups_per_cell() {
    let plan = Plan::new(&[5, 5], true, 4);
    let obs = vec![Some(serving("c0", 5, 0)), Some(serving("c1", 5, 0))];
    let t = in_release(&plan, 1, &[5, 5], &obs);
    assert_eq!(
        t.iter()
            .map(|t| (t.replicas, t.partition, t.max_unavailable))
            .collect::<Vec<_>>(),
        // One pod per cell moves; the budget (a group of 4) is split by size.
        vec![(5, 4, 2), (5, 4, 2)]
    );
}

#[test]
fn surplus_pods_get_budget_to_be_drained() {
    let plan = Plan::new(&[8, 8], false, 4);
    let record = Record {
        stable: Some("r2".into()),
        revision: Some("r2".into()),
        ..Record::default()
    };
    let mut extra = serving("c0", 8, 8);
    extra.live = 24;
    extra.available = 24;
    let obs = vec![Some(extra), Some(serving("c1", 8, 8))];
    let t = targets(
        &record,
        &plan,
        plan.groups(),
        Proof::ByCell,
        &cells(&[8, 8]),
        &obs,
        &[],
    );
    assert_eq!(t[0].max_unavailable, 4, "the surplus cell may drain");
    assert_eq!(t[1].max_unavailable, 0);
}

#[test]
fn the_budget_split_changes_only_when_a_cell_starts_or_finishes() {
    // 40 pods, groups of 10, all open (no confirmation): as pods move,
    // the split stays put until a cell is done.
    let plan = Plan::new(&[20, 20], false, 10);
    let groups = plan.groups();
    let split = |a: usize, b: usize| {
        let obs = vec![Some(serving("c0", 20, a)), Some(serving("c1", 20, b))];
        in_release(&plan, groups, &[20, 20], &obs)
            .iter()
            .map(|t| t.max_unavailable)
            .collect::<Vec<_>>()
    };
    assert_eq!(split(0, 0), [5, 5]);
    assert_eq!(split(7, 3), [5, 5]);
    assert_eq!(split(19, 12), [5, 5]);
    assert_eq!(split(20, 12), [0, 10], "a finished cell's share moves on");
}

#[test]
fn scaling_out_mid_release_adds_stable_pods_only() {
    // 10 -> 20 while the Beta group (1+1) waits.
    let plan = Plan::new(&[10, 10], true, 4);
    let obs = vec![Some(serving("c0", 5, 1)), Some(serving("c1", 5, 1))];
    let t = in_release(&plan, 1, &[10, 10], &obs);
    assert!(t.iter().all(|t| t.replicas == 10 && t.partition == 9));
}

#[test]
fn a_first_creation_creates_only_what_the_groups_opened() {
    let record = Record {
        revision: Some("r1".into()),
        ..Record::default()
    };
    let plan = Plan::new(&[5, 5], true, 4);
    let t = targets(
        &record,
        &plan,
        2,
        Proof::ByCell,
        &cells(&[5, 5]),
        &[None, None],
        &[],
    );
    assert!(t.iter().all(|t| t.replicas == 3 && t.partition == 0));
}

#[test]
fn a_creation_is_paced_until_a_group_is_available_and_while_paused() {
    let record = Record {
        revision: Some("r1".into()),
        ..Record::default()
    };
    let plan = Plan::new(&[5, 5], false, 4);
    let all = plan.groups();
    for (completed, paused, paced) in [(0, false, true), (1, false, false), (1, true, true)] {
        let proof = creation_proof(completed, paused);
        let t = targets(
            &record,
            &plan,
            all,
            proof,
            &cells(&[5, 5]),
            &[None, None],
            &[],
        );
        assert!(
            t.iter().all(|t| t.pace_creation == paced),
            "completed {completed}, paused {paused}: paced {paced}"
        );
    }
    // A release (a stable revision) is never a paced creation.
    let t = in_release(&plan, all, &[5, 5], &[None, None]);
    assert!(t.iter().all(|t| !t.pace_creation));
}

/// Before a group is available, a cell stops pacing once one of its own pods
/// is: the cell whose pods do not get ready stays within its budget, paused
/// or not, and a paused creation paces every cell.
#[test]
fn a_cell_stops_pacing_its_creation_once_one_of_its_pods_is_available() {
    let record = Record {
        revision: Some("r1".into()),
        ..Record::default()
    };
    let plan = Plan::new(&[5, 5], false, 4);
    let active = [Some(serving("c0", 5, 1)), Some(serving("c1", 5, 0))];
    let paced = |proof| {
        targets(
            &record,
            &plan,
            plan.groups(),
            proof,
            &cells(&[5, 5]),
            &active,
            &[],
        )
        .iter()
        .map(|t| t.pace_creation)
        .collect::<Vec<_>>()
    };
    assert_eq!(paced(creation_proof(0, false)), [false, true]);
    assert_eq!(paced(creation_proof(0, true)), [true, true]);
    assert_eq!(paced(creation_proof(1, false)), [false, false]);
}

#[test]
fn an_interrupted_creation_creates_the_rest_with_the_new_release() {
    let record = Record {
        stable: Some("r1".into()),
        revision: Some("r2".into()),
        baseline: Some([("c0".to_string(), 3), ("c1".to_string(), 3)].into()),
        ..Record::default()
    };
    let plan = Plan::new(&[5, 5], true, 4);
    let beta = targets(
        &record,
        &plan,
        1,
        Proof::ByCell,
        &cells(&[5, 5]),
        &[None, None],
        &[],
    );
    // One new pod per cell on r2; the three r1 pods stay.
    assert!(beta.iter().all(|t| (t.replicas, t.partition) == (4, 3)));
    let second = targets(
        &record,
        &plan,
        2,
        Proof::ByCell,
        &cells(&[5, 5]),
        &[None, None],
        &[],
    );
    // Three on r2: two new, one r1 pod updated in place.
    assert!(second.iter().all(|t| (t.replicas, t.partition) == (5, 2)));
}

/// A CafeDeployment of 4 pods moved from cell a (`old`, removed) to
/// cell b, whose 4 new pods have `available` in traffic; groups of 1.
fn moved(old: &Observed, available: usize) -> Vec<Target> {
    let record = Record {
        stable: Some("r1".into()),
        revision: Some("r1".into()),
        opened: usize::MAX,
        ..Record::default()
    };
    let plan = Plan::new(&[4], false, 1);
    let new = Observed {
        name: "b".into(),
        given: Some(4),
        live: 4,
        available,
        ..Observed::default()
    };
    targets(
        &record,
        &plan,
        1,
        Proof::ByCell,
        &cells(&[4]),
        &[Some(new)],
        std::slice::from_ref(old),
    )
}

#[test]
fn a_moved_cell_drains_only_as_replacements_become_available() {
    let old = serving("a", 4, 4);
    assert_eq!(
        moved(&old, 0)[1].replicas,
        4,
        "no replacement available yet: keep all"
    );
    assert_eq!(
        moved(&old, 2)[1].replicas,
        3,
        "two available, one pod per group of budget"
    );
}

#[test]
fn a_pod_draining_out_of_a_moved_cell_is_not_cut_twice() {
    // cell a given 3 of its 4 pods; the fourth drains (out of traffic,
    // not gone yet). One replacement is available in b: 4 serve, 4 are
    // desired, nothing more may leave.
    let mut old = serving("a", 4, 4);
    old.given = Some(3);
    old.available = 3;
    assert_eq!(
        moved(&old, 1)[1].replicas,
        3,
        "the draining pod is the one leaving"
    );
}

#[test]
fn unhealthy_pods_beyond_a_cells_share_shrink_the_others_shares() {
    // CAFE's 12 pods over two cells, groups of 4: shares 2 + 2.
    let plan = Plan::new(&[6, 6], false, 4);
    let sick = |n: usize| {
        let mut o = serving("c0", 6, 0);
        o.available = 6 - n;
        o
    };
    let split = |a: Observed| {
        let obs = vec![Some(a), Some(serving("c1", 6, 0))];
        in_release(&plan, 3, &[6, 6], &obs)
            .iter()
            .map(|t| t.max_unavailable)
            .collect::<Vec<_>>()
    };
    assert_eq!(split(sick(0)), [2, 2]);
    assert_eq!(split(sick(2)), [2, 2], "within cell-a's own share");
    assert_eq!(
        split(sick(3)),
        [2, 1],
        "3 sick + 1 drained = the budget of 4"
    );
    assert_eq!(split(sick(4)), [2, 0]);
    assert_eq!(split(sick(6)), [2, 0], "nothing more leaves traffic");
    // Sick pods in a cell with nothing to do count all the same.
    let mut done_sick = serving("c0", 6, 6);
    done_sick.available = 3;
    let obs = vec![Some(done_sick), Some(serving("c1", 6, 0))];
    let t = in_release(&plan, 3, &[6, 6], &obs);
    assert_eq!((t[0].max_unavailable, t[1].max_unavailable), (0, 1));
}

#[test]
fn two_pods_never_leave_traffic_together() {
    let plan = Plan::new(&[1, 1], true, 4);
    let obs = vec![Some(serving("c0", 1, 0)), Some(serving("c1", 1, 0))];
    let t = in_release(&plan, 1, &[1, 1], &obs);
    assert_eq!(
        t.iter().map(|t| t.max_unavailable).sum::<usize>(),
        1,
        "the Service keeps one endpoint"
    );
}
