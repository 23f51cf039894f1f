//! The set-level plan: how many pods to create and on which revision, which
//! to delete, which to move now and where to. Pure; the lifecycle step then
//! moves each pod.
//!
//! The set keeps `replicas` pods: `replicas - partition` on the template's
//! revision (the update), the rest on the stable revision when the spec names
//! one (`stableTemplate`, CloneSet's semantics with an explicit baseline). New
//! pods fill the update's share first, then the stable share; a pod on a third
//! revision (a stray, e.g. from a release a new template replaced) moves to the
//! update while its share is short, else back to stable; pods beyond the
//! update's share move back to stable. Without a stable template, pods off the
//! template stay until the partition lets them move, and new pods use the template.
//!
//! Deletion order on scale-in (first deleted first): unscheduled pods, then
//! pods that are not Ready, then strays and pods of whichever revision holds
//! more than its share, then the newest; the pod name breaks ties. Move order:
//! unavailable pods first (they serve no traffic, so moving them costs
//! nothing), then the oldest; name breaks ties.
//!
//! A pod already in its lifecycle (gate closed with reason DrainingForUpdate or
//! DrainingForDelete) always finishes it, even when the set is paused or the
//! partition moved: half a drain is never abandoned with the pod out of traffic.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::lifecycle::{Intent, PodFacts, Toward};
use crate::api::names::gate_reason;

/// What the set asks for, with percentages already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub replicas: usize,
    /// Pods that stay on older revisions (on the stable one, when named).
    pub partition: usize,
    /// Pods that may be unavailable at once because of this set's own actions.
    pub max_unavailable: usize,
    /// No new pod starts its lifecycle; those in it finish.
    pub paused: bool,
    /// New pods come only within the unavailability budget (none while paused).
    pub pace_creation: bool,
    /// Every update re-creates (updateMode ReCreate).
    pub recreate: bool,
    pub min_ready_seconds: i64,
    /// Available pods that may still leave traffic under the
    /// PodDisruptionBudgets selecting the pods (None: no budget selects them).
    pub disruptions_allowed: Option<usize>,
}

/// The revisions of the set: the template's, and the stable one when the spec
/// names a different one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revisions {
    pub update: String,
    pub update_shape: String,
    pub stable: Option<(String, String)>,
}

impl Revisions {
    fn on_update(&self, p: &PodFacts) -> bool {
        p.revision.as_deref() == Some(self.update.as_str())
    }

    fn on_stable(&self, p: &PodFacts) -> bool {
        self.stable
            .as_ref()
            .is_some_and(|(r, _)| p.revision.as_deref() == Some(r.as_str()))
    }

