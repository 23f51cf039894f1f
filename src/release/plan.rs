//! The group plan of a release (and of a creation from zero): which pods, per
//! cell, the first `k` groups move. Pure, deterministic, and closed-form: no
//! group list is ever built, so a plan of 100,000,000 pods in groups of one
//! costs the same as CAFE's example (O(cells² · log pods) per question).
//!
//! Beta: one pod in every cell that has pods. Then groups of `batch_size`
//! pods (the last may be smaller), split over the cells in proportion to what
//! each cell still has to move. The pods after Beta form one fixed sequence:
//! the j-th pod of a cell that has `s` pods to move is due at the fraction
//! `j / s` of its cell's share, and pods are taken in order of that fraction
//! (ties: `values` order). Group `g` is the next `batch_size` pods of the
//! sequence, so a cell's cumulative count never goes backwards, every group
//! has at least one pod, and after every group each cell is within one pod of
//! its proportional share (two in rare many-cell cases; Sainte-Laguë's divisors).
//!
//! CAFE's example: 10 replicas over two cells, Beta, batchSize 4 gives the
//! groups 1+1, 2+2, 2+2.

/// A release's groups over cells of `sizes` pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    sizes: Vec<u64>,
    beta: bool,
    batch: u64,
}

impl Plan {
    pub fn new(sizes: &[usize], beta: bool, batch_size: usize) -> Self {
        let beta = beta && sizes.iter().any(|n| *n > 0);
        Self {
            sizes: sizes.iter().map(|n| *n as u64).collect(),
            beta,
            batch: batch_size.max(1) as u64,
        }
    }

    pub fn cells(&self) -> usize {
        self.sizes.len()
    }

    /// Pods to move after the Beta group, per cell.
    fn shares(&self) -> Vec<u64> {
        self.sizes
            .iter()
            .map(|n| n - u64::from(self.beta && *n > 0))
            .collect()
    }

    fn beta_size(&self) -> u64 {
        if self.beta {
            self.sizes.iter().filter(|n| **n > 0).count() as u64
        } else {
            0
        }
    }

    /// How many groups the plan has.
    pub fn groups(&self) -> usize {
        let after_beta: u64 = self.shares().iter().sum();
        (u64::from(self.beta) + after_beta.div_ceil(self.batch)) as usize
    }

    /// Pods per cell moved once the first `done` groups are complete.
    pub fn moved_after(&self, done: usize) -> Vec<usize> {
        let done = done.min(self.groups()) as u64;
        let mut moved = vec![0u64; self.sizes.len()];
        let mut batches = done;
        if self.beta && done > 0 {
            for (m, n) in moved.iter_mut().zip(&self.sizes) {
                *m = u64::from(*n > 0);
            }
            batches -= 1;
        }
        let shares = self.shares();
        let total: u64 = shares.iter().sum();
        let taken = first_of_sequence(&shares, (batches * self.batch).min(total));
        for (m, t) in moved.iter_mut().zip(taken) {
            *m += t;
        }
        moved.into_iter().map(|m| m as usize).collect()
    }

    /// The pods group `g` (1-based) moves, per cell.
    pub fn group(&self, g: usize) -> Vec<usize> {
        if g == 0 || g > self.groups() {
            return vec![0; self.sizes.len()];
        }
        let after = self.moved_after(g);
        let before = self.moved_after(g - 1);
        after.iter().zip(&before).map(|(a, b)| a - b).collect()
    }

    /// The size of the largest group: one group's unavailability budget.
    pub fn largest_group(&self) -> usize {
        let total: u64 = self.shares().iter().sum();
        self.beta_size().max(self.batch.min(total)).max(1) as usize
    }

    /// The most groups whose pods `have` (per cell) already cover.
    pub fn covered_by(&self, have: &[usize]) -> usize {
        let covers = |k: usize| {
            self.moved_after(k)
                .iter()
                .zip(have)
                .all(|(need, h)| need <= h)
        };
        // moved_after is monotone in k: binary search the last k that is covered.
        let (mut lo, mut hi) = (0usize, self.groups());
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if covers(mid) { lo = mid } else { hi = mid - 1 }
        }
        lo
    }
}

