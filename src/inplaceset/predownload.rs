//! Image pre-download, pure: which nodes need which images of the update
//! template, which pull pods to start and to remove, and the status that says
//! how far it has come.
//!
//! A pull is a short-lived pod bound to the node (`nodeName`, no scheduler):
//! one container of a tiny image that every node has (the sandbox's `pause`,
//! `--pre-download-pod-image`), and one image volume per image to pull. kubelet
//! pulls an image volume before it starts any container, with the pod's pull
//! secrets, so the container running means the images are on the node. No
//! privilege and no access to the node's container runtime is needed, and a
//! pull fails the way a pod's pull fails (`ErrImagePull`, with kubelet's
//! message). Once its container runs, the status records the node as pulled
//! for this revision, and the pod is deleted when the stored status shows it.
//! A set's pull pods take turns in `parallelism` named slots, so the API
//! server itself refuses one more pull at once.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod as FullPod, PodTemplateSpec};
use serde_json::json;

use crate::api::pod::Pod;
use crate::api::{PreDownload, PreDownloadStatus, PullFailure};

pub use crate::api::names::{PULL_LABEL, PULL_REVISION_ANNOTATION};

/// What a pull pod shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullState {
    /// kubelet has not started its container yet.
    Pulling,
    /// Its container runs: the images are on the node.
    Pulled,
    /// kubelet reports a pull (or the pod) failing, with its message. kubelet
    /// keeps trying until the timeout.
    Failing(String),
}

/// A pull pod as the plan reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullPod {
    pub name: String,
    pub node: String,
    pub revision: String,
    /// Seconds since it was created.
    pub age: i64,
    pub state: PullState,
}

/// A pod of the set as the plan reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetPod {
    pub node: Option<String>,
    pub revision: Option<String>,
    pub terminating: bool,
    /// Its containers' images, by container name.
    pub images: BTreeMap<String, String>,
}

pub struct Input<'a> {
    pub config: Option<&'a PreDownload>,
    pub revision: &'a str,
    /// The update template's containers' images, by container name.
    pub images: &'a BTreeMap<String, String>,
    pub pods: &'a [SetPod],
    pub pulls: &'a [PullPod],
    pub previous: Option<&'a PreDownloadStatus>,
}

/// What to do, and the status that results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub status: Option<PreDownloadStatus>,
    /// Pull pods to start: node and images.
    pub start: Vec<(String, Vec<String>)>,
    /// Pull pods to remove (done, timed out, or no longer wanted).
    pub remove: Vec<String>,
    /// Nodes whose pull failed in this round (for an event).
    pub newly_failed: Vec<PullFailure>,
    /// Finished pulls whose pods wait for the status to record them.
    pub unrecorded: usize,
}

impl Plan {
    /// Pulls are under way, or finished ones wait to be recorded: look again
    /// soon (their pods' changes and the set's own status wake the set too;
    /// this bounds a timeout's wait).
    pub fn busy(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.pulling > 0)
            || !self.start.is_empty()
            || self.unrecorded > 0
    }
}

/// The images each node still needs: for every live pod not on the update
/// revision, the update template's images its containers do not run yet.
pub fn wanted(input: &Input) -> BTreeMap<String, BTreeSet<String>> {
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let pending = input
        .pods
        .iter()
        .filter(|p| !p.terminating && p.revision.as_deref() != Some(input.revision));
    for pod in pending {
        let Some(node) = &pod.node else { continue };
        let images: BTreeSet<String> = input
            .images
            .iter()
            .filter(|(container, image)| pod.images.get(*container) != Some(*image))
            .map(|(_, image)| image.clone())
            .collect();
        if !images.is_empty() {
            wanted.entry(node.clone()).or_default().extend(images);
        }
    }
    wanted
}

/// What the pulls so far show, per node: pulled, failed (with why), or in
/// flight (kept); and the pull pods to remove.
#[derive(Default)]
struct Tally {
    pulled: BTreeSet<String>,
    /// The nodes the stored status records as pulled.
    recorded: BTreeSet<String>,
    failed: BTreeMap<String, String>,
    in_flight: BTreeSet<String>,
    /// Finished pulls kept until the status records them: their pod is the
    /// only evidence, and it still holds its slot.
    unrecorded: usize,
    remove: Vec<String>,
}

impl Tally {
    /// Starts from the status of this revision, if any.
    fn from(previous: Option<&PreDownloadStatus>) -> Self {
        let Some(s) = previous else {
            return Self::default();
        };
        Self {
            pulled: s.pulled.iter().cloned().collect(),
            recorded: s.pulled.iter().cloned().collect(),
            failed: s
                .failed
                .iter()
                .map(|f| (f.node.clone(), f.message.clone()))
                .collect(),
            ..Self::default()
        }
    }

