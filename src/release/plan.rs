//! The group plan of a release (and of a scale-out from zero): which pods, per
//! cell, each group moves. Pure and deterministic.
//!
//! Beta: one pod in every cell that has pods. Then groups of `batch_size` pods
//! (the last may be smaller), split over the cells in proportion to what each
//! cell still has to move. Pods are handed out one at a time to the cell
//! furthest behind its proportional share (ties: `values` order), so a cell's
//! cumulative count never goes backwards and every group has at least one pod.
//!
//! CAFE's example: 10 replicas over two cells, Beta, batchSize 4 gives the
//! groups 1+1, 2+2, 2+2.

/// One group: pods to move per cell, in cell order.
pub type Group = Vec<usize>;

/// The groups for cells of `sizes` pods.
pub fn groups(sizes: &[usize], beta: bool, batch_size: usize) -> Vec<Group> {
    let batch_size = batch_size.max(1);
    let mut plan = Vec::new();
    let mut left: Vec<usize> = sizes.to_vec();
    if beta {
        let first: Group = sizes.iter().map(|n| usize::from(*n > 0)).collect();
        if first.iter().any(|n| *n > 0) {
            for (l, f) in left.iter_mut().zip(&first) {
                *l -= f;
            }
            plan.push(first);
        }
    }
    let shares: Vec<usize> = left.clone();
    let total: usize = shares.iter().sum();
    let mut given = vec![0usize; sizes.len()];
    let mut handed = 0usize;
    while handed < total {
        let size = batch_size.min(total - handed);
        let mut group = vec![0usize; sizes.len()];
        for _ in 0..size {
            handed += 1;
            // The cell furthest behind share_c * handed / total, compared
            // exactly in integers: deficit_c = share_c * handed - given_c * total.
            let pick = (0..sizes.len())
                .filter(|c| given[*c] < shares[*c])
                .max_by_key(|c| {
                    let ideal = shares[*c] * handed;
                    let have = given[*c] * total;
                    (ideal.saturating_sub(have), std::cmp::Reverse(*c))
                });
            if let Some(c) = pick {
                given[c] += 1;
                group[c] += 1;
            }
        }
        plan.push(group);
    }
    plan
}

/// Pods per cell moved once the first `done` groups are complete.
pub fn moved_after(plan: &[Group], cells: usize, done: usize) -> Vec<usize> {
    let mut moved = vec![0usize; cells];
    for group in plan.iter().take(done) {
        for (m, g) in moved.iter_mut().zip(group) {
            *m += g;
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cafes_example() {
        assert_eq!(
            groups(&[5, 5], true, 4),
            vec![vec![1, 1], vec![2, 2], vec![2, 2]]
        );
    }

    #[test]
    fn uneven_cells_split_in_proportion() {
        // 6 + 3 over batches of 3: Beta 1+1, then 7 pods left (5 and 2).
        let plan = groups(&[6, 3], true, 3);
        assert_eq!(plan[0], vec![1, 1]);
        assert_eq!(moved_after(&plan, 2, plan.len()), vec![6, 3]);
        assert!(plan[1..].iter().all(|g| g.iter().sum::<usize>() <= 3));
    }

    #[test]
    fn more_cells_than_batch_size_and_fewer_replicas_than_cells() {
        let plan = groups(&[1, 1, 1, 1], false, 2);
        assert_eq!(plan, vec![vec![1, 1, 0, 0], vec![0, 0, 1, 1]]);
        let plan = groups(&[1, 1, 0], true, 4);
        assert_eq!(
            plan,
            vec![vec![1, 1, 0]],
            "Beta covers everything; no empty group"
        );
    }

    #[test]
    fn batch_without_beta() {
        assert_eq!(
            groups(&[5, 5], false, 4),
            vec![vec![2, 2], vec![2, 2], vec![1, 1]]
        );
        assert!(groups(&[0, 0], true, 4).is_empty());
    }

    proptest! {
        #[test]
        fn plans_cover_every_pod_once_in_nonempty_bounded_monotone_groups(
            sizes in proptest::collection::vec(0usize..40, 1..7),
            beta in any::<bool>(),
            batch in 1usize..12,
        ) {
            let plan = groups(&sizes, beta, batch);
            let cells = sizes.len();
            // Totals equal replicas, per cell.
            prop_assert_eq!(moved_after(&plan, cells, plan.len()), sizes.clone());
            // No group is empty.
            prop_assert!(plan.iter().all(|g| g.iter().sum::<usize>() > 0));
            // Beta is one pod per cell that has pods.
            if beta && sizes.iter().any(|n| *n > 0) {
                let expected: Vec<usize> = sizes.iter().map(|n| usize::from(*n > 0)).collect();
                prop_assert_eq!(&plan[0], &expected);
            }
            // Batches never exceed batchSize.
            let skip = usize::from(beta && sizes.iter().any(|n| *n > 0));
            prop_assert!(plan[skip..].iter().all(|g| g.iter().sum::<usize>() <= batch));
            // Per cell, the moved count never goes backwards and never overshoots.
            for done in 0..=plan.len() {
                let m = moved_after(&plan, cells, done);
                prop_assert!(m.iter().zip(&sizes).all(|(m, s)| m <= s));
            }
            // Proportion: after each batch, every cell is within one pod of its share.
            let shares: Vec<usize> = sizes.iter().map(|n| n - usize::from(beta && *n > 0)).collect();
            let total: usize = shares.iter().sum();
            let mut handed = 0;
            let mut given = vec![0usize; cells];
            for g in &plan[skip..] {
                handed += g.iter().sum::<usize>();
                for (x, y) in given.iter_mut().zip(g) { *x += y; }
                for c in 0..cells {
                    let ideal = shares[c] * handed;
                    prop_assert!(given[c] * total + total >= ideal, "cell {} behind", c);
                    prop_assert!(given[c] * total <= ideal + total, "cell {} ahead", c);
                }
            }
        }
    }
}
