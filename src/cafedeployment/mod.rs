//! The CafeDeployment controller: one InPlaceSet per cell, releases paced by
//! the group plan through the cells' partitions and budgets, confirmation
//! between groups. `decide` is pure; `controller` observes and applies.

pub mod analysis;
pub mod build;
pub mod controller;
pub mod decide;
pub mod history;
pub mod hold;
pub mod homes;
pub mod reach;
pub mod reschedule;
pub mod revision_history;
pub mod status;
