//! Writing a decision's outcome in a safe order: the confirmation reset,
//! the status (the release record, conditional on the version decided from),
//! then the cells' InPlaceSets, each only where it differs and allowed.

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
use crate::runtime::refusals::is_refusal;

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
    let ns = cd.namespace().unwrap_or_default();
    let name = cd.name_any();
    let owned = &seen.sets;
    let cds: Api<CafeDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = cd.status.clone().unwrap_or_default();
    let mut rv = cd.resource_version();
    if outcome.reset_confirmation {
        // Conditional: a "true" the user writes meanwhile is never overwritten.
        let patch = json!({"metadata": {
            "resourceVersion": rv,
            "annotations": {UPGRADE_CONFIRMED_ANNOTATION: "false"}
        }});
        let written = cds
            .patch(&name, &patch_as(MANAGER), &Patch::Merge(&patch))
            .await?;
        rv = written.resource_version();
        ctx.remember(cd, rv.clone());
    }
    let written = ctx
        .write_status(cd, &previous, outcome.status.clone(), rv)
        .await?;
    let status_wait = written.as_ref().err().copied();
    if written.is_ok() {
        ctx.record_history(cd, &previous, &outcome.status).await;
    }
    if outcome.remove_override
        && let Some(reason) = cd.annotations().get(WINDOW_OVERRIDE_ANNOTATION)
    {
        // Guarded: an override written meanwhile (for the next window) stays.
        let key = WINDOW_OVERRIDE_ANNOTATION.replace('/', "~1");
        let ops = json!([
            {"op": "test", "path": format!("/metadata/annotations/{key}"), "value": reason},
            {"op": "remove", "path": format!("/metadata/annotations/{key}")}
        ]);
        match patch_spec(cd, ctx, ops).await {
            Ok(_) | Err(Error::Kube(kube::Error::Api(_))) => {}
            Err(e) => return Err(e),
        }
    }
    // The sets that differ, written side by side: a group opens in every
    // cell at once, not one cell after the other.
    let writes = outcome.sets.iter().filter(|desired| {
        let current = owned.iter().find(|s| s.name_any() == desired.name_any());
        !current.is_some_and(|c| c.spec == desired.spec && c.annotations() == desired.annotations())
    });
    let writes: Vec<&InPlaceSet> = if holding {
        Vec::new()
    } else {
        writes.collect()
    };
    let results = futures::future::join_all(writes.iter().map(|desired| async move {
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
    // A member that fails a write is looked at again soon; the others'
    // writes stand.
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
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
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
