//! Metric analysis between groups: Prometheus queries, measured after a group
//! is released, decide whether the next group starts on its own, waits for
//! a person, pauses or rolls the release back.
//!
//! A field of the strategy rather than a separate template resource: the
//! rules that guard a release travel with it (one object to apply, diff and
//! review in Git), the API server validates them together with the strategy
//! they change, and nothing can point at a template that is missing or was
//! edited under a running release. Reuse is the job of Helm or Kustomize.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::rules::{self, Rule};

/// The analysis run after each group but the last.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = analysis_rules)]
pub struct Analysis {
    pub prometheus: PrometheusSource,
    /// The queries measured together; every one must pass.
    pub queries: Vec<AnalysisQuery>,
    /// Seconds after the group's pods are released before the first measurement.
    #[serde(default)]
    #[schemars(range(min = 0, max = 86400))]
    pub initial_delay_seconds: i32,
    /// Seconds between measurements.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 86400))]
    pub interval_seconds: i32,
    /// Measurements per query (errors not counted) before the group passes.
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = 100))]
    pub count: i32,
    /// Failed measurements of a query tolerated; one more fails the group.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub failure_limit: i32,
    /// Inconclusive measurements of a query tolerated; one more makes the
    /// verdict inconclusive.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub inconclusive_limit: i32,
    /// Consecutive errors of a query (Prometheus unreachable, a query it
    /// refuses) tolerated, with backoff; one more makes the verdict Error.
    #[serde(default = "default_error_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub error_limit: i32,
    /// Continue: a passed analysis starts the next group itself.
    /// WaitForConfirm: a person confirms as well.
    #[serde(default)]
    pub on_success: SuccessAction,
    #[serde(default = "default_on_failure")]
    pub on_failure: VerdictAction,
    #[serde(default)]
    pub on_inconclusive: VerdictAction,
    /// What to do once errors exceed `errorLimit`.
    #[serde(default)]
    pub on_error: VerdictAction,
}

fn default_interval() -> i32 {
    30
}

fn default_count() -> i32 {
    3
}

fn default_error_limit() -> i32 {
    4
}

fn default_on_failure() -> VerdictAction {
    VerdictAction::Rollback
}

fn analysis_rules(schema: &mut Schema) {
    rules::bound(
        schema,
        &["properties", "queries"],
        "maxItems",
        json!(MAX_QUERIES),
    );
    rules::bound(schema, &["properties", "queries"], "minItems", json!(1));
    rules::push(
        schema,
        &[Rule {
            rule: "self.queries.all(q, self.queries.exists_one(r, r.name == q.name))",
            message: "analysis.queries names a query twice: give each query its own name",
            field_path: ".queries",
        }],
    );
}

/// At most this many queries per analysis (each is measured every interval).
pub const MAX_QUERIES: usize = 8;
/// Measurements kept in status, newest last.
pub const MEASUREMENTS_KEPT: usize = 10;

/// Where the queries go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = prometheus_rules)]
pub struct PrometheusSource {
    /// The Prometheus base URL, e.g. http://prometheus.monitoring:9090.
    pub address: String,
    /// Seconds a query may take before it counts as an error (at most 30:
    /// a reconcile never waits long on Prometheus).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 30))]
    pub timeout_seconds: i32,
}

fn default_timeout() -> i32 {
    10
}

fn prometheus_rules(schema: &mut Schema) {
    rules::bound(schema, &["properties", "address"], "maxLength", json!(2048));
    rules::push(
        schema,
        &[Rule {
            rule: "self.address.matches('^https?://[^/?#\\\\s]+(/[^?#\\\\s]*)?$')",
            message: "analysis.prometheus.address must be an http:// or https:// base URL \
                      without query, e.g. http://prometheus.monitoring:9090",
            field_path: ".address",
        }],
    );
}

/// One PromQL query and how to read its result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = query_rules)]
pub struct AnalysisQuery {
    /// Names the query in status, events and metrics.
    pub name: String,
    /// PromQL. `{{namespace}}`, `{{name}}`, `{{revision}}`, `{{group}}`,
    /// `{{cells}}`, `{{pods}}` and `{{podRevisions}}` (regex alternations of
    /// the group's cells, of the pods the group released, and of the
    /// `cafe.sofastack.io/revision` pod labels of the new revision) are filled in.
    pub query: String,
    /// CEL over `result` (one series' value, a double): the measurement
    /// passes when it holds for every series, e.g. `result < 0.05`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// CEL over `result`: the measurement fails when it holds for any series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// What an empty result (no series) or a NaN value means.
    #[serde(default)]
    pub on_empty: EmptyResult,
}

