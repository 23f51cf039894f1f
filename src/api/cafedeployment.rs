//! The CafeDeployment resource: a workload spread over cells, released in a
//! Beta group and confirmable batches, updated in place, drained losslessly.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::rules::{self, Rule};
use super::{
    Analysis, AnalysisStatus, DenyWindow, HistoryEntry, Signoff, Traffic, UpdateMode, WindowStatus,
};

/// The desired state of a CafeDeployment.
// Each printcolumn repeats `type_ = ...`; clippy reads those as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cafe.sofastack.io",
    version = "v1alpha1",
    kind = "CafeDeployment",
    namespaced,
    status = "CafeDeploymentStatus",
    shortname = "cafedeploy",
    category = "cafe",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Updated",
        type_ = "integer",
        json_path = ".status.updatedReplicas"
    ),
    printcolumn(
        name = "Group",
        type_ = "string",
        json_path = ".status.release.progress"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = cafe_deployment_spec_rules)]
pub struct CafeDeploymentSpec {
    /// Desired number of pods over all cells.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Selects the pods of this CafeDeployment; must match the template's labels. Immutable.
    pub selector: LabelSelector,
    /// The pod template released to every cell.
    pub template: PodTemplateSpec,
    /// How many old pod-template revisions (ControllerRevisions) to keep for rollback.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0))]
    pub history_limit: i32,
    /// The cells the pods are spread over.
    pub topology: Topology,
    /// How a new template is released.
    #[serde(default)]
    pub strategy: ReleaseStrategy,
    /// The traffic components that must deregister a pod before it is changed.
    #[serde(default)]
    pub traffic: Traffic,
    /// A one-shot rollback request; the controller clears it once acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<RollbackTo>,
    /// Sign-off rules (four-eyes, a person confirms the Beta group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signoff: Option<Signoff>,
}

fn default_history_limit() -> i32 {
    10
}

fn cafe_deployment_spec_rules(schema: &mut Schema) {
    rules::bound_selector_and_template_labels(schema);
    rules::push(
        schema,
        &[
            rules::SELECTOR_NOT_EMPTY,
            rules::SELECTOR_MATCHES_TEMPLATE,
            rules::SELECTOR_IMMUTABLE,
            rules::TEMPLATE_ANNOTATIONS_FIT_A_POD,
            Rule {
                // Percentages resolve against replicas, rounded down, as the
                // operator resolves them.
                rule: "!has(self.topology.unitReplicas) || \
                       self.topology.unitReplicas.map(k, \
                         string(self.topology.unitReplicas[k]).endsWith('%') \
                         ? int(string(self.topology.unitReplicas[k]).replace('%', '')) \
                           * self.replicas / 100 \
                         : int(string(self.topology.unitReplicas[k]))).sum() <= self.replicas",
                message: "topology.unitReplicas pins more pods than spec.replicas (a percentage \
                          is of replicas, rounded down): lower the pinned counts or raise replicas",
                field_path: ".topology.unitReplicas",
            },
            Rule {
                rule: "!has(self.topology.unitReplicas) || \
                       self.topology.unitReplicas.filter(k, \
                         string(self.topology.unitReplicas[k]).endsWith('%')) \
                       .map(k, int(string(self.topology.unitReplicas[k]).replace('%', ''))) \
                       .sum() <= 100",
                message: "topology.unitReplicas percentages add up to more than 100%: \
                          lower them so that together they pin at most all replicas",
                field_path: ".topology.unitReplicas",
            },
        ],
    );
}

/// Which node label names a node's deployment unit.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UnitType {
    /// Node label `cafe.sofastack.io/cell`.
    #[default]
    Cell,
    /// Node label `topology.kubernetes.io/zone`.
    Zone,
    /// A single unit, no node affinity.
    None,
}

