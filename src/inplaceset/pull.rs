//! Image pre-download, the writes: reads the set's pull pods from their
//! cache, starts and removes them as `predownload::plan` says, and tells of a
//! failed pull with a Warning event. Returns the status to report.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod as FullPod;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::warn;

use super::context::Context;
use super::predownload::{
    self, Input, PULL_LABEL, PULL_REVISION_ANNOTATION, PullPod, PullSpec, template_images,
};
use super::templates::Templates;
use crate::api::pod::Pod;
use crate::api::{InPlaceSet, PreDownloadStatus};

/// One round of the set's pre-download. Returns its status (none when it is
/// off) and whether pulls are under way.
pub(super) async fn pre_download(
    ctx: &Context,
    set: &InPlaceSet,
    owned: &[Arc<Pod>],
    templates: &Templates,
    now: i64,
) -> (Option<PreDownloadStatus>, bool) {
    let namespace = set.namespace().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let cached: Vec<Arc<FullPod>> = ctx
        .pulls
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| p.labels().get(PULL_LABEL) == Some(&uid))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let pulls: Vec<PullPod> = cached.iter().map(|p| pull_pod(p, now)).collect();
    if set.spec.pre_download.is_none() && pulls.is_empty() {
        return (None, false);
    }
    let pods: Vec<_> = owned.iter().map(|p| predownload::set_pod(p)).collect();
    let revision = &templates.update.1.revision;
    let plan = predownload::plan(&Input {
        config: set.spec.pre_download.as_ref(),
        revision,
        images: &template_images(&templates.update.0),
        pods: &pods,
        pulls: &pulls,
        previous: set.status.as_ref().and_then(|s| s.pre_download.as_ref()),
    });
    let api: Api<FullPod> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in &plan.remove {
        // A slot's name is used again by the next pull: delete the pod the
        // cache shows, not a newer one in its slot (409 then).
        let only = DeleteParams {
            preconditions: Some(Preconditions {
                uid: cached
                    .iter()
                    .find(|p| p.name_any() == *name)
                    .and_then(|p| p.uid()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &only).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(set = %set.name_any(), pod = %name, error = %e, "removing a pull pod"),
        }
    }
    // The slots of the pulls kept; those removed above are gone (a pull pod
    // has no grace period), or the creation into their slot is refused.
    let taken: BTreeSet<&str> = pulls
        .iter()
        .map(|p| p.name.as_str())
        .filter(|name| !plan.remove.iter().any(|r| r == name))
        .collect();
    let count = set.spec.pre_download.as_ref().map_or(1, predownload::slots);
    let slots = predownload::free_slots(&set.name_any(), count, &taken);
    for ((node, images), name) in plan.start.iter().zip(&slots) {
        let spec = PullSpec {
            set,
            template: &templates.update.0,
            name,
            node,
            revision,
            images,
            pod_image: &ctx.pull_image,
        };
        let pod: FullPod = match serde_json::from_value(predownload::pull_pod(&spec)) {
            Ok(pod) => pod,
            Err(e) => {
                warn!(error = %e, "building a pull pod");
                continue;
            }
        };
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            // The slot is taken by a pull the cache does not show yet: the
            // next round sees it.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                let note = format!(
                    "could not start the pull of {} on node {node}: {e}",
                    images.join(", ")
                );
                ctx.event(set, EventType::Warning, "PreDownloadFailed", note)
                    .await;
            }
        }
    }
    for failure in &plan.newly_failed {
        let note = format!(
            "pre-download of revision {revision} on node {}: {}",
            failure.node, failure.message
        );
        ctx.event(set, EventType::Warning, "PreDownloadFailed", note)
            .await;
    }
    let busy = plan.busy();
    (plan.status, busy)
}

/// A pull pod as the plan reads it.
fn pull_pod(pod: &FullPod, now: i64) -> PullPod {
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0.as_second());
    PullPod {
        name: pod.name_any(),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        revision: pod
            .annotations()
            .get(PULL_REVISION_ANNOTATION)
            .cloned()
            .unwrap_or_default(),
        age: now - created,
        state: predownload::state(pod),
    }
}
