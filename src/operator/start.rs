//! Starting the operator: logging, the signal that stops it, the metrics and
//! probe endpoints, leader election, the member-cluster registry and its
//! controller, then per watched scope one set of caches shared by the
//! InPlaceSet and CafeDeployment controllers and the traffic component.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use tracing::{error, info, warn};

use super::flags::{LogFormat, OperatorRole, RunArgs};
use crate::api::{MemberCluster, ReleaseFreeze};
use crate::placement::members::Members;
use crate::runtime::Telemetry;
use crate::runtime::cache::Caches;
use crate::runtime::health::{Health, Role};
use crate::runtime::leader::{self, LeaseConfig};
use crate::runtime::metrics::Metrics;
use crate::runtime::serve;

fn init_logging(args: &RunArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves when SIGTERM or SIGINT is received, and only then: a listener
/// that cannot be installed logs why and never fires (an `Err` from a signal
/// listener must not read as "stop", or the controllers would start in
/// shutdown mode and ignore every watch event).
async fn shutdown_signal() {
    let term = async {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                return "SIGTERM";
            }
            Err(e) => warn!(error = %e, "cannot listen for SIGTERM"),
        }
        std::future::pending::<&str>().await
    };
    let int = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGINT");
                std::future::pending::<&str>().await
            }
        }
    };
    let signal = tokio::select! {
        s = term => s,
        s = int => s,
    };
    info!("received {signal}; stopping: pods in their lifecycle stay resumable");
}

