//! The vocabulary of the CafeDeployment controller: what a reconcile observed
//! (`Observation`), what it decided (`Outcome`, `Effect`, `Note`), the facts
//! it carries between stages (`Valid`, `Revision`, `Frozen`, `Unreachable`,
//! `Refused`) and its `Error`. Every other file of the folder speaks these
//! types; this one imports none of them (only `FreezeFact`, `Valid` and `Invalid`, from
//! files that import no other stage), so the folder's imports have no cycle.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::history::FreezeFact;
use super::validate::{Invalid, Valid};
use crate::api::names::CELL_LABEL;
use crate::api::{AnalysisStatus, CafeDeployment, CafeDeploymentStatus, InPlaceSet, WindowStatus};

pub use crate::runtime::ReconcileError as Error;

/// What the controller read.
pub struct Observation<'a> {
    pub cd: &'a CafeDeployment,
    /// The InPlaceSets this CafeDeployment owns (any cell, also removed ones).
    pub sets: Vec<&'a InPlaceSet>,
    /// The recorded revisions, by revision name.
    pub history: &'a History,
    /// The name of the current template's revision (`<cd>-<hash>`).
    pub update: &'a str,
    pub now: &'a Time,
    /// A write of this CafeDeployment's objects the API server refused
    /// (an InPlaceSet, a ControllerRevision), until one goes through.
    pub refused: Option<&'a Refused>,
    /// Cells whose sets cannot be read or written now (their cluster does
    /// not answer), by cell: their sets are as last seen.
    pub unreachable: &'a BTreeMap<String, Unreachable>,
    /// Cells whose writes wait for their member's hold-off (its connection
    /// failed; not yet unreachable), and why.
    pub held_off: &'a BTreeMap<String, String>,
    /// The spec as `validate` resolved it, or why it cannot be acted on
    /// (in words that say what to change).
    pub valid: Result<&'a Valid, &'a Invalid>,
    /// A ReleaseFreeze or a deny window that holds this CafeDeployment: no
    /// group opens and no pod starts moving (as a pause), until it ends.
    pub frozen: Option<&'a Frozen>,
    /// The deny window in force (held, or opened by an override).
    pub window: Option<&'a WindowStatus>,
    /// The ReleaseFreezes that select this CafeDeployment, thawed or not.
    pub freezes: &'a [FreezeFact],
    /// A sign-off policy stamps writes to this CafeDeployment: the stamps
    /// are the API server's word (else the history reads "unverified").
    pub verified: bool,
}

/// A recorded revision (a ControllerRevision): its number, as
/// `spec.rollbackTo.revision` names it, and its template.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    pub number: i64,
    pub template: PodTemplateSpec,
}

/// The recorded revisions, by revision name (`<cd>-<hash>`).
pub type History = BTreeMap<String, Revision>;

/// What the shell carries out besides the writes of the outcome, each a
/// piece of I/O the decision only asks for (docs/design.md, Code map).
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Take the due measurement of the analysis of this group (its queries
    /// to Prometheus) and keep it in the release record written with the
    /// status; its verdict is decided on from the record, next time.
    Measure { group: usize },
    /// An analysis verdict: set `spec.strategy.pause: true` once the status
    /// (the verdict's record) is written.
    Pause,
    /// Restore a recorded revision's template (`spec.rollbackTo`, or an
    /// analysis verdict): the status says first that a rollback follows,
    /// then the spec is patched. Nothing else is written this time.
    Restore(Box<Restore>),
    /// `spec.rollbackTo` names no recorded revision: it is cleared, with this
    /// Warning. Nothing else is written this time.
    RefuseRollback(String),
}

/// A rollback to carry out.
#[derive(Clone, Debug, PartialEq)]
pub struct Restore {
    /// The revision's name.
    pub revision: String,
    pub template: PodTemplateSpec,
    /// Why, for the status message and the event.
    pub why: String,
    /// The analysis verdict that asked for it, kept for the record.
    pub analysis: Option<AnalysisStatus>,
}

/// The freeze or deny window holding a CafeDeployment, as its phase message
/// says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frozen {
    /// The ReleaseFreeze's name (a window's: `window/<name>`).
    pub name: String,
    /// Which freeze, why, who and since when, and how to thaw it.
    pub message: String,
    /// A deny window: a rollback goes on through it (a freeze holds that too).
    pub lets_rollback: bool,
}

/// A cell whose set cannot be reached (where cells live says why).
pub use crate::placement::homes::Unreachable;

/// A write the API server refused, as status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// `FailedUpdate` (an InPlaceSet) or `FailedCreate` (a ControllerRevision).
    pub reason: &'static str,
    pub message: String,
}

/// An event to publish on the CafeDeployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub message: String,
    /// The event's action when it is not the reason (events of one reason
    /// and action fold into one series).
    pub action: Option<String>,
}

/// What to write, in order: the confirmation reset, the status, the sets.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Reset `upgrade-confirmed` to "false" before recording a new wait.
    pub reset_confirmation: bool,
    pub status: CafeDeploymentStatus,
    /// Each cell's InPlaceSet as it should be (applied where it differs).
    pub sets: Vec<InPlaceSet>,
    /// Sets of removed cells, drained empty: delete them.
    pub delete: Vec<String>,
    pub notes: Vec<Note>,
    /// Seconds until a time-based look is due (autoReschedule, analysis).
    pub wake: Option<i64>,
    /// What the shell carries out besides these writes.
    pub effect: Option<Effect>,
    /// Remove the window override: the window it opened has ended.
    pub remove_override: bool,
}

/// A cell's reachability while its cluster does not answer.
pub const UNKNOWN: &str = "Unknown";

pub fn cell_of(set: &InPlaceSet) -> String {
    set.labels().get(CELL_LABEL).cloned().unwrap_or_default()
}

/// An event of `reason`, its own action.
pub fn note(warning: bool, reason: &str, message: String) -> Note {
    Note {
        warning,
        reason: reason.to_string(),
        message,
        action: None,
    }
}
