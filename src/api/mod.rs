//! The custom resources and every name shared with the outside world.

mod analysis;
mod cafedeployment;
pub mod count;
mod freeze;
mod inplaceset;
mod member;
pub mod names;
pub mod pod;
mod predownload;
mod rules;
mod set_template;
mod signoff;

pub use analysis::*;
pub use cafedeployment::*;
pub use freeze::*;
pub use inplaceset::*;
pub use member::*;
pub use predownload::*;
pub use set_template::SetTemplate;
pub use signoff::*;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The JSON patch that adds `finalizer` to an object (`meta`), guarded by
/// its resourceVersion: the other owners' finalizers are kept as they are.
pub fn finalizer_added(meta: &ObjectMeta, finalizer: &str) -> serde_json::Value {
    let add = if meta.finalizers.is_some() {
        json!({"op": "add", "path": "/metadata/finalizers/-", "value": finalizer})
    } else {
        json!({"op": "add", "path": "/metadata/finalizers", "value": [finalizer]})
    };
    json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
        add
    ])
}

/// The JSON patch that removes `finalizer` from an object (`meta`), guarded
/// by a test of its place in the list; none when the object does not hold it.
pub fn finalizer_removed(meta: &ObjectMeta, finalizer: &str) -> Option<serde_json::Value> {
    let at = meta
        .finalizers
        .as_ref()?
        .iter()
        .position(|f| f == finalizer)?;
    Some(json!([
        {"op": "test", "path": format!("/metadata/finalizers/{at}"), "value": finalizer},
        {"op": "remove", "path": format!("/metadata/finalizers/{at}")}
    ]))
}

/// A status condition as observed now. Its transition time moves only when its
/// status does (it is kept from `previous` otherwise), so a steady state
/// computes an identical status and nothing is written.
pub fn observed_condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    observed_condition_as(previous, type_, status, reason, message, generation, now)
}

/// `observed_condition` with any status, `Unknown` included.
pub fn observed_condition_as(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// A label selector in the string form of `kubectl get -l` and of the scale
/// subresource's `status.selector` (HPA reads it): labels and expressions.
pub fn selector_string(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// How a pod moves to a new template.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpdateMode {
    /// In place when only images and template labels/annotations changed; else re-create.
    #[default]
    InPlaceIfPossible,
    /// Always drain, delete and re-create.
    ReCreate,
}

/// The traffic components a pod must be deregistered from before it is
/// changed, and registered with again before it counts as released.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = traffic_rules)]
pub struct Traffic {
    /// Each component X owns the pod finalizer traffic.cafe.sofastack.io/X.
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// How long a drain may take before the release stalls with a clear condition.
    #[serde(default = "default_drain_timeout")]
    #[schemars(range(min = 1))]
    pub drain_timeout_seconds: i32,
    /// Seconds a pod waits after every component deregistered it before it is
    /// changed or deleted, so that proxies and load balancers following the
    /// EndpointSlices converge (see docs/traffic-protocol.md).
    #[serde(default = "default_settle")]
    #[schemars(range(min = 0, max = 3600))]
    pub settle_seconds: i32,
}

fn default_settle() -> i32 {
    3
}

fn default_components() -> Vec<String> {
    vec!["service".to_string()]
}

fn default_drain_timeout() -> i32 {
    300
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            components: default_components(),
            drain_timeout_seconds: default_drain_timeout(),
            settle_seconds: default_settle(),
        }
    }
}

fn traffic_rules(schema: &mut Schema) {
    rules::bound(schema, &["properties", "components"], "maxItems", json!(16));
    rules::bound(
        schema,
        &["properties", "components", "items"],
        "maxLength",
        json!(63),
    );
    rules::push(
        schema,
        &[
            rules::TRAFFIC_COMPONENT_NAMES,
            rules::TRAFFIC_COMPONENTS_UNIQUE,
        ],
    );
}

/// The CRDs, in the order `cafe-operator crd` prints them.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        CafeDeployment::crd(),
        InPlaceSet::crd(),
        MemberCluster::crd(),
        ReleaseFreeze::crd(),
    ]
}

/// The CRDs as one multi-document YAML stream, as committed under `crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finalizer_is_added_and_removed_without_touching_the_others() {
        let mut meta = ObjectMeta {
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(
            finalizer_added(&meta, "a/b"),
            json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                   {"op": "add", "path": "/metadata/finalizers", "value": ["a/b"]}])
        );
        assert_eq!(finalizer_removed(&meta, "a/b"), None);
        meta.finalizers = Some(vec!["other/x".into(), "a/b".into()]);
        assert_eq!(
            finalizer_added(&meta, "c/d")[1],
            json!({"op": "add", "path": "/metadata/finalizers/-", "value": "c/d"})
        );
        assert_eq!(
            finalizer_removed(&meta, "a/b"),
            Some(
                json!([{"op": "test", "path": "/metadata/finalizers/1", "value": "a/b"},
                        {"op": "remove", "path": "/metadata/finalizers/1"}])
            )
        );
    }

    #[test]
    fn selectors_read_as_kubectl_writes_them() {
        let selector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "demo"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .expect("selector");
        assert_eq!(
            selector_string(&selector),
            "app=demo,tier in (web,api),!canary"
        );
    }
}