/// Per cell, how many of the first `h` pods of the proportional sequence it
/// holds. Pod j (1-based) of a cell with share s is due at (j - 1/2) / s
/// (Sainte-Laguë's divisors: each cell stays within one pod of its share);
/// the sequence orders pods by due fraction, ties in cell order. A due
/// fraction is kept as the exact pair (2j - 1, 2s).
pub(super) fn first_of_sequence(shares: &[u64], h: u64) -> Vec<u64> {
    if h == 0 {
        return vec![0; shares.len()];
    }
    let wide = |n: u64| u128::from(n);
    // Pods of a cell of share s due at or before num/den: (2j-1)·den <= 2s·num.
    let due_by = |s: u64, num: u64, den: u64| -> u64 {
        let j = (2 * wide(s) * wide(num) + wide(den)) / (2 * wide(den));
        j.min(wide(s)) as u64
    };
    let due_before = |s: u64, num: u64, den: u64| -> u64 {
        let j = (2 * wide(s) * wide(num) + wide(den) - 1) / (2 * wide(den));
        j.min(wide(s)) as u64
    };
    let all_due_by =
        |num: u64, den: u64| -> u64 { shares.iter().map(|s| due_by(*s, num, den)).sum() };
    // The h-th pod's due fraction x* is some cell's (2j-1)/(2s): per cell, the
    // smallest j whose fraction has at least h pods due by it; x* is the least.
    let mut best: Option<(u64, u64)> = None;
    for s in shares.iter().copied().filter(|s| *s > 0) {
        if all_due_by(2 * s - 1, 2 * s) < h {
            continue;
        }
        let (mut lo, mut hi) = (1u64, s);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if all_due_by(2 * mid - 1, 2 * s) >= h {
                hi = mid
            } else {
                lo = mid + 1
            }
        }
        let (num, den) = (2 * lo - 1, 2 * s);
        if best.is_none_or(|(n, d)| wide(num) * wide(d) < wide(n) * wide(den)) {
            best = Some((num, den));
        }
    }
    let Some((num, den)) = best else {
        return shares.to_vec();
    };
    // Strictly before x*, then the pods due exactly at x* in cell order.
    let mut taken: Vec<u64> = shares.iter().map(|s| due_before(*s, num, den)).collect();
    let mut left = h - taken.iter().sum::<u64>();
    for (t, s) in taken.iter_mut().zip(shares) {
        if left == 0 {
            break;
        }
        if due_by(*s, num, den) > *t {
            *t += 1;
            left -= 1;
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn groups(sizes: &[usize], beta: bool, batch: usize) -> Vec<Vec<usize>> {
        let plan = Plan::new(sizes, beta, batch);
        (1..=plan.groups()).map(|g| plan.group(g)).collect()
    }

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
        let plan = Plan::new(&[6, 3], true, 3);
        assert_eq!(plan.group(1), vec![1, 1]);
        assert_eq!(plan.moved_after(plan.groups()), vec![6, 3]);
        assert!((2..=plan.groups()).all(|g| plan.group(g).iter().sum::<usize>() <= 3));
    }

    #[test]
    fn more_cells_than_batch_size_and_fewer_replicas_than_cells() {
        assert_eq!(
            groups(&[1, 1, 1, 1], false, 2),
            vec![vec![1, 1, 0, 0], vec![0, 0, 1, 1]]
        );
        assert_eq!(
            groups(&[1, 1, 0], true, 4),
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

    #[test]
    fn a_hundred_million_pods_in_groups_of_one_plan_at_once() {
        let started = std::time::Instant::now();
        let plan = Plan::new(&[50_000_000, 30_000_000, 20_000_000], true, 1);
        assert_eq!(plan.groups(), 1 + 99_999_997);
        assert_eq!(
            plan.moved_after(plan.groups()),
            vec![50_000_000, 30_000_000, 20_000_000]
        );
        let half = plan.moved_after(50_000_000);
        assert_eq!(half.iter().sum::<usize>(), 3 + 49_999_999);
        assert_eq!(plan.covered_by(&half), 50_000_000);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "closed form, not a walk over the pods: {:?}",
            started.elapsed()
        );
    }

    /// The pod-by-pod walk the closed form replaces: each pod to the cell
    /// whose next pod is due first (ties in cell order).
    fn walk(shares: &[u64], h: u64) -> Vec<u64> {
        let mut given = vec![0u64; shares.len()];
        for _ in 0..h {
            let pick = (0..shares.len())
                .filter(|c| given[*c] < shares[*c])
                .min_by(|a, b| {
                    let (ja, jb) = (u128::from(2 * given[*a] + 1), u128::from(2 * given[*b] + 1));
                    (ja * u128::from(shares[*b]))
                        .cmp(&(jb * u128::from(shares[*a])))
                        .then(a.cmp(b))
                });
            if let Some(c) = pick {
                given[c] += 1;
            }
        }
        given
    }

    proptest! {
        #[test]
        fn the_closed_form_is_the_walk(
            shares in proptest::collection::vec(0u64..40, 1..7),
            frac in 0u64..=100,
        ) {
            let total: u64 = shares.iter().sum();
            let h = total * frac / 100;
            prop_assert_eq!(first_of_sequence(&shares, h), walk(&shares, h));
        }

        #[test]
        fn plans_cover_every_pod_once_in_nonempty_bounded_monotone_groups(
            sizes in proptest::collection::vec(0usize..40, 1..7),
            beta in any::<bool>(),
            batch in 1usize..12,
        ) {
            let plan = Plan::new(&sizes, beta, batch);
            let n = plan.groups();
            // Totals equal replicas, per cell.
            prop_assert_eq!(plan.moved_after(n), sizes.clone());
            // No group is empty.
            prop_assert!((1..=n).all(|g| plan.group(g).iter().sum::<usize>() > 0));
            // Beta is one pod per cell that has pods.
            let has_pods = sizes.iter().any(|n| *n > 0);
            if beta && has_pods {
                let expected: Vec<usize> = sizes.iter().map(|n| usize::from(*n > 0)).collect();
                prop_assert_eq!(plan.group(1), expected);
            }
            // Batches never exceed batchSize; no group exceeds the budget.
            let skip = usize::from(beta && has_pods);
            prop_assert!((1 + skip..=n).all(|g| plan.group(g).iter().sum::<usize>() <= batch));
            prop_assert!((1..=n).all(|g| plan.group(g).iter().sum::<usize>() <= plan.largest_group()));
            // Per cell, the moved count never goes backwards and never overshoots.
            for done in 0..=n {
                let m = plan.moved_after(done);
                prop_assert!(m.iter().zip(&sizes).all(|(m, s)| m <= s));
                if done > 0 {
                    let before = plan.moved_after(done - 1);
                    prop_assert!(m.iter().zip(&before).all(|(a, b)| a >= b));
                }
                prop_assert_eq!(plan.covered_by(&m), done);
            }
            // Proportion: after each batch, every cell is within two pods of its
            // exact share (Sainte-Laguë keeps nearly every case within one).
            let shares: Vec<usize> = sizes.iter().map(|n| n - usize::from(beta && *n > 0)).collect();
            let total: usize = shares.iter().sum();
            for g in skip..=n {
                let given = plan.moved_after(g);
                let handed: usize = given.iter().zip(&sizes).map(|(m, s)| m - usize::from(skip == 1 && g > 0 && *s > 0)).sum();
                for c in 0..sizes.len() {
                    let mine = given[c] - usize::from(skip == 1 && g > 0 && sizes[c] > 0);
                    let ideal = shares[c] * handed;
                    prop_assert!(mine * total + 2 * total >= ideal, "cell {} behind", c);
                    prop_assert!(mine * total <= ideal + 2 * total, "cell {} ahead", c);
                }
            }
        }
    }
}
