//! The release state machine of a CafeDeployment, pure: given the group plan,
//! what the cells' InPlaceSets show and the confirmation state, which
//! partition each cell gets and what the release is doing.
//!
//! How far the release got is read back from observation, not remembered:
//! the groups released are those whose partitions the InPlaceSets already
//! carry, the groups completed are those whose pods are updated and available.
//! The only remembered state is the confirmation wait (revision and group),
//! so that a "true" written before the wait began never confirms a later group.

use super::plan::{Group, moved_after};

/// What the controller observes and asks for.
#[derive(Clone, Debug, Default)]
pub struct Input<'a> {
    /// Desired pods per cell.
    pub sizes: &'a [usize],
    /// Per cell: pods on the release's revision and available (drained and
    /// back in traffic, ready for minReadySeconds).
    pub updated_available: &'a [usize],
    /// Per cell: the partition its InPlaceSet carries for this revision, or
    /// `None` if it does not carry this revision's template yet.
    pub partitions: &'a [Option<usize>],
    pub plan: &'a [Group],
    pub need_confirm: bool,
    pub paused: bool,
    /// A rollback releases at once: no confirmation waits.
    pub rollback: bool,
    pub revision: &'a str,
    /// The wait recorded in status: (revision, group).
    pub awaiting: Option<(&'a str, usize)>,
    /// The annotation `cafe.sofastack.io/upgrade-confirmed` is "true".
    pub confirmed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Progressing,
    /// Waiting for the user to confirm before this group (1-based) starts.
    WaitingForConfirm(usize),
    Paused,
    Complete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The partition to set on each cell's InPlaceSet.
    pub partitions: Vec<usize>,
    /// Groups opened (their pods may move), after this decision.
    pub released: usize,
    /// Groups whose pods are all updated and available.
    pub completed: usize,
    pub groups: usize,
    pub phase: Phase,
    /// The wait to record in status; `Some` and different from the input's
    /// means the wait begins now: write the annotation "false" first.
    pub awaiting: Option<usize>,
}

impl Decision {
    pub fn begins_waiting(&self, input: &Input) -> bool {
        self.awaiting
            .is_some_and(|g| input.awaiting != Some((input.revision, g)))
    }
}

fn partitions_for(sizes: &[usize], plan: &[Group], released: usize) -> Vec<usize> {
    let moved = moved_after(plan, sizes.len(), released);
    sizes
        .iter()
        .zip(&moved)
        .map(|(s, m)| s - m.min(s))
        .collect()
}

/// Groups the InPlaceSets already carry: the largest k whose partitions are in place.
fn released_by_partitions(input: &Input) -> usize {
    (0..=input.plan.len())
        .rev()
        .find(|k| {
            let wanted = partitions_for(input.sizes, input.plan, *k);
            input
                .partitions
                .iter()
                .zip(&wanted)
                .all(|(have, want)| have.is_some_and(|h| h <= *want))
        })
        .unwrap_or(0)
}

fn completed(input: &Input) -> usize {
    (0..=input.plan.len())
        .rev()
        .find(|k| {
            let moved = moved_after(input.plan, input.sizes.len(), *k);
            input
                .updated_available
                .iter()
                .zip(&moved)
                .all(|(have, need)| have >= need)
        })
        .unwrap_or(0)
}

