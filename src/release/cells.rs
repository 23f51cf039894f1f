//! What each cell's InPlaceSet is given, pure: how many pods, how many of
//! them stay on the stable revision (the partition), and how many may leave
//! traffic at once (maxUnavailable).
//!
//! - **Blast radius.** A cell holds at most `moved_after(opened)` pods off the
//!   stable revision. Pods the stable revision does not cover yet (a creation,
//!   or the rest of an interrupted one) come only as groups open.
//! - **Surge first.** A cell that must shrink (a scale-in, a pin moved, a cell
//!   removed from `values`) gives up pods only while the pods available over
//!   the whole CafeDeployment exceed the desired count, so replacements
//!   elsewhere are in traffic before the pods they replace leave it.
//!   Unavailable pods go first: they serve nothing.
//! - **Budget.** Pods taken out of traffic at once, over all cells, never
//!   exceed one group (the largest group of the plan), nor leave a Service
//!   without an endpoint (at most `replicas - 1`). Cells with pods to move get
//!   the budget: the open group's share first, the rest round-robin. Every
//!   unavailable pod counts, as for a Deployment's `maxUnavailable`: a set
//!   counts its own unavailable pods against its share, and a cell's
//!   unavailable pods beyond its share (pods failing their own probes, on a
//!   lost node, new) are taken from the other cells' shares.

use super::baseline::Record;
use super::plan::Plan;

/// One cell as its InPlaceSet reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub name: String,
    /// The set's spec.replicas (None: no set yet).
    pub given: Option<usize>,
    /// Live (not terminating) pods.
    pub live: usize,
    pub available: usize,
    /// Available pods on the update / the stable revision, as last reported
    /// for this release (also while the set's status lags a later write to
    /// its spec: the planner never tells the two apart, so nothing it
    /// decides falls back because of a write of its own).
    pub updated_available: usize,
    pub stable_available: usize,
    /// The set cannot be written now (its cluster does not answer): it goes
    /// on with the maxUnavailable it was last given, which the budget counts
    /// as spent, whatever this decision would give it.
    pub held: Option<usize>,
}

/// What a cell's InPlaceSet is given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub replicas: usize,
    /// Pods that stay on the stable revision.
    pub partition: usize,
    pub max_unavailable: usize,
    /// Removed from `topology.values`: drained away, then deleted.
    pub retiring: bool,
    /// A creation (no stable revision yet) whose template has not proven
    /// itself: new pods use the cell's budget until they are available, so
    /// the groups, all open, flow like a window.
    pub pace_creation: bool,
}

/// The cells of the spec (`sizes`, in `values` order) and the removed ones.
/// `proof`: how far the creation's template has shown its pods get ready
/// (see [`creation_proof`]).
pub fn targets(
    record: &Record,
    plan: &Plan,
    opened: usize,
    proof: Proof,
    cells: &[(String, usize)],
    active: &[Option<Observed>],
    removed: &[Observed],
) -> Vec<Target> {
    let desired: usize = cells.iter().map(|(_, n)| *n).sum();
    let allowed = if record.releases_stable() {
        cells.iter().map(|(_, n)| *n).collect()
    } else {
        plan.moved_after(opened)
    };
    let mut out: Vec<Target> = cells
        .iter()
        .zip(&allowed)
        .enumerate()
        .map(|(i, ((name, size), allowed))| {
            let stable = record.stable_slots(name, *size);
            let replicas = stable + (*allowed).min(size - stable);
            let seen = active.get(i).and_then(Option::as_ref);
            Target {
                name: name.clone(),
                replicas,
                partition: replicas - (*allowed).min(replicas),
                max_unavailable: 0,
                retiring: false,
                pace_creation: record.stable.is_none()
                    && proof.paces(seen.map_or(0, |o| o.updated_available)),
            }
        })
        .collect();
    out.extend(removed.iter().map(|o| Target {
        name: o.name.clone(),
        replicas: 0,
        partition: 0,
        max_unavailable: 0,
        retiring: true,
        pace_creation: false,
    }));
    let observed: Vec<Option<&Observed>> = active
        .iter()
        .map(Option::as_ref)
        .chain(removed.iter().map(Some))
        .collect();
    hold_shrinking_cells(&mut out, &observed, desired, plan.largest_group());
    allocate_budget(&mut out, &observed, plan, opened, desired);
    if record.stable.is_some() {
        count_every_unavailable_pod(&mut out, &observed, budget(plan, desired));
    }
    out
}

