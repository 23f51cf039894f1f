//! The observed state of a CafeDeployment.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{AnalysisStatus, HistoryEntry, WindowStatus};

/// The observed state of a CafeDeployment; readable without looking at pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CafeDeploymentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub available_replicas: i32,
    #[serde(default)]
    pub updated_replicas: i32,
    #[serde(default)]
    pub updated_ready_replicas: i32,
    /// The label selector as a string, for the scale subresource (HPA, `kubectl scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// What all pods ran when the last release completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// The revision being released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<CellStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The operator that wrote this status last (its leader-election
    /// identity). An operator that finds another one's name here after
    /// writing this object itself stands down on it and says so in the
    /// AnotherWriter condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// The deny window holding the release, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowStatus>,
    /// Who did each step, the newest last (at most 50 entries; each
    /// revision keeps its own on its ControllerRevision).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub history: Vec<HistoryEntry>,
    /// What each decision of `spec.topology.failover` did: a decision acts
    /// for one outage of its cell, and once the cell answers again and its
    /// pods are given back it is spent (not acted on at a later outage).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub failover: Vec<FailoverStatus>,
}

/// Where a failover decision stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FailoverState {
    /// The cell answers: the decision acts if it stops answering.
    Armed,
    /// The cell does not answer (or its pods are not given back yet): its
    /// share runs in the other cells.
    Active,
    /// The outage it was made for ended and the pods were given back: it
    /// acts no more. Remove the cell from `spec.topology.failover` and list
    /// it again to decide anew.
    Spent,
}

/// One cell of `spec.topology.failover` and its decision's life.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverStatus {
    pub cell: String,
    pub state: FailoverState,
    /// When it entered this state.
    pub since: Time,
    /// The outage it acts or acted for: when the cell's cluster last
    /// answered before it (else when the failover began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage_began: Option<Time>,
    /// When the cell answered again (its pods are given back from then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage_ended: Option<Time>,
}

/// Where a CafeDeployment is, in one word.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Healthy,
    Progressing,
    /// A group is released and its metric analysis is running.
    Analyzing,
    WaitingForConfirm,
    Paused,
    /// A ReleaseFreeze holds the release (an emergency stop).
    Frozen,
    RollingBack,
    Stalled,
}

impl Phase {
    /// Every phase, for gauges that report 1 for the current one and 0 for the rest.
    pub const ALL: [Phase; 8] = [
        Phase::Healthy,
        Phase::Progressing,
        Phase::Analyzing,
        Phase::WaitingForConfirm,
        Phase::Paused,
        Phase::Frozen,
        Phase::RollingBack,
        Phase::Stalled,
    ];
}

/// The release in progress (or the last one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatus {
    /// The revision being released.
    pub revision: String,
    /// True when this release is a rollback (no Beta, no confirmation waits).
    #[serde(default)]
    pub rollback: bool,
    /// Groups completed so far. Never fewer within one release (the same
    /// revision over the same number of groups); it starts again with another
    /// release (a new template, a rollback) or a plan of another size.
    #[serde(default)]
    pub group: i32,
    /// Groups opened so far (their pods may move). Recorded before any
    /// InPlaceSet is written, never inferred: a restarted operator resumes here.
    #[serde(default)]
    pub opened: i32,
    /// Per cell, the pods that exist on the stable revision by right, when not
    /// all of them do (a first creation interrupted by a new template).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub baseline: BTreeMap<String, i32>,
    /// Groups in the plan.
    #[serde(default)]
    pub groups: i32,
    /// `group/groups`, for the printer column.
    #[serde(default)]
    pub progress: String,
    /// What is happening and what the user can do, in a sentence.
    #[serde(default)]
    pub message: String,
    /// The revision and group the controller waits to have confirmed; a "true"
    /// written before this wait began confirms nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_confirmation: Option<ConfirmationWait>,
    /// When the newest group opened: the pods released since are the group's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Time>,
    /// The metric analysis of the last group analysed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
}

/// The group a confirmation is awaited for.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmationWait {
    pub revision: String,
    pub group: i32,
}

/// One cell's row in the status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellStatus {
    pub name: String,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub updated: i32,
    #[serde(default)]
    pub ready: i32,
    #[serde(default)]
    pub available: i32,
    /// Pods of this cell's share moved to other cells by autoReschedule
    /// (kept until the spec changes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rescheduled_away: i32,
    /// The MemberCluster that runs the cell (none: this cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Reachable, or Unknown while its cluster does not answer (its pods
    /// are as last seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachability: Option<String>,
    /// When its cluster last answered (set while it is Unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<Time>,
    /// Pods of this cell's share run by other cells while it is failed over.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_over: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}
