//! The template's recorded revisions (ControllerRevisions, numbered, at most
//! `historyLimit` old ones, never the stable one) and a rollback to one of
//! them: the status says first that a rollback follows, then the spec is
//! patched.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::MANAGER;
use super::context::Context;
use super::history;
use super::model::Error;
use super::model::{History, Restore, Revision};
use crate::api::names::{CAFEDEPLOYMENT_UID_LABEL as OWNER_LABEL, condition};
use crate::api::{CafeDeployment, Phase, ReleaseStatus};
use crate::runtime::writes::refusals::is_refusal;
use crate::runtime::{patch_as, post_as};

/// Makes sure the template has a ControllerRevision (numbered after the
/// newest) and keeps at most `historyLimit` older ones, never the stable one.
/// Returns the history: each kept revision's number and template, by name.
/// `holding`: a refused write holds creations back; the history is read only.
pub(super) async fn record_revision(
    cd: &CafeDeployment,
    ctx: &Context,
    name: &str,
    holding: bool,
) -> Result<History, Error> {
    let ns = cd.namespace().unwrap_or_default();
    let uid = cd.uid().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let mut existing: Vec<Arc<ControllerRevision>> =
        ctx.revisions_by_owner.owned(&ctx.revisions, &ns, &uid);
    if !holding && !existing.iter().any(|r| r.name_any() == name) {
        let next = existing.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let mut rev = ControllerRevision {
            revision: next,
            data: Some(RawExtension(
                json!({"spec": {"template": cd.spec.template}}),
            )),
            ..ControllerRevision::default()
        };
        rev.metadata.name = Some(name.to_string());
        rev.metadata.labels = Some([(OWNER_LABEL.to_string(), uid.clone())].into());
        rev.metadata.owner_references = cd.controller_owner_ref(&()).map(|o| vec![o]);
        match api.create(&post_as(MANAGER), &rev).await {
            Ok(r) => existing.push(Arc::new(r)),
            // Made already (the cache has not shown it yet): it is this template.
            Err(kube::Error::Api(s)) if s.code == 409 => existing.push(Arc::new(rev)),
            // Too large, say: the status says so, the stable pods keep serving.
            Err(e) if is_refusal(&e) => ctx.refused(
                cd,
                condition::FAILED_CREATE,
                &format!("ControllerRevision {name}"),
                &e,
            ),
            Err(e) => return Err(e.into()),
        }
    }
    // Trim the oldest beyond historyLimit, never the current or the stable one.
    let stable = cd.status.as_ref().and_then(|s| s.current_revision.clone());
    existing.sort_by_key(|r| r.revision);
    let keep = usize::try_from(cd.spec.history_limit).unwrap_or(0) + 1;
    let excess = existing.len().saturating_sub(keep);
    let protected =
        |r: &Arc<ControllerRevision>| r.name_any() == name || Some(r.name_any()) == stable;
    let trimmed: Vec<String> = existing
        .iter()
        .filter(|r| !protected(r))
        .take(excess)
        .map(|r| r.name_any())
        .collect();
    for old in &trimmed {
        match api.delete(old, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(existing
        .iter()
        .filter(|r| !trimmed.contains(&r.name_any()))
        .filter_map(|r| {
            let t = r.data.as_ref()?.0.get("spec")?.get("template")?.clone();
            let revision = Revision {
                number: r.revision,
                template: serde_json::from_value(t).ok()?,
            };
            Some((r.name_any(), revision))
        })
        .collect())
}

/// Restores the template of a revision and records first, in status, that
/// the release that follows is a rollback (no Beta group, no confirmation
/// waits), so an operator that dies in between still releases it as one.
pub(super) async fn restore(
    cd: &CafeDeployment,
    ctx: &Context,
    restore: Restore,
) -> Result<Action, Error> {
    let Restore {
        revision,
        template,
        why,
        analysis,
    } = restore;
    let previous = cd.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.phase = Some(Phase::RollingBack);
    let verified = ctx.verified(cd, true).await;
    let step = history::rolled_back(cd, verified, &revision, &why);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    status.history = history::append(&previous.history, vec![step], &now);
    status.release = Some(ReleaseStatus {
        revision,
        rollback: true,
        message: why.clone(),
        analysis,
        ..ReleaseStatus::default()
    });
    // Never held back: the phase changes, which is urgent.
    let _ = ctx
        .write_status(cd, &previous, status.clone(), cd.resource_version())
        .await?;
    ctx.record_history(cd, &previous, &status).await;
    ctx.event(
        cd,
        EventType::Normal,
        "RollingBack",
        format!("{why}, at once: no Beta group, no confirmation"),
    )
    .await;
    let mut ops = vec![json!({"op": "replace", "path": "/spec/template", "value": template})];
    if cd.spec.rollback_to.is_some() {
        ops.push(json!({"op": "remove", "path": "/spec/rollbackTo"}));
    }
    patch_spec(cd, ctx, serde_json::Value::Array(ops)).await
}

/// One JSON patch of the CafeDeployment (its spec, or its finalizers).
pub(super) async fn patch_spec(
    cd: &CafeDeployment,
    ctx: &Context,
    ops: serde_json::Value,
) -> Result<Action, Error> {
    let cds: Api<CafeDeployment> =
        Api::namespaced(ctx.client.clone(), &cd.namespace().unwrap_or_default());
    let patch: json_patch::Patch =
        serde_json::from_value(ops).unwrap_or_else(|_| json_patch::Patch(Vec::new()));
    cds.patch(
        &cd.name_any(),
        &patch_as(MANAGER),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(Action::await_change())
}
