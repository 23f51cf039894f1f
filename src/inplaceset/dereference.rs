//! Stage 1 of a set's reconcile: what the watch caches say about it. Its pods
//! (as facts the lifecycle reads), the Services that may route to them and the
//! PodDisruptionBudgets over them. No request to the API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::context::Context;
use super::lifecycle::PodFacts;
use super::{disruption, pods};
use crate::api::InPlaceSet;
use crate::api::pod::Pod;
use crate::traffic::service;

/// A set's world, as the caches show it.
pub struct Found {
    /// The set's pods, by name.
    pub owned: Vec<Arc<Pod>>,
    /// One per pod of `owned`, in the same order.
    pub facts: Vec<PodFacts>,
    /// The Services of the set's namespace.
    pub services: Vec<Arc<Service>>,
    /// The PodDisruptionBudgets that select the set's template.
    pub budgets: Vec<Arc<PodDisruptionBudget>>,
    /// The labels of the set's template (what budgets and Services select).
    pub labels: BTreeMap<String, String>,
}

/// Reads what the caches hold for `set` at `now` (they have listed once: the
/// controller waits for that before its first reconcile).
pub fn dereference(ctx: &Context, set: &InPlaceSet, now: &Time) -> Found {
    let namespace = set.namespace().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let mut owned: Vec<Arc<Pod>> = ctx.pods_by_set.owned(&ctx.pods, &namespace, &uid);
    owned.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let in_namespace = |ns: Option<String>| ns.as_deref() == Some(namespace.as_str());
    let services: Vec<Arc<Service>> = ctx
        .services
        .state()
        .into_iter()
        .filter(|s| in_namespace(s.namespace()))
        .collect();
    let mut facts: Vec<PodFacts> = owned
        .iter()
        .map(|p| {
            let mut f = pods::facts(p);
            f.routed_by_service = services.iter().any(|s| service::selects(s, p.labels()));
            f
        })
        .collect();
    ctx.note_drained(&uid, &mut facts, now.0.as_millisecond());
    let labels = set.spec.template.labels().clone();
    let budgets = ctx
        .budgets
        .state()
        .into_iter()
        .filter(|b| in_namespace(b.namespace()))
        .filter(|b| disruption::selects(b, &labels))
        .collect();
    Found {
        owned,
        facts,
        services,
        budgets,
        labels,
    }
}