/// How long the controllers may take to stop after a signal.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// `cafe-operator run`: runs the operator until a signal.
pub fn run(args: RunArgs) -> ExitCode {
    init_logging(&args);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match operate(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Serves the endpoints, waits for the Lease if asked to, runs the controllers
/// until a signal, then releases the Lease.
async fn operate(args: RunArgs) -> Result<(), String> {
    let (client, counters, members_crd, telemetry) = connect(&args).await?;
    telemetry.health.set_identity(
        args.leader_election_identity.clone(),
        Duration::from_secs(args.another_writer_stand_down_seconds),
    );
    let stop = Stop::on_signal();
    spawn_until(&stop, crate::runtime::memory::trim_periodically());
    let mut leadership = match lead(&args, &client, &telemetry, &stop).await? {
        Lead::Stopped => return Ok(()),
        Lead::Alone => None,
        Lead::Held(held) => Some(*held),
    };
    telemetry.health.set_role(Role::Leading);
    telemetry.metrics.set_leader(true);
    let host = args.role == OperatorRole::All;
    if host {
        info!(namespaces = ?args.namespaces, member_clusters = members_crd, "starting the CafeDeployment and InPlaceSet controllers and the service traffic component");
    } else {
        info!(namespaces = ?args.namespaces, "member role: starting the InPlaceSet controller and the service traffic component (a host writes the InPlaceSets)");
    }
    let lag = Duration::from_millis(args.debug_watch_lag_ms);
    if !lag.is_zero() {
        warn!(
            ?lag,
            "testing only: every watch event reaches the caches this late"
        );
    }
    let cluster_wide = Process {
        host,
        members: start_members(host && members_crd, &client, &telemetry, &stop),
        freezes: start_freezes(host && members_crd, &client, &telemetry, lag, &stop),
        pull_image: args.pre_download_pod_image.clone(),
    };
    let members = cluster_wide.members.clone();
    telemetry
        .metrics
        .observe_members(std::sync::Arc::new(move || members.readings()));
    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = futures::future::join_all(scopes.iter().map(|scope| {
        let at = Scope {
            namespace: scope.as_deref(),
            concurrency: args.concurrency,
            lag,
        };
        run_scope(&client, &telemetry, &cluster_wide, at, &stop)
    }));
    run_until_stop(controllers, leadership.as_mut(), &stop).await;
    if let Some(held) = leadership {
        held.release().await;
    }
    report_requests(&counters);
    Ok(())
}

/// Checks the cluster (client, CRDs) and serves `/metrics` and the probes.
async fn connect(
    args: &RunArgs,
) -> Result<
    (
        kube::Client,
        crate::runtime::client::ApiCounters,
        bool,
        Telemetry,
    ),
    String,
> {
    let metrics_addr =
        serve::parse_bind_address("--metrics-bind-address", &args.metrics_bind_address)?;
    let probe_addr = serve::parse_bind_address(
        "--health-probe-bind-address",
        &args.health_probe_bind_address,
    )?;
    let crate::runtime::Preflight {
        client,
        counters,
        members,
    } = crate::runtime::preflight()
        .await
        .map_err(|e| e.to_string())?;
    let telemetry = Telemetry {
        metrics: Metrics::new(counters.clone()),
        health: Health::default(),
    };
    telemetry
        .health
        .set_outage_catch_up(args.catch_up_after_outage_seconds);
    serve::start(
        metrics_addr,
        probe_addr,
        telemetry.metrics.clone(),
        telemetry.health.clone(),
    )
    .await?;
    Ok((client, counters, members, telemetry))
}

/// One signal stops everything: every `wait()` resolves once it came.
#[derive(Clone)]
struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    fn on_signal() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        Self(rx)
    }

    fn wait(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Runs `work` until `stop`'s signal fires (then it ends there).
fn spawn_until(stop: &Stop, work: impl std::future::Future<Output = ()> + Send + 'static) {
    let stopped = stop.wait();
    tokio::spawn(async move {
        tokio::select! {
            () = work => {}
            () = stopped => {}
        }
    });
}

/// How the process came to run the controllers.
enum Lead {
    /// Without leader election.
    Alone,
    Held(Box<leader::Leadership>),
    /// Stopped while waiting for the Lease.
    Stopped,
}

/// Waits for the leader Lease when `--leader-elect` asks for it.
async fn lead(
    args: &RunArgs,
    client: &kube::Client,
    telemetry: &Telemetry,
    stop: &Stop,
) -> Result<Lead, String> {
    if !args.leader_elect {
        return Ok(Lead::Alone);
    }
    let config = LeaseConfig {
        namespace: args
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| leader::lease_namespace(&args.namespaces)),
        name: args.leader_election_id.clone(),
        identity: args
            .leader_election_identity
            .clone()
            .unwrap_or_else(leader::default_identity),
        duration: Duration::from_secs(args.leader_election_lease_duration),
    };
    telemetry.health.set_role(Role::Standby);
    info!(lease = %format!("{}/{}", config.namespace, config.name), identity = %config.identity,
          "waiting for the leader Lease");
    let since = std::time::Instant::now();
    match leader::acquire(client.clone(), &config, stop.wait()).await {
        Ok(Some(held)) => {
            info!(waited = ?since.elapsed(), identity = %config.identity, "became the leader");
            Ok(Lead::Held(Box::new(held)))
        }
        Ok(None) => {
            info!("stopped before becoming the leader");
            Ok(Lead::Stopped)
        }
        Err(e) => Err(format!(
            "leader election on Lease {}/{} failed: {e}. The operator's service account \
             needs get, create and patch on coordination.k8s.io leases in {}",
            config.namespace, config.name, config.namespace
        )),
    }
}

/// What the process watches once, for every scope.
struct Process {
    /// Runs the host controllers (`--role all`).
    host: bool,
    /// The member clusters, kept by the MemberCluster controller.
    members: Members,
    /// Release freezes (cluster-scoped; none without the CRD).
    freezes: Option<crate::runtime::cache::Shared<ReleaseFreeze>>,
    /// The image of the pods that pre-download a release's images.
    pull_image: String,
}

/// The registry of member clusters and its controller (an empty registry
/// when `enabled` is false: a member, or a host without the CRD).
fn start_members(
    enabled: bool,
    client: &kube::Client,
    telemetry: &Telemetry,
    stop: &Stop,
) -> Members {
    if !enabled {
        return Members::none();
    }
    let (clusters, drive) = crate::runtime::cache::watch(
        &telemetry.health,
        "memberclusters",
        (
            kube::Api::<MemberCluster>::all(client.clone()),
            kube::runtime::watcher::Config::default(),
        ),
        Duration::ZERO,
        crate::runtime::cache::trim::meta,
        |_: &kube::runtime::watcher::Event<MemberCluster>| {},
    );
    let members = Members::new(clusters.store.clone(), clusters.synced.clone());
    // A MemberCluster's edit (its cells, its deletion) changes where cells
    // may live: every CafeDeployment looks again.
    let edits = clusters.subscribe();
    let registry = members.clone();
    spawn_until(
        stop,
        edits.for_each(move |_| {
            registry.changed();
            std::future::ready(())
        }),
    );
    let controller = crate::membercluster::controller::run(
        client.clone(),
        clusters,
        members.clone(),
        telemetry.health.clone(),
        stop.wait(),
    );
    // The controller subscribes when first polled, before the watch starts.
    let stopped = stop.wait();
    tokio::spawn(async move {
        tokio::join!(controller, async {
            tokio::select! {
                () = drive => {}
                () = stopped => {}
            }
        });
    });
    members
}

/// The ReleaseFreeze cache (none when `enabled` is false).
fn start_freezes(
    enabled: bool,
    client: &kube::Client,
    telemetry: &Telemetry,
    lag: Duration,
    stop: &Stop,
) -> Option<crate::runtime::cache::Shared<ReleaseFreeze>> {
    if !enabled {
        return None;
    }
    let (freezes, drive) = crate::runtime::cache::watch(
        &telemetry.health,
        "releasefreezes",
        (
            kube::Api::<ReleaseFreeze>::all(client.clone()),
            kube::runtime::watcher::Config::default(),
        ),
        lag,
        crate::runtime::cache::trim::meta,
        |_: &kube::runtime::watcher::Event<ReleaseFreeze>| {},
    );
    spawn_until(stop, drive);
    Some(freezes)
}

/// One watched scope (a namespace, or all).
struct Scope<'a> {
    namespace: Option<&'a str>,
    concurrency: u16,
    lag: Duration,
}

