//! The MemberCluster resource (host cluster, cluster-scoped): another
//! Kubernetes cluster (one per data center) whose cells a CafeDeployment may
//! release to. The host reaches it through a kubeconfig kept in a Secret.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::rules::{self, Rule};

/// A member cluster and the cells it runs.
// Each printcolumn repeats `type_ = ...`; clippy reads those as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cafe.sofastack.io",
    version = "v1alpha1",
    kind = "MemberCluster",
    status = "MemberClusterStatus",
    shortname = "member",
    category = "cafe",
    printcolumn(name = "Cells", type_ = "string", json_path = ".spec.cells"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Last-Contact",
        type_ = "date",
        json_path = ".status.lastContact"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = member_rules)]
pub struct MemberClusterSpec {
    /// The Secret (in the host cluster) holding the kubeconfig the host uses
    /// to reach the member. Rotating its content rebuilds the client.
    pub kubeconfig_secret_ref: SecretKeyRef,
    /// The cells this cluster runs. A CafeDeployment's cell listed here is
    /// released in this cluster; a cell no member lists is local to the host.
    pub cells: Vec<String>,
    /// Seconds without an answer from the member (its probe every 2 s, its
    /// InPlaceSet watch) before it reads Unknown; until then it reads Ready
    /// and is written to (writes that get no answer are held off with
    /// growing waits). Its InPlaceSet watch failing for as long makes it
    /// Unknown too. A group that needs an Unknown member waits, and stalls
    /// past the CafeDeployment's progressDeadlineSeconds.
    #[serde(default = "default_unreachable_after")]
    #[schemars(range(min = 2, max = 3600))]
    pub unreachable_after_seconds: i32,
}

fn default_unreachable_after() -> i32 {
    20
}

/// A key of a Secret in the host cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub namespace: String,
    pub name: String,
    /// The key holding the kubeconfig.
    #[serde(default = "default_key")]
    pub key: String,
}

fn default_key() -> String {
    "kubeconfig".to_string()
}

fn member_rules(schema: &mut Schema) {
    rules::bound(schema, &["properties", "cells"], "maxItems", json!(64));
    rules::bound(
        schema,
        &["properties", "cells", "items"],
        "maxLength",
        json!(63),
    );
    rules::push(
        schema,
        &[
            Rule {
                rule: "self.cells.all(c, c.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",
                message: "each cell in spec.cells must be a lower-case DNS label of at most 63 \
                          characters (a-z, 0-9 and '-'), as a CafeDeployment's topology.values \
                          names it",
                field_path: ".cells",
            },
            Rule {
                rule: "self.cells.all(c, self.cells.exists_one(d, d == c))",
                message: "spec.cells lists a cell twice: list each cell once",
                field_path: ".cells",
            },
        ],
    );
}

/// What the host last saw of the member.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last time the member's API server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<Time>,
    /// The versions of the InPlaceSet CRD the member serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_place_set_versions: Vec<String>,
    /// Ready: True while the member answers and serves the InPlaceSet CRD;
    /// False when its credentials or CRD are wrong (the reason says which);
    /// Unknown when it has not answered for unreachableAfterSeconds.
    /// Deleting (reason InUse): its deletion waits for the CafeDeployments
    /// the message names to leave its cells.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The operator that wrote this status last (its leader-election
    /// identity). An operator that finds another one's name here after
    /// writing this object itself stands down on it and says so in the
    /// AnotherWriter condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}
