//! The set's two templates (the update template and the resolved stable one)
//! and the revisions they hash to.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::lifecycle::{Intent, Target, Toward};
use super::plan::Revisions;
use super::revision;
use crate::api::InPlaceSet;

/// The set's two templates and their revisions.
pub struct Templates<'a> {
    pub update: (&'a PodTemplateSpec, Target),
    pub stable: Option<(&'a PodTemplateSpec, Target)>,
}

impl<'a> Templates<'a> {
    /// `stable`: the set's stable template, resolved (`stableTemplate`, or
    /// `stableTemplatePatch` applied to the template).
    pub fn new(set: &'a InPlaceSet, stable: Option<&'a PodTemplateSpec>) -> Self {
        let target = |t: &PodTemplateSpec| Target {
            revision: revision::revision(t),
            shape: revision::shape(t),
        };
        let update = (&set.spec.template, target(&set.spec.template));
        let stable = stable
            .map(|t| (t, target(t)))
            .filter(|(_, s)| s.revision != update.1.revision);
        Self { update, stable }
    }

    pub fn toward(&self, toward: Toward) -> &(&'a PodTemplateSpec, Target) {
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
    pub fn of_revision(&self, revision: Option<&str>) -> Option<&'a PodTemplateSpec> {
        [Some(&self.update), self.stable.as_ref()]
            .into_iter()
            .flatten()
            .find(|(_, t)| Some(t.revision.as_str()) == revision)
            .map(|(template, _)| *template)
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
