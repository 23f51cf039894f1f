//! Deleting a CafeDeployment that spans member clusters: its sets there go
//! first, then its finalizer.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::info;

use super::context::Context;
use super::model::Error;
use super::revisions::patch_spec;
use crate::api::names::{CELL_LABEL, MEMBER_SETS_FINALIZER};
use crate::api::{CafeDeployment, finalizer_removed};
use crate::placement::homes::Seen;

/// A CafeDeployment being deleted: its sets in member clusters are deleted
/// (its local ones go by their ownerReference), then its finalizer. A member
/// that cannot be reached keeps the finalizer until it answers: nothing is
/// left behind there.
pub(super) async fn finalize(
    cd: &CafeDeployment,
    ctx: &Context,
    seen: &Seen,
) -> Result<Action, Error> {
    let Some(remove) = finalizer_removed(&cd.metadata, MEMBER_SETS_FINALIZER) else {
        return Ok(Action::await_change());
    };
    let ns = cd.namespace().unwrap_or_default();
    let mut left = Vec::new();
    for (set, home) in seen.in_members() {
        let cluster = home.cluster().unwrap_or_default().to_string();
        let cell = set.labels().get(CELL_LABEL).cloned().unwrap_or_default();
        if let Some(u) = seen.unreachable.get(&cell) {
            left.push(format!("{} in {cluster} ({})", set.name_any(), u.why));
            continue;
        }
        if let Err(e) = home.delete(&ns, &set.name_any()).await {
            left.push(format!("{} in {cluster} ({e})", set.name_any()));
        } else {
            info!(cafedeployment = %cd.name_any(), set = %set.name_any(), member = %cluster, "deleted the InPlaceSet in the member cluster");
            left.push(format!("{} in {cluster} (deleting)", set.name_any()));
        }
    }
    if !left.is_empty() {
        ctx.event(
            cd,
            EventType::Normal,
            "DeletingMemberSets",
            format!(
                "waiting for the InPlaceSets in member clusters to go: {}",
                left.join(", ")
            ),
        )
        .await;
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let removed = patch_spec(cd, ctx, remove).await;
    match removed {
        // Gone already, or the finalizers moved meanwhile: look again.
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 || s.code == 422 => {
            Ok(Action::await_change())
        }
        other => other,
    }
}
