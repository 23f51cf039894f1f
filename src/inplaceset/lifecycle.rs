//! The lossless pod lifecycle, one step at a time, as a pure function of what
//! the pod itself shows (docs/design.md, The pod lifecycle):
//!
//! ```text
//! in place:  Serving -> gate False (DrainingForUpdate) -> traffic finalizers gone
//!            -> spec patched (images, revision label) -> containers restarted
//!            -> gate True (Serving) -> kubelet: Ready once they are ready
//!            -> traffic finalizers back = released
//! delete:    Serving -> gate False (DrainingForDelete) -> traffic finalizers gone -> delete
//! new pod:   created -> gate True at once -> kubelet: Ready once its
//!            containers are ready
//! ```
//!
//! The gate guards a pod while its containers change, not while they warm
//! up: once the pod runs exactly the containers its spec asks for (the old
//! ones are gone), kubelet's own readiness keeps it out of traffic until they
//! are ready, as it does for any pod. Opening the gate then, not after
//! readiness, saves kubelet a round trip per pod (it recomputes Ready in the
//! same status write that reports the containers ready). A new pod runs
//! nothing but what its spec asks for, so its gate opens as it is created,
//! before kubelet has seen it: kubelet's readiness alone keeps it out of
//! traffic, and no write waits for kubelet's first status or races it.
//!
//! Where a pod is in its lifecycle is recorded on the pod by the writes that
//! move it: the reason of the gate condition (`DrainingForUpdate`,
//! `DrainingForDelete`, `Serving`), the revision label, and the in-place record
//! annotation written by the spec patch itself. A restarted operator therefore
//! resumes exactly where it was, and an in-place update costs three writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::api::names::gate_reason;

pub use crate::traffic::gate::Gate;

/// What a container runs, from the pod's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerRun {
    pub image: String,
    pub image_id: String,
    pub container_id: String,
    pub restart_count: i32,
    pub ready: bool,
}

/// One container: what the pod's spec asks for and what runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub spec_image: String,
    pub run: Option<ContainerRun>,
}

/// The in-place record: which revision the last spec patch moved the pod to,
/// and how its changed containers ran before, so a restart can be told apart
/// from the old container still running.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InPlaceRecord {
    pub revision: String,
    #[serde(default)]
    pub before: BTreeMap<String, ContainerBefore>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerBefore {
    #[serde(default)]
    pub image_id: String,
    #[serde(default)]
    pub container_id: String,
    #[serde(default)]
    pub restart_count: i32,
}

/// Everything the lifecycle needs to know about one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    /// Creation time (unix seconds).
    pub created: i64,
    pub revision: Option<String>,
    pub shape: Option<String>,
    pub terminating: bool,
    pub scheduled: bool,
    pub gate: Gate,
    /// The traffic components the pod declared at creation.
    pub components: Vec<String>,
    /// The components whose finalizer is on the pod now.
    pub registered: BTreeSet<String>,
    pub containers: Vec<Container>,
    pub in_place: Option<InPlaceRecord>,
    /// Kubelet's `Ready` (containers ready and every readiness gate True).
    pub ready: bool,
    pub ready_since: Option<i64>,
    /// When kubelet last turned `Ready` False (None while Ready or unreported).
    pub unready_since: Option<i64>,
    /// When kubelet started the pod (`status.startTime`).
    pub started_at: Option<i64>,
    /// When the scheduler found no node for the pod (PodScheduled=False, Unschedulable).
    pub unschedulable_since: Option<i64>,
    /// A Service selects the pod: its EndpointSlices list the pod by
    /// kubelet's `Ready`, so a drain waits for kubelet to turn it False.
    pub routed_by_service: bool,
    /// How long the pod has been drained (gate closed, every declared
    /// component let go, no Service listing it ready), in milliseconds, as
    /// of this reconcile: from when the operator first saw it drained. Kept
    /// in memory, so a restarted operator waits the settle time again, never
    /// less.
    pub drained_for_ms: Option<i64>,
}

