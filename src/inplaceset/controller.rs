//! The InPlaceSet controller: keeps a cell's pods at a replica count and
//! moves them to a new template in place, through the lossless lifecycle.
//! A reconcile is five stages, each in its own file:
//!
//! 1. `dereference`: what the watch caches say (pods, Services, budgets);
//! 2. `validate`: the spec checked and resolved, no client (an invalid spec
//!    reads `Stalled=True` reason `InvalidSpec` and waits for a change);
//! 3. `decide`: the plan and one lifecycle step per pod (pure, within the
//!    PodDisruptionBudgets);
//! 4. `apply` and `create`: the pod writes, bounded, and the missing pods;
//!    `pull`: the update template's images pulled ahead onto the nodes of the
//!    pods not yet updated (`predownload`, when `spec.preDownload` is set);
//! 5. `report`: the status when it changed, and when to look again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use tracing::warn;

use super::MANAGER;
use super::context::{Context, now};
use super::predownload::PULL_LABEL;
use super::templates::Templates;
use super::{apply, create, decide, dereference, disruption, pull, report, validate};
use crate::api::InPlaceSet;
use crate::runtime::Telemetry;
use crate::runtime::cache::Caches;
use crate::runtime::run_until_stopped;
use crate::runtime::writes::backoff::Backoff;
use crate::runtime::writes::own_writes::OwnWrites;
use crate::runtime::writes::refusals::Refusals;
use crate::runtime::writes::status::StatusWriter;
use crate::traffic::service;

/// How long a pod written to is not acted on again while the cache still
/// shows the version it was written from.
const STALE_CACHE_WINDOW: Duration = Duration::from_secs(10);
/// How often a set's status is written while only its counters move. Every
/// change a reader waits for (a resting point, a condition, a generation or
/// revision) is written at once; counts in between may lag this long. At 1 s,
/// a 1,000-pod release over 10 cells spent 0.65-0.79 status writes per pod.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// How often a set with pulls under way looks again at the latest.
const PULL_LOOK: Duration = Duration::from_secs(10);

pub use crate::runtime::ReconcileError as Error;

async fn reconcile_once(set: Arc<InPlaceSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    for cache in [&ctx.pods_synced, &ctx.services_synced, &ctx.budgets_synced] {
        cache
            .wait()
            .await
            .map_err(|()| Error::CacheStopped("the pod cache"))?;
    }
    if set.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes the pods; their drain is the components' part.
        return Ok(Action::await_change());
    }
    if let Some(wait) = ctx.status.standing_down(&*set) {
        // Another operator writes it too (its AnotherWriter condition says so).
        return Ok(Action::requeue(wait));
    }
    let (now, time) = now();
    let found = dereference::dereference(&ctx, &set, &time);
    let valid = match validate::validate(&set, ctx.telemetry.health.changes_held_until()) {
        Ok(valid) => valid,
        Err(validate::Invalid(why)) => {
            report::invalid(&ctx, &set, &why, &time).await?;
            return Ok(Action::await_change());
        }
    };
    let (mut spec, timing) = (valid.spec, valid.timing);
    let templates = Templates::new(&set, valid.stable);
    let namespace = set.namespace().unwrap_or_default();
    let decided = decide::decide(
        &ctx,
        &namespace,
        &found,
        (&templates, &mut spec, &timing),
        now,
    );
    let write_error = apply::write_pods(
        &ctx,
        &set,
        (&templates, &timing),
        (&found.owned, &found.facts),
        (&decided.intents, &decided.decisions),
        (now, &time),
    )
    .await;
    let creation =
        create::create_missing(&ctx, &set, &templates, (&decided.plan, &found.owned), &time).await;
    let (pre_download, pulling) =
        pull::pre_download(&ctx, &set, &found.owned, &templates, now).await;
    let status_wait = report::report(
        &ctx,
        &set,
        (&found, &decided),
        (&templates, &spec),
        (creation.refusal.as_ref(), pre_download),
        (now, &time),
    )
    .await?;
    if let Some(e) = write_error.or(creation.error) {
        return Err(e.into());
    }
    ctx.backoff.succeeded(&ObjectRef::from_obj(&*set));
    if creation.more {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    // A pull's pod wakes the set as it changes; this bounds a timeout's wait.
    let pull_wait = pulling.then_some(PULL_LOOK);
    let wake = [status_wait, creation.wait, pull_wait]
        .into_iter()
        .flatten()
        .fold(
            report::next_wake(&found.facts, &decided.decisions, &spec, &set, &timing, now),
            Duration::min,
        );
    Ok(Action::requeue(wake))
}

