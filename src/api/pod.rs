//! A pod as the operator reads it: the fields it reads, nothing else.
//!
//! The operator holds every pod it made in memory (10,000 in a fleet), and
//! k8s-openapi's `Pod` weighs about 7 KB however empty its fields are (a
//! `Container` alone is 2.1 KB, a `ContainerStatus` 0.75 KB). This mirror keeps
//! k8s-openapi's field names and paths, so reading code looks the same, and is
//! deserialized straight from the API server's JSON: what it does not name is
//! skipped, never built — `managedFields` above all, the bulk of a pod's JSON.
//!
//! It is only read. Pods are created from k8s-openapi's `Pod` and changed by
//! patches; a `Pod` here is never sent back.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer, Serialize};

mod pairs;

pub use pairs::{Lookup, Pairs};

/// A pod. Its labels and annotations are not in `metadata` (there they are
/// always `None`) but held compactly beside it: `labels()` and
/// `annotations()` read them (they shadow `ResourceExt`'s, which would find
/// nothing).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(from = "Wire", into = "Wire")]
pub struct Pod {
    pub metadata: ObjectMeta,
    labels: Pairs,
    annotations: Pairs,
    pub spec: Option<PodSpec>,
    pub status: Option<PodStatus>,
}

impl Pod {
    /// A pod of `metadata` (its labels and annotations moved out of it),
    /// `spec` and `status`.
    pub fn new(mut metadata: ObjectMeta, spec: Option<PodSpec>, status: Option<PodStatus>) -> Self {
        let labels = metadata.labels.take().unwrap_or_default().into();
        let mut annotations = metadata.annotations.take().unwrap_or_default();
        annotations.remove(crate::api::names::LAST_APPLIED_ANNOTATION);
        Self {
            metadata,
            labels,
            annotations: annotations.into(),
            spec,
            status,
        }
    }

    pub fn labels(&self) -> &Pairs {
        &self.labels
    }

    pub fn annotations(&self) -> &Pairs {
        &self.annotations
    }
}

/// A pod as the API server sends it (and as it is shown again).
#[derive(Default, Deserialize, Serialize)]
#[serde(default)]
struct Wire {
    #[serde(deserialize_with = "meta_without_managed_fields")]
    metadata: ObjectMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<PodSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<PodStatus>,
}

impl From<Wire> for Pod {
    fn from(w: Wire) -> Self {
        Self::new(w.metadata, w.spec, w.status)
    }
}

impl From<Pod> for Wire {
    fn from(p: Pod) -> Self {
        let mut metadata = p.metadata;
        metadata.labels = (!p.labels.is_empty()).then(|| p.labels.to_map());
        metadata.annotations = (!p.annotations.is_empty()).then(|| p.annotations.to_map());
        Self {
            metadata,
            spec: p.spec,
            status: p.status,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(deserialize_with = "shrunk")]
    pub containers: Vec<Container>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Container {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(
        deserialize_with = "conditions_read",
        skip_serializing_if = "Option::is_none"
    )]
    pub conditions: Option<Vec<PodCondition>>,
    #[serde(
        deserialize_with = "shrunk_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(deserialize_with = "word_opt", skip_serializing_if = "Option::is_none")]
    pub phase: Option<Word>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
}

/// A word the API server repeats on every pod (a condition's type, status
/// and reason, a phase): the known ones point at one static copy instead of
/// an allocation each (about 250 B a pod); others are kept as read.
pub type Word = Cow<'static, str>;

/// The words a cached pod shares.
const WORDS: [&str; 12] = [
    "True",
    "False",
    "Unknown",
    "Ready",
    "PodScheduled",
    crate::api::names::TRAFFIC_GATE,
    crate::api::names::gate_reason::SERVING,
    crate::api::names::gate_reason::DRAINING_FOR_UPDATE,
    crate::api::names::gate_reason::DRAINING_FOR_DELETE,
    "Running",
    "Pending",
    "Succeeded",
];

fn intern(s: String) -> Word {
    match WORDS.iter().find(|w| **w == s) {
        Some(w) => Cow::Borrowed(w),
        None => Cow::Owned(s),
    }
}

fn word<'de, D: Deserializer<'de>>(d: D) -> Result<Word, D::Error> {
    Ok(intern(String::deserialize(d)?))
}

fn word_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Word>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(intern))
}

