//! The InPlaceSet status, computed from the pods and the decisions taken on
//! them. Pure: the controller writes it only when it differs from what is there.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::lifecycle::{Decision, PodFacts, Waiting};
use super::plan::SetSpec;
use crate::api::names::condition;
use crate::api::{InPlaceSetStatus, observed_condition};

/// One pod and what was decided for it this round.
pub struct Observed<'a> {
    pub pod: &'a PodFacts,
    pub decision: &'a Decision,
}

/// Why the set cannot make progress on its own, if it cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    pub reason: &'static str,
    pub message: String,
}

pub struct Inputs<'a> {
    pub observed: &'a [Observed<'a>],
    pub spec: &'a SetSpec,
    pub revision: &'a str,
    /// The stable revision, when the spec names one other than `revision`.
    pub stable_revision: Option<&'a str>,
    pub generation: Option<i64>,
    pub selector: String,
    pub progress_deadline_seconds: i64,
    pub previous: &'a InPlaceSetStatus,
    pub now: i64,
    pub now_time: Time,
    /// Services selecting the pods with `publishNotReadyAddresses: true`:
    /// the gate cannot take pods out of them.
    pub unsafe_services: &'a [String],
    /// The API server's message while it refuses to create the set's pods.
    pub failed_create: Option<&'a str>,
    /// Why no pod may leave traffic now, when a PodDisruptionBudget holds
    /// moves the set would otherwise start.
    pub disruption_hold: Option<&'a str>,
}

/// A pod that blocks the set: a drain that timed out, or a pod that has not
/// become ready within the progress deadline.
pub fn stall(inputs: &Inputs) -> Option<Stall> {
    if let Some(why) = inputs.failed_create {
        return Some(Stall {
            reason: condition::FAILED_CREATE,
            message: format!("the API server refuses to create pods: {why}"),
        });
    }
    for o in inputs.observed {
        let message = match o.decision {
            Decision::DrainTimedOut(components) => format!(
                "pod {} is still routed to by {} after drainTimeoutSeconds; the update \
                 waits for the component to remove its finalizer traffic.cafe.sofastack.io/<name>",
                o.pod.name,
                components.join(", ")
            ),
            Decision::UnreadyTimedOut => format!(
                "pod {} still reads Ready drainTimeoutSeconds after its traffic gate \
                 closed: the kubelet of its node has not reacted (is the node down?); \
                 the pod is not changed while Services may still route to it",
                o.pod.name
            ),
            _ => continue,
        };
        return Some(Stall {
            reason: "DrainTimeout",
            message,
        });
    }
    for o in inputs.observed {
        let (what, containers) = match o.decision {
            Decision::Wait(Waiting::Verifying(c)) => ("was updated but", c.clone()),
            Decision::Wait(Waiting::ContainersStarting) => (
                if o.pod.in_place.as_ref().map(|r| &r.revision) == o.pod.revision.as_ref() {
                    "was updated but"
                } else {
                    "was started but"
                },
                o.pod
                    .containers
                    .iter()
                    .filter(|c| !c.run.as_ref().is_some_and(|r| r.ready))
                    .map(|c| c.name.clone())
                    .collect(),
            ),
            _ => continue,
        };
        // From the gate's last change (closed for the update, or opened on
        // the restarted containers), else from creation.
        let since = if o.pod.gate.open.is_some() {
            o.pod.gate.since.max(o.pod.created)
        } else {
            o.pod.created
        };
        if inputs.now - since > inputs.progress_deadline_seconds {
            return Some(Stall {
                reason: "ProgressDeadlineExceeded",
                message: format!(
                    "pod {} {what} container(s) {} did not become ready within \
                     progressDeadlineSeconds ({}s); no further pod is updated until it does \
                     (fix the image, or roll back the template)",
                    o.pod.name,
                    containers.join(", "),
                    inputs.progress_deadline_seconds
                ),
            });
        }
    }
    None
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    inputs: &Inputs,
) {
    conditions.push(observed_condition(
        previous,
        type_,
        status,
        reason,
        message,
        inputs.generation,
        &inputs.now_time,
    ));
}

