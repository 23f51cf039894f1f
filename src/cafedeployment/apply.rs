//! Writing a decision's outcome in a safe order: the confirmation reset,
//! the status (the release record, conditional on the version decided from),
//! then the cells' InPlaceSets, each only where it differs and allowed.

use std::ops::ControlFlow;
use std::time::Duration;

use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{debug, warn};

use super::MANAGER;
use super::context::Context;
use super::model::Error;
use super::model::Outcome;
use super::revisions::patch_spec;
use crate::api::names::{UPGRADE_CONFIRMED_ANNOTATION, condition};
use crate::api::{CafeDeployment, InPlaceSet, WINDOW_OVERRIDE_ANNOTATION};
use crate::placement::holdoff::held_off;
use crate::placement::homes::Seen;
use crate::runtime::patch_as;
use crate::runtime::writes::refusals::is_refusal;

/// How soon a member that answered a write with an error is looked at again.
const MEMBER_RETRY: Duration = Duration::from_secs(2);

/// Writes the outcome: the confirmation reset, then the status (the release
/// record, conditional on the version decided from), then the sets. A set is
/// written only when the recorded decision allows it and it differs, and not
/// while a refused write holds the CafeDeployment's writes back (`holding`).
pub(super) async fn apply(
    cd: &CafeDeployment,
    ctx: &Context,
    seen: &Seen,
    outcome: Outcome,
    holding: bool,
) -> Result<Action, Error> {
    let previous = cd.status.clone().unwrap_or_default();
    let mut rv = cd.resource_version();
    if outcome.reset_confirmation {
        rv = reset_confirmation(cd, ctx, rv).await?;
    }
    let written = ctx
        .write_status(cd, &previous, outcome.status.clone(), rv)
        .await?;
    let status_wait = written.as_ref().err().copied();
    if written.is_ok() {
        ctx.record_history(cd, &previous, &outcome.status).await;
    }
    if outcome.remove_override {
        remove_override(cd, ctx).await?;
    }
    let sets: &[InPlaceSet] = if holding { &[] } else { &outcome.sets };
    let mut member_retry = match write_sets(cd, ctx, seen, sets).await? {
        ControlFlow::Continue(member_retry) => member_retry,
        ControlFlow::Break(action) => return Ok(action),
    };
    let refusal = ctx.refusals.get(&ObjectRef::from_obj(cd));
    if !holding && refusal.is_some() {
        // Every write it needed went through.
        ctx.refusals.cleared(&ObjectRef::from_obj(cd));
    }
    let delete = if holding {
        &[][..]
    } else {
        &outcome.delete[..]
    };
    member_retry = [member_retry, delete_sets(cd, seen, delete).await?]
        .into_iter()
        .flatten()
        .min();
    // No event into a namespace being deleted: it would be refused too.
    if !refusal.as_ref().is_some_and(|r| r.terminating) {
        ctx.publish(cd, outcome.notes).await;
    }
    ctx.backoff.succeeded(&ObjectRef::from_obj(cd));
    // Unschedulable pods not yet due for rescheduling need a look when they are.
    let wake = outcome
        .wake
        .map_or(300, |w| u64::try_from(w).unwrap_or(1).max(1));
    let wake = [status_wait, refusal.map(|r| r.wait()), member_retry]
        .into_iter()
        .flatten()
        .fold(Duration::from_secs(wake), Duration::min);
    Ok(Action::requeue(wake.max(Duration::from_millis(100))))
}

/// Resets `upgrade-confirmed` to "false", conditional on `rv`: a "true" the
/// user writes meanwhile is never overwritten. Returns the version written.
async fn reset_confirmation(
    cd: &CafeDeployment,
    ctx: &Context,
    rv: Option<String>,
) -> Result<Option<String>, Error> {
    let cds: Api<CafeDeployment> =
        Api::namespaced(ctx.client.clone(), &cd.namespace().unwrap_or_default());
    let patch = json!({"metadata": {
        "resourceVersion": rv,
        "annotations": {UPGRADE_CONFIRMED_ANNOTATION: "false"}
    }});
    let written = cds
        .patch(&cd.name_any(), &patch_as(MANAGER), &Patch::Merge(&patch))
        .await?;
    let rv = written.resource_version();
    ctx.remember(cd, rv.clone());
    Ok(rv)
}