async fn reconcile(obj: Arc<InPlaceSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let telemetry = ctx.telemetry.clone();
    telemetry
        .reconcile("inplaceset", reconcile_once(obj, ctx), Error::Timeout)
        .await
}

fn error_policy(set: Arc<InPlaceSet>, error: &Error, ctx: Arc<Context>) -> Action {
    // 0.5s, 1s, 2s, ... up to 5 minutes, with jitter: an invalid spec or a
    // failing API call never turns into a hot loop.
    let delay = ctx.backoff.failed(ObjectRef::from_obj(&*set));
    warn!(set = %set.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The controller's context over the shared caches.
fn context(client: Client, caches: &Caches, telemetry: Telemetry, pull_image: &str) -> Context {
    Context {
        client: client.clone(),
        status: StatusWriter::new(MANAGER, STATUS_EVERY, telemetry.health.clone()),
        telemetry,
        pods: caches.pods.store.clone(),
        pulls: caches.pulls.store.clone(),
        pull_image: pull_image.to_string(),
        pods_by_set: caches.pods_by_set.clone(),
        pods_synced: caches.pods.synced.clone(),
        services: caches.services.store.clone(),
        services_synced: caches.services.synced.clone(),
        budgets: caches.disruption_budgets.store.clone(),
        budgets_synced: caches.disruption_budgets.synced.clone(),
        ledger: disruption::Ledger::default(),
        sets: caches.sets.store.clone(),
        recorder: Recorder::new(client, "cafe-operator".into()),
        created: Mutex::new(HashMap::new()),
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(300)),
        refusals: Refusals::new(Duration::from_secs(1)),
        acted_on: OwnWrites::new(STALE_CACHE_WINDOW),
        drained: Mutex::new(HashMap::new()),
    }
}

/// Runs the InPlaceSet controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    caches: &Caches,
    (concurrency, pull_image): (u16, &str),
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // Subscribe first: the watches are driven once every controller has.
    let set_events = caches.sets.subscribe();
    let pod_events = caches.pods.subscribe();
    let service_events = caches.services.subscribe();
    let budget_events = caches.disruption_budgets.subscribe();
    let pull_events = caches.pulls.subscribe();
    let sets_store = caches.sets.store.clone();
    let ctx = Arc::new(context(client.clone(), caches, telemetry, pull_image));
    let synced = [
        caches.sets.synced.clone(),
        caches.pods.synced.clone(),
        caches.services.synced.clone(),
        caches.disruption_budgets.synced.clone(),
        caches.pulls.synced.clone(),
    ];
    let budgets_sets_store = sets_store.clone();
    let pulls_sets_store = sets_store.clone();
    let controller = Controller::for_shared_stream(set_events, sets_store.clone());
    let shutdown = shutdown.shared();
    let run = controller
        .owns_shared_stream(pod_events)
        // A Service that starts or stops publishing not-ready addresses changes
        // the TrafficUnsafe condition of the sets whose pods it selects.
        .watches_shared_stream(service_events, move |svc: Arc<Service>| {
            let namespace = svc.namespace();
            sets_store
                .state()
                .into_iter()
                .filter(|s| s.namespace() == namespace)
                .filter(|s| service::selects(&svc, s.spec.template.labels()))
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        // A budget's room changes as the disruption controller recounts: the
        // sets whose pods it selects look again.
        .watches_shared_stream(budget_events, {
            let sets_store = budgets_sets_store;
            move |budget: Arc<PodDisruptionBudget>| {
                let namespace = budget.namespace();
                sets_store
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == namespace)
                    .filter(|s| disruption::selects(&budget, s.spec.template.labels()))
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            }
        })
        // A pull pod's progress is its set's pre-download status.
        .watches_shared_stream(
            pull_events,
            move |pod: Arc<k8s_openapi::api::core::v1::Pod>| {
                let (namespace, uid) = (pod.namespace(), pod.labels().get(PULL_LABEL).cloned());
                pulls_sets_store
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == namespace && s.uid() == uid)
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "controller");
            }
        });
    run_until_stopped(run, shutdown, &synced).await;
}
