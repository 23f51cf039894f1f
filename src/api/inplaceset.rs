//! The InPlaceSet resource: one cell's pods, kept at a replica count and
//! updated in place (same pod, same IP) where the change allows it.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use super::rules;
use super::{PreDownload, PreDownloadStatus, SetTemplate, Traffic, UpdateMode};

/// The desired state of an InPlaceSet.
// Each printcolumn repeats `type_ = ...`; clippy reads those as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cafe.sofastack.io",
    version = "v1alpha1",
    kind = "InPlaceSet",
    namespaced,
    status = "InPlaceSetStatus",
    shortname = "ips",
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
        name = "Partition",
        type_ = "string",
        json_path = ".spec.strategy.partition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = inplaceset_spec_rules)]
pub struct InPlaceSetSpec {
    /// Desired number of pods.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Selects the pods of this set; must match the template's labels. Immutable.
    pub selector: LabelSelector,
    /// The pod template; a change is applied in place where possible.
    pub template: SetTemplate,
    /// The stable revision's template: the pods the partition keeps, pods
    /// created below the partition, and pods on any third revision run it.
    /// Unset: pods not on `template` stay as they are and new pods use
    /// `template`. The CafeDeployment sets it to its stable revision; it is a
    /// copy of a template the API server already validated, so its schema is
    /// left open (the CRD would otherwise carry the pod schema twice).
    // Boxed: unset in nearly every set, it would otherwise cost each cached
    // set the size of a second template (1.8 KB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub stable_template: Option<Box<PodTemplateSpec>>,
    /// The stable revision's template as a JSON Patch (RFC 6902) of
    /// `template`, used when `stableTemplate` is not set. A CafeDeployment
    /// writes this rather than a second copy of the template, so a set
    /// carries a large template once (and a release of it fits in etcd's
    /// request limit wherever the CafeDeployment itself does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_patch")]
    pub stable_template_patch: Option<Vec<serde_json::Value>>,
    /// Seconds a pod must be ready (and back in traffic) before it counts as available.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: i32,
    /// Seconds a pod may stay unready (or a drain undone) before the set reports Stalled.
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: i32,
    #[serde(default)]
    pub strategy: InPlaceSetStrategy,
    #[serde(default)]
    pub traffic: Traffic,
    /// Pull the update template's images onto the nodes of the pods not yet
    /// updated, before their turn comes (unset: kubelet pulls at the restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_download: Option<PreDownload>,
}

fn default_progress_deadline() -> i32 {
    600
}

