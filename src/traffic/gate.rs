//! The readiness gate `cafe.sofastack.io/traffic-ready`.
//!
//! The operator writes this one condition through `pods/status` with a
//! strategic-merge patch keyed by condition type, so no other condition (and
//! never `Ready`, which kubelet derives) is touched. Its reason records the
//! pod's lifecycle state.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::api::names::TRAFFIC_GATE;
use crate::api::pod::Pod;

/// The state of the operator's readiness gate condition on a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    /// `None` when the condition does not exist yet: the pod is not in traffic.
    pub open: Option<bool>,
    pub reason: String,
    /// When the condition last changed (unix seconds).
    pub since: i64,
}

/// The status patch that opens or closes the gate.
pub fn patch(open: bool, reason: &str, message: &str, now: &Time) -> Value {
    json!({"status": {"conditions": [{
        "type": TRAFFIC_GATE,
        "status": if open { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    }]}})
}

/// The gate as the pod shows it. Fails closed: a missing or unknown
/// condition is "not in traffic".
pub fn read(pod: &Pod) -> Gate {
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == TRAFFIC_GATE));
    match condition {
        None => Gate::default(),
        Some(c) => Gate {
            open: match &*c.status {
                "True" => Some(true),
                _ => Some(false),
            },
            reason: c.reason.as_deref().unwrap_or_default().to_string(),
            since: c
                .last_transition_time
                .as_ref()
                .map_or(0, |t| t.0.as_second()),
        },
    }
}
