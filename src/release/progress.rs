//! How far a release goes this round, pure: from the recorded groups opened,
//! the groups completed (observed), pause and the confirmation state.
//!
//! Groups *opened* are recorded; groups *completed* are observed (their pods
//! run the revision and are available). Where a confirmation lies between
//! groups, a group opens only once every opened one completed, so at most one
//! group moves at a time. A release or a creation that needs no confirmation
//! (or a rollback) opens its groups together: the unavailability budget, one
//! group, then paces the pods like a window (a creation's new pods count
//! against it until they are available, until one group is available), so
//! a template whose pods never become ready still stops after one group's
//! worth, while a slow pod no longer holds up the next group. The only other
//! remembered state is the confirmation wait (group), so that a "true" written
//! before the wait began never confirms a later group.

/// What the progress decision needs.
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub groups: usize,
    /// Recorded: groups opened so far (may exceed `groups` after a scale-in).
    pub opened: usize,
    /// Observed: groups whose pods are all on the revision and available.
    pub completed: usize,
    pub need_confirm: bool,
    pub paused: bool,
    /// A rollback releases at once: no confirmation waits.
    pub rollback: bool,
    /// The recorded wait (a group of this release).
    pub awaiting: Option<usize>,
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
    /// No pod to release (every cell at zero pods): the release stays on
    /// record as it is, and scaling up resumes it where it stood.
    Empty,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Groups opened after this decision (record it before acting on it).
    pub opened: usize,
    pub completed: usize,
    pub groups: usize,
    pub phase: Phase,
    /// The wait to record; `Some` and different from the input's means the
    /// wait begins now: reset the annotation to "false" first.
    pub awaiting: Option<usize>,
}

impl Progress {
    pub fn begins_waiting(&self, input: &Input) -> bool {
        self.awaiting.is_some() && self.awaiting != input.awaiting
    }
}

pub fn decide(input: &Input) -> Progress {
    let groups = input.groups;
    if groups == 0 && !input.rollback {
        return empty_plan(input);
    }
    let mut completed = input.completed.min(groups);
    let mut opened = input.opened.min(groups).max(completed);
    // A wait on record for the next group stays on record while the groups
    // opened stay as they are: a moment when the sets' status lags their spec
    // (completed reads lower), or a scale-in that shrinks the plan for a
    // while, must not end it, or it would begin again and reset a
    // confirmation the user gave meanwhile.
    let mut awaiting = input
        .awaiting
        .filter(|g| *g == opened + 1 || *g == input.opened.saturating_add(1));
    let phase = if completed >= groups {
        opened = groups;
        awaiting = None;
        Phase::Complete
    } else if completed < opened {
        // The open group is still moving. Pause stops new groups here; the
        // InPlaceSets are paused too, so pods that have not started stay put.
        // A wait kept on record means the group had completed: the phase says
        // so too, rather than flicker while the sets' status catches up.
        match (input.paused, awaiting) {
            (true, _) => Phase::Paused,
            (false, Some(next)) => {
                // And so do the groups completed.
                completed = next - 1;
                Phase::WaitingForConfirm(next)
            }
            (false, None) => Phase::Progressing,
        }
    } else if input.paused {
        // A wait stays on record through a pause: a confirmation given while
        // paused counts once the release resumes.
        if opened > 0 && input.need_confirm && !input.rollback {
            awaiting = Some(opened + 1);
        }
        Phase::Paused
    } else if !input.need_confirm || input.rollback {
        // Nothing to wait for between groups: all open, the budget paces.
        opened = groups;
        awaiting = None;
        Phase::Progressing
    } else if opened == 0 {
        // The first group starts on its own.
        opened += 1;
        awaiting = None;
        Phase::Progressing
    } else {
        let next = opened + 1;
        if input.awaiting == Some(next) && input.confirmed {
            opened = next;
            awaiting = None;
            Phase::Progressing
        } else {
            awaiting = Some(next);
            Phase::WaitingForConfirm(next)
        }
    };
    Progress {
        // The recorded frontier never goes back within a release: a plan made
        // smaller by a scale-in and grown again reopens nothing and closes nothing.
        opened: if phase == Phase::Complete {
            groups
        } else {
            opened.max(input.opened)
        },
        completed,
        groups,
        phase,
        awaiting,
    }
}

/// What status showed of the release last: its revision, its number of
/// groups, and the groups completed (`status.release.group`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown<'a> {
    pub revision: &'a str,
    pub groups: usize,
    pub completed: usize,
}