    /// Can a pod move to `toward` in place?
    fn in_place(&self, p: &PodFacts, toward: Toward) -> bool {
        let shape = match (toward, &self.stable) {
            (Toward::Stable, Some((_, shape))) => shape,
            _ => &self.update_shape,
        };
        p.shape.as_deref() == Some(shape.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New pods to create on the update revision.
    pub create: usize,
    /// New pods to create on the stable revision.
    pub create_stable: usize,
    /// One intent per pod, by name.
    pub intents: BTreeMap<String, Intent>,
    /// Available pods that would start moving but a PodDisruptionBudget
    /// allows no more disruption.
    pub held_by_disruption_budget: bool,
}

impl Plan {
    pub fn intent(&self, pod: &str) -> Intent {
        self.intents.get(pod).copied().unwrap_or(Intent::Keep)
    }
}

/// The shares the spec asks for: pods on the update, pods on stable, and
/// whether a stable revision is named at all.
struct Shares {
    want_update: usize,
    want_stable: usize,
    has_stable: bool,
}

impl Shares {
    /// The update's share is `replicas - partition`; stable holds the rest.
    fn of(spec: &SetSpec, revs: &Revisions) -> Self {
        let want_update = spec.replicas - spec.partition.min(spec.replicas);
        Shares {
            want_update,
            want_stable: spec.replicas - want_update,
            has_stable: revs.stable.is_some(),
        }
    }
}

pub fn plan(pods: &[PodFacts], spec: &SetSpec, revs: &Revisions, now: i64) -> Plan {
    let mut intents = BTreeMap::new();
    let mut live = not_leaving(pods, &mut intents);
    let shares = Shares::of(spec, revs);
    if live.len() > spec.replicas {
        scale_in(&mut live, spec, revs, &shares, &mut intents);
    }

    // Who goes where: pods in their lifecycle finish it; the update's share is
    // filled from strays, then stable pods; its surplus goes back to stable.
    let mut updated = live.iter().filter(|p| revs.on_update(p)).count();
    let mut by_age = live.clone();
    by_age.sort_by_key(|p| {
        (
            p.available(spec.min_ready_seconds, now),
            p.created,
            p.name.clone(),
        )
    });
    let (to_update, to_stable) = finish_in_flight(&by_age, revs, &shares, &mut updated);
    let (created_update, create_stable) = creations(spec, &shares, updated, live.len());
    updated += created_update;
    let (budget, created_update, create_stable) =
        pace_creation(spec, &live, now, created_update, create_stable);
    let candidates = move_candidates(&by_age, revs, &shares, updated);
    for p in to_update {
        intents.insert(p.name.clone(), Intent::Update(Toward::Update));
    }
    for p in to_stable {
        intents.insert(p.name.clone(), Intent::Update(Toward::Stable));
    }
    let held_by_disruption_budget =
        !spec.paused && start_moves(candidates, spec, revs, now, budget, &mut intents);
    Plan {
        create: created_update,
        create_stable,
        intents,
        held_by_disruption_budget,
    }
}

/// A pod already draining for an update: it finishes its move.
fn in_flight(p: &PodFacts) -> bool {
    p.draining_for(gate_reason::DRAINING_FOR_UPDATE)
}

/// Pods terminating or draining for deletion are deleted; the rest are live.
fn not_leaving<'a>(
    pods: &'a [PodFacts],
    intents: &mut BTreeMap<String, Intent>,
) -> Vec<&'a PodFacts> {
    let leaving = |p: &PodFacts| p.terminating || p.draining_for(gate_reason::DRAINING_FOR_DELETE);
    let mut live: Vec<&PodFacts> = Vec::new();
    for p in pods {
        if leaving(p) {
            intents.insert(p.name.clone(), Intent::Delete);
        } else {
            live.push(p);
        }
    }
    live
}

/// Scale in, taking from whichever revision holds more than its share: the
/// pods deleted first leave `live`.
fn scale_in(
    live: &mut Vec<&PodFacts>,
    spec: &SetSpec,
    revs: &Revisions,
    shares: &Shares,
    intents: &mut BTreeMap<String, Intent>,
) {
    let updated = live.iter().filter(|p| revs.on_update(p)).count();
    let stable = live.iter().filter(|p| revs.on_stable(p)).count();
    let rank = |p: &PodFacts| {
        let surplus = if revs.on_update(p) {
            updated > shares.want_update
        } else if revs.on_stable(p) {
            stable > shares.want_stable
        } else {
            true
        };
        !surplus
    };
    live.sort_by_key(|p| {
        (
            p.scheduled,
            p.ready,
            rank(p),
            revs.on_update(p),
            Reverse(p.created),
            p.name.clone(),
        )
    });
    for p in live.drain(..live.len() - spec.replicas) {
        intents.insert(p.name.clone(), Intent::Delete);
    }
}

/// Where each pod already in its lifecycle goes (to the update, to stable),
/// counting the pods on the update in `updated`.
fn finish_in_flight<'a>(
    by_age: &[&'a PodFacts],
    revs: &Revisions,
    shares: &Shares,
    updated: &mut usize,
) -> (Vec<&'a PodFacts>, Vec<&'a PodFacts>) {
    let mut to_update: Vec<&PodFacts> = Vec::new();
    let mut to_stable: Vec<&PodFacts> = Vec::new();
    for p in by_age.iter().filter(|p| in_flight(p)) {
        if revs.on_update(p) {
            if shares.has_stable && *updated > shares.want_update {
                *updated -= 1;
                to_stable.push(p);
            } else {
                to_update.push(p);
            }
        } else if *updated < shares.want_update || !shares.has_stable {
            *updated += 1;
            to_update.push(p);
        } else {
            to_stable.push(p);
        }
    }
    (to_update, to_stable)
}

