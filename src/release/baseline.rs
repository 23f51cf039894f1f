//! The release baseline: what is recorded (in the CafeDeployment's status)
//! about which revision is stable and how far the release of the update
//! revision got. Nothing here is inferred from pod counts: a bigger plan, a
//! lost pod or a slow cache never reads as "groups already released".
//!
//! - `stable`: the revision every pod ran when the last release completed
//!   (`status.currentRevision`). `None` only before a first creation completed.
//! - `revision`, `opened`: the revision being released and how many of its
//!   groups were opened (their pods may move), recorded before any InPlaceSet
//!   is written, so a restarted operator never reopens or closes a group.
//! - `baseline`: per cell, how many pods exist on the stable revision by
//!   right. Absent: all of them. It is partial only after a first creation was
//!   interrupted by a new template: the pods the creation had made stay on its
//!   revision (now stable), the rest are created by the new release's groups.

use std::collections::BTreeMap;

/// The release as recorded in status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub stable: Option<String>,
    pub revision: Option<String>,
    pub opened: usize,
    /// The release restores an earlier revision: no Beta, no confirmation.
    pub rollback: bool,
    /// The group a confirmation is awaited for (of `revision`).
    pub awaiting: Option<usize>,
    /// Stable pods by right per cell (absent: every pod of the cell).
    pub baseline: Option<BTreeMap<String, usize>>,
}

impl Record {
    /// The record once `update` is the template: a template that differs from
    /// the one being released starts a new release at group 0. `given` is what
    /// each cell's InPlaceSet was given so far (pods the operator created,
    /// recorded in the sets' specs), used when a first creation is interrupted.
    pub fn for_template(&self, update: &str, given: &BTreeMap<String, usize>) -> Record {
        if self.revision.as_deref() == Some(update) {
            return self.clone();
        }
        match (&self.stable, &self.revision) {
            // The stable revision again (a rollback to it, or a template
            // reverted): nothing new to expose, every group is open at once.
            (Some(stable), _) if stable == update => Record {
                stable: self.stable.clone(),
                revision: Some(update.to_string()),
                opened: usize::MAX,
                // Going back is a rollback, recorded as one (no inference later).
                rollback: true,
                awaiting: None,
                baseline: self.baseline.clone(),
            },
            // A first creation interrupted by a new template: the pods it made
            // become the stable baseline, the rest come with the new release.
            (None, Some(creating)) if given.values().any(|n| *n > 0) => Record {
                stable: Some(creating.clone()),
                revision: Some(update.to_string()),
                opened: 0,
                rollback: false,
                awaiting: None,
                baseline: Some(given.clone()),
            },
            _ => Record {
                stable: self.stable.clone(),
                revision: Some(update.to_string()),
                opened: 0,
                rollback: false,
                awaiting: None,
                baseline: self.baseline.clone(),
            },
        }
    }

    /// Stable pods by right in `cell` of `size` pods.
    pub fn stable_slots(&self, cell: &str, size: usize) -> usize {
        match (&self.stable, &self.baseline) {
            (None, _) => 0,
            (Some(_), None) => size,
            (Some(_), Some(map)) => map.get(cell).copied().unwrap_or(0).min(size),
        }
    }

    /// Releasing the stable revision itself: nothing to pace.
    pub fn releases_stable(&self) -> bool {
        self.stable.is_some() && self.stable == self.revision
    }

    /// The release completed: its revision is the new stable one.
    pub fn complete(&self) -> Record {
        Record {
            stable: self.revision.clone(),
            revision: self.revision.clone(),
            opened: usize::MAX,
            rollback: false,
            awaiting: None,
            baseline: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(a: usize, b: usize) -> BTreeMap<String, usize> {
        [("a".to_string(), a), ("b".to_string(), b)].into()
    }

    #[test]
    fn a_new_template_starts_a_release_at_group_zero_on_the_same_stable() {
        let r = Record {
            stable: Some("r1".into()),
            revision: Some("r2".into()),
            opened: 2,
            awaiting: Some(3),
            ..Record::default()
        };
        let next = r.for_template("r3", &given(5, 5));
        assert_eq!(next.stable.as_deref(), Some("r1"));
        assert_eq!((next.revision.as_deref(), next.opened), (Some("r3"), 0));
        assert_eq!(next.awaiting, None);
        assert_eq!(r.for_template("r2", &given(5, 5)), r, "same template: kept");
    }

    #[test]
    fn an_interrupted_first_creation_makes_its_pods_the_baseline() {
        let r = Record {
            revision: Some("r1".into()),
            opened: 2,
            ..Record::default()
        };
        let next = r.for_template("r2", &given(3, 3));
        assert_eq!(next.stable.as_deref(), Some("r1"));
        assert_eq!(next.stable_slots("a", 5), 3);
        assert_eq!(next.stable_slots("c", 5), 0, "a cell with no pods yet");
        assert_eq!(next.opened, 0);
        // Nothing created yet: the new template simply replaces the creation.
        let fresh = r.for_template("r2", &given(0, 0));
        assert_eq!(fresh.stable, None);
    }

    #[test]
    fn going_back_to_the_stable_revision_opens_everything() {
        let r = Record {
            stable: Some("r1".into()),
            revision: Some("r2".into()),
            opened: 1,
            ..Record::default()
        };
        let back = r.for_template("r1", &given(5, 5));
        assert!(back.releases_stable() && back.rollback);
        assert_eq!(back.opened, usize::MAX);
    }
}
