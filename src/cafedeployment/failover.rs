//! `topology.failover`, a person's decision bound to the outage it was made
//! for, pure. The operator never writes the spec (GitOps would undo it), so
//! the decision's life is kept in `status.failover`, which a restarted
//! operator reads back:
//!
//! - **Armed**: listed while the cell answers; it acts if the cell stops
//!   answering.
//! - **Active**: the cell does not answer, and its share runs in the other
//!   cells. When the cell answers again its pods are given back; the
//!   decision stays Active until they are (an outage that resumes meanwhile
//!   is the same outage, and the decision acts again).
//! - **Spent**: the outage ended and the pods were given back. It is not
//!   acted on at a later outage: a condition and an event say so, and how
//!   to decide anew (remove the cell from the list, let status forget it,
//!   list it again).
//!
//! A cell removed from `topology.failover` is forgotten.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::model::{Note, Unreachable, note};
use crate::api::names::condition;
use crate::api::{CafeDeploymentStatus, FailoverState, FailoverStatus, observed_condition};

/// Each listed cell's decision as this look finds it, before the give-back
/// is judged (`spend`): Armed while it answers, Active from the first look
/// at which it does not; Spent stays Spent.
pub(super) fn records(
    listed: &[String],
    previous: &[FailoverStatus],
    unreachable: &BTreeMap<String, Unreachable>,
    now: &Time,
) -> Vec<FailoverStatus> {
    listed
        .iter()
        .map(|cell| {
            let lost = unreachable.get(cell);
            let before = previous.iter().find(|r| &r.cell == cell);
            match (before, lost) {
                (Some(r), _) if r.state == FailoverState::Spent => r.clone(),
                (Some(r), None) if r.state == FailoverState::Active => FailoverStatus {
                    outage_ended: r.outage_ended.clone().or_else(|| Some(now.clone())),
                    ..r.clone()
                },
                (Some(r), Some(_)) if r.state == FailoverState::Active => FailoverStatus {
                    outage_ended: None,
                    ..r.clone()
                },
                (_, Some(u)) => FailoverStatus {
                    cell: cell.clone(),
                    state: FailoverState::Active,
                    since: now.clone(),
                    outage_began: u.last_contact.clone().or_else(|| Some(now.clone())),
                    outage_ended: None,
                },
                (Some(r), None) => r.clone(),
                (None, None) => FailoverStatus {
                    cell: cell.clone(),
                    state: FailoverState::Armed,
                    since: now.clone(),
                    outage_began: None,
                    outage_ended: None,
                },
            }
        })
        .collect()
}

/// The cells whose decision acts now.
pub(super) fn acting(records: &[FailoverStatus]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.state == FailoverState::Active)
        .map(|r| r.cell.clone())
        .collect()
}

/// An Active decision whose cell answers is spent once the pods it moved
/// are given back (`given_back`: no reachable cell holds more pods than
/// this decision gives it).
pub(super) fn spend(
    records: &mut [FailoverStatus],
    unreachable: &BTreeMap<String, Unreachable>,
    given_back: bool,
    now: &Time,
) {
    for r in records {
        if r.state == FailoverState::Active && !unreachable.contains_key(&r.cell) && given_back {
            r.state = FailoverState::Spent;
            r.since = now.clone();
        }
    }
}

/// The `FailoverSpent` condition while a listed cell's decision is spent:
/// what is not done, and how to decide anew.
pub(super) fn spent_condition(
    records: &[FailoverStatus],
    unreachable: &BTreeMap<String, Unreachable>,
    previous: &CafeDeploymentStatus,
    generation: Option<i64>,
    now: &Time,
) -> Option<Condition> {
    let words: Vec<String> = records
        .iter()
        .filter(|r| r.state == FailoverState::Spent)
        .map(|r| spent_words(r, unreachable.get(&r.cell)))
        .collect();
    if words.is_empty() {
        return None;
    }
    Some(observed_condition(
        &previous.conditions,
        condition::FAILOVER_SPENT,
        true,
        "DecisionSpent",
        words.join("; "),
        generation,
        now,
    ))
}

/// One spent decision, in words that say what to do.
fn spent_words(r: &FailoverStatus, lost: Option<&Unreachable>) -> String {
    let cell = &r.cell;
    let outage = format!(
        "the outage of {} to {} (its pods were given back at {})",
        at(r.outage_began.as_ref()),
        at(r.outage_ended.as_ref()),
        at(Some(&r.since)),
    );
    let anew = format!(
        "to fail {cell} over again, remove it from spec.topology.failover, wait until \
         status.failover no longer lists it, and list it again"
    );
    match lost {
        Some(u) => format!(
            "cell {cell} does not answer ({}), but topology.failover's decision for it was \
             spent on {outage}: its pods are not moved to the other cells; {anew}",
            u.why
        ),
        None => format!(
            "topology.failover lists {cell}, a decision spent on {outage}: it will not act \
             at {cell}'s next outage; {anew}"
        ),
    }
}

/// A time as the messages write it (to the second).
fn at(t: Option<&Time>) -> String {
    t.map_or_else(
        || "?".to_string(),
        |t| {
            jiff::Timestamp::from_second(t.0.as_second())
                .map_or_else(|_| t.0.to_string(), |s| s.to_string())
        },
    )
}

/// The events of decisions that changed state: one that starts acting
/// (`FailoverActive`), one spent (`FailoverSpent`), and a spent one whose
/// cell stops answering again (Warning `FailoverNotActed`: a person must
/// decide).
pub(super) fn notes(
    previous: &CafeDeploymentStatus,
    records: &[FailoverStatus],
    failed_over: &BTreeMap<String, usize>,
    unreachable: &BTreeMap<String, Unreachable>,
) -> Vec<Note> {
    let mut out = Vec::new();
    for r in records {
        let before = previous.failover.iter().find(|p| p.cell == r.cell);
        let was = before.map(|p| p.state);
        let cell = &r.cell;
        match r.state {
            FailoverState::Active if was != Some(FailoverState::Active) => out.push(note(
                false,
                "FailoverActive",
                format!(
                    "cell {cell} does not answer: its {} pods run in the other cells, by \
                     topology.failover (a decision for this outage; given back when it answers)",
                    failed_over.get(cell).copied().unwrap_or(0)
                ),
            )),
            FailoverState::Spent if was != Some(FailoverState::Spent) => {
                out.push(note(false, "FailoverSpent", spent_words(r, None)))
            }
            FailoverState::Spent => {
                let was_lost = previous
                    .cells
                    .iter()
                    .any(|c| &c.name == cell && c.reachability.is_some());
                // A reason of its own: events of one reason fold into one
                // series, which would keep the spent one's Normal type.
                if let Some(u) = unreachable.get(cell).filter(|_| !was_lost) {
                    out.push(note(true, "FailoverNotActed", spent_words(r, Some(u))));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