pub fn decide(input: &Input) -> Decision {
    let groups = input.plan.len();
    let completed = completed(input);
    // Groups whose pods already run the revision count as released: a rollback
    // (or a template changed mid-release) moves only the pods not there yet.
    let mut released = released_by_partitions(input).max(completed);
    let mut awaiting = None;
    let phase = if completed >= groups {
        released = groups;
        Phase::Complete
    } else if completed < released {
        // The open groups are still moving. Pause stops new groups here; the
        // controller also pauses the InPlaceSets, so pods of open groups that
        // have not started stay put, and those in their lifecycle finish it.
        if input.paused {
            Phase::Paused
        } else {
            Phase::Progressing
        }
    } else if input.paused {
        // A wait stays on record through a pause: a confirmation given while
        // paused counts once the release resumes.
        if released > 0 && input.need_confirm && !input.rollback {
            awaiting = Some(released + 1);
        }
        Phase::Paused
    } else if released == 0 || !input.need_confirm || input.rollback {
        // The first group starts on its own; without confirmation, so does every next one.
        released += 1;
        Phase::Progressing
    } else {
        // Group `released` is done; group `released + 1` needs a confirmation
        // given while *this* wait was on record.
        let next = released + 1;
        if input.awaiting == Some((input.revision, next)) && input.confirmed {
            released = next;
            Phase::Progressing
        } else {
            awaiting = Some(next);
            Phase::WaitingForConfirm(next)
        }
    };
    Decision {
        partitions: partitions_for(input.sizes, input.plan, released),
        released,
        completed: completed.min(groups),
        groups,
        phase,
        awaiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::plan::groups;

    /// Drives the machine like the controller would, with pods that finish
    /// every open group at once.
    struct Sim {
        sizes: Vec<usize>,
        plan: Vec<Group>,
        partitions: Vec<Option<usize>>,
        updated: Vec<usize>,
        awaiting: Option<(String, usize)>,
        confirmed: bool,
        need_confirm: bool,
        paused: bool,
        rollback: bool,
    }

    impl Sim {
        fn new(sizes: &[usize], beta: bool, batch: usize, need_confirm: bool) -> Self {
            Self {
                sizes: sizes.to_vec(),
                plan: groups(sizes, beta, batch),
                partitions: vec![None; sizes.len()],
                updated: vec![0; sizes.len()],
                awaiting: None,
                confirmed: false,
                need_confirm,
                paused: false,
                rollback: false,
            }
        }

        /// One reconcile: decide, apply partitions and the wait, let pods finish.
        fn step(&mut self) -> Decision {
            let input = Input {
                sizes: &self.sizes,
                updated_available: &self.updated,
                partitions: &self.partitions,
                plan: &self.plan,
                need_confirm: self.need_confirm,
                paused: self.paused,
                rollback: self.rollback,
                revision: "r2",
                awaiting: self.awaiting.as_ref().map(|(r, g)| (r.as_str(), *g)),
                confirmed: self.confirmed,
            };
            let d = decide(&input);
            if d.begins_waiting(&input) {
                self.confirmed = false; // the annotation is set to "false" first
            }
            self.awaiting = d.awaiting.map(|g| ("r2".to_string(), g));
            self.partitions = d.partitions.iter().map(|p| Some(*p)).collect();
            // Pods move up to what the partitions allow.
            self.updated = self
                .sizes
                .iter()
                .zip(&d.partitions)
                .map(|(s, p)| s - p)
                .collect();
            d
        }
    }

    #[test]
    fn cafes_example_waits_after_each_group_but_the_last() {
        let mut sim = Sim::new(&[5, 5], true, 4, true);
        let d = sim.step();
        assert_eq!((d.released, d.phase.clone()), (1, Phase::Progressing));
        assert_eq!(sim.updated, vec![1, 1], "the Beta group");
        let d = sim.step();
        assert_eq!(d.phase, Phase::WaitingForConfirm(2));
        assert_eq!(
            sim.step().phase,
            Phase::WaitingForConfirm(2),
            "no confirmation, no move"
        );
        assert_eq!(sim.updated, vec![1, 1]);

        sim.confirmed = true;
        let d = sim.step();
        assert_eq!((d.released, d.phase), (2, Phase::Progressing));
        assert_eq!(sim.updated, vec![3, 3]);
        let d = sim.step();
        assert_eq!(d.phase, Phase::WaitingForConfirm(3));
        assert!(
            !sim.confirmed,
            "the earlier true was reset when the new wait began"
        );

        sim.confirmed = true;
        sim.step();
        assert_eq!(sim.updated, vec![5, 5]);
        assert_eq!(
            sim.step().phase,
            Phase::Complete,
            "the last group needs no confirmation"
        );
    }

    #[test]
    fn a_true_written_before_the_wait_began_confirms_nothing() {
        let mut sim = Sim::new(&[5, 5], true, 4, true);
        sim.step();
        sim.confirmed = true; // set early, while the Beta group still runs
        // The controller records the wait for group 2 and resets the annotation.
        let input_awaiting = sim.awaiting.clone();
        assert!(input_awaiting.is_none());
        let d = sim.step();
        assert_eq!(d.phase, Phase::WaitingForConfirm(2));
        assert!(!sim.confirmed);
        assert_eq!(sim.step().phase, Phase::WaitingForConfirm(2));
    }

    #[test]
    fn a_stale_wait_record_does_not_let_a_true_through_for_a_later_group() {
        let sizes = [5, 5];
        let plan = groups(&sizes, true, 4);
        // Groups 1 and 2 done; status still records the wait for group 2.
        let input = Input {
            sizes: &sizes,
            updated_available: &[3, 3],
            partitions: &[Some(2), Some(2)],
            plan: &plan,
            need_confirm: true,
            revision: "r2",
            awaiting: Some(("r2", 2)),
            confirmed: true,
            ..Input::default()
        };
        let d = decide(&input);
        assert_eq!(d.phase, Phase::WaitingForConfirm(3));
        assert!(d.begins_waiting(&input));
        assert_eq!(d.partitions, vec![2, 2], "group 3 not opened");
    }

    #[test]
    fn pause_stops_new_groups_and_rollback_needs_no_confirmation() {
        let mut sim = Sim::new(&[5, 5], true, 4, true);
        sim.paused = true;
        assert_eq!(sim.step().phase, Phase::Paused);
        assert_eq!(sim.updated, vec![0, 0]);
        sim.paused = false;
        sim.step();
        assert_eq!(sim.updated, vec![1, 1]);

        let mut rollback = Sim::new(&[5, 5], false, 4, true);
        rollback.rollback = true;
        let mut phases = Vec::new();
        for _ in 0..6 {
            phases.push(rollback.step().phase);
        }
        assert!(
            !phases
                .iter()
                .any(|p| matches!(p, Phase::WaitingForConfirm(_)))
        );
        assert_eq!(phases.last(), Some(&Phase::Complete));
        assert_eq!(rollback.updated, vec![5, 5]);
    }

    #[test]
    fn a_group_is_done_only_when_its_pods_are_available() {
        let sizes = [5, 5];
        let plan = groups(&sizes, true, 4);
        let input = Input {
            sizes: &sizes,
            updated_available: &[1, 0], // cell-b's Beta pod not back in traffic yet
            partitions: &[Some(4), Some(4)],
            plan: &plan,
            need_confirm: true,
            revision: "r2",
            ..Input::default()
        };
        let d = decide(&input);
        assert_eq!(
            (d.released, d.completed, d.phase),
            (1, 0, Phase::Progressing)
        );
    }

    #[test]
    fn a_confirmation_given_while_paused_counts_on_resume() {
        let mut sim = Sim::new(&[5, 5], true, 4, true);
        sim.step();
        assert_eq!(sim.step().phase, Phase::WaitingForConfirm(2));
        sim.paused = true;
        sim.confirmed = true;
        assert_eq!(sim.step().phase, Phase::Paused);
        assert_eq!(sim.updated, vec![1, 1], "nothing moves while paused");
        assert!(sim.confirmed, "the confirmation is kept");
        sim.paused = false;
        let d = sim.step();
        assert_eq!((d.released, d.phase), (2, Phase::Progressing));
        assert_eq!(sim.updated, vec![3, 3]);
    }

    #[test]
    fn a_rollback_of_a_beta_group_moves_only_the_beta_pods() {
        // 10 pods, the Beta pods (one per cell) moved to r2, then rolled back to
        // r1: r1 is now the target and 4 of 5 pods per cell already run it.
        let sizes = [5, 5];
        let plan = groups(&sizes, false, 4);
        let input = Input {
            sizes: &sizes,
            updated_available: &[4, 4],
            partitions: &[None, None],
            plan: &plan,
            need_confirm: true,
            rollback: true,
            revision: "r1",
            ..Input::default()
        };
        let d = decide(&input);
        assert_eq!(d.partitions, vec![0, 0], "the last group opens at once");
        assert_eq!(d.phase, Phase::Progressing);
        assert_eq!(d.awaiting, None);
    }

    #[test]
    fn partitions_never_move_backwards_within_a_release() {
        for need_confirm in [false, true] {
            let mut sim = Sim::new(&[7, 3, 5], true, 4, need_confirm);
            let mut last = vec![usize::MAX; 3];
            for _ in 0..20 {
                sim.confirmed = true;
                let d = sim.step();
                assert!(d.partitions.iter().zip(&last).all(|(p, l)| p <= l));
                last = d.partitions;
            }
            assert_eq!(sim.updated, vec![7, 3, 5]);
        }
    }
}
