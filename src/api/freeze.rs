//! The ReleaseFreeze resource (cluster-scoped): an emergency stop of every
//! release in progress — in every cluster the host releases to — or of those
//! selected by namespace and label, kept as a record of who froze what, why
//! and when, and who thawed it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::DenyWindow;
use super::rules::{self, Rule};

/// Stops the releases it selects while it is not thawed.
// Each printcolumn repeats `type_ = ...`; clippy reads those as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cafe.sofastack.io",
    version = "v1alpha1",
    kind = "ReleaseFreeze",
    shortname = "freeze",
    category = "cafe",
    printcolumn(name = "Reason", type_ = "string", json_path = ".spec.reason"),
    printcolumn(name = "By", type_ = "string", json_path = ".spec.requestedBy"),
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".spec.namespaces"),
    printcolumn(name = "Thawed", type_ = "date", json_path = ".spec.thawed.at"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = freeze_rules)]
pub struct ReleaseFreezeSpec {
    /// Why: shown in every frozen release's phase message.
    pub reason: String,
    /// Who asked for it: the API server writes the creator's user name
    /// (the sign-off policy), whatever the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Deny windows: the freeze holds only inside them (none: at all times
    /// until thawed). A cluster-wide "no changes on weekends".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<DenyWindow>,
    /// Only releases in these namespaces (none: every namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Only CafeDeployments whose labels match (none: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Set when the freeze ends; the object stays as the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thawed: Option<Thaw>,
}

/// The end of a freeze.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Thaw {
    pub at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

fn freeze_rules(schema: &mut Schema) {
    rules::bound(schema, &["properties", "reason"], "maxLength", json!(1024));
    rules::bound(
        schema,
        &["properties", "requestedBy"],
        "maxLength",
        json!(253),
    );
    rules::bound(schema, &["properties", "windows"], "maxItems", json!(16));
    rules::bound(
        schema,
        &["properties", "namespaces"],
        "maxItems",
        json!(256),
    );
    rules::bound(
        schema,
        &["properties", "namespaces", "items"],
        "maxLength",
        json!(63),
    );
    rules::push(
        schema,
        &[
            Rule {
                rule: "size(self.reason) > 0",
                message: "spec.reason must say why releases are frozen (it is shown on each)",
                field_path: ".reason",
            },
            Rule {
                rule: "!has(oldSelf.thawed) || has(self.thawed)",
                message: "a thawed freeze stays thawed (it is the record): create a new one",
                field_path: ".thawed",
            },
        ],
    );
}

impl ReleaseFreeze {
    /// Whether this freeze stops a CafeDeployment in `namespace` with `labels`
    /// (inside its windows, when it has some).
    pub fn holds(
        &self,
        namespace: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        self.spec.thawed.is_none() && self.selects(namespace, labels)
    }

    /// Whether this freeze is about a CafeDeployment in `namespace` with
    /// `labels`, thawed or not.
    pub fn selects(
        &self,
        namespace: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        if !self.spec.namespaces.is_empty() && !self.spec.namespaces.iter().any(|n| n == namespace)
        {
            return false;
        }
        self.spec
            .selector
            .as_ref()
            .is_none_or(|s| selects(s, labels))
    }
}

/// A label selector's verdict on `labels` (matchLabels and the four operators).
pub fn selects(
    selector: &LabelSelector,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let labelled = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labelled
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn freeze(spec: serde_json::Value) -> ReleaseFreeze {
        serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "ReleaseFreeze",
            "metadata": {"name": "f"}, "spec": spec
        }))
        .expect("freeze")
    }

    #[test]
    fn a_freeze_holds_what_it_selects_until_thawed() {
        let labels = BTreeMap::from([("tier".to_string(), "payments".to_string())]);
        let everything = freeze(json!({"reason": "incident 42"}));
        assert!(everything.holds("shop", &labels));
        let shop = freeze(json!({"reason": "r", "namespaces": ["shop"]}));
        assert!(shop.holds("shop", &labels));
        assert!(!shop.holds("bank", &labels));
        let payments = freeze(json!({"reason": "r",
            "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["payments"]}]}}));
        assert!(payments.holds("bank", &labels));
        assert!(!payments.holds("bank", &BTreeMap::new()));
        let thawed = freeze(json!({"reason": "r", "thawed": {"at": "2026-12-03T10:00:00Z"}}));
        assert!(!thawed.holds("shop", &labels));
    }
}