/// A condition without its message (the operator never reads one).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type", deserialize_with = "word")]
    pub type_: Word,
    #[serde(deserialize_with = "word")]
    pub status: Word,
    #[serde(deserialize_with = "word_opt", skip_serializing_if = "Option::is_none")]
    pub reason: Option<Word>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// One run of a container: which image, which container, how often restarted,
/// whether ready (its state and probes' details are not read).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    #[serde(rename = "imageID")]
    pub image_id: String,
    #[serde(rename = "containerID", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub restart_count: i32,
    pub ready: bool,
}

/// The pod conditions the operator reads; kubelet's others (Initialized,
/// ContainersReady, PodReadyToStartContainers) are dropped as they are read.
const CONDITIONS_READ: [&str; 3] = ["Ready", "PodScheduled", crate::api::names::TRAFFIC_GATE];

fn conditions_read<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<PodCondition>>, D::Error> {
    let conditions: Option<Vec<PodCondition>> = Option::deserialize(d)?;
    Ok(conditions.map(|mut cs| {
        cs.retain(|c| CONDITIONS_READ.contains(&&*c.type_));
        // The list was read with room for kubelet's five or more (serde
        // grows it as it reads): a cached pod keeps room for the three read.
        cs.shrink_to_fit();
        cs
    }))
}

/// A list as read, without the room serde leaves at its end (it grows a list
/// as it reads: one element takes room for four); a cached pod keeps it.
fn shrunk<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    let mut v = Vec::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

fn shrunk_opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    let mut v: Option<Vec<T>> = Option::deserialize(d)?;
    if let Some(v) = v.as_mut() {
        v.shrink_to_fit();
    }
    Ok(v)
}

/// `ObjectMeta` as read: everything but `managedFields` and `selfLink`.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MetaRead {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    uid: Option<String>,
}

fn meta_without_managed_fields<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let mut m = MetaRead::deserialize(d)?;
    // As for `shrunk`: one owner reference would keep room for four.
    if let Some(o) = m.owner_references.as_mut() {
        o.shrink_to_fit();
    }
    if let Some(f) = m.finalizers.as_mut() {
        f.shrink_to_fit();
    }
    Ok(ObjectMeta {
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp,
        finalizers: m.finalizers,
        generate_name: m.generate_name,
        generation: m.generation,
        labels: m.labels,
        name: m.name,
        namespace: m.namespace,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        uid: m.uid,
        managed_fields: None,
        self_link: None,
    })
}

impl k8s_openapi::Resource for Pod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for Pod {
    const LIST_KIND: &'static str = "PodList";
}

