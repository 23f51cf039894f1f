//! Stage 3 of a set's reconcile: what to do. The plan (how many pods to
//! create, which to update toward which revision) and one lifecycle step per
//! pod, both pure; around them the PodDisruptionBudgets over the pods are
//! read, planned within and claimed under one lock, so that sets sharing a
//! budget never both take its last room (the cache shows a gate write only
//! later).

use kube::ResourceExt;

use super::context::Context;
use super::dereference::Found;
use super::disruption;
use super::lifecycle::{Decision, Intent, Timing, step};
use super::plan::{Plan, SetSpec, plan};
use super::templates::Templates;

/// What a reconcile decided.
pub struct Decided {
    pub plan: Plan,
    /// One per pod of `Found::owned`, in the same order.
    pub intents: Vec<Intent>,
    /// One per pod of `Found::owned`, in the same order.
    pub decisions: Vec<Decision>,
    /// Why no pod may leave traffic now, when a budget holds moves back.
    pub disruption_hold: Option<String>,
}

/// Plans the set and steps each pod. `spec.disruptions_allowed` is filled in
/// from the tightest budget over the pods.
pub fn decide(
    ctx: &Context,
    namespace: &str,
    found: &Found,
    (templates, spec, timing): (&Templates, &mut SetSpec, &Timing),
    now: i64,
) -> Decided {
    let mut ledger = if found.budgets.is_empty() {
        None
    } else {
        ctx.ledger.lock()
    };
    let mut disruption_hold = None;
    if let Some(claims) = ledger.as_mut() {
        let readings: Vec<disruption::Reading> = found
            .budgets
            .iter()
            .map(|b| {
                let out = ctx.out_of_traffic_under(b, namespace);
                let pending =
                    disruption::pending_claims(claims, &b.uid().unwrap_or_default(), &out);
                disruption::Reading::of(b, out.len() + pending)
            })
            .collect();
        if let Some((room, hold)) = disruption::tightest(&readings) {
            spec.disruptions_allowed = Some(room);
            disruption_hold = Some(hold);
        }
    }
    let facts = &found.facts;
    let the_plan = plan(facts, spec, &templates.revisions(), now);
    let intents: Vec<Intent> = facts.iter().map(|f| the_plan.intent(&f.name)).collect();
    let decisions: Vec<Decision> = facts
        .iter()
        .zip(&intents)
        .map(|(f, i)| step(f, *i, templates.target_of(*i), timing, now))
        .collect();
    if let Some(claims) = ledger.as_mut() {
        let taken: Vec<String> = found
            .owned
            .iter()
            .zip(facts.iter().zip(&decisions))
            .filter(|(_, (f, d))| {
                matches!(d, Decision::GateOff(_)) && !disruption::out_of_traffic(f)
            })
            .filter_map(|(p, _)| p.uid())
            .collect();
        for b in &found.budgets {
            disruption::claim(claims, &b.uid().unwrap_or_default(), taken.iter().cloned());
        }
    }
    let disruption_hold = disruption_hold.filter(|_| the_plan.held_by_disruption_budget);
    Decided {
        plan: the_plan,
        intents,
        decisions,
        disruption_hold,
    }
}