/// The status of a set whose spec cannot be acted on: what was there, with
/// `Stalled=True`, `Ready`, `Progressing` and `Reconciling` False, all reason
/// `InvalidSpec` and the reason in words, for `generation`. The counts stay
/// as they were: the pods are not touched.
pub fn invalid(
    previous: &InPlaceSetStatus,
    generation: Option<i64>,
    why: &str,
    now: &Time,
) -> InPlaceSetStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    let message = format!(
        "invalid spec: {why}; no pod is created, updated or deleted until the spec is fixed"
    );
    let replaced = [
        (condition::STALLED, true),
        (condition::READY, false),
        (condition::PROGRESSING, false),
        (condition::RECONCILING, false),
    ];
    status
        .conditions
        .retain(|c| !replaced.iter().any(|(type_, _)| c.type_ == *type_));
    for (type_, ok) in replaced {
        status.conditions.push(observed_condition(
            &previous.conditions,
            type_,
            ok,
            condition::INVALID_SPEC,
            message.clone(),
            generation,
            now,
        ));
    }
    status
}

pub fn compute(inputs: &Inputs) -> InPlaceSetStatus {
    let replicas = i32::try_from(inputs.spec.replicas).unwrap_or(i32::MAX);
    let mut status = counts(inputs);
    let complete = status.replicas == replicas
        && status.updated_replicas == replicas
        && status.available_replicas == replicas
        && inputs.observed.iter().all(|o| !o.pod.terminating);
    if complete || status.current_revision.is_none() {
        status.current_revision = Some(inputs.revision.to_string());
    }
    status.conditions = conditions(inputs, &status, complete);
    status
}

