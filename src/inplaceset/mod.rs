//! The InPlaceSet controller: keeps a cell's pods at a replica count and moves
//! them to a new template in place, through the lossless lifecycle.

pub mod controller;
pub mod disruption;
pub mod lifecycle;
pub mod plan;
pub mod pods;
pub mod revision;
pub mod status;
