//! cafe-operator: the Kubernetes operator for CafeDeployment.
//!
//! Functional core, imperative shell: the modules that decide (topology,
//! release planning, the pod lifecycle, status) are pure functions of observed
//! state; the reconcilers only read, call the core and apply its decisions.

pub mod api;
pub mod cafedeployment;
pub mod inplaceset;
pub mod membercluster;
pub mod operator;
pub mod placement;
pub mod plugin;
pub mod release;
pub mod runtime;
pub mod topology;
pub mod traffic;