/// The groups completed as status shows them (the GROUP column), a counter
/// that never goes back within one release: the same revision over a plan
/// of the same number of groups. A group once shown done stays done (a pod
/// of it lost or restarted later is the set's to heal; the release does not
/// go back). It restarts from what the pods show when another release
/// begins (a new template, a rollback: another revision), and is read from
/// the pods again when the plan changes its number of groups (a scale, a
/// cell added or removed). Only what it shows: the decision reads the pods.
pub fn shown_completed(
    completed: usize,
    groups: usize,
    revision: &str,
    before: Option<Shown>,
) -> usize {
    let same = before.filter(|b| b.revision == revision && b.groups == groups);
    completed.max(same.map_or(0, |b| b.completed)).min(groups)
}

/// An empty plan completes nothing: "0 of 0 groups done" would make an
/// unconfirmed revision stable, and scaling up would create every pod on it.
/// The groups opened and the wait stay as recorded.
fn empty_plan(input: &Input) -> Progress {
    let phase = match input.awaiting {
        _ if input.paused => Phase::Paused,
        Some(next) => Phase::WaitingForConfirm(next),
        None => Phase::Empty,
    };
    Progress {
        opened: input.opened,
        completed: 0,
        groups: input.groups,
        phase,
        awaiting: input.awaiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(opened: usize, completed: usize) -> Input {
        Input {
            groups: 3,
            opened,
            completed,
            need_confirm: true,
            ..Input::default()
        }
    }

    #[test]
    fn the_first_group_opens_on_its_own_then_each_waits_for_a_confirmation() {
        let p = decide(&input(0, 0));
        assert_eq!((p.opened, p.phase), (1, Phase::Progressing));
        let i = input(1, 1);
        let p = decide(&i);
        assert_eq!(p.phase, Phase::WaitingForConfirm(2));
        assert!(p.begins_waiting(&i));
        let confirmed = Input {
            awaiting: Some(2),
            confirmed: true,
            ..input(1, 1)
        };
        assert_eq!(decide(&confirmed).opened, 2);
    }

    #[test]
    fn a_true_from_an_earlier_wait_confirms_nothing() {
        let stale = Input {
            awaiting: Some(2),
            confirmed: true,
            ..input(2, 2)
        };
        let p = decide(&stale);
        assert_eq!(
            (p.opened, p.phase.clone()),
            (2, Phase::WaitingForConfirm(3))
        );
        assert!(p.begins_waiting(&stale));
    }

    #[test]
    fn nothing_opens_while_a_group_moves_or_while_paused() {
        assert_eq!(decide(&input(2, 1)).opened, 2);
        let paused = Input {
            paused: true,
            ..input(1, 1)
        };
        let p = decide(&paused);
        assert_eq!((p.opened, p.phase, p.awaiting), (1, Phase::Paused, Some(2)));
    }

    #[test]
    fn a_recorded_group_is_never_closed_and_a_smaller_plan_completes() {
        // Scale-in shrank the plan to 2 groups while 3 were open.
        let p = decide(&Input {
            groups: 2,
            opened: 3,
            completed: 2,
            ..Input::default()
        });
        assert_eq!((p.opened, p.phase), (2, Phase::Complete));
    }

    #[test]
    fn a_wait_on_record_survives_a_moment_of_stale_observation() {
        // Waiting for group 2, paused; the sets' status lags (completed reads 0).
        let lagging = Input {
            paused: true,
            awaiting: Some(2),
            confirmed: true,
            ..input(1, 0)
        };
        let p = decide(&lagging);
        assert_eq!(p.awaiting, Some(2));
        assert!(!p.begins_waiting(&lagging), "the wait does not begin again");
        // Unpaused, still lagging: still waiting, no flicker to Progressing.
        let p = decide(&Input {
            awaiting: Some(2),
            ..input(1, 0)
        });
        assert_eq!(p.phase, Phase::WaitingForConfirm(2));
        assert_eq!(p.completed, 1, "the group the wait follows reads completed");
        // Unpaused and caught up: the confirmation given meanwhile counts.
        let p = decide(&Input {
            awaiting: Some(2),
            confirmed: true,
            ..input(1, 1)
        });
        assert_eq!((p.opened, p.phase), (2, Phase::Progressing));
    }

    #[test]
    fn a_scale_in_and_out_neither_closes_groups_nor_restarts_a_wait() {
        // Two groups open, waiting for the third; scaled in to a one-group plan
        // whose pod is not available yet.
        let small = decide(&Input {
            groups: 1,
            opened: 2,
            completed: 0,
            need_confirm: true,
            awaiting: Some(3),
            ..Input::default()
        });
        assert_eq!((small.opened, small.awaiting), (2, Some(3)));
        // Scaled out again: still two open, the same wait, not begun again.
        let again = Input {
            awaiting: Some(3),
            ..input(2, 2)
        };
        let big = decide(&again);
        assert_eq!(
            (big.opened, big.phase.clone()),
            (2, Phase::WaitingForConfirm(3))
        );
        assert!(!big.begins_waiting(&again));
    }

    #[test]
    fn an_empty_plan_keeps_the_release_where_it_stood() {
        // Scaled to zero while waiting for group 2.
        let zero = Input {
            groups: 0,
            awaiting: Some(2),
            confirmed: true,
            ..input(1, 0)
        };
        let p = decide(&zero);
        assert_eq!(
            (p.opened, p.phase.clone(), p.awaiting),
            (1, Phase::WaitingForConfirm(2), Some(2))
        );
        assert!(!p.begins_waiting(&zero), "the wait is the one on record");
        let p = decide(&Input {
            groups: 0,
            ..input(2, 0)
        });
        assert_eq!((p.opened, p.phase), (2, Phase::Empty));
        // Releasing the stable revision itself has nothing to hold.
        let p = decide(&Input {
            groups: 0,
            rollback: true,
            ..input(0, 0)
        });
        assert_eq!(p.phase, Phase::Complete);
    }

    #[test]
    fn the_groups_shown_done_never_go_back_within_a_release() {
        let before = |completed| {
            Some(Shown {
                revision: "r2",
                groups: 3,
                completed,
            })
        };
        // A pod of a done group lost, or a status behind: still done.
        assert_eq!(shown_completed(0, 3, "r2", before(2)), 2);
        assert_eq!(shown_completed(3, 3, "r2", before(2)), 3);
        // Another release (a new template, a rollback) starts again.
        assert_eq!(shown_completed(0, 3, "r3", before(2)), 0);
        // A plan of another size is read from the pods again.
        assert_eq!(shown_completed(1, 4, "r2", before(2)), 1);
        assert_eq!(shown_completed(1, 3, "r2", None), 1);
    }

    proptest::proptest! {
        /// Over any sequence of readings, the counter shown never decreases
        /// while the revision and the plan's size stay, never exceeds the
        /// groups, and starts from the pods' reading in a new release.
        #[test]
        fn the_counter_shown_moves_back_only_for_another_release_or_plan(
            readings in proptest::collection::vec((0usize..3, 1usize..4, 0usize..5), 1..40)
        ) {
            let revisions = ["r1", "r2", "r3"];
            let mut shown: Option<(usize, usize, usize)> = None;
            for (rev, groups, completed) in readings {
                let completed = completed.min(groups);
                let before = shown.map(|(r, g, c)| Shown {
                    revision: revisions[r],
                    groups: g,
                    completed: c,
                });
                let now = shown_completed(completed, groups, revisions[rev], before);
                proptest::prop_assert!(now <= groups && now >= completed);
                match shown {
                    Some((r, g, c)) if r == rev && g == groups => {
                        proptest::prop_assert!(now >= c, "{c} -> {now}");
                    }
                    _ => proptest::prop_assert_eq!(now, completed),
                }
                shown = Some((rev, groups, now));
            }
        }
    }

    #[test]
    fn a_rollback_never_waits_and_opens_every_group() {
        let p = decide(&Input {
            rollback: true,
            ..input(1, 1)
        });
        assert_eq!((p.opened, p.phase), (3, Phase::Progressing));
    }

    #[test]
    fn without_confirmation_every_group_opens_at_once() {
        let release = Input {
            need_confirm: false,
            ..input(0, 0)
        };
        let p = decide(&release);
        assert_eq!(
            (p.opened, p.phase, p.awaiting),
            (3, Phase::Progressing, None)
        );
        // Paused: nothing more opens, whatever the mode.
        let paused = Input {
            paused: true,
            ..input(1, 1)
        };
        assert_eq!(
            decide(&Input {
                need_confirm: false,
                ..paused
            })
            .opened,
            1
        );
    }
}
