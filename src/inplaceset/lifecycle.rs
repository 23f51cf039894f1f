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

use std::collections::{BTreeMap, BTreeSet};

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
    /// Since when the operator has seen the pod drained (gate closed, every
    /// component let go); kept in memory, so a restart waits the settle time
    /// again, never less.
    pub drained_since: Option<i64>,
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
    /// load balancers that follow the EndpointSlices converge.
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
    let still = pod.still_registered();
    let listed_ready = pod.ready && pod.routed_by_service;
    if !listed_ready && still.is_empty() {
        if pod.components.is_empty() {
            return then;
        }
        let settled = timing.settle_seconds <= 0
            || pod
                .drained_since
                .is_some_and(|since| now - since >= timing.settle_seconds);
        return if settled && now >= timing.held_until {
            then
        } else {
            Decision::Wait(Waiting::Settling)
        };
    }
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
mod tests {
    use super::*;

    const NOW: i64 = 10_000;
    const T300: Timing = Timing {
        drain_timeout_seconds: 300,
        settle_seconds: 0,
        held_until: 0,
    };

    fn target() -> Target {
        Target {
            revision: "new".into(),
            shape: "s".into(),
        }
    }

    /// A pod serving on revision `old`, registered with `service` and `rpc`.
    fn serving() -> PodFacts {
        PodFacts {
            name: "p".into(),
            created: 1_000,
            revision: Some("old".into()),
            shape: Some("s".into()),
            scheduled: true,
            gate: Gate {
                open: Some(true),
                reason: gate_reason::SERVING.into(),
                since: 2_000,
            },
            components: vec!["service".into(), "rpc".into()],
            registered: ["service".to_string(), "rpc".to_string()].into(),
            containers: vec![Container {
                name: "app".into(),
                spec_image: "nginx:1.25".into(),
                run: Some(ContainerRun {
                    image: "nginx:1.25".into(),
                    image_id: "id-25".into(),
                    container_id: "c1".into(),
                    restart_count: 0,
                    ready: true,
                }),
            }],
            ready: true,
            ready_since: Some(2_000),
            routed_by_service: true,
            ..PodFacts::default()
        }
    }

    fn gate_off(mut p: PodFacts, reason: &str, since: i64) -> PodFacts {
        p.gate = Gate {
            open: Some(false),
            reason: reason.into(),
            since,
        };
        p.ready = false;
        p
    }

    /// After the spec patch, before the container restarted.
    fn patched(p: PodFacts) -> PodFacts {
        let mut p = gate_off(p, gate_reason::DRAINING_FOR_UPDATE, NOW - 5);
        p.registered.clear();
        p.revision = Some("new".into());
        p.containers[0].spec_image = "nginx:1.26".into();
        p.in_place = Some(InPlaceRecord {
            revision: "new".into(),
            before: [(
                "app".to_string(),
                ContainerBefore {
                    image_id: "id-25".into(),
                    container_id: "c1".into(),
                    restart_count: 0,
                },
            )]
            .into(),
        });
        p
    }

    fn restarted(mut p: PodFacts, ready: bool) -> PodFacts {
        p.containers[0].run = Some(ContainerRun {
            image: "docker.io/library/nginx:1.26".into(),
            image_id: "id-26".into(),
            container_id: "c2".into(),
            restart_count: 1,
            ready,
        });
        p
    }