impl PodFacts {
    /// Declared components that still route traffic to the pod.
    pub fn still_registered(&self) -> Vec<String> {
        self.components
            .iter()
            .filter(|c| self.registered.contains(*c))
            .cloned()
            .collect()
    }

    /// Declared components that have not registered the pod (yet).
    pub fn not_registered(&self) -> Vec<String> {
        self.components
            .iter()
            .filter(|c| !self.registered.contains(*c))
            .cloned()
            .collect()
    }

    /// In traffic as far as the gate goes but never Ready since the gate
    /// opened: containers (re)started, not ready yet. A pod that was Ready
    /// and later is not (a crash) is not starting. Kubelet's time of the
    /// change is compared with the gate's, so clocks skewed by more than the
    /// time between a container's start and the gate opening can misread it.
    /// A gate opened at creation precedes kubelet's first status, whose
    /// `Ready` False carries the pod's start time (to the second, so one
    /// second of slack).
    pub fn starting(&self) -> bool {
        let first_status = self.started_at.map_or(i64::MIN, |t| t + 1);
        self.gate.open == Some(true)
            && !self.ready
            && self
                .unready_since
                .is_none_or(|t| t <= self.gate.since.max(first_status))
    }

    pub fn containers_ready(&self) -> bool {
        !self.containers.is_empty()
            && self
                .containers
                .iter()
                .all(|c| c.run.as_ref().is_some_and(|r| r.ready))
    }

    /// In traffic and counted: Ready, every declared component registered,
    /// and Ready for at least `min_ready_seconds`.
    pub fn available(&self, min_ready_seconds: i64, now: i64) -> bool {
        self.ready
            && !self.terminating
            && self.gate.open == Some(true)
            && self.not_registered().is_empty()
            && self
                .ready_since
                .is_some_and(|since| since + min_ready_seconds <= now)
    }

    /// Out of traffic for good: the gate closed, no declared component routes
    /// to the pod, and no Service lists it ready (kubelet turned it not Ready).
    /// The settle time runs from here.
    pub fn drained(&self) -> bool {
        self.gate.open == Some(false)
            && self.still_registered().is_empty()
            && !(self.ready && self.routed_by_service)
    }

    /// Milliseconds of the settle time still to wait (0 once it has passed);
    /// a pod not seen drained yet has all of it ahead.
    pub fn settle_left_ms(&self, timing: &Timing) -> i64 {
        (timing.settle_seconds * 1000 - self.drained_for_ms.unwrap_or(0)).max(0)
    }

    pub fn draining_for(&self, reason: &str) -> bool {
        self.gate.open == Some(false) && self.gate.reason == reason
    }

    /// A fresh read of a pod the cache showed drained for an update, ready
    /// for its spec patch: still drained for it (gate closed for the update,
    /// no declared component routing to it), not terminating, and on the
    /// same revision. Kubelet's status writes in between change none of that.
    pub fn still_drained_as(&self, cached: &PodFacts) -> bool {
        !self.terminating
            && self.draining_for(gate_reason::DRAINING_FOR_UPDATE)
            && self.still_registered().is_empty()
            && self.revision == cached.revision
    }
}

/// The revision a pod should move to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub revision: String,
    pub shape: String,
}

/// Which of the set's two revisions a pod moves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    /// The set's template.
    Update,
    /// The stable template (below the partition).
    Stable,
}

/// What the set-level plan wants from a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Stay; a pod not yet in traffic is let in once its containers are ready.
    Keep,
    /// Move to that revision in place.
    Update(Toward),
    /// Drain, then delete (scale-in, or a change that cannot be made in place).
    Delete,
}

/// The time limits of the lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A drain taking longer stalls (the pod stays out of traffic, unchanged).
    pub drain_timeout_seconds: i64,
    /// How long a drained pod waits before it is changed, so that proxies and
    /// load balancers that follow the EndpointSlices converge: counted to the
    /// millisecond (`PodFacts::drained_for_ms`), never shorter.
    pub settle_seconds: i64,
    /// No drained pod is changed before this (epoch seconds): the nodes'
    /// proxies are still catching up after the API server was out of reach
    /// (`Health::changes_held_until`).
    pub held_until: i64,
}

