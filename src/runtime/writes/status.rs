//! The one way a controller writes an object's status: compare with what is
//! there, write only a real change (server-side apply of the status alone, as
//! the controller's field manager, signed with this operator's name), space
//! out changes that only move counters, write nothing unless this process
//! runs the controllers (holds the leader Lease), and stand down on an object
//! another operator writes too (`super::writers`). Every status the operator
//! owns goes through here.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::warn;

use super::coalesce::Coalesce;
use super::writers::{self, CONDITION_MANAGER, Signed, Writers};
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
    /// Another operator writes this object too: this one leaves it alone
    /// for this long (see [`StatusWriter::standing_down`]).
    StandingDown(Duration),
}

/// One controller's status writer.
pub struct StatusWriter {
    manager: &'static str,
    spacing: Coalesce<String>,
    health: Health,
    writers: Writers,
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
            writers: Writers::new(health.identity(), health.stand_down()),
            health,
        }
    }

    /// How long this controller still leaves `object` alone because another
    /// operator writes it too: a reconcile that meets this changes nothing
    /// and looks again after.
    pub fn standing_down<K: Resource>(&self, object: &K) -> Option<Duration> {
        self.writers.standing_down(&key_of(object))
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
        S: Signed + Serialize,
    {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let stale = writers::stale_note(change.previous, self.writers.stand_down_for(), &now);
        let next = writers::unsigned(change.next);
        let changed = writers::unsigned(change.previous) != next;
        if !changed && !stale {
            return Ok(Wrote::Unchanged);
        }
        if !self.health.leading() {
            return Ok(Wrote::NotLeading);
        }
        let key = key_of(object);
        if let Some(wait) = self.writers.standing_down(&key) {
            return Ok(Wrote::StandingDown(wait));
        }
        let version = object.resource_version();
        let writer = change.previous.writer();
        if let Some(other) = self.writers.another(&key, version.as_deref(), writer) {
            self.stand_down(api, object, other, &now).await?;
            return Ok(Wrote::StandingDown(self.writers.stand_down_for()));
        }
        if stale {
            self.note(api, object, None).await?;
        }
        if !changed {
            return Ok(Wrote::Unchanged);
        }
        if let Some(wait) = self.spacing.due(&key, change.urgent) {
            return Ok(Wrote::Later(wait));
        }
        let mut next = next;
        next.sign(Some(self.writers.identity().to_string()));
        let mut body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": next,
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
        let version = written.resource_version();
        self.writers.wrote(key.clone(), version.as_deref());
        self.spacing.wrote(key);
        Ok(Wrote::Written(version))
    }

    /// Leaves `object` to `other` for a while, and says so on it.
    async fn stand_down<K>(
        &self,
        api: &Api<K>,
        object: &K,
        other: &str,
        now: &Time,
    ) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    {
        let ours = self.writers.identity();
        warn!(kind = %K::kind(&()), object = %object.name_any(), %other,
              "another operator writes this object too: standing down on it for {}s",
              self.writers.stand_down_for().as_secs());
        self.writers.stand_down(key_of(object));
        let generation = object.meta().generation;
        let note = writers::note(
            (ours, other),
            self.writers.stand_down_for(),
            generation,
            now,
        );
        self.note(api, object, Some(note)).await
    }

    /// Writes (or, with `None`, clears) the AnotherWriter condition, under
    /// its own field manager: the other operator's writes leave it alone.
    async fn note<K>(
        &self,
        api: &Api<K>,
        object: &K,
        note: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    ) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    {
        let body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": { "conditions": note.into_iter().collect::<Vec<_>>() },
        });
        api.patch_status(
            &object.name_any(),
            &PatchParams::apply(CONDITION_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
        Ok(())
    }
}

/// The key a write is remembered by: the object's uid (its name before it has one).
fn key_of<K: Resource>(object: &K) -> String {
    object.uid().unwrap_or_else(|| object.name_any())
}
