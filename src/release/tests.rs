//! Random sequences of what users and pods do mid-release, against a model of
//! the InPlaceSets, checking the invariants after every step and that every
//! release converges once the changes stop.

mod check;
mod model;
mod world;

use proptest::prelude::*;

use super::*;
use world::{World, op};

/// A creation stops pacing once a group is available, and stays unpaced
/// whatever the sets report next (a status lagging a write reports what it
/// reported before): the sets are not rewritten back and forth.
#[test]
fn a_proven_creation_stays_unpaced_while_a_status_lags() {
    let cells = vec![("a".to_string(), 10), ("b".to_string(), 10)];
    let input = |active: &[Option<Observed>]| {
        decide(&Input {
            record: &Record::default(),
            update: "r1",
            cells: &cells,
            active,
            removed: &[],
            beta: false,
            batch: 5,
            need_confirm: false,
            paused: false,
            confirmed: false,
        })
    };
    let paced = |d: &Decision| {
        d.targets
            .iter()
            .map(|t| t.pace_creation)
            .collect::<Vec<_>>()
    };
    assert_eq!(paced(&input(&[None, None])), [true, true]);
    let observed = |available: usize| Observed {
        name: String::new(),
        given: Some(10),
        live: 10,
        available,
        updated_available: available,
        stable_available: 0,
        held: None,
    };
    for seen in [
        [Some(observed(3)), Some(observed(3))],
        [Some(observed(4)), Some(observed(3))],
    ] {
        assert_eq!(paced(&input(&seen)), [false, false], "{seen:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn invariants_hold_after_every_change_and_every_release_converges(
        ops in proptest::collection::vec(op(), 0..40),
        replicas in 0usize..16,
        beta in any::<bool>(),
        batch in 1usize..6,
        need_confirm in any::<bool>(),
    ) {
        let mut world = World::new(replicas, beta, batch, need_confirm);
        for op in ops {
            world.apply(op);
            world.round()?;
        }
        world.converge()?;
    }
}
