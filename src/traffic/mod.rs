//! The traffic protocol: the readiness gate the operator owns on every pod,
//! and the per-component finalizers that say who still routes to a pod.

pub mod component;
pub mod gate;
pub mod service;