/// The failure domains ("cells") pods are spread over.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = topology_rules)]
pub struct Topology {
    /// Cell (label cafe.sofastack.io/cell), Zone (topology.kubernetes.io/zone) or None.
    #[serde(default)]
    pub unit_type: UnitType,
    /// A custom node label key naming the unit; overrides unitType's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_key: Option<String>,
    /// The cells, in order; remainders go to the first cells.
    #[serde(default)]
    pub values: Vec<String>,
    /// Pinned pod counts per cell: an integer or a percentage of replicas ("30%").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unit_replicas: BTreeMap<String, IntOrString>,
    /// Moves the quota of pods that cannot be scheduled in a full cell to other cells.
    #[serde(default)]
    pub auto_reschedule: AutoReschedule,
    /// Which cluster runs a cell: a MemberCluster's name, or "local" (this
    /// cluster). Needed only where two MemberClusters list the same cell;
    /// otherwise a cell runs in the MemberCluster that lists it, else here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, String>,
    /// Cells whose cluster is lost, by a person's decision: while such a
    /// cell is unreachable, its pods are run by the other cells (surge first,
    /// within the budget); once it answers again they are given back.
    /// Nothing fails over on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<String>,
}

fn topology_rules(schema: &mut Schema) {
    rules::bound(schema, &["properties", "values"], "maxItems", json!(64));
    rules::bound(
        schema,
        &["properties", "values", "items"],
        "maxLength",
        json!(63),
    );
    rules::bound(
        schema,
        &["properties", "unitReplicas"],
        "maxProperties",
        json!(64),
    );
    // "100%" is the longest valid string pin.
    rules::bound(
        schema,
        &["properties", "unitReplicas", "additionalProperties"],
        "maxLength",
        json!(4),
    );
    rules::bound(schema, &["properties", "unitKey"], "maxLength", json!(317));
    rules::bound(
        schema,
        &["properties", "clusters"],
        "maxProperties",
        json!(64),
    );
    rules::bound(
        schema,
        &["properties", "clusters", "additionalProperties"],
        "maxLength",
        json!(253),
    );
    rules::bound(schema, &["properties", "failover"], "maxItems", json!(64));
    rules::bound(
        schema,
        &["properties", "failover", "items"],
        "maxLength",
        json!(63),
    );
    rules::push(
        schema,
        &[
            Rule {
                rule: "self.unitType == 'None' || size(self.values) > 0",
                message: "topology.values must list at least one cell, e.g. [cell-a, cell-b] \
                          (only unitType None runs without cells)",
                field_path: ".values",
            },
            Rule {
                rule: "self.unitType != 'None' || size(self.values) <= 1",
                message: "unitType None runs a single unit: list at most one value (its name)",
                field_path: ".values",
            },
            Rule {
                rule: "self.values.all(v, v.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",
                message: "each cell in topology.values must be a lower-case DNS label of at most \
                          63 characters (a-z, 0-9 and '-'), as it names the cell's InPlaceSet",
                field_path: ".values",
            },
            Rule {
                rule: "self.values.all(v, self.values.exists_one(w, w == v))",
                message: "topology.values lists a cell twice: list each cell once",
                field_path: ".values",
            },
            Rule {
                rule: "!has(self.clusters) || self.clusters.all(k, k in self.values)",
                message: "topology.clusters places a cell that is not in topology.values: \
                          add the cell to values or remove it from clusters",
                field_path: ".clusters",
            },
            Rule {
                rule: "!has(self.clusters) || self.clusters.all(k, \
                       self.clusters[k].matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'))",
                message: "each topology.clusters value must name a MemberCluster (a DNS \
                          subdomain) or be \"local\"",
                field_path: ".clusters",
            },
            Rule {
                rule: "!has(self.failover) || self.failover.all(c, c in self.values)",
                message: "topology.failover lists a cell that is not in topology.values: \
                          list only cells of values",
                field_path: ".failover",
            },
            Rule {
                rule: "!has(self.failover) || size(self.failover) < size(self.values)",
                message: "topology.failover lists every cell: at least one cell must remain \
                          to run the pods",
                field_path: ".failover",
            },
            Rule {
                rule: "!has(self.unitReplicas) || self.unitReplicas.all(k, k in self.values)",
                message: "topology.unitReplicas pins a cell that is not in topology.values: \
                          add the cell to values or remove the pin",
                field_path: ".unitReplicas",
            },
            Rule {
                rule: "!has(self.unitReplicas) || self.unitReplicas.all(k, \
                       string(self.unitReplicas[k]).matches('^([0-9]+|(100|[1-9]?[0-9])%)$'))",
                message: "each topology.unitReplicas pin must be an integer >= 0 or a percentage \
                          from 0% to 100%, e.g. 4 or \"30%\"",
                field_path: ".unitReplicas",
            },
            Rule {
                rule: "!has(self.unitKey) || self.unitKey.matches(\
                       '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')",
                message: "topology.unitKey must be a node label key, e.g. example.com/rack",
                field_path: ".unitKey",
            },
        ],
    );
}

