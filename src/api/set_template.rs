//! An InPlaceSet's pod template, held as its JSON text.
//!
//! The operator holds every InPlaceSet in memory (1,000 in a fleet of 100
//! CafeDeployments over 10 cells), and k8s-openapi's `PodTemplateSpec` costs
//! about 5 KB of heap for a one-container template whose JSON is 400 bytes
//! (a `Container` alone is 2.1 KB however empty). A set's template is read
//! once per reconcile of that set, so it is kept as text and parsed when read
//! ([`SetTemplate::spec`]); its labels, which the Service and
//! PodDisruptionBudget mappers read for every set on every event, are kept
//! parsed beside it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A pod template as the JSON serde writes for a `PodTemplateSpec` (one
/// form for one template, so two are equal exactly when their texts are).
#[derive(Clone)]
pub struct SetTemplate {
    json: Box<RawValue>,
    labels: BTreeMap<String, String>,
}

impl SetTemplate {
    /// The template, parsed.
    pub fn spec(&self) -> PodTemplateSpec {
        // The text was written from a PodTemplateSpec (`From` and
        // `Deserialize` below), and serde reads back what it wrote.
        serde_json::from_str(self.json.get()).expect("a SetTemplate holds a PodTemplateSpec's JSON")
    }

    /// The template's labels (`metadata.labels`).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

impl From<&PodTemplateSpec> for SetTemplate {
    fn from(template: &PodTemplateSpec) -> Self {
        let text = serde_json::to_string(template).expect("a PodTemplateSpec serializes");
        Self {
            json: RawValue::from_string(text).expect("serde_json writes JSON"),
            labels: template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
        }
    }
}

impl From<PodTemplateSpec> for SetTemplate {
    fn from(template: PodTemplateSpec) -> Self {
        Self::from(&template)
    }
}

impl Default for SetTemplate {
    fn default() -> Self {
        Self::from(&PodTemplateSpec::default())
    }
}

impl PartialEq for SetTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.json.get() == other.json.get()
    }
}

impl std::fmt::Debug for SetTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.json.get())
    }
}

impl Serialize for SetTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SetTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PodTemplateSpec::deserialize(d).map(Self::from)
    }
}

impl JsonSchema for SetTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        PodTemplateSpec::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        PodTemplateSpec::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        PodTemplateSpec::json_schema(generator)
    }

    fn inline_schema() -> bool {
        PodTemplateSpec::inline_schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web", "cafe.sofastack.io/cell": "cell-a"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.25",
                                     "resources": {"limits": {"cpu": "500m"}},
                                     "ports": [{"containerPort": 80}]}],
                     "nodeSelector": {"type": "kwok"}}
        }))
        .expect("template")
    }

    #[test]
    fn a_template_reads_back_whole_and_writes_as_the_api_servers_json() {
        let t = template();
        let held = SetTemplate::from(&t);
        assert_eq!(held.spec(), t);
        assert_eq!(held.labels()["cafe.sofastack.io/cell"], "cell-a");
        assert_eq!(
            serde_json::to_value(&held).expect("json"),
            serde_json::to_value(&t).expect("json")
        );
        // Read from the API server's JSON (any key order, any spacing), it is
        // the same template as one built here.
        let text = r#"{ "spec": {"nodeSelector": {"type": "kwok"}, "containers": [{"image": "nginx:1.25",
            "ports": [{"containerPort": 80}], "name": "app", "resources": {"limits": {"cpu": "500m"}}}]},
            "metadata": {"labels": {"cafe.sofastack.io/cell": "cell-a", "app": "web"}}}"#;
        let read: SetTemplate = serde_json::from_str(text).expect("read");
        assert_eq!(read, held);
        let mut other = t.clone();
        other.spec.as_mut().expect("spec").containers[0].image = Some("nginx:1.26".into());
        assert_ne!(SetTemplate::from(&other), held);
    }

    #[test]
    fn the_schema_is_a_pod_templates() {
        let ours = schemars::schema_for!(SetTemplate);
        let theirs = schemars::schema_for!(PodTemplateSpec);
        assert_eq!(ours, theirs);
    }
}