fn query_rules(schema: &mut Schema) {
    rules::bound(schema, &["properties", "name"], "maxLength", json!(63));
    rules::bound(schema, &["properties", "query"], "maxLength", json!(8192));
    for field in ["successCondition", "failureCondition"] {
        rules::bound(schema, &["properties", field], "maxLength", json!(1024));
    }
    rules::push(
        schema,
        &[
            Rule {
                rule: "self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                message: "each analysis query name must be a lower-case DNS label, \
                          e.g. error-rate",
                field_path: ".name",
            },
            Rule {
                rule: "size(self.query.trim()) > 0",
                message: "analysis query is empty: write the PromQL to measure, e.g. \
                          sum(rate(http_errors_total{namespace=\"{{namespace}}\"}[1m]))",
                field_path: ".query",
            },
            Rule {
                rule: "has(self.successCondition) || has(self.failureCondition)",
                message: "an analysis query needs a successCondition or a failureCondition \
                          (CEL over result), e.g. successCondition: \"result < 0.05\"",
                field_path: "",
            },
            Rule {
                rule: "!has(self.successCondition) || self.successCondition.contains('result')",
                message: "successCondition must read the query's value as `result`, \
                          e.g. \"result < 0.05\"",
                field_path: ".successCondition",
            },
            Rule {
                rule: "!has(self.failureCondition) || self.failureCondition.contains('result')",
                message: "failureCondition must read the query's value as `result`, \
                          e.g. \"result >= 0.05\"",
                field_path: ".failureCondition",
            },
        ],
    );
}

/// What an empty or NaN result counts as.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EmptyResult {
    /// Neither pass nor fail (the default: no data is no verdict).
    #[default]
    Inconclusive,
    Success,
    Failure,
}

/// After a passed analysis.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SuccessAction {
    /// The next group starts without a person.
    #[default]
    Continue,
    /// A person still confirms (the analysis is shown to them).
    WaitForConfirm,
}

/// After a failed, inconclusive or erroring analysis.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VerdictAction {
    /// Hold at this group until a person confirms or rolls back.
    #[default]
    WaitForConfirm,
    /// Set `spec.strategy.pause`; a person resumes (and confirms) or rolls back.
    Pause,
    /// Restore the stable revision, group-sized and drained (as `rollbackTo`).
    Rollback,
}

/// Where an analysis, or one measurement, stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AnalysisPhase {
    Running,
    Successful,
    Failed,
    Inconclusive,
    Error,
}

impl AnalysisPhase {
    pub const ALL: [AnalysisPhase; 5] = [
        AnalysisPhase::Running,
        AnalysisPhase::Successful,
        AnalysisPhase::Failed,
        AnalysisPhase::Inconclusive,
        AnalysisPhase::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisPhase::Running => "Running",
            AnalysisPhase::Successful => "Successful",
            AnalysisPhase::Failed => "Failed",
            AnalysisPhase::Inconclusive => "Inconclusive",
            AnalysisPhase::Error => "Error",
        }
    }
}

/// The analysis of one group, in status (bounded: counts per query and the
/// last few measurements).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// The revision analysed.
    pub revision: String,
    /// The group analysed (1-based): its pods are the ones measured.
    pub group: i32,
    pub phase: AnalysisPhase,
    pub started_at: Time,
    /// The verdict and the rule that produced it.
    #[serde(default)]
    pub message: String,
    /// The action taken on the verdict (Continue, WaitForConfirm, Pause,
    /// Rollback), recorded once it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default)]
    pub queries: Vec<QueryTally>,
    /// The last measurements, newest last.
    #[serde(default)]
    pub measurements: Vec<Measurement>,
}

impl AnalysisStatus {
    /// The event action of this analysis: events of one reason and action
    /// fold into one series (keeping the first note), so each analysed group
    /// gets its own.
    pub fn event_action(&self) -> String {
        format!("Analyze/{}/group-{}", self.revision, self.group)
    }

    /// "analysis of group N of REV: <message>", for events and logs.
    pub fn summary(&self) -> String {
        format!(
            "analysis of group {} of {}: {}",
            self.group, self.revision, self.message
        )
    }
}

/// Counts of one query's measurements in this analysis.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryTally {
    pub name: String,
    #[serde(default)]
    pub successful: i32,
    #[serde(default)]
    pub failed: i32,
    #[serde(default)]
    pub inconclusive: i32,
    #[serde(default)]
    pub errors: i32,
    #[serde(default)]
    pub consecutive_errors: i32,
}

/// One measurement of one query.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub query: String,
    pub phase: AnalysisPhase,
    /// The values read, e.g. "0.012" or "[0.01, 0.3]"; empty when none.
    #[serde(default)]
    pub value: String,
    pub at: Time,
    /// Why, for an error or an empty result.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
