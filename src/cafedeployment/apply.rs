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
use tracing::warn;

use super::MANAGER;
use super::context::Context;
use super::model::Error;
use super::model::Outcome;
use super::revisions::patch_spec;
use crate::api::names::{UPGRADE_CONFIRMED_ANNOTATION, condition};
use crate::api::{CafeDeployment, InPlaceSet, WINDOW_OVERRIDE_ANNOTATION};
use crate::placement::homes::Seen;
use crate::runtime::patch_as;
use crate::runtime::writes::refusals::is_refusal;

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
    let mut member_failed = match write_sets(cd, ctx, seen, sets).await? {
        ControlFlow::Continue(member_failed) => member_failed,
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
    member_failed |= delete_sets(cd, seen, delete).await?;
    // No event into a namespace being deleted: it would be refused too.
    if !refusal.as_ref().is_some_and(|r| r.terminating) {
        ctx.publish(cd, outcome.notes).await;
    }
    ctx.backoff.succeeded(&ObjectRef::from_obj(cd));
    // Unschedulable pods not yet due for rescheduling need a look when they are.
    let wake = outcome
        .wake
        .map_or(300, |w| u64::try_from(w).unwrap_or(1).max(1));
    let member_retry = member_failed.then_some(Duration::from_secs(2));
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
/// fails a write is looked at again soon (`Continue(true)`); the others'
/// writes stand. A refused write breaks off with the action that waits.
async fn write_sets(
    cd: &CafeDeployment,
    ctx: &Context,
    seen: &Seen,
    sets: &[InPlaceSet],
) -> Result<ControlFlow<Action, bool>, Error> {
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
    let mut member_failed = false;
    for (set, written) in results {
        match written {
            Ok(()) => {}
            Err((Some(cluster), e)) if !is_refusal(&e) => {
                warn!(cafedeployment = %name, set = %set, member = %cluster, error = %e, "cannot write the InPlaceSet in the member cluster");
                ctx.event(
                    cd,
                    EventType::Warning,
                    "MemberWriteFailed",
                    format!("cannot write InPlaceSet {set} in member cluster {cluster}: {e}"),
                )
                .await;
                member_failed = true;
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
    Ok(ControlFlow::Continue(member_failed))
}

/// Deletes the sets of removed cells drained empty; returns whether a
/// member failed a delete (looked at again soon). A failed local delete is
/// the reconcile's error.
async fn delete_sets(cd: &CafeDeployment, seen: &Seen, delete: &[String]) -> Result<bool, Error> {
    let ns = cd.namespace().unwrap_or_default();
    let mut member_failed = false;
    for set in delete {
        let Some(home) = seen.home_of_name(set) else {
            continue;
        };
        if let Err(e) = home.delete(&ns, set).await {
            if home.cluster().is_none() {
                return Err(e.into());
            }
            member_failed = true;
        }
    }
    Ok(member_failed)
}