/// How many new pods the set lacks, on the update and on stable: the update's
/// share first.
fn creations(spec: &SetSpec, shares: &Shares, updated: usize, live: usize) -> (usize, usize) {
    let created_update = if shares.has_stable {
        shares
            .want_update
            .saturating_sub(updated)
            .min(spec.replicas.saturating_sub(live))
    } else {
        spec.replicas.saturating_sub(live)
    };
    let create_stable = spec.replicas.saturating_sub(live) - created_update;
    (created_update, create_stable)
}

/// The unavailability budget left, and the creations it allows: pods not
/// available now use it; a paced creation's new pods use it too, the update's
/// share first.
fn pace_creation(
    spec: &SetSpec,
    live: &[&PodFacts],
    now: i64,
    created_update: usize,
    create_stable: usize,
) -> (usize, usize, usize) {
    let unavailable = live
        .iter()
        .filter(|p| !p.available(spec.min_ready_seconds, now))
        .count();
    let mut budget = spec.max_unavailable.saturating_sub(unavailable);
    let (created_update, create_stable) = if spec.pace_creation {
        if spec.paused {
            budget = 0;
        }
        let update = created_update.min(budget);
        let stable = create_stable.min(budget - update);
        budget -= update + stable;
        (update, stable)
    } else {
        (created_update, create_stable)
    };
    (budget, created_update, create_stable)
}

/// The settled pods that should move, and where: strays and stable pods fill
/// the update's share, other strays go to stable, the update's surplus too.
fn move_candidates<'a>(
    by_age: &[&'a PodFacts],
    revs: &Revisions,
    shares: &Shares,
    mut updated: usize,
) -> Vec<(&'a PodFacts, Toward)> {
    let settled = |p: &&&PodFacts| !in_flight(p);
    let strays: Vec<&PodFacts> = by_age
        .iter()
        .filter(settled)
        .filter(|p| !revs.on_update(p) && !revs.on_stable(p))
        .copied()
        .collect();
    let stables: Vec<&PodFacts> = by_age
        .iter()
        .filter(settled)
        .filter(|p| revs.on_stable(p))
        .copied()
        .collect();
    let mut candidates: Vec<(&PodFacts, Toward)> = Vec::new();
    for p in strays.iter().chain(&stables) {
        if updated < shares.want_update {
            updated += 1;
            candidates.push((p, Toward::Update));
        } else if shares.has_stable && !revs.on_stable(p) {
            candidates.push((p, Toward::Stable));
        }
    }
    if shares.has_stable && updated > shares.want_update {
        let surplus = updated - shares.want_update;
        candidates.extend(
            by_age
                .iter()
                .filter(settled)
                .filter(|p| revs.on_update(p))
                .take(surplus)
                .map(|p| (*p, Toward::Stable)),
        );
    }
    candidates
}

/// New moves start within what is left of the budget; an available pod also
/// needs the PodDisruptionBudgets' room (in-place updates bypass the eviction
/// API, so the set honours them itself). True when that room held a move.
fn start_moves(
    mut candidates: Vec<(&PodFacts, Toward)>,
    spec: &SetSpec,
    revs: &Revisions,
    now: i64,
    mut budget: usize,
    intents: &mut BTreeMap<String, Intent>,
) -> bool {
    let mut disruptions = spec.disruptions_allowed;
    candidates.sort_by_key(|(p, _)| {
        (
            p.available(spec.min_ready_seconds, now),
            p.created,
            p.name.clone(),
        )
    });
    for (p, toward) in candidates {
        if p.available(spec.min_ready_seconds, now) {
            if budget == 0 {
                break;
            }
            if disruptions == Some(0) {
                return true;
            }
            budget -= 1;
            disruptions = disruptions.map(|d| d - 1);
        }
        let intent = if !spec.recreate && revs.in_place(p, toward) {
            Intent::Update(toward)
        } else {
            Intent::Delete
        };
        intents.insert(p.name.clone(), intent);
    }
    false
}

#[cfg(test)]
mod tests;
