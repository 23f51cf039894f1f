//! Pods as the InPlaceSet sees them: read into [`PodFacts`], built from the
//! template at creation, and patched in place. Pure functions of their inputs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{self, PodReadinessGate, PodTemplateSpec};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::lifecycle::{Container, ContainerBefore, ContainerRun, InPlaceRecord, PodFacts};
use crate::api::InPlaceSet;
use crate::api::names::{
    IN_PLACE_RECORD_ANNOTATION, REVISION_LABEL, SHAPE_ANNOTATION, TEMPLATE_KEYS_ANNOTATION,
    TRAFFIC_COMPONENTS_ANNOTATION, TRAFFIC_FINALIZER_PREFIX, TRAFFIC_GATE,
};
use crate::api::pod::Pod;
use crate::traffic::gate;

/// Reads what the lifecycle needs from a pod.
pub fn facts(pod: &Pod) -> PodFacts {
    let meta = &pod.metadata;
    let annotations = pod.annotations();
    let status = pod.status.as_ref();
    let containers = containers(pod);
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let ready = ready_condition.is_some_and(|c| c.status == "True");
    PodFacts {
        name: pod.name_any(),
        created: meta
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        revision: pod.labels().get(REVISION_LABEL).map(str::to_string),
        shape: annotations.get(SHAPE_ANNOTATION).map(str::to_string),
        terminating: meta.deletion_timestamp.is_some(),
        scheduled: pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()),
        gate: gate::read(pod),
        components: declared_components(pod),
        registered: pod
            .finalizers()
            .iter()
            .filter_map(|f| f.strip_prefix(TRAFFIC_FINALIZER_PREFIX))
            .map(str::to_string)
            .collect::<BTreeSet<_>>(),
        containers,
        in_place: annotations
            .get(IN_PLACE_RECORD_ANNOTATION)
            .and_then(|a| serde_json::from_str(a).ok()),
        ready,
        ready_since: ready_condition
            .filter(|_| ready)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.as_second()),
        unready_since: ready_condition
            .filter(|_| !ready)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.as_second()),
        started_at: status
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.as_second()),
        unschedulable_since: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
            .map(|c| {
                c.last_transition_time
                    .as_ref()
                    .map_or(0, |t| t.0.as_second())
            }),
        // The Services are not the pod's: the reconcile sets these two.
        routed_by_service: false,
        drained_for_ms: None,
    }
}

/// The pod's containers: the image each specifies, and how each runs.
fn containers(pod: &Pod) -> Vec<Container> {
    let status = pod.status.as_ref();
    let runs: BTreeMap<&str, ContainerRun> = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|cs| {
            (
                cs.name.as_str(),
                ContainerRun {
                    image: cs.image.clone(),
                    image_id: cs.image_id.clone(),
                    container_id: cs.container_id.clone().unwrap_or_default(),
                    restart_count: cs.restart_count,
                    ready: cs.ready,
                },
            )
        })
        .collect();
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| Container {
            name: c.name.clone(),
            spec_image: c.image.clone().unwrap_or_default(),
            run: runs.get(c.name.as_str()).cloned(),
        })
        .collect()
}

pub use crate::traffic::declared_components;

/// A new pod of the set, named `name`, on `template` (of `revision`). The
/// readiness gate and the declared components are written now: neither can be
/// added to a pod later (gates are immutable; components must be known before
/// the pod is ready). The name is chosen here, not by the API server, so the
/// creation is expected under that name before the request is sent: a
/// reconcile cut short mid-request never creates the pod twice.
pub fn new_pod(
    set: &InPlaceSet,
    template: &PodTemplateSpec,
    revision: &str,
    shape: &str,
    name: String,
) -> v1::Pod {
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.name = Some(name);
    metadata.generate_name = None;
    metadata.namespace = set.namespace();
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_LABEL.to_string(), revision.to_string());
    let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        TRAFFIC_COMPONENTS_ANNOTATION.to_string(),
        set.spec.traffic.components.join(","),
    );
    annotations.insert(SHAPE_ANNOTATION.to_string(), shape.to_string());
    annotations.insert(
        TEMPLATE_KEYS_ANNOTATION.to_string(),
        TemplateKeys::of(template).to_string(),
    );
    metadata.owner_references = set.controller_owner_ref(&()).map(|o| vec![o]);

    let mut spec = template.spec.clone().unwrap_or_default();
    let gates = spec.readiness_gates.get_or_insert_with(Vec::new);
    if !gates.iter().any(|g| g.condition_type == TRAFFIC_GATE) {
        gates.push(PodReadinessGate {
            condition_type: TRAFFIC_GATE.to_string(),
        });
    }
    v1::Pod {
        metadata,
        spec: Some(spec),
        status: None,
    }
}

/// The label and annotation keys a template gives a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateKeys {
    #[serde(default)]
    pub labels: BTreeSet<String>,
    #[serde(default)]
    pub annotations: BTreeSet<String>,
}

