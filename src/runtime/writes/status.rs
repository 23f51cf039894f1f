//! The one way a controller writes an object's status: compare with what is
//! there, write only a real change (server-side apply of the status alone, as
//! the controller's field manager), space out changes that only move counters,
//! and write nothing unless this process runs the controllers (holds the
//! leader Lease). Every status the operator owns goes through here.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::coalesce::Coalesce;
use crate::runtime::health::Health;

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Wrote {
    /// The status is what is there already: nothing was sent.
    Unchanged,
    /// A counters-only change too soon after the last write: look again after this.
    Later(Duration),
    /// Written; the object's new resourceVersion.
    Written(Option<String>),
    /// This process does not lead: nothing was sent.
    NotLeading,
}

/// One controller's status writer.
pub struct StatusWriter {
    manager: &'static str,
    spacing: Coalesce<String>,
    health: Health,
}

/// How a status change is written.
pub struct Change<'a, S> {
    pub previous: &'a S,
    pub next: &'a S,
    /// Anything a reader waits for (a condition, a generation, a revision, a
    /// resting point): written at once. Counters only: spaced out.
    pub urgent: bool,
    /// Written only over this resourceVersion (a decision made from an
    /// outdated copy is refused with 409 and made again).
    pub over: Option<&'a str>,
}

impl StatusWriter {
    /// `every`: how often a counters-only change may be written.
    pub fn new(manager: &'static str, every: Duration, health: Health) -> Self {
        Self {
            manager,
            spacing: Coalesce::new(every),
            health,
        }
    }

    /// Writes `change.next` as `object`'s status when it differs from `change.previous`.
    pub async fn write<K, S>(
        &self,
        api: &Api<K>,
        object: &K,
        change: Change<'_, S>,
    ) -> Result<Wrote, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
        S: PartialEq + Serialize,
    {
        if change.previous == change.next {
            return Ok(Wrote::Unchanged);
        }
        if !self.health.leading() {
            return Ok(Wrote::NotLeading);
        }
        let key = object.uid().unwrap_or_else(|| object.name_any());
        if let Some(wait) = self.spacing.due(&key, change.urgent) {
            return Ok(Wrote::Later(wait));
        }
        let mut body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": change.next,
        });
        if let Some(rv) = change.over {
            body["metadata"] = json!({ "resourceVersion": rv });
        }
        let written = api
            .patch_status(
                &object.name_any(),
                &PatchParams::apply(self.manager).force(),
                &Patch::Apply(&body),
            )
            .await?;
        self.spacing.wrote(key);
        Ok(Wrote::Written(written.resource_version()))
    }
}
