//! A pod's place in its lifecycle, as `get`'s tree and the console show it:
//! its traffic gate, the components it is registered in, its restarts.

use kube::ResourceExt;

use crate::api::names::{REVISION_LABEL, TRAFFIC_FINALIZER_PREFIX, TRAFFIC_GATE, gate_reason};
use crate::api::pod::Pod;
use crate::traffic::declared_components;

/// A pod's place in the lifecycle, in one word.
pub fn pod_state(pod: &Pod, update_revision: Option<&str>) -> &'static str {
    let gate = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == TRAFFIC_GATE))
        .map(|g| (&*g.status, g.reason.as_deref().unwrap_or_default()));
    lifecycle(&Lifecycle {
        deleting: pod.metadata.deletion_timestamp.is_some(),
        gate,
        declared: &declared_components(pod),
        registered: &registered(pod),
        on_update: pod.labels().get(REVISION_LABEL) == update_revision,
    })
}

/// What a pod's lifecycle state is read from.
pub struct Lifecycle<'a> {
    pub deleting: bool,
    /// The traffic gate's status and reason.
    pub gate: Option<(&'a str, &'a str)>,
    /// Traffic components the pod declares, and those that hold it now.
    pub declared: &'a [String],
    pub registered: &'a [String],
    /// It carries its set's update revision.
    pub on_update: bool,
}

pub fn lifecycle(pod: &Lifecycle) -> &'static str {
    if pod.deleting {
        return "terminating";
    }
    match pod.gate {
        None => "starting",
        Some(("True", _)) => {
            if pod.declared.iter().all(|c| pod.registered.contains(c)) {
                "serving"
            } else {
                "restoring"
            }
        }
        Some((_, reason)) => {
            if pod.declared.iter().any(|c| pod.registered.contains(c)) {
                "draining"
            } else if reason == gate_reason::DRAINING_FOR_DELETE {
                "deleting"
            } else if pod.on_update {
                "verifying"
            } else {
                "updating"
            }
        }
    }
}

pub fn registered(pod: &Pod) -> Vec<String> {
    pod.finalizers()
        .iter()
        .filter_map(|f| f.strip_prefix(TRAFFIC_FINALIZER_PREFIX))
        .map(str::to_string)
        .collect()
}

pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}