fn any_object(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn any_patch(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "array",
        "nullable": true,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

impl InPlaceSetSpec {
    /// The stable revision's template: `stableTemplate`, else `template`
    /// with `stableTemplatePatch` applied; `None` when neither is set.
    pub fn resolved_stable_template(&self) -> Result<Option<PodTemplateSpec>, String> {
        if let Some(t) = &self.stable_template {
            return Ok(Some(PodTemplateSpec::clone(t)));
        }
        let Some(ops) = &self.stable_template_patch else {
            return Ok(None);
        };
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::Value::Array(ops.clone()))
                .map_err(|e| format!("stableTemplatePatch is not a JSON Patch: {e}"))?;
        let mut doc = serde_json::to_value(&self.template).map_err(|e| e.to_string())?;
        json_patch::patch(&mut doc, &patch)
            .map_err(|e| format!("stableTemplatePatch does not apply to template: {e}"))?;
        serde_json::from_value(doc)
            .map(Some)
            .map_err(|e| format!("stableTemplatePatch makes no pod template: {e}"))
    }
}

/// The JSON Patch that turns `template` into `stable` (for `stableTemplatePatch`).
pub fn template_patch(
    template: &PodTemplateSpec,
    stable: &PodTemplateSpec,
) -> Vec<serde_json::Value> {
    let (from, to) = (
        serde_json::to_value(template).unwrap_or_default(),
        serde_json::to_value(stable).unwrap_or_default(),
    );
    match serde_json::to_value(json_patch::diff(&from, &to)) {
        Ok(serde_json::Value::Array(ops)) => ops,
        _ => Vec::new(),
    }
}

fn inplaceset_spec_rules(schema: &mut Schema) {
    rules::bound_selector_and_template_labels(schema);
    rules::push(
        schema,
        &[
            rules::SELECTOR_NOT_EMPTY,
            rules::SELECTOR_MATCHES_TEMPLATE,
            rules::SELECTOR_IMMUTABLE,
            rules::TEMPLATE_ANNOTATIONS_FIT_A_POD,
            rules::Rule {
                rule: "!has(self.progressDeadlineSeconds) || !has(self.minReadySeconds) || \
                       self.progressDeadlineSeconds > self.minReadySeconds",
                message: "progressDeadlineSeconds must be greater than minReadySeconds, \
                          or every pod would stall before it counts as available",
                field_path: ".progressDeadlineSeconds",
            },
        ],
    );
}

/// How an InPlaceSet moves pods to a new template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = inplaceset_strategy_rules)]
pub struct InPlaceSetStrategy {
    /// Pods that stay on older revisions (CloneSet semantics): an integer or a
    /// percentage of replicas. 0 updates every pod.
    #[serde(default = "zero")]
    pub partition: IntOrString,
    /// Pods that may be out of service at once because of an update: an
    /// integer or a percentage (rounded up). A pod that does not get ready
    /// uses its share, so a broken image never spreads past this. 0 moves no
    /// serving pod (the CafeDeployment hands out its budget cell by cell).
    #[serde(default = "one")]
    pub max_unavailable: IntOrString,
    #[serde(default)]
    pub update_mode: UpdateMode,
    /// Stop starting new pod updates; pods already in their lifecycle finish it.
    #[serde(default)]
    pub paused: bool,
    /// New pods count against `maxUnavailable` until they are available: the
    /// set creates pods only while fewer than `maxUnavailable` of its pods are
    /// unavailable, and none while paused (CloneSet's
    /// `scaleStrategy.maxUnavailable`). A CafeDeployment's first creation is
    /// paced this way until one group is available, so a template whose pods
    /// never get ready creates one group's worth of them, while a slow pod
    /// never holds up the rest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pace_creation: bool,
}

fn zero() -> IntOrString {
    IntOrString::Int(0)
}

fn one() -> IntOrString {
    IntOrString::Int(1)
}

impl Default for InPlaceSetStrategy {
    fn default() -> Self {
        Self {
            partition: zero(),
            max_unavailable: one(),
            update_mode: UpdateMode::default(),
            paused: false,
            pace_creation: false,
        }
    }
}

fn inplaceset_strategy_rules(schema: &mut Schema) {
    rules::push(
        schema,
        &[
            rules::PARTITION_COUNT_OR_PERCENT,
            rules::Rule {
                rule: "!has(self.maxUnavailable) || \
                       string(self.maxUnavailable).matches('^([0-9]+|(100|[1-9]?[0-9])%)$')",
                message: "maxUnavailable must be an integer >= 0 or a percentage from 0% to \
                          100%, e.g. 1 or \"25%\"",
                field_path: ".maxUnavailable",
            },
        ],
    );
}

/// The observed state of an InPlaceSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InPlaceSetStatus {
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
    /// Pods on the update revision that are available (ready for
    /// minReadySeconds and registered by every traffic component).
    #[serde(default)]
    pub updated_available_replicas: i32,
    /// Pods on the stable revision (`spec.stableTemplate`) that are available.
    #[serde(default)]
    pub stable_available_replicas: i32,
    /// Pods no node can take (PodScheduled=False, reason Unschedulable).
    #[serde(default)]
    pub unschedulable_replicas: i32,
    /// Since when (unix seconds) the longest-waiting of them has waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable_since: Option<i64>,
    /// The label selector as a string, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The revision all pods ran when the last update completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// The revision of the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// The revision of `spec.stableTemplate`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The pre-download of the update revision's images (`spec.preDownload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_download: Option<PreDownloadStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The operator that wrote this status last (its leader-election
    /// identity). An operator that finds another one's name here after
    /// writing this object itself stands down on it and says so in the
    /// AnotherWriter condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}
