//! How a CafeDeployment's replicas are spread over its cells. Pure and
//! deterministic: the same spec always gives the same distribution.
//!
//! Pins first (`unitReplicas`: an integer, or a percentage of `replicas`
//! rounded down); the rest evenly over the unpinned cells, remainders to the
//! first cells in `values` order. When every cell is pinned, what rounding
//! left over is spread over the cells in `values` order.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::count::resolve;

/// Why a distribution cannot be made, in words that say what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DistributionError {
    #[error(
        "topology.unitReplicas pins cell {cell} with {reason}: use an integer >= 0 or a percentage from 0% to 100%"
    )]
    BadPin { cell: String, reason: String },
    #[error(
        "topology.unitReplicas pins {pinned} pods but spec.replicas is {replicas}: lower the pins or raise replicas"
    )]
    PinsExceedReplicas { pinned: usize, replicas: usize },
    #[error(
        "topology.unitReplicas pins cell {0}, which is not in topology.values: add it to values or remove the pin"
    )]
    UnknownCell(String),
}

/// Pods per cell, in `cells` order.
pub fn distribute(
    replicas: usize,
    cells: &[String],
    pins: &BTreeMap<String, IntOrString>,
) -> Result<Vec<(String, usize)>, DistributionError> {
    if let Some(unknown) = pins.keys().find(|k| !cells.contains(k)) {
        return Err(DistributionError::UnknownCell(unknown.clone()));
    }
    let mut counts: Vec<(String, usize, bool)> = Vec::with_capacity(cells.len());
    for cell in cells {
        match pins.get(cell) {
            Some(pin) => {
                let n =
                    resolve(pin, replicas, false).map_err(|reason| DistributionError::BadPin {
                        cell: cell.clone(),
                        reason,
                    })?;
                counts.push((cell.clone(), n, true));
            }
            None => counts.push((cell.clone(), 0, false)),
        }
    }
    let pinned: usize = counts.iter().map(|(_, n, _)| n).sum();
    if pinned > replicas {
        return Err(DistributionError::PinsExceedReplicas { pinned, replicas });
    }
    let rest = replicas - pinned;
    let unpinned = counts.iter().filter(|(_, _, p)| !p).count();
    // Who shares the rest: the unpinned cells, or (all pinned) every cell.
    let sharing: Vec<usize> = (0..counts.len())
        .filter(|i| unpinned == 0 || !counts[*i].2)
        .collect();
    if !sharing.is_empty() {
        let each = rest / sharing.len();
        let extra = rest % sharing.len();
        for (k, i) in sharing.iter().enumerate() {
            counts[*i].1 += each + usize::from(k < extra);
        }
    }
    Ok(counts.into_iter().map(|(c, n, _)| (c, n)).collect())
}