/// Moving the quota of a full cell to cells with room.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoReschedule {
    #[serde(default)]
    pub enable: bool,
    /// How long a pod must stay unschedulable before its quota moves.
    #[serde(default = "default_initial_delay")]
    #[schemars(range(min = 0))]
    pub initial_delay_seconds: i32,
}

fn default_initial_delay() -> i32 {
    10
}

/// Beta: one pod per cell first, then batches. Batch: batches only.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpgradeType {
    #[default]
    Beta,
    Batch,
}

/// How a new pod template is released.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = strategy_rules)]
pub struct ReleaseStrategy {
    #[serde(default)]
    pub upgrade_type: UpgradeType,
    /// Pods per group over all cells: an integer >= 1 or a percentage of replicas.
    #[serde(default = "default_batch_size")]
    pub batch_size: IntOrString,
    /// Wait for the annotation cafe.sofastack.io/upgrade-confirmed="true" after each group but the last.
    #[serde(default)]
    pub need_waiting_for_confirm: bool,
    /// The user's pause switch, honoured at any time.
    #[serde(default)]
    pub pause: bool,
    /// Seconds a pod must be ready before it counts as available.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: i32,
    /// Seconds a group may make no progress before the release is Stalled.
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: i32,
    #[serde(default)]
    pub update_mode: UpdateMode,
    /// Prometheus queries measured after each group but the last: a passed
    /// analysis starts the next group (no person needed), a failed one rolls
    /// the release back (or pauses it). Groups then never overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// Times in which no group opens and no pod starts moving (a pause and a
    /// rollback still do); the annotation cafe.sofastack.io/window-override
    /// with a reason opens one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_windows: Vec<DenyWindow>,
}

fn default_batch_size() -> IntOrString {
    IntOrString::String("25%".to_string())
}

fn default_progress_deadline() -> i32 {
    600
}

impl Default for ReleaseStrategy {
    fn default() -> Self {
        Self {
            upgrade_type: UpgradeType::default(),
            batch_size: default_batch_size(),
            need_waiting_for_confirm: false,
            pause: false,
            min_ready_seconds: 0,
            progress_deadline_seconds: default_progress_deadline(),
            update_mode: UpdateMode::default(),
            analysis: None,
            deny_windows: Vec::new(),
        }
    }
}

fn strategy_rules(schema: &mut Schema) {
    rules::bound(
        schema,
        &["properties", "denyWindows"],
        "maxItems",
        json!(16),
    );
    rules::push(
        schema,
        &[
            Rule {
                rule: "!has(self.batchSize) || \
                       string(self.batchSize).matches('^([1-9][0-9]*|(100|[1-9][0-9]?)%)$')",
                message: "batchSize must be an integer >= 1 or a percentage from 1% to 100%, \
                          e.g. 4 or \"25%\"",
                field_path: ".batchSize",
            },
            Rule {
                rule: "!has(self.progressDeadlineSeconds) || !has(self.minReadySeconds) || \
                       self.progressDeadlineSeconds > self.minReadySeconds",
                message: "progressDeadlineSeconds must be greater than minReadySeconds, \
                          or every group would stall before its pods count as available",
                field_path: ".progressDeadlineSeconds",
            },
        ],
    );
}

/// A one-shot rollback request, like `kubectl rollout undo --to-revision`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackTo {
    /// The ControllerRevision number to restore; 0 means the previous revision.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub revision: i64,
}

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
    pub conditions: Vec<Condition>,
    /// The deny window holding the release, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowStatus>,
    /// Who did each step, the newest last (at most 50 entries; each
    /// revision keeps its own on its ControllerRevision).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub history: Vec<HistoryEntry>,
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
    /// Groups completed so far.
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
