//! The CafeDeployment reconciler, an imperative shell around the pure
//! decision. A reconcile is five stages, in this order:
//!
//! 1. `dereference` (here): the object's InPlaceSets from the shared caches
//!    and the member clusters (`homes`), its revision history (`revisions`);
//!    a deletion ends here (`finalize`);
//! 2. `validate`: the spec checked and resolved, no client;
//! 3. `decide` (with `decide_verified` here: the sign-off probe and the
//!    holds of `hold`): what to write and what to do besides, pure — a
//!    requested rollback first, then an invalid spec (`Stalled=True` reason
//!    `InvalidSpec` until the spec changes), else the release's next step;
//! 4. the effect (`carry_out` here): an analysis measurement (`measure`), a
//!    pause, or a rollback (`revisions`) in place of the writes;
//! 5. `apply`: the writes in a safe order — the confirmation reset, then the
//!    status that records the release, then the cells' InPlaceSets — each
//!    conditional where a race could lose a user's intent or act on a stale
//!    record.

use std::collections::HashMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::MANAGER;
use super::apply::apply;
use super::context::Context;
use super::decide::decide;
use super::finalize::finalize;
use super::history;
use super::measure::{measure, pause};
use super::model::{Effect, History, Observation, Outcome, Refused};
use super::revisions::{patch_spec, record_revision, restore};
use super::validate::{Invalid, Valid, validate};
use crate::api::names::MEMBER_SETS_FINALIZER;
use crate::api::{CafeDeployment, InPlaceSet, ReleaseFreeze, finalizer_added};
use crate::inplaceset::revision;
use crate::placement::homes::{self, Seen};
use crate::placement::members::Members;
use crate::runtime::cache::Caches;
use crate::runtime::prometheus::Prometheus;
use crate::runtime::writes::backoff::Backoff;
use crate::runtime::writes::refusals::Refusals;
use crate::runtime::writes::status::StatusWriter;
use crate::runtime::{Telemetry, run_until_stopped};

/// How often the status is written while only its counts move.
const STATUS_EVERY: Duration = Duration::from_secs(1);

pub use super::model::Error;

async fn reconcile_once(cd: Arc<CafeDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    for cache in &ctx.synced {
        cache
            .wait()
            .await
            .map_err(|()| Error::CacheStopped("the InPlaceSet cache"))?;
    }
    if let Some(wait) = ctx.status.standing_down(&*cd) {
        // Another operator writes it too (its AnotherWriter condition says so).
        return Ok(Action::requeue(wait));
    }
    let read = match dereference(&cd, &ctx).await? {
        ControlFlow::Continue(read) => read,
        ControlFlow::Break(action) => return Ok(action),
    };
    let valid = validate(&cd, read.seen.misplaced.as_deref());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut outcome = decide_verified(&cd, &ctx, &read, valid.as_ref(), &now).await;
    read.seen.label_rows(&mut outcome.status.cells);
    let before = cd.status.as_ref().map_or(&[][..], |s| &s.conditions[..]);
    let placement = read
        .seen
        .placement_condition(before, cd.metadata.generation, &now);
    outcome.status.conditions.extend(placement);
    carry_out(&cd, &ctx, &read, outcome, &now).await
}

/// What a reconcile read besides the object.
struct Read {
    /// Its sets, where each lives, and the cells that cannot be reached or
    /// placed.
    seen: Seen,
    /// The name of the current template's revision (`<cd>-<hash>`).
    update: String,
    /// The recorded revisions (the current template's recorded now if new).
    history: History,
    /// A write the API server refused, and whether it holds the writes back.
    refused: Option<Refused>,
    holding: bool,
    /// Cells whose member's writes are held off, and why.
    held_off: std::collections::BTreeMap<String, String>,
}

/// Stage 1: the sets from the shared caches and the members, and the
/// revision history. Breaks off with the action of a reconcile that ends
/// here: a deletion (the finalizer's work), the finalizer added before the
/// first write to a member, or our own last write not yet seen.
async fn dereference(
    cd: &CafeDeployment,
    ctx: &Context,
) -> Result<ControlFlow<Action, Read>, Error> {
    let uid = cd.uid().unwrap_or_default();
    let namespace = cd.namespace().unwrap_or_default();
    let local: Vec<Arc<InPlaceSet>> = ctx.sets_by_owner.owned(&ctx.sets, &namespace, &uid);
    let cells = super::build::cells(&cd.spec.topology);
    let seen = homes::observe(cd, &cells, local, &ctx.client, &ctx.members);
    if cd.metadata.deletion_timestamp.is_some() {
        return finalize(cd, ctx, &seen).await.map(ControlFlow::Break);
    }
    if seen.spans_members() && !cd.finalizers().iter().any(|f| f == MEMBER_SETS_FINALIZER) {
        // Before the first write to a member: its sets go when this does.
        return patch_spec(
            cd,
            ctx,
            finalizer_added(&cd.metadata, MEMBER_SETS_FINALIZER),
        )
        .await
        .map(ControlFlow::Break);
    }
    if ctx.behind(cd) {
        // Our own write is on its way through the watch; decide on it then.
        return Ok(ControlFlow::Break(Action::requeue(Duration::from_millis(
            500,
        ))));
    }
    let update = format!(
        "{}-{}",
        cd.name_any(),
        revision::revision(&cd.spec.template)
    );
    let (_, holding) = ctx.refusal(cd);
    let history = record_revision(cd, ctx, &update, holding).await?;
    let (refused, holding) = ctx.refusal(cd);
    Ok(ControlFlow::Continue(Read {
        held_off: seen.held_off(),
        seen,
        update,
        history,
        refused,
        holding,
    }))
}

