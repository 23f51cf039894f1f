//! The cells a CafeDeployment's pods are spread over, and the rules the API
//! server checks them by.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::rules::{self, Rule};

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
    /// the replacements at the budget's pace); once it answers again they
    /// are given back. Nothing fails over on its own: a decision acts for one
    /// outage (status.failover), and once its pods are given back it is
    /// spent; remove the cell and list it again to decide anew.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<String>,
}

fn topology_rules(schema: &mut Schema) {
    topology_bounds(schema);
    rules::push(schema, TOPOLOGY_RULES);
}

/// The sizes the API server may have to check: cells, pins, cluster names.
fn topology_bounds(schema: &mut Schema) {
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
}

/// What a topology must satisfy: cells listed once as DNS labels, and
/// clusters, failover and pins naming only those cells.
const TOPOLOGY_RULES: &[Rule] = &[
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
];

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