/// Why a pod waits on something outside the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// New or restarted containers are not ready yet.
    ContainersStarting,
    /// The gate closed, but kubelet still reports the pod Ready, so the
    /// Services that select it still list it ready.
    Unready,
    /// These components still route traffic to the pod.
    Draining(Vec<String>),
    /// Patched: these containers have not restarted on the new image yet.
    Verifying(Vec<String>),
    /// Being deleted; kubelet and the components' finalizers decide when it goes.
    Terminating,
    /// Drained; waiting the settle time (and, after the API server was out
    /// of reach, the nodes' catch-up) before the pod is changed.
    Settling,
}

/// The one thing to do next for a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do.
    Steady,
    Wait(Waiting),
    /// Take the pod out of traffic: write the gate condition False with this reason.
    GateOff(&'static str),
    /// Drained: patch images, labels and the in-place record, with a fresh resourceVersion.
    PatchInPlace,
    /// Put the pod back in traffic: gate condition True.
    GateOn,
    /// Drained: delete it.
    Delete,
    /// The drain exceeded the timeout: these components never let go. The
    /// pod stays out of traffic and unchanged; nothing proceeds silently.
    DrainTimedOut(Vec<String>),
    /// The drain exceeded the timeout with kubelet still reporting the pod
    /// Ready (its node is gone, say); the pod stays unchanged.
    UnreadyTimedOut,
}

/// The settle clock: for each drained pod, since when it has been drained
/// (`since`, by name, unix milliseconds, from earlier reconciles; `now_ms`
/// for a pod drained since the last one), and how long that is, filled into
/// its facts. Returns the clock to keep: pods no longer drained leave it.
pub fn drained_clock(
    since: &HashMap<String, i64>,
    facts: &mut [PodFacts],
    now_ms: i64,
) -> HashMap<String, i64> {
    let mut kept = HashMap::new();
    for f in facts.iter_mut().filter(|f| f.drained()) {
        let at = since.get(&f.name).copied().unwrap_or(now_ms).min(now_ms);
        f.drained_for_ms = Some(now_ms - at);
        kept.insert(f.name.clone(), at);
    }
    kept
}

/// How soon the first settling pod has settled, to the millisecond (None:
/// none settles). `decisions` are the pods' steps, in the same order.
pub fn settle_wake(
    facts: &[PodFacts],
    decisions: &[Decision],
    timing: &Timing,
) -> Option<Duration> {
    facts
        .iter()
        .zip(decisions)
        .filter(|(_, d)| matches!(d, Decision::Wait(Waiting::Settling)))
        .map(|(f, _)| f.settle_left_ms(timing))
        .filter(|left| *left > 0)
        .min()
        .map(|left| Duration::from_millis(left.unsigned_abs()))
}

/// The next step for one pod. `target` is the revision `intent` moves it to.
pub fn step(
    pod: &PodFacts,
    intent: Intent,
    target: &Target,
    timing: &Timing,
    now: i64,
) -> Decision {
    if pod.terminating {
        return Decision::Wait(Waiting::Terminating);
    }
    match intent {
        Intent::Delete => drain(
            pod,
            gate_reason::DRAINING_FOR_DELETE,
            Decision::Delete,
            timing,
            now,
        ),
        Intent::Update(_) if pod.revision.as_deref() == Some(target.revision.as_str()) => {
            verify(pod, target)
        }
        Intent::Update(_) => drain(
            pod,
            gate_reason::DRAINING_FOR_UPDATE,
            Decision::PatchInPlace,
            timing,
            now,
        ),
        Intent::Keep => admit(pod),
    }
}

