//! The CafeDeployment resource: a workload spread over cells, released in a
//! Beta group and confirmable batches, updated in place, drained losslessly.

mod status;
mod topology;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use status::*;
pub use topology::*;

use super::rules::{self, Rule};
use super::{Analysis, DenyWindow, PreDownload, Signoff, Traffic, UpdateMode};

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
    /// Pull the new template's images onto the nodes of the pods not yet
    /// updated while the release waits (the Beta wait, between groups), so
    /// that their in-place restart does not pull. Progress and failures:
    /// the `ImagesPreDownloaded` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_download: Option<PreDownload>,
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
            pre_download: None,
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