/// The controllers of one scope over one watch per kind, shared by them.
fn run_scope<'a>(
    client: &kube::Client,
    telemetry: &Telemetry,
    process: &'a Process,
    scope: Scope<'a>,
    stop: &Stop,
) -> impl std::future::Future<Output = ()> + 'a {
    let (client, telemetry) = (client.clone(), telemetry.clone());
    let (caches, drive) = Caches::start(&client, scope.namespace, &telemetry.health, scope.lag);
    telemetry.metrics.observe_pods(caches.pods.store.clone());
    telemetry
        .metrics
        .observe_cafedeployments(caches.cafedeployments.store.clone());
    process.members.observe_cafedeployments(
        caches.cafedeployments.store.clone(),
        caches.cafedeployments.synced.clone(),
    );
    let stops = (stop.wait(), stop.wait(), stop.wait(), stop.wait());
    let Scope {
        namespace,
        concurrency,
        ..
    } = scope;
    async move {
        // The controllers subscribe when first polled, before the watches start.
        tokio::join!(
            crate::inplaceset::controller::run(
                client.clone(),
                &caches,
                (concurrency, &process.pull_image),
                telemetry.clone(),
                stops.0,
            ),
            crate::traffic::component::run(
                client.clone(),
                &caches,
                namespace,
                concurrency,
                telemetry.clone(),
                stops.1,
            ),
            async {
                if process.host {
                    crate::cafedeployment::controller::run(
                        client.clone(),
                        &caches,
                        &process.members,
                        process.freezes.as_ref(),
                        concurrency,
                        telemetry.clone(),
                        stops.2,
                    )
                    .await;
                }
            },
            async {
                tokio::select! {
                    () = drive => {}
                    () = stops.3 => {}
                }
            },
        );
    }
}

/// Runs `controllers` until they stop after the signal (or `STOP_GRACE`
/// after it); exits at once if the Lease is lost.
async fn run_until_stop(
    controllers: impl std::future::Future,
    leadership: Option<&mut leader::Leadership>,
    stop: &Stop,
) {
    let stopped = stop.wait();
    let deadline = async {
        stopped.await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    let lost = async {
        match leadership {
            Some(held) => held.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = controllers => {}
        () = deadline => warn!("controllers did not stop within {STOP_GRACE:?}; exiting anyway"),
        () = lost => {
            // Another replica may lead now: writing on would race it. Exit at
            // once; every pod is in a state the next leader resumes from.
            error!("lost the leader Lease; exiting so that only one replica writes");
            std::process::exit(1);
        }
    }
}

/// What this run cost the API server, by verb and resource; requests that
/// did not succeed are listed apart with their outcome.
fn report_requests(counters: &crate::runtime::client::ApiCounters) {
    let requests: Vec<String> = counters
        .snapshot()
        .into_iter()
        .map(|((verb, resource, outcome), n)| match outcome {
            "success" => format!("{verb} {resource}={n}"),
            other => format!("{verb} {resource} ({other})={n}"),
        })
        .collect();
    info!(requests = %requests.join(", "), "stopped; API requests made");
}