/// One budget for the whole CafeDeployment, counting every unavailable pod,
/// as a Deployment's `maxUnavailable` does. A set takes a pod out of traffic
/// only while its own unavailable pods, for whatever reason, are below its
/// share, so a cell's unavailable pods within its share are counted already.
/// Two cuts keep the whole within the budget:
///
/// - pods beyond a cell's share (failing their own probes, on a lost node,
///   new ones starting, a cell with no work that has some) are taken from
///   the shares of the cells within theirs, the last in `values` order first,
///   so the shares and the pods beyond them add up to the budget at most;
/// - no cell's share exceeds the budget less the other cells' unavailable
///   pods, so a cell whose own pods recover before the next look (they were
///   beyond its share when seen) still cannot add to another cell's.
///
/// Neither binds while every cell's unavailable pods are within its share
/// (a release as usual), so the sets are rewritten only while some are not.
/// Not applied to a first creation: nothing serves yet, and its new pods
/// would rewrite the sets at every one that gets ready.
fn count_every_unavailable_pod(out: &mut [Target], observed: &[Option<&Observed>], budget: usize) {
    let unavailable: Vec<usize> = observed
        .iter()
        .map(|o| o.map_or(0, |o| o.live.saturating_sub(o.available)))
        .collect();
    let total: usize = unavailable.iter().sum();
    let mut overflow: usize = out
        .iter()
        .zip(&unavailable)
        .map(|(t, u)| u.saturating_sub(t.max_unavailable))
        .sum();
    for ((t, u), o) in out.iter_mut().zip(&unavailable).zip(observed).rev() {
        if o.is_some_and(|o| o.held.is_some()) {
            // Not written: its share is what it has.
            continue;
        }
        if *u <= t.max_unavailable {
            let cut = t.max_unavailable.min(overflow);
            t.max_unavailable -= cut;
            overflow -= cut;
        }
        let others = total - u;
        t.max_unavailable = t.max_unavailable.min(budget.saturating_sub(others));
    }
}

/// How far a creation's template has shown that its pods get ready, which
/// decides where its new pods stop being paced by the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// Paused: every cell stays paced (nothing more beyond the budget).
    Held,
    /// No group available yet: a cell stops pacing once one of its own pods
    /// is available, so the scheduler never waits for a whole group; a cell
    /// whose pods never get ready creates one group's worth at most (its share
    /// of the budget, all of it once the other cells have no work left).
    ByCell,
    /// A group is available: no cell is paced.
    Group,
}

impl Proof {
    /// Whether a cell with `ready` available pods of the creation is paced.
    fn paces(self, ready: usize) -> bool {
        match self {
            Proof::Held => true,
            Proof::ByCell => ready == 0,
            Proof::Group => false,
        }
    }
}

/// How far a creation has proven its template: once a group is available,
/// everywhere, and the rest is created at once, as a Deployment does (the
/// scheduler paces it then); before that, cell by cell. A template whose
/// pods never get ready still creates one group's worth, and a paused
/// creation creates nothing more.
pub fn creation_proof(completed_groups: usize, paused: bool) -> Proof {
    match (paused, completed_groups > 0) {
        (true, _) => Proof::Held,
        (false, false) => Proof::ByCell,
        (false, true) => Proof::Group,
    }
}