/// Stage 3: the decision. Who did a step is read from the API server's
/// stamps when a probe shows its policies in force: probed on first sight,
/// and again before a step is recorded when the last answer is older than
/// PROBE_EVERY (the policies may have come or gone meanwhile), deciding
/// again if the answer changed. Wakes too when a deny window begins or ends.
async fn decide_verified(
    cd: &CafeDeployment,
    ctx: &Context,
    read: &Read,
    valid: Result<&Valid, &Invalid>,
    now: &Time,
) -> Outcome {
    let verified = ctx.verified(cd, false).await;
    let decide_now = |verified: bool| {
        let held = ctx.held(cd, verified, now);
        let outcome = decide(&Observation {
            cd,
            sets: read.seen.sets.iter().map(|s| &**s).collect(),
            history: &read.history,
            update: &read.update,
            now,
            refused: read.refused.as_ref(),
            unreachable: &read.seen.unreachable,
            held_off: &read.held_off,
            valid,
            frozen: held.frozen.as_ref(),
            window: held.window.as_ref(),
            freezes: &held.freezes,
            verified,
        });
        (outcome, held.wake)
    };
    let (mut outcome, mut window_wake) = decide_now(verified);
    let before = cd.status.clone().unwrap_or_default();
    if history::records_steps(&before, &outcome.status) {
        let now_verified = ctx.verified(cd, true).await;
        if now_verified != verified {
            (outcome, window_wake) = decide_now(now_verified);
        }
    }
    outcome.wake = [outcome.wake, window_wake].into_iter().flatten().min();
    outcome
}

/// Stages 4 and 5: the outcome's effect and its writes (`apply`: the status,
/// then the sets). A measurement is taken into the status before it is
/// written, a pause follows the writes; a rollback, or the refusal of one,
/// replaces them.
async fn carry_out(
    cd: &CafeDeployment,
    ctx: &Context,
    read: &Read,
    mut outcome: Outcome,
    now: &Time,
) -> Result<Action, Error> {
    let (seen, holding) = (&read.seen, read.holding);
    match outcome.effect.take() {
        None => apply(cd, ctx, seen, outcome, holding).await,
        Some(Effect::Measure { group }) => {
            let update = (read.update.as_str(), group);
            measure(cd, ctx, &seen.sets, update, now, &mut outcome.status).await;
            apply(cd, ctx, seen, outcome, holding).await
        }
        Some(Effect::Pause) => {
            let action = apply(cd, ctx, seen, outcome, holding).await?;
            pause(cd, ctx).await?;
            Ok(action)
        }
        // The rollback's own record replaces this decision's.
        Some(Effect::Restore(r)) => {
            ctx.publish(cd, outcome.notes).await;
            restore(cd, ctx, *r).await
        }
        Some(Effect::RefuseRollback(why)) => {
            ctx.event(cd, EventType::Warning, "RollbackRevisionNotFound", why)
                .await;
            patch_spec(
                cd,
                ctx,
                json!([{"op": "remove", "path": "/spec/rollbackTo"}]),
            )
            .await
        }
    }
}

async fn reconcile(obj: Arc<CafeDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let telemetry = ctx.telemetry.clone();
    telemetry
        .reconcile("cafedeployment", reconcile_once(obj, ctx), Error::Timeout)
        .await
}

fn error_policy(cd: Arc<CafeDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(ObjectRef::from_obj(&*cd));
    let conflict = matches!(error, Error::Kube(kube::Error::Api(s)) if s.code == 409);
    if conflict {
        // Someone wrote first (the user, or our own write not yet cached): decide again.
        return Action::requeue(Duration::from_millis(200));
    }
    warn!(cafedeployment = %cd.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the CafeDeployment controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    caches: &Caches,
    members: &Members,
    freezes: Option<&crate::runtime::cache::Shared<ReleaseFreeze>>,
    concurrency: u16,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let cd_events = caches.cafedeployments.subscribe();
    let set_events = caches.sets.subscribe();
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client, "cafe-operator".into()),
        status: StatusWriter::new(MANAGER, STATUS_EVERY, telemetry.health.clone()),
        telemetry,
        sets: caches.sets.store.clone(),
        sets_by_owner: caches.sets_by_owner.clone(),
        members: members.clone(),
        freezes: freezes.map(|f| f.store.clone()),
        revisions: caches.revisions.store.clone(),
        revisions_by_owner: caches.revisions_by_owner.clone(),
        pods: caches.pods.store.clone(),
        pods_by_set: caches.pods_by_set.clone(),
        prometheus: Prometheus::new(),
        // Freezes too: a release must never start from an empty freeze cache.
        synced: [
            caches.sets.synced.clone(),
            caches.revisions.synced.clone(),
            caches.pods.synced.clone(),
        ]
        .into_iter()
        .chain(freezes.map(|f| f.synced.clone()))
        .chain([members.synced.clone()])
        .collect(),
        written: Mutex::new(HashMap::new()),
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(300)),
        refusals: Refusals::new(Duration::from_secs(1)),
        probes: Mutex::new(HashMap::new()),
    });
    let synced = [
        caches.cafedeployments.synced.clone(),
        caches.sets.synced.clone(),
        caches.revisions.synced.clone(),
    ];
    let shutdown = shutdown.shared();
    let run = Controller::for_shared_stream(cd_events, caches.cafedeployments.store.clone())
        .owns_shared_stream(set_events)
        .reconcile_on(members.set_changes())
        .reconcile_all_on(members.member_changes())
        .reconcile_all_on(
            freezes
                .map(|f| f.subscribe().map(|_| ()).left_stream())
                .unwrap_or_else(|| futures::stream::pending().right_stream()),
        )
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    run_until_stopped(run, shutdown, &synced).await;
}
