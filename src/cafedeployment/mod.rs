//! The CafeDeployment controller: one InPlaceSet per cell, releases paced by
//! the group plan through the cells' partitions, confirmation between groups.

pub mod build;
pub mod controller;