/// The status's counts and revisions over the live pods, without conditions.
fn counts(inputs: &Inputs) -> InPlaceSetStatus {
    let spec = inputs.spec;
    let live: Vec<&PodFacts> = inputs
        .observed
        .iter()
        .map(|o| o.pod)
        .filter(|p| !p.terminating)
        .collect();
    let count = |f: &dyn Fn(&PodFacts) -> bool| {
        i32::try_from(live.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let updated = |p: &PodFacts| p.revision.as_deref() == Some(inputs.revision);
    let available = |p: &PodFacts| p.available(spec.min_ready_seconds, inputs.now);
    InPlaceSetStatus {
        observed_generation: inputs.generation,
        replicas: count(&|_| true),
        ready_replicas: count(&|p| p.ready),
        available_replicas: count(&available),
        updated_replicas: count(&updated),
        updated_ready_replicas: count(&|p| updated(p) && p.ready),
        updated_available_replicas: count(&|p| updated(p) && available(p)),
        stable_available_replicas: count(&|p| {
            inputs.stable_revision.is_some()
                && p.revision.as_deref() == inputs.stable_revision
                && available(p)
        }),
        unschedulable_replicas: count(&|p| p.unschedulable_since.is_some()),
        unschedulable_since: live.iter().filter_map(|p| p.unschedulable_since).min(),
        selector: Some(inputs.selector.clone()),
        current_revision: inputs.previous.current_revision.clone(),
        update_revision: Some(inputs.revision.to_string()),
        stable_revision: inputs.stable_revision.map(str::to_string),
        // The pre-download's own round fills it in.
        pre_download: None,
        conditions: Vec::new(),
        // Signed by the status writer.
        writer: None,
    }
}

/// The set's conditions: Available, Progressing, Ready, Reconciling, Stalled,
/// TrafficUnsafe, and ReplicaFailure while creations are refused.
fn conditions(inputs: &Inputs, status: &InPlaceSetStatus, complete: bool) -> Vec<Condition> {
    let stall = stall(inputs);
    let prev = &inputs.previous.conditions;
    let mut conditions = Vec::new();
    set_available(&mut conditions, inputs, status);
    let (progressing, reason, message) = progress(inputs, status, stall.as_ref(), complete);
    set_condition(
        &mut conditions,
        prev,
        condition::PROGRESSING,
        progressing,
        reason,
        message.clone(),
        inputs,
    );
    for (type_, status) in [
        (condition::READY, complete),
        (condition::RECONCILING, !complete && stall.is_none()),
    ] {
        set_condition(
            &mut conditions,
            prev,
            type_,
            status,
            if complete { "Ready" } else { reason },
            message.clone(),
            inputs,
        );
    }
    set_condition(
        &mut conditions,
        prev,
        condition::STALLED,
        stall.is_some(),
        stall.as_ref().map_or("NotStalled", |s| s.reason),
        stall.map_or_else(String::new, |s| s.message),
        inputs,
    );
    set_traffic_unsafe(&mut conditions, inputs);
    // As a ReplicaSet's: present only while creations are refused.
    if let Some(why) = inputs.failed_create {
        set_condition(
            &mut conditions,
            prev,
            condition::REPLICA_FAILURE,
            true,
            condition::FAILED_CREATE,
            why.to_string(),
            inputs,
        );
    }
    conditions
}

/// Available: at least `replicas - maxUnavailable` pods are available.
fn set_available(conditions: &mut Vec<Condition>, inputs: &Inputs, status: &InPlaceSetStatus) {
    let spec = inputs.spec;
    let replicas = i32::try_from(spec.replicas).unwrap_or(i32::MAX);
    let min_available = spec.replicas.saturating_sub(spec.max_unavailable);
    let enough = usize::try_from(status.available_replicas).unwrap_or(0) >= min_available;
    set_condition(
        conditions,
        &inputs.previous.conditions,
        condition::AVAILABLE,
        enough,
        if enough {
            "MinimumReplicasAvailable"
        } else {
            "MinimumReplicasUnavailable"
        },
        format!(
            "{} of {} pods available (at least {} required)",
            status.available_replicas, replicas, min_available
        ),
        inputs,
    );
}

/// Whether the set progresses, with the reason and message Progressing,
/// Ready and Reconciling share: stalled, complete, paused, held by a
/// PodDisruptionBudget, or updating.
fn progress(
    inputs: &Inputs,
    status: &InPlaceSetStatus,
    stall: Option<&Stall>,
    complete: bool,
) -> (bool, &'static str, String) {
    let replicas = i32::try_from(inputs.spec.replicas).unwrap_or(i32::MAX);
    match (stall, complete) {
        (Some(s), _) => (false, s.reason, s.message.clone()),
        (None, true) => (
            true,
            "NewRevisionAvailable",
            format!(
                "all {replicas} pods run revision {} and are available",
                inputs.revision
            ),
        ),
        (None, false) if inputs.spec.paused => (
            true,
            "Paused",
            "paused: pods already in their lifecycle finish it, no new pod starts".to_string(),
        ),
        (None, false) if inputs.disruption_hold.is_some() => (
            true,
            condition::WAITING_FOR_DISRUPTION_BUDGET,
            inputs.disruption_hold.unwrap_or_default().to_string(),
        ),
        (None, false) => (
            true,
            "ReplicaSetUpdated",
            format!(
                "{} of {replicas} pods updated, {} available",
                status.updated_replicas, status.available_replicas
            ),
        ),
    }
}

/// TrafficUnsafe: a Service selecting the pods publishes not-ready addresses,
/// so the traffic gate cannot drain them.
fn set_traffic_unsafe(conditions: &mut Vec<Condition>, inputs: &Inputs) {
    let traffic_unsafe = !inputs.unsafe_services.is_empty();
    set_condition(
        conditions,
        &inputs.previous.conditions,
        condition::TRAFFIC_UNSAFE,
        traffic_unsafe,
        if traffic_unsafe {
            "PublishNotReadyAddresses"
        } else {
            "Drainable"
        },
        if traffic_unsafe {
            format!(
                "Service(s) {} set publishNotReadyAddresses: true and keep routing to pods whose \
                 traffic gate is closed: their traffic is not drained. Set \
                 publishNotReadyAddresses: false",
                inputs.unsafe_services.join(", ")
            )
        } else {
            "every Service selecting the pods honours the traffic gate".to_string()
        },
        inputs,
    );
}