/// Out of traffic first: the gate closes, kubelet turns Ready False if a
/// Service selects the pod (the Service then lists it not ready, components
/// or not), no declared component routes to the pod any more; then the
/// settle time. A pod no Service selects is routed to by its components
/// only, so kubelet's reaction is not waited for.
fn drain(
    pod: &PodFacts,
    reason: &'static str,
    then: Decision,
    timing: &Timing,
    now: i64,
) -> Decision {
    if pod.gate.open == Some(true) {
        return Decision::GateOff(reason);
    }
    if pod.drained() {
        if pod.components.is_empty() {
            return then;
        }
        let settled = timing.settle_seconds <= 0
            || (pod.drained_for_ms.is_some() && pod.settle_left_ms(timing) == 0);
        return if settled && now >= timing.held_until {
            then
        } else {
            Decision::Wait(Waiting::Settling)
        };
    }
    let still = pod.still_registered();
    let listed_ready = pod.ready && pod.routed_by_service;
    let timeout = timing.drain_timeout_seconds;
    // A missing gate never counted as "in traffic", so its clock starts at creation.
    let since = if pod.gate.open.is_some() {
        pod.gate.since
    } else {
        pod.created
    };
    match (listed_ready, now - since > timeout) {
        (true, false) => Decision::Wait(Waiting::Unready),
        (true, true) => Decision::UnreadyTimedOut,
        (false, false) => Decision::Wait(Waiting::Draining(still)),
        (false, true) => Decision::DrainTimedOut(still),
    }
}

/// After the spec patch: every changed container restarted on its new image;
/// then back into traffic, which kubelet's readiness completes.
fn verify(pod: &PodFacts, target: &Target) -> Decision {
    let record = pod
        .in_place
        .as_ref()
        .filter(|r| r.revision == target.revision);
    let pending: Vec<String> = pod
        .containers
        .iter()
        .filter(|c| !container_updated(c, record))
        .map(|c| c.name.clone())
        .collect();
    if !pending.is_empty() {
        return Decision::Wait(Waiting::Verifying(pending));
    }
    enter(pod)
}

/// Runs what its spec asks for, restarted if the patch changed it (ready or
/// not). Neither the image name nor the imageID alone proves a restart: a
/// kubelet may report a resolved image name, and the same image may be re-tagged.
fn container_updated(c: &Container, record: Option<&InPlaceRecord>) -> bool {
    let Some(run) = &c.run else {
        return false;
    };
    let before = record.and_then(|r| r.before.get(&c.name));
    let runs_new_image = same_image(&run.image, &c.spec_image)
        || before.is_some_and(|b| !b.image_id.is_empty() && b.image_id != run.image_id);
    let restarted = before
        .is_none_or(|b| run.container_id != b.container_id || run.restart_count > b.restart_count);
    runs_new_image && restarted && !run.container_id.is_empty()
}

/// Image references as a kubelet may report them (`docker.io/library/nginx:1`
/// for `nginx:1`).
pub fn same_image(reported: &str, wanted: &str) -> bool {
    fn normal(image: &str) -> &str {
        image
            .strip_prefix("docker.io/library/")
            .or_else(|| image.strip_prefix("docker.io/"))
            .unwrap_or(image)
    }
    normal(reported) == normal(wanted)
}

/// A pod that is not moving: into traffic (as far as the gate goes). A pod
/// that has no gate condition yet is new, so whatever containers it will run
/// are the ones its spec asks for: its gate opens at once (its creation
/// opens it; this is for a creation cut short before that write). A pod
/// whose gate was closed waits until kubelet has started its containers.
fn admit(pod: &PodFacts) -> Decision {
    let started = !pod.containers.is_empty()
        && pod
            .containers
            .iter()
            .all(|c| c.run.as_ref().is_some_and(|r| !r.container_id.is_empty()));
    if pod.gate.open == Some(false) && !started {
        Decision::Wait(Waiting::ContainersStarting)
    } else {
        enter(pod)
    }
}

/// The pod runs the containers its spec asks for: the gate opens, and the
/// pod waits for kubelet to find them ready.
fn enter(pod: &PodFacts) -> Decision {
    if pod.gate.open != Some(true) {
        Decision::GateOn
    } else if pod.starting() && !pod.containers_ready() {
        Decision::Wait(Waiting::ContainersStarting)
    } else {
        Decision::Steady
    }
}

#[cfg(test)]
mod tests;
