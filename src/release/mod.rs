//! Releasing a pod template over cells, pure. One planner serves every kind
//! of change — a creation from zero, a new template, a rollback, a scale, a
//! pin or a cell moved, a pod lost — from one recorded baseline:
//!
//! - [`plan`]: the groups (closed form, O(cells) per question);
//! - [`baseline`]: what is recorded about the release (stable revision,
//!   groups opened, the stable pods by right);
//! - [`progress`]: which group opens now (confirmation, pause, rollback);
//! - [`cells`]: what each cell's InPlaceSet is given (pods, partition, budget),
//!   surge-first when cells shrink;
//! - [`window`]: the deny windows (cron in a time zone) holding a release.
//!
//! The invariants (docs/design.md, Safety invariants), which the property tests below drive
//! random sequences of changes against:
//! (a) per cell, the pods on the update revision never exceed
//!     `moved_after(opened)` of the plan, and pods off the stable revision
//!     never grow beyond that allowance;
//! (b) pods taken out of traffic at once over all cells never exceed one
//!     group, nor `replicas - 1`.
//!
//! A cell whose cluster does not answer is planned as last seen and is not
//! written: the share of the budget it was last given counts as spent, so the
//! others get only the rest (the tests cut cells off at random). What its pods
//! do after the cut is not seen until it answers again.

pub mod analysis;
pub mod baseline;
pub mod cells;
pub mod plan;
pub mod progress;
pub mod window;

use std::collections::BTreeMap;

use baseline::Record;
use cells::{Observed, Target};
use plan::Plan;
use progress::Progress;

/// Everything a release decision is made from.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// As recorded in status.
    pub record: &'a Record,
    /// The revision of the current template.
    pub update: &'a str,
    /// Desired pods per cell, in `values` order.
    pub cells: &'a [(String, usize)],
    /// Per cell of `cells`: its InPlaceSet, if there is one.
    pub active: &'a [Option<Observed>],
    /// Sets of cells no longer in `values`.
    pub removed: &'a [Observed],
    pub beta: bool,
    pub batch: usize,
    pub need_confirm: bool,
    pub paused: bool,
    /// The annotation `cafe.sofastack.io/upgrade-confirmed` is "true".
    pub confirmed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Record this before acting on the targets.
    pub record: Record,
    pub progress: Progress,
    pub targets: Vec<Target>,
    /// Pods that may be out of traffic at once over all cells.
    pub budget: usize,
    /// A confirmation wait begins: reset the annotation to "false" first.
    pub begins_waiting: bool,
}

pub fn decide(input: &Input) -> Decision {
    let given: BTreeMap<String, usize> = input
        .cells
        .iter()
        .zip(input.active)
        .filter_map(|((name, _), o)| Some((name.clone(), o.as_ref()?.given?)))
        .collect();
    let record = input.record.for_template(input.update, &given);
    let sizes: Vec<usize> = input.cells.iter().map(|(_, n)| *n).collect();
    let plan = Plan::new(&sizes, input.beta && !record.rollback, input.batch);
    // Every set's counts as last reported for this release, also while its
    // status lags a later write to its spec (as after every write: a
    // partition, a budget, a pause). Such a status still describes the pods:
    // no write of ours takes a pod off the update revision or out of
    // traffic before the set's controller acts on it and reports again.
    // Read from up-to-date sets only, the groups completed fell back (to 0
    // in a Beta release, whose first group spans every cell) after every
    // confirmation and every write, until the statuses caught up.
    let updated: Vec<usize> = input
        .active
        .iter()
        .map(|o| o.as_ref().map_or(0, |o| o.updated_available))
        .collect();
    let completed = if input.removed.is_empty() {
        plan.covered_by(&updated)
    } else {
        // A removed cell still holds pods: the release is not over.
        plan.covered_by(&updated)
            .min(plan.groups().saturating_sub(1))
    };
    let progress_input = progress::Input {
        groups: plan.groups(),
        opened: record.opened,
        completed,
        need_confirm: input.need_confirm,
        paused: input.paused,
        // Only releasing the stable revision itself may complete with no
        // pods (an empty plan): nothing new would become stable by it.
        rollback: record.releases_stable() || (record.rollback && plan.groups() > 0),
        awaiting: record.awaiting,
        confirmed: input.confirmed,
    };
    let progress = progress::decide(&progress_input);
    let begins_waiting = progress.begins_waiting(&progress_input);
    let mut record = Record {
        opened: progress.opened,
        awaiting: progress.awaiting,
        ..record
    };
    if progress.phase == progress::Phase::Complete {
        record = record.complete();
    }
    // Whether the template has shown its pods get ready: a group's worth
    // available (before that, cell by cell, one of the cell's pods),
    // counted in every set whose status describes this template,
    // lagging or not. Read from up-to-date sets only, it would turn false
    // again at each write it causes to the sets (their status lags every
    // spec write), and the sets were rewritten back and forth until their
    // statuses happened to catch up (400 writes in a creation of 1,000 pods).
    let proof = cells::creation_proof(plan.covered_by(&updated), input.paused);
    let targets = cells::targets(
        &record,
        &plan,
        progress.opened,
        proof,
        input.cells,
        input.active,
        input.removed,
    );
    let desired: usize = sizes.iter().sum();
    Decision {
        record,
        progress,
        targets,
        budget: cells::budget(&plan, desired),
        begins_waiting,
    }
}

#[cfg(test)]
mod tests;