    /// One pull pod: a pull of another revision or for a node that no longer
    /// needs it goes; a finished one is remembered, and goes once the stored
    /// status records it (removed earlier, a round on a cache that shows
    /// neither would pull the node again); a failing one shows its failure
    /// and stays until the timeout.
    fn read(&mut self, pull: &PullPod, current: bool, timeout: i64) {
        let node = pull.node.clone();
        let keep = match &pull.state {
            _ if !current => false,
            PullState::Pulled => {
                self.failed.remove(&node);
                self.pulled.insert(node.clone());
                if !self.recorded.contains(&node) {
                    self.unrecorded += 1;
                    return;
                }
                false
            }
            PullState::Failing(why) if pull.age <= timeout => {
                self.failed.insert(node.clone(), why.clone());
                true
            }
            PullState::Pulling if pull.age <= timeout => true,
            PullState::Failing(why) => {
                self.failed
                    .insert(node.clone(), format!("{why} (gave up after {timeout}s)"));
                false
            }
            PullState::Pulling => {
                let why = format!("the pull did not finish within timeoutSeconds ({timeout}s)");
                self.failed.insert(node.clone(), why);
                false
            }
        };
        if keep {
            self.in_flight.insert(node);
        } else {
            self.remove.push(pull.name.clone());
        }
    }

    /// Whether `node` still needs a pull started.
    fn open(&self, node: &String) -> bool {
        !self.pulled.contains(node)
            && !self.failed.contains_key(node)
            && !self.in_flight.contains(node)
    }
}

/// The plan for one reconcile.
pub fn plan(input: &Input) -> Plan {
    let mut plan = Plan::default();
    let Some(config) = input.config else {
        plan.remove = input.pulls.iter().map(|p| p.name.clone()).collect();
        return plan;
    };
    let wanted = wanted(input);
    let previous = input.previous.filter(|s| s.revision == input.revision);
    let mut tally = Tally::from(previous);
    let timeout = i64::from(config.timeout_seconds);
    for pull in input.pulls {
        let current = pull.revision == input.revision && wanted.contains_key(&pull.node);
        tally.read(pull, current, timeout);
    }
    plan.remove = std::mem::take(&mut tally.remove);
    plan.unrecorded = tally.unrecorded;
    let room = slots(config).saturating_sub(tally.in_flight.len() + tally.unrecorded);
    plan.start = wanted
        .iter()
        .filter(|(node, _)| tally.open(node))
        .take(room)
        .map(|(node, images)| (node.clone(), images.iter().cloned().collect()))
        .collect();
    let pulling = tally.in_flight.len() + plan.start.len();
    if wanted.is_empty() && previous.is_none() && pulling == 0 {
        return plan;
    }
    let before: BTreeSet<&String> = previous
        .map(|s| s.failed.iter().map(|f| &f.node).collect())
        .unwrap_or_default();
    plan.newly_failed = tally
        .failed
        .iter()
        .filter(|(node, _)| !before.contains(node))
        .map(|(node, message)| PullFailure {
            node: node.clone(),
            message: message.clone(),
        })
        .collect();
    plan.status = Some(status(input.revision, (previous, &wanted), tally, pulling));
    plan
}

/// The status after this round: the images and nodes of this revision so
/// far, which have pulled, how many pull now, which failed.
fn status(
    revision: &str,
    (previous, wanted): (
        Option<&PreDownloadStatus>,
        &BTreeMap<String, BTreeSet<String>>,
    ),
    tally: Tally,
    pulling: usize,
) -> PreDownloadStatus {
    let mut images: BTreeSet<String> = previous
        .map(|s| s.images.iter().cloned().collect())
        .unwrap_or_default();
    images.extend(wanted.values().flatten().cloned());
    let mut nodes: BTreeSet<&String> = wanted.keys().collect();
    nodes.extend(&tally.pulled);
    nodes.extend(tally.failed.keys());
    PreDownloadStatus {
        revision: revision.to_string(),
        images: images.into_iter().collect(),
        nodes: i32::try_from(nodes.len()).unwrap_or(i32::MAX),
        pulled: tally.pulled.iter().cloned().collect(),
        pulling: i32::try_from(pulling).unwrap_or(i32::MAX),
        failed: tally
            .failed
            .iter()
            .map(|(node, message)| PullFailure {
                node: node.clone(),
                message: message.clone(),
            })
            .collect(),
    }
}

/// Failure reasons kubelet reports on a container waiting for its images.
const FAILING: [&str; 8] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
    "SignatureValidationFailed",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What a pull pod shows, from its status.
