//! The pod writes a reconcile decided: the traffic gate, the in-place patch,
//! a deletion; a bounded number in flight at once, each pod written at most
//! once until the cache shows the write.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::{Api, ResourceExt};
use tracing::{debug, warn};

use super::MANAGER;
use super::context::Context;
use super::lifecycle::{Decision, Intent, PodFacts, Timing, Toward, step};
use super::pods;
use super::templates::Templates;
use crate::api::InPlaceSet;
use crate::api::names::gate_reason;
use crate::api::pod::Pod;
use crate::runtime::patch_as;
use crate::traffic::gate;

/// How many pod writes one reconcile has in flight at once.
pub(super) const WRITE_CONCURRENCY: usize = 16;

/// A pod the operator moved: what it did (for the log) and the
/// resourceVersion the write produced.
type Moved = (String, Option<String>);

/// Applies one pod's decision. A gate write returns the pod as it is now:
/// when that pod is drained already (no component registered, no Service
/// selecting it), its spec patch or deletion follows at once, on that
/// version, instead of after the watch brings it back.
async fn act(
    api: &Api<Pod>,
    templates: &Templates,
    (pod, facts): (&Pod, &PodFacts),
    (intent, decision): (Intent, &Decision),
    timing: &Timing,
    (now, time): (i64, &Time),
) -> Result<Option<Moved>, kube::Error> {
    let Some((moved, written)) =
        apply(api, templates, pod, facts, (intent, decision), time).await?
    else {
        return Ok(None);
    };
    let (Decision::GateOff(_), Some(written)) = (decision, written) else {
        return Ok(Some(moved));
    };
    let mut drained = pods::facts(&written);
    drained.routed_by_service = facts.routed_by_service;
    let then = step(&drained, intent, templates.target_of(intent), timing, now);
    if !matches!(then, Decision::PatchInPlace | Decision::Delete) {
        return Ok(Some(moved));
    }
    match apply(api, templates, &written, &drained, (intent, &then), time).await {
        Ok(Some(((note, version), _))) => Ok(Some((format!("{}; {note}", moved.0), version))),
        Ok(None) => Ok(Some(moved)),
        Err(e) => {
            // The gate is written; the next reconcile takes the next step.
            warn!(pod = %facts.name, error = %e, "after the gate closed");
            Ok(Some(moved))
        }
    }
}

/// What a write did (for the log), its resourceVersion, and the pod it
/// returned (for the gate writes).
type Applied = Option<(Moved, Option<Pod>)>;

/// Applies one decision: what it did, and the pod the write returned (for
/// the gate writes).
async fn apply(
    api: &Api<Pod>,
    templates: &Templates,
    pod: &Pod,
    facts: &PodFacts,
    (intent, decision): (Intent, &Decision),
    time: &Time,
) -> Result<Applied, kube::Error> {
    let name = facts.name.as_str();
    match decision {
        Decision::Steady
        | Decision::Wait(_)
        | Decision::DrainTimedOut(_)
        | Decision::UnreadyTimedOut => Ok(None),
        Decision::GateOff(reason) => close_gate(api, facts, reason, time).await,
        Decision::PatchInPlace => match intent {
            Intent::Update(toward) => patch_in_place(api, templates, pod, facts, toward).await,
            _ => Ok(None),
        },
        Decision::GateOn => {
            let written = open_gate(api, name, time).await?;
            let note = format!(
                "pod {name}: ready on revision {}; traffic gate open",
                facts.revision.clone().unwrap_or_default()
            );
            Ok(Some(((note, written.resource_version()), None)))
        }
        Decision::Delete => delete_drained(api, pod, name).await,
    }
}

/// Closes a pod's traffic gate: the components deregister it.
async fn close_gate(
    api: &Api<Pod>,
    facts: &PodFacts,
    reason: &str,
    time: &Time,
) -> Result<Applied, kube::Error> {
    let name = facts.name.as_str();
    let components = facts.still_registered();
    let message = format!("out of traffic: {reason}");
    let patch = gate::patch(false, reason, &message, time);
    let written = api
        .patch_status(name, &patch_as(MANAGER), &Patch::Strategic(&patch))
        .await?;
    let note = format!(
        "pod {name}: traffic gate closed ({reason}); waiting for {} to deregister it",
        if components.is_empty() {
            "no component".to_string()
        } else {
            components.join(", ")
        }
    );
    Ok(Some(((note, written.resource_version()), Some(written))))
}