impl TemplateKeys {
    pub fn of(template: &PodTemplateSpec) -> Self {
        let meta = template.metadata.clone().unwrap_or_default();
        Self {
            labels: meta.labels.unwrap_or_default().into_keys().collect(),
            annotations: meta.annotations.unwrap_or_default().into_keys().collect(),
        }
    }

    /// What a pod recorded at creation or at its last in-place patch.
    pub fn recorded(pod: &Pod) -> Option<Self> {
        serde_json::from_str(pod.annotations().get(TEMPLATE_KEYS_ANNOTATION)?).ok()
    }
}

impl std::fmt::Display for TemplateKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self).unwrap_or_default())
    }
}

/// A pod name for `set`: its name and five random characters, as the API
/// server's generateName would make it.
pub fn pod_name(set: &str, entropy: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = entropy;
    let suffix: String = (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect();
    // Pod names are at most 253 characters; a set name leaves room in practice.
    format!("{}-{suffix}", &set[..set.len().min(247)])
}

/// The in-place patch (strategic merge) that moves a drained pod to the
/// template: container images by name, the template's labels and annotations,
/// the revision label and the in-place record. Labels and annotations the pod
/// got from its template (recorded on the pod; else `previous`, the template
/// of the revision it runs, when known) that `template` no longer has are
/// removed; keys others added are kept. `resourceVersion` makes it a
/// precondition: if anything changed the pod since it was read (fresh, after
/// the drain), the API server refuses the patch and the next reconcile decides
/// again.
pub fn in_place_patch(
    pod: &Pod,
    template: &PodTemplateSpec,
    previous: Option<&PodTemplateSpec>,
    revision: &str,
) -> Value {
    let (containers, before) = changed_containers(pod, template);
    let record = InPlaceRecord {
        revision: revision.to_string(),
        before,
    };
    let had = TemplateKeys::recorded(pod)
        .or_else(|| previous.map(TemplateKeys::of))
        .unwrap_or_default();
    let labels = labels_patch(&had, template, revision);
    let annotations = annotations_patch(&had, template, &record);
    json!({
        "metadata": {
            "resourceVersion": pod.resource_version(),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"containers": containers},
    })
}

/// The images of `template` that differ from the pod's, by container name,
/// and what each changed container ran before (for the in-place record).
fn changed_containers(
    pod: &Pod,
    template: &PodTemplateSpec,
) -> (Vec<Value>, BTreeMap<String, ContainerBefore>) {
    let facts = facts(pod);
    let wanted: BTreeMap<String, String> = template
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect();
    let mut before = BTreeMap::new();
    let mut containers = Vec::new();
    for c in &facts.containers {
        let Some(image) = wanted.get(&c.name) else {
            continue;
        };
        if *image == c.spec_image {
            continue;
        }
        containers.push(json!({"name": c.name, "image": image}));
        let run = c.run.clone().unwrap_or_default();
        before.insert(
            c.name.clone(),
            ContainerBefore {
                image_id: run.image_id,
                container_id: run.container_id,
                restart_count: run.restart_count,
            },
        );
    }
    (containers, before)
}

/// The labels patch: the template's labels and the revision; those the pod
/// `had` from its template and the template no longer has are removed.
fn labels_patch(
    had: &TemplateKeys,
    template: &PodTemplateSpec,
    revision: &str,
) -> serde_json::Map<String, Value> {
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut labels = replacing(&had.labels, template_meta.labels);
    labels.insert(REVISION_LABEL.to_string(), json!(revision));
    labels
}

/// The annotations patch: the template's annotations, the in-place record
/// and the template's keys; those the pod `had` from its template and the
/// template no longer has are removed, the operator's own never.
fn annotations_patch(
    had: &TemplateKeys,
    template: &PodTemplateSpec,
    record: &InPlaceRecord,
) -> serde_json::Map<String, Value> {
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = replacing(&had.annotations, template_meta.annotations);
    annotations.insert(
        IN_PLACE_RECORD_ANNOTATION.to_string(),
        json!(serde_json::to_string(record).unwrap_or_default()),
    );
    annotations.insert(
        TEMPLATE_KEYS_ANNOTATION.to_string(),
        json!(TemplateKeys::of(template).to_string()),
    );
    // The operator's own annotations are never removed.
    for own in [TRAFFIC_COMPONENTS_ANNOTATION, SHAPE_ANNOTATION] {
        if annotations.get(own) == Some(&Value::Null) {
            annotations.remove(own);
        }
    }
    annotations
}

/// A merge patch of `values` (the template's labels or annotations) that
/// also removes every key in `had` they no longer hold.
fn replacing(
    had: &BTreeSet<String>,
    values: Option<BTreeMap<String, String>>,
) -> serde_json::Map<String, Value> {
    let mut patch = serde_json::Map::new();
    for key in had {
        patch.insert(key.clone(), Value::Null);
    }
    for (k, v) in values.unwrap_or_default() {
        patch.insert(k, Value::String(v));
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::names::gate_reason;

    fn set() -> InPlaceSet {
        serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "InPlaceSet",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1.26"},
                                            {"name": "side", "image": "envoy:1"}]}
                },
                "traffic": {"components": ["service", "rpc"]}
            }
        }))
        .expect("set")
    }

    #[test]
    fn a_new_pod_carries_the_gate_components_revision_and_owner() {
        let s = set();
        let pod = new_pod(&s, &s.spec.template.spec(), "r1", "s1", pod_name("web", 42));
        assert!(pod.name_any().starts_with("web-") && pod.name_any().len() == 9);
        assert_ne!(pod_name("web", 42), pod_name("web", 43));
        assert_eq!(
            pod.labels().get(REVISION_LABEL).map(String::as_str),
            Some("r1")
        );
        assert_eq!(pod.labels().get("app").map(String::as_str), Some("web"));
        // As the operator reads it back from the API server.
        let read: Pod = serde_json::to_value(&pod)
            .and_then(serde_json::from_value)
            .expect("read back");
        assert_eq!(declared_components(&read), vec!["service", "rpc"]);
        let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.clone());
        assert_eq!(gates.map(|g| g.len()), Some(1));
        let owner = &pod.owner_references()[0];
        assert_eq!(owner.uid, "u-1");
        assert_eq!(owner.controller, Some(true));
    }

    fn running_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-abc", "resourceVersion": "42",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app": "web", REVISION_LABEL: "r0"},
                "annotations": {TRAFFIC_COMPONENTS_ANNOTATION: "service,rpc"},
                "finalizers": ["traffic.cafe.sofastack.io/service", "example.com/other"]
            },
            "spec": {"nodeName": "n1", "containers": [
                {"name": "app", "image": "nginx:1.25"},
                {"name": "side", "image": "envoy:1"}]},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"},
                    {"type": TRAFFIC_GATE, "status": "False", "reason": gate_reason::DRAINING_FOR_UPDATE,
                     "lastTransitionTime": "2026-01-01T00:02:00Z"}
                ],
                "containerStatuses": [
                    {"name": "app", "image": "nginx:1.25", "imageID": "i25", "containerID": "c1",
                     "restartCount": 0, "ready": true},
                    {"name": "side", "image": "envoy:1", "imageID": "e1", "containerID": "c9",
                     "restartCount": 2, "ready": true}
                ]
            }
        }))
        .expect("pod")
    }

    #[test]
    fn facts_read_gate_components_and_only_traffic_finalizers() {
        let f = facts(&running_pod());
        assert_eq!(f.gate.open, Some(false));
        assert_eq!(f.gate.reason, gate_reason::DRAINING_FOR_UPDATE);
        assert_eq!(f.components, vec!["service", "rpc"]);
        assert_eq!(f.registered, ["service".to_string()].into());
        assert_eq!(f.still_registered(), vec!["service"]);
        assert!(f.ready && f.scheduled && f.containers_ready());
        assert_eq!(f.revision.as_deref(), Some("r0"));
    }

    #[test]
    fn the_in_place_patch_changes_only_changed_images_and_records_them() {
        let template = set().spec.template.spec();
        let mut previous = template.clone();
        previous.metadata = Some(
            serde_json::from_value(json!({
                "labels": {"app": "web", "tier": "old"},
                "annotations": {"note": "gone"}
            }))
            .expect("meta"),
        );
        let patch = in_place_patch(&running_pod(), &template, Some(&previous), "r1");
        assert_eq!(
            patch["metadata"]["labels"]["tier"],
            Value::Null,
            "a removed label is removed"
        );
        assert_eq!(patch["metadata"]["labels"]["app"], "web");
        assert_eq!(patch["metadata"]["annotations"]["note"], Value::Null);
        // Keys recorded on the pod: only those are removed, others' are kept.
        let mut wire = serde_json::to_value(running_pod()).expect("pod");
        wire["metadata"]["annotations"][TEMPLATE_KEYS_ANNOTATION] =
            json!(r#"{"labels":["app","canary"]}"#);
        let pod: Pod = serde_json::from_value(wire).expect("pod");
        let patch = in_place_patch(&pod, &template, Some(&previous), "r1");
        assert_eq!(patch["metadata"]["labels"]["canary"], Value::Null);
        assert!(
            patch["metadata"]["labels"].get("tier").is_none(),
            "not ours: kept"
        );
        let keys: TemplateKeys = serde_json::from_str(
            patch["metadata"]["annotations"][TEMPLATE_KEYS_ANNOTATION]
                .as_str()
                .expect("keys"),
        )
        .expect("keys json");
        assert_eq!(keys.labels, ["app".to_string()].into());
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(patch["metadata"]["labels"][REVISION_LABEL], "r1");
        assert_eq!(
            patch["spec"]["containers"],
            json!([{"name": "app", "image": "nginx:1.26"}])
        );
        let record: InPlaceRecord = serde_json::from_str(
            patch["metadata"]["annotations"][IN_PLACE_RECORD_ANNOTATION]
                .as_str()
                .expect("record"),
        )
        .expect("record json");
        assert_eq!(record.revision, "r1");
        assert_eq!(record.before["app"].container_id, "c1");
        assert!(!record.before.contains_key("side"));
    }
}
