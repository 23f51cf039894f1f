//! Runs the built-in `service` traffic component: watches pods, Services and
//! EndpointSlices, keeps the endpoint index, and adds or removes the pod
//! finalizer `traffic.cafe.sofastack.io/service` as `service::decide` says.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Patch;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, warn};

use super::declared_components;
use super::service::{self, Action as Step, EndpointIndex, EndpointState, PodView};
use crate::api::names::traffic_finalizer;
use crate::api::pod::Pod;
use crate::runtime::ReconcileError as Error;
use crate::runtime::cache::{Caches, watch_events};
use crate::runtime::health::CacheSync;
use crate::runtime::writes::backoff::Backoff;
use crate::runtime::writes::own_writes::OwnWrites;
use crate::runtime::{Telemetry, patch_as, run_until_stopped, scoped_api};

/// The name of the built-in component (and of its finalizer's last segment).
pub const NAME: &str = "service";
/// The field manager of the components' pod writes (their finalizers).
const MANAGER: &str = "cafe-operator-traffic";
/// How long a pod waits for the cache to show our own finalizer patch.
const OWN_WRITE_WINDOW: Duration = Duration::from_secs(10);

struct Context {
    client: Client,
    telemetry: Telemetry,
    /// Pods, Services and EndpointSlices have all listed once: until then no
    /// decision is made (empty data would read as "routed nowhere" and let a
    /// finalizer go while the pod is still an endpoint).
    synced: Vec<CacheSync>,
    backoff: Backoff<ObjectRef<Pod>>,
    services: Store<Service>,
    index: Arc<RwLock<EndpointIndex>>,
    recorder: Recorder,
    /// (pod uid, service) pairs already warned about, so a warning is not repeated.
    warned: Mutex<HashSet<(String, String)>>,
    /// Pods our finalizer patches went to: a cached copy older than our write
    /// is not decided on (it would register or deregister the pod a second
    /// time: a wasted write, or a failed test).
    written: OwnWrites,
}

fn in_traffic(pod: &Pod) -> bool {
    let condition = |t: &str| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .is_some_and(|c| c.status == "True")
    };
    pod.metadata.deletion_timestamp.is_none()
        && condition(crate::api::names::TRAFFIC_GATE)
        && condition("Ready")
}

/// Whether `pod` declared this component: a pod that did not is none of
/// its business.
fn declares(pod: &Pod) -> bool {
    declared_components(pod).iter().any(|c| c == NAME)
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, Error> {
    let telemetry = ctx.telemetry.clone();
    telemetry
        .reconcile("traffic-service", reconcile_pod(pod, ctx), Error::Timeout)
        .await
}

async fn reconcile_pod(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.synced.iter().all(CacheSync::is_synced) {
        // Fail closed: keep whatever finalizer the pod has, look again soon.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if ctx.written.stale(&*pod) {
        // Our own patch is on its way through the watch; decide on it then.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let finalizer = traffic_finalizer(NAME);
    let view = PodView {
        declared: declares(&pod),
        in_traffic: in_traffic(&pod),
        has_finalizer: pod.finalizers().contains(&finalizer),
    };
    if !view.declared {
        return Ok(Action::await_change());
    }
    let namespace = pod.namespace().unwrap_or_default();
    let drainable = drainable(&ctx, &pod, &namespace).await;
    let step = service::decide(&view, &drainable);
    let patch: Patch<serde_json::Value> = match step {
        // Between states (gate moved, endpoints not yet): an EndpointSlice that
        // drops the pod's endpoint no longer names the pod, so look again soon.
        Step::Nothing if view.in_traffic != view.has_finalizer => {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        Step::Nothing => return Ok(Action::await_change()),
        // A strategic merge patch: finalizers merge as a set on the server,
        // so this adds ours without touching (or rewriting) any other
        // component's, and needs no resourceVersion precondition that every
        // unrelated pod write (a kubelet status update) would fail with 409.
        Step::Register => Patch::Strategic(json!({"metadata": {"finalizers": [finalizer]}})),
        Step::Deregister => deregister(&pod, &finalizer),
    };
    write(&ctx, &pod, &namespace, &patch, step).await?;
    Ok(Action::await_change())
}

/// What the pod's endpoint is in each Service selecting it, in order; a
/// Service that publishes not-ready addresses is left out (and warned of).
async fn drainable(ctx: &Context, pod: &Pod, namespace: &str) -> Vec<Option<EndpointState>> {
    let uid = pod.uid().unwrap_or_default();
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
    let labels = pod.labels();
    let selecting: Vec<Arc<Service>> = ctx
        .services
        .state()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace))
        .filter(|s| service::selects(s, labels))
        .collect();
    let states = ctx
        .index
        .read()
        .map(|i| i.states(&uid, ip.as_deref()))
        .unwrap_or_default();
    let mut drainable = Vec::new();
    for svc in &selecting {
        let name = svc.name_any();
        if service::publishes_not_ready(svc) {
            warn_unsafe(ctx, pod, &name).await;
            continue;
        }
        drainable.push(states.get(&(namespace.to_string(), name)).copied());
    }
    drainable
}

/// The JSON patch removing our finalizer, tested in place: it fails (422)
/// when the list changed meanwhile.
fn deregister(pod: &Pod, finalizer: &str) -> Patch<serde_json::Value> {
    let i = pod
        .finalizers()
        .iter()
        .position(|f| *f == finalizer)
        .unwrap_or_default();
    let ops = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": finalizer},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")}
    ]);
    // The literal is a valid JSON patch; an empty patch would be a no-op.
    Patch::Json(serde_json::from_value(ops).unwrap_or_else(|_| json_patch::Patch(Vec::new())))
}