pub fn state(pod: &FullPod) -> PullState {
    let Some(status) = &pod.status else {
        return PullState::Pulling;
    };
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    if containers.iter().any(|c| {
        c.state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    }) {
        return PullState::Pulled;
    }
    if let Some(waiting) = containers
        .iter()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find(|w| FAILING.contains(&w.reason.as_deref().unwrap_or_default()))
    {
        return PullState::Failing(format!(
            "{}: {}",
            waiting.reason.as_deref().unwrap_or_default(),
            waiting.message.as_deref().unwrap_or("no message")
        ));
    }
    match status.phase.as_deref() {
        Some("Failed") => PullState::Failing(format!(
            "the pull pod failed: {}",
            status.message.as_deref().unwrap_or("no message")
        )),
        _ => PullState::Pulling,
    }
}

/// A set's pod as the plan reads it.
pub fn set_pod(pod: &Pod) -> SetPod {
    let spec = pod.spec.as_ref();
    SetPod {
        node: spec.and_then(|s| s.node_name.clone()),
        revision: pod
            .labels()
            .get(crate::api::names::REVISION_LABEL)
            .map(str::to_string),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        images: spec
            .map(|s| {
                s.containers
                    .iter()
                    .filter_map(|c| Some((c.name.clone(), c.image.clone()?)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The containers' images of a template, by container name.
pub fn template_images(template: &PodTemplateSpec) -> BTreeMap<String, String> {
    template
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .filter_map(|c| Some((c.name.clone(), c.image.clone()?)))
        .collect()
}

/// The name of the pull pod in slot `slot` of `set`. A set has one slot per
/// node that may pull at once (`parallelism`), so the API server refuses a
/// pull started into a slot still taken (409): a reconcile on a cache that
/// does not show a pull yet, or a new leader while the old one's creation was
/// in flight, cannot run more pulls at once than the parallelism.
pub fn pull_name(set: &str, slot: usize) -> String {
    let suffix = format!("-pull-{slot}");
    let room = 63 - suffix.len();
    let prefix: String = set.chars().take(room).collect();
    format!("{}{suffix}", prefix.trim_end_matches(['-', '.']))
}

/// How many nodes of a set may pull at once: its slots (at least one).
pub fn slots(config: &PreDownload) -> usize {
    usize::try_from(config.parallelism).unwrap_or(1).max(1)
}

/// The names of the first `slots` slots of `set` that no pull pod in
/// `taken` holds.
pub fn free_slots(set: &str, slots: usize, taken: &BTreeSet<&str>) -> Vec<String> {
    (0..slots)
        .map(|slot| pull_name(set, slot))
        .filter(|name| !taken.contains(name.as_str()))
        .collect()
}

/// Where a pull pod runs and what it pulls.
pub struct PullSpec<'a> {
    pub set: &'a crate::api::InPlaceSet,
    /// The set's update template, parsed (the one the images come from).
    pub template: &'a PodTemplateSpec,
    /// Its name: a free slot's (`free_slots`).
    pub name: &'a str,
    pub node: &'a str,
    pub revision: &'a str,
    pub images: &'a [String],
    /// The container image that runs once the images are there.
    pub pod_image: &'a str,
}

/// The pull pod: bound to the node, the images as image volumes (pulled
/// with the template's pull secrets and service account), a pause container
/// that runs once they are there, every taint tolerated (it goes where the
/// set's pods already are), and the restricted Pod Security profile.
pub fn pull_pod(pull: &PullSpec) -> serde_json::Value {
    use kube::{Resource, ResourceExt};
    let template = pull.template.spec.as_ref();
    let volumes: Vec<serde_json::Value> = pull
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            json!({"name": format!("image-{i}"),
                   "image": {"reference": image, "pullPolicy": "IfNotPresent"}})
        })
        .collect();
    let mounts: Vec<serde_json::Value> = (0..pull.images.len())
        .map(|i| json!({"name": format!("image-{i}"), "mountPath": format!("/images/{i}"), "readOnly": true}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pull.name,
            "namespace": pull.set.namespace(),
            "labels": {PULL_LABEL: pull.set.uid()},
            "annotations": {PULL_REVISION_ANNOTATION: pull.revision},
            "ownerReferences": [{
                "apiVersion": crate::api::names::API_VERSION,
                "kind": "InPlaceSet",
                "name": pull.set.name_any(),
                "uid": pull.set.meta().uid,
            }],
        },
        "spec": {
            "nodeName": pull.node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "enableServiceLinks": false,
            "automountServiceAccountToken": false,
            "serviceAccountName": template.and_then(|s| s.service_account_name.clone()),
            "imagePullSecrets": template.and_then(|s| s.image_pull_secrets.clone()),
            "tolerations": [{"operator": "Exists"}],
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "pull",
                "image": pull.pod_image,
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": mounts,
                "resources": {"requests": {"cpu": "1m", "memory": "4Mi"},
                              "limits": {"cpu": "10m", "memory": "16Mi"}},
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": true,
                },
            }],
            "volumes": volumes,
        },
    })
}

#[cfg(test)]
mod tests;
