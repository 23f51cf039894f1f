//! The InPlaceSet controller: keeps a cell's pods at a replica count and moves
//! them to a new template in place, through the lossless lifecycle.

mod apply;
mod context;
pub mod controller;
mod create;
mod decide;
mod dereference;
pub mod disruption;
pub mod lifecycle;
pub mod plan;
pub mod pods;
pub mod predownload;
mod pull;
mod report;
pub mod revision;
pub mod status;
mod templates;
mod validate;

/// The field manager of the InPlaceSet status and of every pod write.
const MANAGER: &str = "cafe-operator-inplaceset";