/// Writes the patch, remembering our write; a failed test (the list changed)
/// or a vanished pod is no error: the next event decides again.
async fn write(
    ctx: &Context,
    pod: &Pod,
    namespace: &str,
    patch: &Patch<serde_json::Value>,
    step: Step,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    match api.patch(&pod.name_any(), &patch_as(MANAGER), patch).await {
        Ok(written) => {
            if let (Some(uid), Some(rv)) = (written.uid(), written.resource_version()) {
                ctx.written.remember(uid, rv);
            }
            ctx.backoff.succeeded(&ObjectRef::from_obj(pod));
            debug!(pod = %pod.name_any(), action = ?step, "service component");
        }
        // A failed test (the list changed) or a vanished pod: the next event decides again.
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// A Service that publishes not-ready addresses keeps routing to pods whose
/// gate is closed: say so on the pod, once.
async fn warn_unsafe(ctx: &Context, pod: &Pod, service: &str) {
    let key = (pod.uid().unwrap_or_default(), service.to_string());
    let first = ctx
        .warned
        .lock()
        .map(|mut w| w.insert(key))
        .unwrap_or(false);
    if !first {
        return;
    }
    let event = Event {
        type_: EventType::Warning,
        reason: "TrafficUnsafe".into(),
        note: Some(format!(
            "Service {service} sets publishNotReadyAddresses: true, so it keeps routing to this \
             pod while its traffic gate is closed; its traffic is not drained. Set \
             publishNotReadyAddresses: false on the Service"
        )),
        action: "Drain".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &pod.object_ref(&())).await {
        warn!(error = %e, "cannot publish TrafficUnsafe event");
    }
}

fn error_policy(pod: Arc<Pod>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(ObjectRef::from_obj(&*pod));
    warn!(pod = %pod.name_any(), error = %error, retry_in = ?delay, "service component");
    Action::requeue(delay)
}

/// Runs the `service` component until `shutdown` resolves. Pods and
/// Services come from the shared caches; EndpointSlices are watched here
/// (this component is their only reader) into the endpoint index, never
/// stored whole.
pub async fn run(
    client: Client,
    caches: &Caches,
    namespace: Option<&str>,
    concurrency: u16,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // Only the pods that declared the component enter the controller's
    // queue: its scheduler keeps the room of every entry it ever held, and a
    // fleet whose pods declare no component would keep 10,000 of them.
    let pods = caches
        .pods
        .subscribe()
        .filter(|p| futures::future::ready(declares(p)));
    let services = caches.services.subscribe();
    let pod_reader = caches.pods.store.clone();
    let pods_for_services = pod_reader.clone();
    let pods_for_slices = pod_reader.clone();
    let slices_api: Api<EndpointSlice> = scoped_api(&client, namespace);
    let health = &telemetry.health;

    let index = Arc::new(RwLock::new(EndpointIndex::default()));
    let writer_index = index.clone();
    let slice_events =
        watch_events(slices_api, watcher::Config::default(), caches.lag).map(move |event| {
            if let (Ok(event), Ok(mut index)) = (&event, writer_index.write()) {
                match event {
                    watcher::Event::Init => index.relist_started(),
                    watcher::Event::InitApply(s) | watcher::Event::Apply(s) => index.apply(s),
                    watcher::Event::InitDone => index.relist_done(),
                    watcher::Event::Delete(s) => index.delete(s),
                }
            }
            event
        });
    let (slices, slices_synced) = health.track_synced("endpointslices", slice_events);
    let slices = slices.touched_objects();

    let synced = vec![
        caches.pods.synced.clone(),
        caches.services.synced.clone(),
        slices_synced,
    ];
    let ctx = Arc::new(Context {
        client: client.clone(),
        telemetry,
        synced: synced.clone(),
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
        services: caches.services.store.clone(),
        index,
        recorder: Recorder::new(client, "cafe-operator-traffic-service".into()),
        warned: Mutex::new(HashSet::new()),
        written: OwnWrites::new(OWN_WRITE_WINDOW),
    });
    let shutdown = shutdown.shared();
    let run = Controller::for_shared_stream(pods, pod_reader)
        .watches_stream(slices, move |slice: EndpointSlice| {
            let namespace = slice.metadata.namespace.clone().unwrap_or_default();
            slice
                .endpoints
                .iter()
                .filter_map(|e| e.target_ref.as_ref())
                .filter(|t| t.kind.as_deref() == Some("Pod"))
                .filter_map(|t| t.name.clone())
                .map(|name| ObjectRef::new(&name).within(&namespace))
                .filter(|pod| pods_for_slices.get(pod).is_none_or(|p| declares(&p)))
                .collect::<Vec<_>>()
        })
        .watches_shared_stream(services, move |svc: Arc<Service>| {
            let namespace = svc.namespace().unwrap_or_default();
            pods_for_services
                .state()
                .into_iter()
                .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
                .filter(|p| declares(p) && service::selects(&svc, p.labels()))
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    run_until_stopped(run, shutdown, &synced).await;
}
