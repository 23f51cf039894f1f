//! The CafeDeployment controller: one InPlaceSet per cell, releases paced by
//! the group plan through the cells' partitions and budgets, confirmation
//! between groups. `decide` is pure; `controller` observes and applies.

pub mod analysis;
mod apply;
pub mod build;
mod context;
pub mod controller;
pub mod decide;
mod finalize;
pub mod history;
pub mod hold;
pub mod homes;
mod measure;
pub mod model;
mod phase;
pub mod reach;
pub mod reschedule;
pub mod revision_history;
mod revisions;
mod sets;
mod signoff;
pub mod status;
pub mod validate;

/// The field manager of the CafeDeployment status and spec writes and of the
/// InPlaceSets it writes.
const MANAGER: &str = "cafe-operator-cafedeployment";