/// Surge first: shrinking cells keep their pods until the rest of the
/// CafeDeployment has enough available pods without them.
fn hold_shrinking_cells(
    out: &mut [Target],
    observed: &[Option<&Observed>],
    desired: usize,
    budget: usize,
) {
    let available: usize = observed.iter().flatten().map(|o| o.available).sum();
    let leaving: usize = observed
        .iter()
        .flatten()
        .map(|o| o.live.saturating_sub(o.given.unwrap_or(0)))
        .sum();
    let mut surplus = available
        .saturating_sub(desired)
        .min(budget.saturating_sub(leaving));
    // Removed cells first, then the others in `values` order.
    let mut order: Vec<usize> = (0..out.len()).filter(|i| out[*i].retiring).collect();
    order.extend((0..out.len()).filter(|i| !out[*i].retiring));
    for i in order {
        let Some(o) = observed[i] else { continue };
        let target = &mut out[i];
        // A held pod that is lost is not replaced: holding only delays a drain.
        let given = o.given.unwrap_or(0).min(o.live.max(target.replicas));
        if given <= target.replicas {
            continue;
        }
        let excess = given - target.replicas;
        // Unavailable among the pods it keeps: those beyond `given` are
        // already leaving (draining), and are not cut a second time.
        let unavailable = given.saturating_sub(o.available).min(excess);
        let cut = (unavailable + surplus).min(excess);
        surplus -= cut - unavailable.min(cut);
        let kept = given - cut;
        // Held pods stay where they are: the partition grows with them.
        let moving = target.replicas - target.partition;
        target.replicas = kept;
        target.partition = kept - moving.min(kept);
    }
}

/// Pods that may be out of traffic at once: one group, and never the last
/// available pod (`replicas - 1`, but at least one so a release can move).
pub fn budget(plan: &Plan, desired: usize) -> usize {
    plan.largest_group().min(desired.saturating_sub(1).max(1))
}

/// The budget, split over the cells that have pods to move in proportion to
/// their size (Sainte-Laguë, as the groups are). The split changes only when a
/// cell starts or finishes its work, not with every pod it moves, so the sets
/// are rewritten a few times per release rather than at every step. A share is
/// a cap, not an order: a set takes out of traffic only pods it must change,
/// so a share larger than a cell's remaining work is harmless.
fn allocate_budget(
    out: &mut [Target],
    observed: &[Option<&Observed>],
    plan: &Plan,
    opened: usize,
    desired: usize,
) {
    // What sets that cannot be written hold is spent already.
    let held: usize = observed.iter().flatten().filter_map(|o| o.held).sum();
    let room = budget(plan, desired).saturating_sub(held) as u64;
    let share = plan.group(opened);
    let weights: Vec<u64> = out
        .iter()
        .zip(observed)
        .enumerate()
        .map(|(i, (t, o))| {
            if t.retiring || o.is_some_and(|o| o.held.is_some()) {
                return 0;
            }
            let work = match o {
                // A set whose status lags its spec still reports the best
                // estimate of its work: asking for the group's share instead
                // would change its maxUnavailable, which makes it lag again,
                // and the sets would be rewritten for ever.
                Some(o) if o.given == Some(t.replicas) => {
                    let update = t.replicas - t.partition;
                    update.saturating_sub(o.updated_available)
                        + t.partition.saturating_sub(o.stable_available)
                        // Pods beyond replicas are drained before they go.
                        + o.live.saturating_sub(t.replicas)
                }
                // Not observed yet: the group's share is its work.
                _ => share.get(i).copied().unwrap_or(0),
            };
            if work > 0 {
                t.replicas.max(1) as u64
            } else {
                0
            }
        })
        .collect();
    let total: u64 = weights.iter().sum();
    let split = super::plan::first_of_sequence(&weights, room.min(total));
    for ((t, s), o) in out.iter_mut().zip(split).zip(observed) {
        t.max_unavailable = o.and_then(|o| o.held).unwrap_or(s as usize);
    }
}

#[cfg(test)]
mod tests;