/// Removes the window override whose window ended; guarded: an override
/// written meanwhile (for the next window) stays.
async fn remove_override(cd: &CafeDeployment, ctx: &Context) -> Result<(), Error> {
    let Some(reason) = cd.annotations().get(WINDOW_OVERRIDE_ANNOTATION) else {
        return Ok(());
    };
    let key = WINDOW_OVERRIDE_ANNOTATION.replace('/', "~1");
    let ops = json!([
        {"op": "test", "path": format!("/metadata/annotations/{key}"), "value": reason},
        {"op": "remove", "path": format!("/metadata/annotations/{key}")}
    ]);
    match patch_spec(cd, ctx, ops).await {
        Ok(_) | Err(Error::Kube(kube::Error::Api(_))) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes the `sets` that differ from the owned ones, side by side: a group
/// opens in every cell at once, not one cell after the other. A member that
/// fails a write, or whose writes are held off, is looked at again when its
/// hold-off ends (`Continue(Some(wait))`); the others' writes stand. A
/// refused write breaks off with the action that waits.
async fn write_sets(
    cd: &CafeDeployment,
    ctx: &Context,
    seen: &Seen,
    sets: &[InPlaceSet],
) -> Result<ControlFlow<Action, Option<Duration>>, Error> {
    let name = cd.name_any();
    let writes = sets.iter().filter(|desired| {
        let current = seen
            .sets
            .iter()
            .find(|s| s.name_any() == desired.name_any());
        !current.is_some_and(|c| c.spec == desired.spec && c.annotations() == desired.annotations())
    });
    let results = futures::future::join_all(writes.map(|desired| async move {
        let written = match seen.home_of(desired) {
            Some(home) => home
                .apply(cd, desired, MANAGER)
                .await
                .map_err(|e| (home.cluster().map(str::to_string), e)),
            None => Ok(()),
        };
        (desired.name_any(), written)
    }))
    .await;
    let mut member_retry = None;
    for (set, written) in results {
        match written {
            Ok(()) => {}
            Err((Some(cluster), e)) if held_off(&e).is_some() => {
                let wait = held_off(&e).map(|h| h.wait);
                debug!(cafedeployment = %name, set = %set, member = %cluster, error = %e, "write held off");
                member_retry = soonest(member_retry, wait);
            }
            // A member that rejects the credential is the member's problem
            // (its MemberCluster says which Secret to fix), not the set's.
            Err((Some(cluster), e)) if !is_refusal(&e) || unauthorized(&e) => {
                warn!(cafedeployment = %name, set = %set, member = %cluster, error = %e, "cannot write the InPlaceSet in the member cluster");
                ctx.event(
                    cd,
                    EventType::Warning,
                    "MemberWriteFailed",
                    format!("cannot write InPlaceSet {set} in member cluster {cluster}: {e}"),
                )
                .await;
                member_retry = soonest(member_retry, retry_after(seen, &set));
            }
            Err((cluster, e)) if is_refusal(&e) => {
                // The next reconcile reports it (Stalled) and waits its hold-off.
                let where_ = cluster.map_or(String::new(), |c| format!(" in member cluster {c}"));
                ctx.refused(
                    cd,
                    condition::FAILED_UPDATE,
                    &format!("InPlaceSet {set}{where_}"),
                    &e,
                );
                return Ok(ControlFlow::Break(Action::requeue(Duration::from_millis(
                    100,
                ))));
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
    Ok(ControlFlow::Continue(member_retry))
}

fn unauthorized(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 401)
}

/// The sooner of two waits.
fn soonest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    [a, b].into_iter().flatten().min()
}

/// When a write toward the home of `set` that failed may try again: at the
/// end of its member's hold-off (a failure that was an answer: soon).
fn retry_after(seen: &Seen, set: &str) -> Option<Duration> {
    let held = seen.home_of_name(set).and_then(|h| h.held_off());
    Some(held.map_or(MEMBER_RETRY, |h| h.wait.max(Duration::from_millis(100))))
}

/// Deletes the sets of removed cells drained empty; returns when to look
/// again if a member failed or held off a delete. A failed local delete is
/// the reconcile's error.
async fn delete_sets(
    cd: &CafeDeployment,
    seen: &Seen,
    delete: &[String],
) -> Result<Option<Duration>, Error> {
    let ns = cd.namespace().unwrap_or_default();
    let mut member_retry = None;
    for set in delete {
        let Some(home) = seen.home_of_name(set) else {
            continue;
        };
        if let Err(e) = home.delete(&ns, set).await {
            if home.cluster().is_none() {
                return Err(e.into());
            }
            member_retry = soonest(member_retry, retry_after(seen, set));
        }
    }
    Ok(member_retry)
}
