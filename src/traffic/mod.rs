//! The traffic protocol: the readiness gate the operator owns on every pod,
//! and the per-component finalizers that say who still routes to a pod.
//! Depends on `api` only: the controllers build on it, never the reverse.

pub mod component;
pub mod gate;
pub mod service;

use crate::api::names::TRAFFIC_COMPONENTS_ANNOTATION;
use crate::api::pod::Pod;

/// The components a pod declared at creation (its annotation), in order.
pub fn declared_components(pod: &Pod) -> Vec<String> {
    pod.annotations()
        .get(TRAFFIC_COMPONENTS_ANNOTATION)
        .map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