/// Updates a drained pod in place toward `toward`'s template.
///
/// The cached pod is drained; the patch carries its resourceVersion as a
/// precondition, so it applies only to exactly that drained version (no read
/// needed). A kubelet status write in between (its Ready turning False after
/// the gate closed, say) makes the API server refuse it: then one fresh read,
/// and the patch is sent again only if that pod is still drained for this
/// update and on the same revision. Anything else (a component re-registering
/// it, say) waits for the next reconcile to decide again.
async fn patch_in_place(
    api: &Api<Pod>,
    templates: &Templates,
    pod: &Pod,
    facts: &PodFacts,
    toward: Toward,
) -> Result<Applied, kube::Error> {
    let name = facts.name.as_str();
    let (template, target) = templates.toward(toward);
    let target = &target.revision;
    let previous = templates.of_revision(facts.revision.as_deref());
    let done = |written: Pod| {
        let note = format!("pod {name}: drained; updating in place to revision {target}");
        Some(((note, written.resource_version()), None))
    };
    let patch = pods::in_place_patch(pod, template, previous, target);
    let params = patch_as(MANAGER);
    match api.patch(name, &params, &Patch::Strategic(&patch)).await {
        Ok(written) => return Ok(done(written)),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    let fresh = match api.get(name).await {
        Ok(fresh) => fresh,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    if fresh.uid() != pod.uid() || !pods::facts(&fresh).still_drained_as(facts) {
        return Ok(None);
    }
    let patch = pods::in_place_patch(&fresh, template, previous, target);
    match api.patch(name, &params, &Patch::Strategic(&patch)).await {
        Ok(written) => Ok(done(written)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes a drained pod (only that pod: its uid is a precondition).
async fn delete_drained(api: &Api<Pod>, pod: &Pod, name: &str) -> Result<Applied, kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(deleted) => Ok(Some((
            (
                format!("pod {name}: drained; deleted"),
                // A pod kept by finalizers comes back with its new version.
                deleted.left().and_then(|p| p.resource_version()),
            ),
            None,
        ))),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a pod's traffic gate (condition True, reason Serving).
pub(super) async fn open_gate<K>(api: &Api<K>, name: &str, time: &Time) -> Result<K, kube::Error>
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let patch = gate::patch(true, gate_reason::SERVING, "in traffic", time);
    api.patch_status(name, &patch_as(MANAGER), &Patch::Strategic(&patch))
        .await
}

/// Applies the decisions of one reconcile to the set's pods: a sliding window
/// of `WRITE_CONCURRENCY` writes, not chunks, so one slow write never holds
/// back the next pods' (each step of a release waits on the last one's
/// writes). A pod whose last write the cache does not show yet is skipped.
/// Returns the first error; the other writes are made all the same.
pub(super) async fn write_pods(
    ctx: &Context,
    set: &InPlaceSet,
    (templates, timing): (&Templates, &Timing),
    (owned, facts): (&[Arc<Pod>], &[PodFacts]),
    (intents, decisions): (&[Intent], &[Decision]),
    (now, time): (i64, &Time),
) -> Option<kube::Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    let api = &api;
    let writes: Vec<_> = owned
        .iter()
        .zip(facts)
        .zip(intents.iter().zip(decisions))
        .filter(|(_, (_, d))| !matches!(d, Decision::Steady | Decision::Wait(_)))
        .filter(|((p, _), _)| !ctx.acted_on.stale(p.as_ref()))
        .map(|((pod, f), (i, d))| async move {
            let written = act(api, templates, (pod, f), (*i, d), timing, (now, time)).await;
            (pod, written)
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(writes)
        .buffer_unordered(WRITE_CONCURRENCY)
        .map(|(pod, result)| {
            if let (Ok(Some((_, Some(written)))), Some(uid)) = (&result, pod.uid()) {
                ctx.acted_on.remember(uid, written.clone());
            }
            result
        })
        .collect()
        .await;
    // Pod moves are logged, not published: an event per pod write would
    // cost the API server as much as the writes themselves.
    let mut first_error = None;
    for result in results {
        match result {
            Ok(Some((note, _))) => debug!(set = %set.name_any(), "{note}"),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error
}
