//! The set's two templates (the update template and the resolved stable one)
//! and the revisions they hash to.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::lifecycle::{Intent, Target, Toward};
use super::plan::Revisions;
use super::revision;
use crate::api::InPlaceSet;

/// The set's two templates (parsed once per reconcile: the set holds its
/// template as text) and their revisions.
pub struct Templates {
    pub update: (PodTemplateSpec, Target),
    pub stable: Option<(PodTemplateSpec, Target)>,
}

impl Templates {
    /// `stable`: the set's stable template, resolved (`stableTemplate`, or
    /// `stableTemplatePatch` applied to the template).
    pub fn new(set: &InPlaceSet, stable: Option<PodTemplateSpec>) -> Self {
        let target = |t: &PodTemplateSpec| Target {
            revision: revision::revision(t),
            shape: revision::shape(t),
        };
        let update = set.spec.template.spec();
        let update_target = target(&update);
        let stable = stable
            .map(|t| {
                let target = target(&t);
                (t, target)
            })
            .filter(|(_, s)| s.revision != update_target.revision);
        Self {
            update: (update, update_target),
            stable,
        }
    }

    pub fn toward(&self, toward: Toward) -> &(PodTemplateSpec, Target) {
        match (toward, &self.stable) {
            (Toward::Stable, Some(stable)) => stable,
            _ => &self.update,
        }
    }

    pub fn target_of(&self, intent: Intent) -> &Target {
        match intent {
            Intent::Update(toward) => &self.toward(toward).1,
            _ => &self.update.1,
        }
    }

    /// The template a pod on `revision` was made from, when it is one of ours.
    pub fn of_revision(&self, revision: Option<&str>) -> Option<&PodTemplateSpec> {
        [Some(&self.update), self.stable.as_ref()]
            .into_iter()
            .flatten()
            .find(|(_, t)| Some(t.revision.as_str()) == revision)
            .map(|(template, _)| template)
    }

    pub fn revisions(&self) -> Revisions {
        Revisions {
            update: self.update.1.revision.clone(),
            update_shape: self.update.1.shape.clone(),
            stable: self
                .stable
                .as_ref()
                .map(|(_, t)| (t.revision.clone(), t.shape.clone())),
        }
    }
}