impl k8s_openapi::Metadata for Pod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pod as the API server sends it, with what the operator never reads.
    fn full_pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                         "labels": {"app": "web"},
                         "annotations": {"cafe.sofastack.io/in-place-update": "{}"},
                         "managedFields": [{"manager": "kubelet", "operation": "Update",
                                            "fieldsType": "FieldsV1",
                                            "fieldsV1": {"f:status": {"f:conditions": {}}}}],
                         "selfLink": "/api/v1/namespaces/shop/pods/p",
                         "ownerReferences": [{"apiVersion": crate::api::names::API_VERSION,
                                              "kind": "InPlaceSet", "name": "web", "uid": "s",
                                              "controller": true}],
                         "finalizers": ["traffic.cafe.sofastack.io/service"]},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "nginx:1.25",
                     "env": [{"name": "A", "value": "b"}], "resources": {}}],
                     "readinessGates": [{"conditionType": "cafe.sofastack.io/traffic-ready"}],
                     "tolerations": [{"key": "k", "operator": "Exists"}]},
            "status": {"podIP": "10.0.0.1", "phase": "Running",
                       "conditions": [{"type": "Initialized", "status": "True"},
                                      {"type": "Ready", "status": "True", "message": "long",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"},
                                      {"type": "cafe.sofastack.io/traffic-ready", "status": "True",
                                       "reason": "Serving", "lastTransitionTime": null}],
                       "containerStatuses": [{"name": "app", "image": "nginx:1.25", "imageID": "i",
                                              "containerID": "c", "restartCount": 2, "ready": true,
                                              "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
        })
    }

    #[test]
    fn a_pod_keeps_what_the_operator_reads_and_drops_the_rest() {
        let p: Pod = serde_json::from_value(full_pod()).expect("pod");
        assert_eq!(p.metadata.name.as_deref(), Some("p"));
        assert_eq!(p.labels().get("app"), Some("web"));
        assert!(p.metadata.labels.is_none() && p.metadata.annotations.is_none());
        assert_eq!(
            p.annotations().get("cafe.sofastack.io/in-place-update"),
            Some("{}")
        );
        assert!(p.metadata.managed_fields.is_none() && p.metadata.self_link.is_none());
        assert_eq!(
            p.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].uid.as_str()),
            Some("s")
        );
        assert_eq!(p.metadata.finalizers.as_ref().map(Vec::len), Some(1));
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.containers[0].image.as_deref(), Some("nginx:1.25"));
        let status = p.status.as_ref().expect("status");
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.1"));
        let types: Vec<&str> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| &*c.type_)
            .collect();
        assert_eq!(
            types,
            ["Ready", "cafe.sofastack.io/traffic-ready"],
            "kubelet's others dropped"
        );
        assert_eq!(
            status
                .conditions
                .as_ref()
                .map(|c| c[1].last_transition_time.is_none()),
            Some(true)
        );
        let run = &status.container_statuses.as_ref().expect("runs")[0];
        assert_eq!(
            (run.image_id.as_str(), run.container_id.as_deref()),
            ("i", Some("c"))
        );
        assert_eq!((run.restart_count, run.ready), (2, true));
    }

    #[test]
    fn the_words_every_pod_repeats_share_one_copy_and_others_are_kept() {
        let p: Pod = serde_json::from_value(full_pod()).expect("pod");
        let status = p.status.expect("status");
        let gate = &status.conditions.as_ref().expect("conditions")[1];
        assert!(matches!(gate.type_, Cow::Borrowed(_)), "{gate:?}");
        assert!(matches!(gate.status, Cow::Borrowed(_)));
        assert!(matches!(gate.reason, Some(Cow::Borrowed("Serving"))));
        assert!(matches!(status.phase, Some(Cow::Borrowed("Running"))));
        assert_eq!(intern("Draining?".to_string()), "Draining?");
        assert!(matches!(intern("Other".to_string()), Cow::Owned(_)));
    }

    #[test]
    fn it_reads_the_same_as_k8s_openapi_pod_where_both_have_the_field() {
        let ours: Pod = serde_json::from_value(full_pod()).expect("ours");
        let theirs: k8s_openapi::api::core::v1::Pod =
            serde_json::from_value(full_pod()).expect("theirs");
        let mut meta = theirs.metadata.clone();
        meta.managed_fields = None;
        meta.self_link = None;
        assert_eq!(
            ours.labels().to_map(),
            meta.labels.take().unwrap_or_default()
        );
        assert_eq!(
            ours.annotations().to_map(),
            meta.annotations.take().unwrap_or_default()
        );
        assert_eq!(ours.metadata, meta);
        // Shown again (the console), it is the pod it was read from.
        let shown = serde_json::to_value(&ours).expect("shown");
        assert_eq!(
            shown["metadata"]["labels"],
            full_pod()["metadata"]["labels"]
        );
        assert_eq!(
            shown["metadata"]["annotations"],
            full_pod()["metadata"]["annotations"]
        );
        let (ts, os) = (theirs.status.expect("status"), ours.status.expect("status"));
        assert_eq!(os.pod_ip, ts.pod_ip);
        assert_eq!(os.phase.map(String::from), ts.phase);
        let ready = ts
            .conditions
            .expect("conditions")
            .into_iter()
            .find(|c| c.type_ == "Ready");
        assert_eq!(
            os.conditions.expect("conditions")[0].last_transition_time,
            ready.and_then(|c| c.last_transition_time)
        );
    }

    #[test]
    fn a_pod_without_spec_or_status_reads() {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).expect("pod");
        assert!(p.spec.is_none() && p.status.is_none());
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "status": {"conditions": null}}))
        .expect("pod");
        assert_eq!(p.status.map(|s| s.conditions), Some(None));
    }
}