/// autoReschedule: moves `away[c]` pods of each cell's share to the cells
/// with room (`room[c]`), evenly, remainders in `values` order. With no cell
/// to take them, the shares stay as they are.
pub fn reschedule(sizes: &[usize], away: &[usize], room: &[bool]) -> Vec<usize> {
    let receivers: Vec<usize> = (0..sizes.len())
        .filter(|c| room.get(*c).copied().unwrap_or(false))
        .collect();
    if receivers.is_empty() {
        return sizes.to_vec();
    }
    let mut out = sizes.to_vec();
    let mut moved = 0;
    for (c, size) in out.iter_mut().enumerate() {
        let take = away.get(c).copied().unwrap_or(0).min(*size);
        *size -= take;
        moved += take;
    }
    for (k, c) in receivers.iter().enumerate() {
        out[*c] += moved / receivers.len() + usize::from(k < moved % receivers.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cells(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("cell-{}", (b'a' + i as u8) as char))
            .collect()
    }

    fn pins(list: &[(&str, IntOrString)]) -> BTreeMap<String, IntOrString> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn cafes_example_and_remainders_in_values_order() {
        assert_eq!(
            distribute(10, &cells(2), &BTreeMap::new()),
            Ok(vec![("cell-a".into(), 5), ("cell-b".into(), 5)])
        );
        assert_eq!(
            distribute(10, &cells(3), &BTreeMap::new()),
            Ok(vec![
                ("cell-a".into(), 4),
                ("cell-b".into(), 3),
                ("cell-c".into(), 3)
            ])
        );
    }

    #[test]
    fn pins_first_then_the_rest_over_unpinned_cells() {
        let p = pins(&[
            ("cell-a", IntOrString::String("50%".into())),
            ("cell-b", IntOrString::Int(2)),
        ]);
        assert_eq!(
            distribute(10, &cells(3), &p),
            Ok(vec![
                ("cell-a".into(), 5),
                ("cell-b".into(), 2),
                ("cell-c".into(), 3)
            ])
        );
    }

    #[test]
    fn percentages_round_down_and_leftovers_spread_when_all_cells_are_pinned() {
        let p = pins(&[
            ("cell-a", IntOrString::String("33%".into())),
            ("cell-b", IntOrString::String("33%".into())),
        ]);
        // 33% of 10 = 3 each; 4 left over over both cells in order.
        assert_eq!(
            distribute(10, &cells(2), &p),
            Ok(vec![("cell-a".into(), 5), ("cell-b".into(), 5)])
        );
    }

    #[test]
    fn fewer_replicas_than_cells_leaves_the_last_cells_empty() {
        assert_eq!(
            distribute(2, &cells(3), &BTreeMap::new()),
            Ok(vec![
                ("cell-a".into(), 1),
                ("cell-b".into(), 1),
                ("cell-c".into(), 0)
            ])
        );
    }

    #[test]
    fn bad_pins_say_what_to_change() {
        let over = pins(&[
            ("cell-a", IntOrString::String("80%".into())),
            ("cell-b", IntOrString::Int(5)),
        ]);
        assert_eq!(
            distribute(10, &cells(2), &over),
            Err(DistributionError::PinsExceedReplicas {
                pinned: 13,
                replicas: 10
            })
        );
        let unknown = pins(&[("cell-z", IntOrString::Int(1))]);
        assert!(matches!(
            distribute(10, &cells(2), &unknown),
            Err(DistributionError::UnknownCell(_))
        ));
    }

    #[test]
    fn rescheduling_moves_a_full_cells_quota_to_cells_with_room() {
        assert_eq!(
            reschedule(&[2, 2, 2], &[0, 0, 2], &[true, true, false]),
            vec![3, 3, 0]
        );
        assert_eq!(
            reschedule(&[4, 4, 4], &[0, 0, 1], &[true, true, false]),
            vec![5, 4, 3]
        );
        assert_eq!(
            reschedule(&[2, 2], &[2, 2], &[false, false]),
            vec![2, 2],
            "nowhere to go: unchanged"
        );
    }

    proptest! {
        #[test]
        fn totals_match_pins_hold_and_unpinned_cells_differ_by_at_most_one(
            replicas in 0usize..200,
            n in 1usize..8,
            raw_pins in proptest::collection::vec(proptest::option::of(0u8..60), 8),
        ) {
            let cells = cells(n);
            let mut p = BTreeMap::new();
            let mut budget = replicas;
            for (i, cell) in cells.iter().enumerate() {
                if let Some(v) = raw_pins[i] {
                    let v = usize::from(v).min(budget);
                    budget -= v;
                    p.insert(cell.clone(), IntOrString::Int(i32::try_from(v).unwrap_or(0)));
                }
            }
            let d = distribute(replicas, &cells, &p).expect("valid pins");
            prop_assert_eq!(d.iter().map(|(_, n)| n).sum::<usize>(), replicas);
            prop_assert_eq!(d.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(), cells.clone());
            let unpinned: Vec<usize> = d.iter().filter(|(c, _)| !p.contains_key(c)).map(|(_, n)| *n).collect();
            if !unpinned.is_empty() {
                for (c, n) in &d {
                    if let Some(IntOrString::Int(pin)) = p.get(c) {
                        prop_assert_eq!(*n, usize::try_from(*pin).unwrap_or(0));
                    }
                }
                let max = unpinned.iter().max().copied().unwrap_or(0);
                let min = unpinned.iter().min().copied().unwrap_or(0);
                prop_assert!(max - min <= 1);
                // Remainders go to the first cells: counts never increase along values.
                prop_assert!(unpinned.windows(2).all(|w| w[0] >= w[1]));
            }
            prop_assert_eq!(distribute(replicas, &cells, &p), Ok(d));
        }
    }
}
