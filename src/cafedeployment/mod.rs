//! The CafeDeployment controller: one InPlaceSet per cell, releases paced by
//! the group plan through the cells' partitions and budgets, confirmation
//! between groups.
//!
//! A newcomer's map. `model` is the folder's vocabulary (`Observation`,
//! `Outcome`, `Effect`, `Error`, ...); `controller` runs a reconcile as five
//! stages, in this order:
//!
//! 1. dereference (`controller`): the object's InPlaceSets where they live
//!    (`crate::placement::homes`: this cluster or a member), its revision history
//!    (`revisions`, `revision_history`); a deletion ends here (`finalize`);
//! 2. `validate`: the spec checked and resolved (`Valid`, or the words of
//!    `Invalid`), no client;
//! 3. `decide`, pure: a requested rollback first, then an invalid spec's
//!    `InvalidSpec` stall, else the release's next step, built from
//!    - `reschedule` and `reach`: each cell's size (autoReschedule, failover
//!      paced by the budget) and the unreachable cells the release waits for,
//!    - `failover`: each failover decision bound to its outage (armed,
//!      active, spent), kept in status,
//!    - `sets`: the sets as the release reads them and as they are written
//!      (`build`: each cell's InPlaceSet),
//!    - `signoff`: who confirms a wait, and who did each step (`history`),
//!    - `analysis`: what a group's metric analysis shows and asks for,
//!    - `hold`: the freezes and deny windows that hold a release,
//!    - `status` and `phase`: the status, its phase and message, and the
//!      kstatus conditions; `predownload`: the `ImagesPreDownloaded`
//!      condition over the cells' pulls;
//! 4. the effect (`controller`): an analysis measurement (`measure`), a
//!    pause, or a rollback (`revisions`) in place of the writes;
//! 5. `apply`: the confirmation reset, the status, then the cells' sets.
//!
//! `context` holds what the controller keeps between reconciles and the
//! small I/O every stage shares (events, refusals, the status write).

pub mod analysis;
mod apply;
pub mod build;
mod context;
pub mod controller;
pub mod decide;
mod failover;
mod finalize;
pub mod history;
pub mod hold;
mod measure;
pub mod model;
mod phase;
mod predownload;
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
