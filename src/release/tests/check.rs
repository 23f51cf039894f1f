//! The invariants checked after every round of the release tests.

use super::world::World;
use super::*;

/// Pods on the template's revision per cell, before a round.
pub(super) fn on_template(world: &World) -> BTreeMap<String, usize> {
    world
        .sets
        .iter()
        .map(|(c, s)| {
            (
                c.clone(),
                s.pods.iter().filter(|p| p.rev == world.template).count(),
            )
        })
        .collect()
}

/// `on_template` as the host sees it: a cut cell as it was last seen (what
/// it does alone since, such as replacing a lost pod, is unknown to it).
pub(super) fn seen_on_template(world: &World) -> BTreeMap<String, usize> {
    let mut seen = on_template(world);
    for (c, last) in &world.cut {
        let n = last.as_ref().map_or(0, |s| {
            s.pods.iter().filter(|p| p.rev == world.template).count()
        });
        seen.insert(c.clone(), n);
    }
    seen
}

/// What a round changed, for the checks.
pub(super) struct Round<'a> {
    pub(super) decision: &'a Decision,
    /// Pods on the template per cell before the round.
    pub(super) before: &'a BTreeMap<String, usize>,
    /// The same, as the host saw them (cut cells as last seen).
    pub(super) seen_before: &'a BTreeMap<String, usize>,
    /// The stable revision before the round.
    pub(super) stable_before: Option<String>,
    /// Pods out of traffic on their own that the sets the host can write
    /// kept.
    pub(super) sick: usize,
    /// Available pods the sets the host can write took out of traffic.
    pub(super) taken: usize,
    /// Available pods the cut sets took out of traffic, on their own.
    pub(super) taken_by_cut: usize,
}

pub(super) fn check(world: &World, round: &Round) -> Result<(), TestCaseError> {
    let cells = world.cells();
    let sizes: Vec<usize> = cells.iter().map(|(_, n)| *n).collect();
    check_opened(world, round, &cells, &sizes)?;
    check_budget(world, round, &sizes)?;
    check_stable(world, round, sizes.iter().sum())
}

/// (a) per cell, pods on the update revision within what the groups opened
/// (pods that existed before a re-plan are never added to, only moved off).
fn check_opened(
    world: &World,
    round: &Round,
    cells: &[(String, usize)],
    sizes: &[usize],
) -> Result<(), TestCaseError> {
    let (decision, before) = (round.decision, round.before);
    let plan = Plan::new(sizes, world.beta && !decision.record.rollback, world.batch);
    let allowed = if decision.record.releases_stable() {
        sizes.to_vec()
    } else {
        plan.moved_after(decision.progress.opened)
    };
    let stable_rev = decision
        .record
        .stable
        .as_deref()
        .and_then(|r| r.strip_prefix('r'))
        .and_then(|n| n.parse::<u32>().ok());
    for ((name, _), allowed) in cells.iter().zip(&allowed) {
        if world.cut.contains_key(name) {
            // Cut off, a set goes on toward what it was last given, under
            // the allowance of when it was given (nothing is written to it
            // since): checked when it was written.
            continue;
        }
        if let Some(set) = world.sets.get(name)
            && Some(world.template) != stable_rev
        {
            let on_update = set.pods.iter().filter(|p| p.rev == world.template).count();
            let had = before.get(name).copied().unwrap_or(0);
            prop_assert!(
                on_update <= (*allowed).max(had),
                "cell {name}: {on_update} pods on r{} but the groups opened allow {allowed} ({:?})",
                world.template,
                decision.record
            );
        }
    }
    Ok(())
}

/// (b) the budget handed out is one group at most, and leaves an endpoint;
/// pods leave traffic only within it and within the PodDisruptionBudget.
fn check_budget(world: &World, round: &Round, sizes: &[usize]) -> Result<(), TestCaseError> {
    let decision = round.decision;
    // A cut cell holds the share it was last given, which a smaller budget
    // (a scale-in meanwhile) cannot take back: nothing more is handed out
    // then, and the others get nothing.
    let held: usize = world
        .cut
        .values()
        .flatten()
        .map(|s| s.max_unavailable)
        .sum();
    let bound = decision.budget.max(held);
    let handed: usize = decision.targets.iter().map(|t| t.max_unavailable).sum();
    let desired: usize = sizes.iter().sum();
    prop_assert!(
        handed <= bound,
        "handed {handed}, budget {}, held {held}",
        decision.budget
    );
    prop_assert!(decision.budget <= desired.saturating_sub(1).max(1));
    // (b) over the whole CafeDeployment: a pod leaves traffic only while the
    // pods out of it, for any reason, stay within the budget, and within
    // the PodDisruptionBudget's maxUnavailable.
    // A cut set goes on alone within the share it holds: it cannot learn of
    // pods falling sick elsewhere meanwhile (docs/design.md, Several clusters:
    // a member cut off keeps serving and self-healing at its last partition),
    // so the whole can exceed the budget by at most what the cut sets hold.
    prop_assert!(
        round.taken_by_cut <= held,
        "cut sets took {} pods out of traffic, holding {held}",
        round.taken_by_cut
    );
    // The sets the host writes take a pod out of traffic only while theirs
    // out of it, for any reason, and the cut sets' shares stay within it.
    if round.taken > 0 {
        prop_assert!(
            round.taken + round.sick + held <= bound,
            "{} pods taken out of traffic with {} unhealthy and {held} held: budget {}; targets {:?}; sets {:?}",
            round.taken,
            round.sick,
            decision.budget,
            decision.targets,
            world.sets
        );
        if let Some(max) = world.pdb {
            prop_assert!(
                round.taken + round.sick <= max,
                "PDB maxUnavailable {}",
                max
            );
        }
    }
    Ok(())
}

/// The template's revision becomes stable only from a release whose pods
/// all run it: never from an empty plan (scaled to zero mid-release).
/// (A first creation interrupted by a new template makes the pods it
/// created the stable baseline: that revision is not the template.) A cut
/// cell counts as last seen: complete then, it completed its part.
fn check_stable(world: &World, round: &Round, desired: usize) -> Result<(), TestCaseError> {
    let stable = round.decision.record.stable.clone();
    if stable != round.stable_before
        && let Some(rev) = stable.as_deref().and_then(|r| r.strip_prefix('r'))
        && rev == world.template.to_string()
    {
        let on_it: usize = round.seen_before.values().sum();
        prop_assert!(
            desired > 0 && on_it >= desired,
            "r{} became stable with {} of {} pods on it",
            rev,
            on_it,
            desired
        );
    }
    Ok(())
}