    #[test]
    fn a_fresh_read_allows_the_spec_patch_only_if_the_pod_is_still_drained_the_same() {
        let mut drained = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 5);
        drained.registered.clear();
        assert!(drained.clone().still_drained_as(&drained));
        // Kubelet's Ready and container writes change nothing that matters.
        let mut kubelet = drained.clone();
        if let Some(run) = kubelet.containers[0].run.as_mut() {
            run.ready = false;
        }
        assert!(kubelet.still_drained_as(&drained));
        // A component routing to it again, a gate opened, a revision moved, a
        // deletion: decide again instead.
        let mut registered = drained.clone();
        registered.registered.insert("rpc".into());
        assert!(!registered.still_drained_as(&drained));
        assert!(!serving().still_drained_as(&drained));
        let mut moved = drained.clone();
        moved.revision = Some("new".into());
        assert!(!moved.still_drained_as(&drained));
        let deleting = gate_off(serving(), gate_reason::DRAINING_FOR_DELETE, NOW);
        assert!(!deleting.still_drained_as(&drained));
        let mut terminating = drained.clone();
        terminating.terminating = true;
        assert!(!terminating.still_drained_as(&drained));
    }

    #[test]
    fn an_update_takes_the_pod_out_of_traffic_first() {
        let d = step(
            &serving(),
            Intent::Update(Toward::Update),
            &target(),
            &T300,
            NOW,
        );
        assert_eq!(d, Decision::GateOff(gate_reason::DRAINING_FOR_UPDATE));
    }

    #[test]
    fn the_spec_is_not_patched_while_any_component_still_routes_to_the_pod() {
        let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 10);
        p.registered.remove("service");
        let d = step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW);
        assert_eq!(d, Decision::Wait(Waiting::Draining(vec!["rpc".into()])));
        p.registered.clear();
        assert_eq!(
            step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
            Decision::PatchInPlace
        );
    }

    #[test]
    fn nothing_changes_until_kubelet_takes_the_pod_out_of_ready() {
        let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 5);
        p.components.clear();
        p.registered.clear();
        p.ready = true;
        assert_eq!(
            step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
            Decision::Wait(Waiting::Unready)
        );
        assert_eq!(
            step(&p, Intent::Delete, &target(), &T300, NOW),
            Decision::Wait(Waiting::Unready)
        );
        // A kubelet that never reacts (its node is gone) stalls the drain.
        assert_eq!(
            step(
                &p,
                Intent::Update(Toward::Update),
                &target(),
                &T300,
                NOW + 400
            ),
            Decision::UnreadyTimedOut
        );
        p.ready = false;
        assert_eq!(
            step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
            Decision::PatchInPlace
        );
    }

    #[test]
    fn a_pod_no_service_selects_does_not_wait_for_kubelet() {
        let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 5);
        p.registered.clear();
        p.ready = true;
        p.routed_by_service = false;
        assert_eq!(
            step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
            Decision::PatchInPlace
        );
        let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_DELETE, NOW - 5);
        p.ready = true;
        p.routed_by_service = false;
        assert_eq!(
            step(&p, Intent::Delete, &target(), &T300, NOW),
            Decision::Wait(Waiting::Draining(vec!["service".into(), "rpc".into()])),
            "its components still route to it"
        );
        p.registered.clear();
        assert_eq!(
            step(&p, Intent::Delete, &target(), &T300, NOW),
            Decision::Delete
        );
    }

    #[test]
    fn a_drained_pod_waits_the_settle_time_before_it_changes() {
        let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 10);
        p.registered.clear();
        let timing = Timing {
            drain_timeout_seconds: 300,
            settle_seconds: 5,
            held_until: 0,
        };
        let intent = Intent::Update(Toward::Update);
        assert_eq!(
            step(&p, intent, &target(), &timing, NOW),
            Decision::Wait(Waiting::Settling),
            "not seen drained before: the clock starts now"
        );
        p.drained_since = Some(NOW - 4);
        assert_eq!(
            step(&p, intent, &target(), &timing, NOW),
            Decision::Wait(Waiting::Settling)
        );
        p.drained_since = Some(NOW - 5);
        assert_eq!(
            step(&p, intent, &target(), &timing, NOW),
            Decision::PatchInPlace
        );
    }

    #[test]
    fn after_an_api_server_outage_no_drained_pod_changes_until_the_nodes_caught_up() {
        let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 10);
        p.registered.clear();
        p.drained_since = Some(NOW - 5);
        let intent = Intent::Update(Toward::Update);
        for settle_seconds in [0, 5] {
            let mut timing = Timing {
                drain_timeout_seconds: 300,
                settle_seconds,
                held_until: NOW + 30,
            };
            assert_eq!(
                step(&p, intent, &target(), &timing, NOW),
                Decision::Wait(Waiting::Settling),
                "settle {settle_seconds}: kube-proxy may still route to it"
            );
            timing.held_until = NOW;
            assert_eq!(
                step(&p, intent, &target(), &timing, NOW),
                Decision::PatchInPlace
            );
        }
        // A pod that declared no traffic component: nothing routes to it.
        p.components.clear();
        let held = Timing {
            drain_timeout_seconds: 300,
            settle_seconds: 5,
            held_until: NOW + 30,
        };
        assert_eq!(
            step(&p, intent, &target(), &held, NOW),
            Decision::PatchInPlace
        );
    }

    #[test]
    fn a_drain_past_its_timeout_stalls_naming_the_component() {
        let p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW - 301);
        let d = step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW);
        assert_eq!(
            d,
            Decision::DrainTimedOut(vec!["service".into(), "rpc".into()])
        );
    }

    #[test]
    fn a_patched_pod_reopens_its_gate_once_its_container_restarted() {
        let p = patched(serving());
        // The old container still runs: same containerID and restartCount.
        assert_eq!(
            step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
            Decision::Wait(Waiting::Verifying(vec!["app".into()]))
        );
        // Restarted, not ready yet: the old container is gone, so the gate
        // opens and kubelet's readiness decides when traffic comes.
        let mut p = restarted(p, false);
        p.unready_since = Some(NOW - 5);
        assert_eq!(
            step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
            Decision::GateOn
        );
        p.gate = Gate {
            open: Some(true),
            reason: gate_reason::SERVING.into(),
            since: NOW - 1,
        };
        assert!(p.starting());
        assert_eq!(
            step(&p, Intent::Keep, &target(), &T300, NOW),
            Decision::Wait(Waiting::ContainersStarting)
        );
        let p = restarted(p, true);
        assert_eq!(
            step(&p, Intent::Keep, &target(), &T300, NOW),
            Decision::Steady
        );
    }

    #[test]
    fn a_restart_reported_under_a_resolved_image_name_reopens_the_gate() {
        let mut p = restarted(patched(serving()), false);
        if let Some(run) = p.containers[0].run.as_mut() {
            run.image = "registry.example/nginx@sha256:26".into();
        }
        assert_eq!(
            step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
            Decision::GateOn
        );
    }

    #[test]
    fn a_pod_that_was_ready_and_crashed_is_not_starting() {
        let mut p = serving();
        p.ready = false;
        p.ready_since = None;
        p.unready_since = Some(p.gate.since + 600);
        if let Some(run) = p.containers[0].run.as_mut() {
            run.ready = false;
        }
        assert!(!p.starting());
        assert_eq!(
            step(&p, Intent::Keep, &target(), &T300, NOW),
            Decision::Steady
        );
    }

    #[test]
    fn the_image_id_alone_does_not_prove_a_restart() {
        let mut p = patched(serving());
        if let Some(run) = p.containers[0].run.as_mut() {
            run.image = "nginx:1.26".into();
            run.image_id = "id-26".into();
        }
        assert!(matches!(
            step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
            Decision::Wait(Waiting::Verifying(_))
        ));
    }

    #[test]
    fn deletion_drains_first_and_a_new_pod_enters_traffic_when_ready() {
        let d = step(&serving(), Intent::Delete, &target(), &T300, NOW);
        assert_eq!(d, Decision::GateOff(gate_reason::DRAINING_FOR_DELETE));
        let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_DELETE, NOW);
        p.registered.clear();
        assert_eq!(
            step(&p, Intent::Delete, &target(), &T300, NOW),
            Decision::Delete
        );

        let mut new = serving();
        new.gate = Gate::default();
        new.registered.clear();
        new.ready = false;
        if let Some(run) = new.containers[0].run.as_mut() {
            run.ready = false;
        }
        // Started or not, a new pod's gate opens: kubelet's readiness decides.
        assert_eq!(
            step(&new, Intent::Keep, &target(), &T300, NOW),
            Decision::GateOn
        );
        let mut pulling = new.clone();
        if let Some(run) = pulling.containers[0].run.as_mut() {
            run.container_id.clear();
        }
        assert_eq!(
            step(&pulling, Intent::Keep, &target(), &T300, NOW),
            Decision::GateOn
        );
        new.containers[0].run = None;
        assert_eq!(
            step(&new, Intent::Keep, &target(), &T300, NOW),
            Decision::GateOn
        );
        // A closed gate reopens only on started containers.
        let mut closed = gate_off(pulling, gate_reason::DRAINING_FOR_UPDATE, NOW);
        assert_eq!(
            step(&closed, Intent::Keep, &target(), &T300, NOW),
            Decision::Wait(Waiting::ContainersStarting)
        );
        closed.containers = serving().containers;
        assert_eq!(
            step(&closed, Intent::Keep, &target(), &T300, NOW),
            Decision::GateOn
        );
    }

    #[test]
    fn a_pod_whose_gate_opened_at_creation_is_starting_until_first_ready() {
        let mut p = serving();
        p.gate.since = p.created;
        p.ready = false;
        p.ready_since = None;
        p.registered.clear();
        if let Some(run) = p.containers[0].run.as_mut() {
            run.ready = false;
        }
        // Kubelet's first status, a few seconds after the gate: Ready False
        // since the start (or the second after it).
        p.started_at = Some(p.created + 3);
        for first in [p.created + 3, p.created + 4] {
            p.unready_since = Some(first);
            assert!(p.starting());
            assert_eq!(
                step(&p, Intent::Keep, &target(), &T300, NOW),
                Decision::Wait(Waiting::ContainersStarting)
            );
        }
        // Ready for a while, then not: a crash, not a start.
        p.unready_since = Some(p.created + 60);
        assert!(!p.starting());
        assert_eq!(
            step(&p, Intent::Keep, &target(), &T300, NOW),
            Decision::Steady
        );
    }

    #[test]
    fn with_no_components_the_drain_and_registration_waits_are_empty() {
        let mut p = gate_off(serving(), gate_reason::DRAINING_FOR_UPDATE, NOW);
        p.components.clear();
        p.registered.clear();
        assert_eq!(
            step(&p, Intent::Update(Toward::Update), &target(), &T300, NOW),
            Decision::PatchInPlace
        );
        let mut s = serving();
        s.components.clear();
        assert!(s.available(0, NOW));
    }

    #[test]
    fn available_needs_every_component_back_and_min_ready_seconds() {
        let mut p = serving();
        assert!(p.available(0, NOW));
        assert!(!p.available(NOW, NOW), "not ready long enough");
        p.registered.remove("rpc");
        assert!(!p.available(0, NOW), "rpc has not registered the pod");
    }

    #[test]
    fn a_terminating_pod_is_left_to_kubelet_and_the_components() {
        let mut p = serving();
        p.terminating = true;
        for intent in [Intent::Keep, Intent::Update(Toward::Update), Intent::Delete] {
            assert_eq!(
                step(&p, intent, &target(), &T300, NOW),
                Decision::Wait(Waiting::Terminating)
            );
        }
    }
}
