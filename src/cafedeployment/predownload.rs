//! The `ImagesPreDownloaded` condition: how far the cells' InPlaceSets have
//! pulled the release's images onto the nodes of the pods not yet updated
//! (`spec.strategy.preDownload`), and which node failed and why, before the
//! next group opens. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::model::{Note, note};
use crate::api::names::{CELL_LABEL, condition};
use crate::api::{CafeDeployment, CafeDeploymentStatus, InPlaceSet, observed_condition};

/// The condition, while pre-download is on and a set has figures for its
/// current template; and a Warning note when a pull fails.
pub(super) fn condition(
    cd: &CafeDeployment,
    sets: &[&InPlaceSet],
    previous: &CafeDeploymentStatus,
    now: &Time,
) -> (Option<Condition>, Option<Note>) {
    if cd.spec.strategy.pre_download.is_none() {
        return (None, None);
    }
    let (mut nodes, mut pulled, mut pulling) = (0, 0, 0);
    let mut images: Vec<&str> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for set in sets {
        let Some(status) = &set.status else { continue };
        let Some(p) = status.pre_download.as_ref() else {
            continue;
        };
        if status.update_revision.as_deref() != Some(p.revision.as_str()) {
            continue;
        }
        nodes += p.nodes;
        pulled += i32::try_from(p.pulled.len()).unwrap_or(i32::MAX);
        pulling += p.pulling;
        images.extend(p.images.iter().map(String::as_str));
        let cell = set.labels().get(CELL_LABEL).cloned().unwrap_or_default();
        failed.extend(
            p.failed
                .iter()
                .map(|f| format!("node {} (cell {cell}): {}", f.node, f.message)),
        );
    }
    if nodes == 0 {
        return (None, None);
    }
    images.sort_unstable();
    images.dedup();
    let images = images.join(", ");
    let (ok, reason, message) = if !failed.is_empty() {
        (
            false,
            "PullFailed",
            format!(
                "{images} could not be pulled onto {}; pulled on {pulled} of {nodes} nodes. \
                 The pods there will pull when their group opens and may not start: fix the \
                 image or its pull secret, or roll back",
                failed.join("; ")
            ),
        )
    } else if pulled < nodes {
        (
            false,
            "Pulling",
            format!(
                "pulling {images}: on {pulled} of {nodes} nodes of the pods not yet updated, \
                 {pulling} pulling now"
            ),
        )
    } else {
        (
            true,
            "Pulled",
            format!("{images} pulled onto all {nodes} nodes of the pods not yet updated"),
        )
    };
    let was_failed = previous
        .conditions
        .iter()
        .any(|c| c.type_ == condition::IMAGES_PRE_DOWNLOADED && c.reason == "PullFailed");
    let warn = (reason == "PullFailed" && !was_failed)
        .then(|| note(true, "PreDownloadFailed", message.clone()));
    let condition = observed_condition(
        &previous.conditions,
        condition::IMAGES_PRE_DOWNLOADED,
        ok,
        reason,
        message,
        cd.metadata.generation,
        now,
    );
    (Some(condition), warn)
}
