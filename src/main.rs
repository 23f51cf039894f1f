use std::process::ExitCode;

use std::time::Duration;

use cafe_operator::api::{MemberCluster, ReleaseFreeze};
use cafe_operator::placement::members::Members;
use cafe_operator::runtime::Telemetry;
use cafe_operator::runtime::cache::Caches;
use cafe_operator::runtime::health::{Health, Role};
use cafe_operator::runtime::leader::{self, LeaseConfig};
use cafe_operator::runtime::metrics::Metrics;
use cafe_operator::runtime::serve;
use clap::{Parser, Subcommand, ValueEnum};
use tracing::{error, info, warn};

/// The CafeDeployment operator.
#[derive(Parser)]
#[command(name = "cafe-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only these namespaces (repeat the flag or separate with commas;
    /// default: all namespaces).
    #[arg(
        long = "namespace",
        env = "CAFE_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Objects reconciled at once per controller.
    #[arg(long, env = "CAFE_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    #[arg(long, env = "CAFE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `cafe_operator=debug`.
    #[arg(long, env = "CAFE_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Where `/metrics` is served (`:8080`, `127.0.0.1:8080`, or `0` to turn it off).
    #[arg(long, env = "CAFE_METRICS_BIND_ADDRESS", default_value = ":8080")]
    metrics_bind_address: String,
    /// Where `/healthz` and `/readyz` are served (`0` turns them off).
    #[arg(long, env = "CAFE_HEALTH_PROBE_BIND_ADDRESS", default_value = ":8081")]
    health_probe_bind_address: String,
    /// Run the controllers only while holding the leader Lease (for more than one replica).
    #[arg(long, env = "CAFE_LEADER_ELECT")]
    leader_elect: bool,
    /// The Lease's namespace (default: the namespace the operator runs in, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// The Lease's name.
    #[arg(long, env = "CAFE_LEADER_ELECTION_ID", default_value = "cafe-operator")]
    leader_election_id: String,
    /// This replica's name in the Lease (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// Seconds a leader's claim lasts without renewal: the longest a standby
    /// waits after the leader dies. Renewal starts a third of it before expiry.
    #[arg(long, env = "CAFE_LEADER_ELECTION_LEASE_DURATION", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    leader_election_lease_duration: u64,
    /// Testing only: every watch event reaches the caches this many
    /// milliseconds late, as from an API server under heavy load.
    #[arg(
        long,
        env = "CAFE_DEBUG_WATCH_LAG_MS",
        default_value_t = 0,
        hide = true
    )]
    debug_watch_lag_ms: u64,
    /// Seconds after the API server was out of reach (a watch failed)
    /// during which no drained pod is changed: the nodes' kube-proxy
    /// reconnects with client-go's backoff (up to a minute) and routes by
    /// the EndpointSlices it saw before until then. 0 turns it off.
    #[arg(long, env = "CAFE_CATCH_UP_AFTER_OUTAGE_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(0..=3600))]
    catch_up_after_outage_seconds: i64,
    /// `all`: every controller (a single cluster, or the host of member
    /// clusters). `member`: only what runs inside a member cluster (the
    /// InPlaceSet controller and the traffic components); the host writes
    /// the InPlaceSets.
    #[arg(long, env = "CAFE_ROLE", value_enum, default_value_t = OperatorRole::All)]
    role: OperatorRole,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OperatorRole {
    All,
    Member,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG (or in-cluster).
    Run(RunArgs),
    /// Print the CRDs (CafeDeployment, InPlaceSet, MemberCluster) as YAML.
    Crd,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match cafe_operator::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRDs as YAML: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => run(args),
    }
}

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

fn run(args: RunArgs) -> ExitCode {
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
    let metrics_addr =
        serve::parse_bind_address("--metrics-bind-address", &args.metrics_bind_address)?;
    let probe_addr = serve::parse_bind_address(
        "--health-probe-bind-address",
        &args.health_probe_bind_address,
    )?;
    let cafe_operator::runtime::Preflight {
        client,
        counters,
        members: members_crd,
    } = cafe_operator::runtime::preflight()
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

    // One signal stops everything.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let mut leadership = None;
    if args.leader_elect {
        let config = LeaseConfig {
            namespace: args
                .leader_election_namespace
                .clone()
                .unwrap_or_else(leader::own_namespace),
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
        match leader::acquire(client.clone(), &config, stopped()).await {
            Ok(Some(held)) => {
                info!(waited = ?since.elapsed(), identity = %config.identity, "became the leader");
                leadership = Some(held);
            }
            Ok(None) => {
                info!("stopped before becoming the leader");
                return Ok(());
            }
            Err(e) => {
                return Err(format!(
                    "leader election on Lease {}/{} failed: {e}. The operator's service account \
                     needs get, create and patch on coordination.k8s.io leases in {}",
                    config.namespace, config.name, config.namespace
                ));
            }
        }
    }
    telemetry.health.set_role(Role::Leading);
    telemetry.metrics.set_leader(true);

    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let host = args.role == OperatorRole::All;
    if host {
        info!(namespaces = ?args.namespaces, member_clusters = members_crd, "starting the CafeDeployment and InPlaceSet controllers and the service traffic component");
    } else {
        info!(namespaces = ?args.namespaces, "member role: starting the InPlaceSet controller and the service traffic component (a host writes the InPlaceSets)");
    }
    // One registry of member clusters for the process, read by every scope,
    // kept by the MemberCluster controller.
    let members = if host && members_crd {
        let (clusters, drive) = cafe_operator::runtime::cache::watch(
            &telemetry.health,
            "memberclusters",
            (
                kube::Api::<MemberCluster>::all(client.clone()),
                kube::runtime::watcher::Config::default(),
            ),
            Duration::ZERO,
            cafe_operator::runtime::cache::trim::meta,
            |_: &kube::runtime::watcher::Event<MemberCluster>| {},
        );
        let members = Members::new(clusters.store.clone(), clusters.synced.clone());
        let controller = cafe_operator::membercluster::controller::run(
            client.clone(),
            clusters,
            members.clone(),
            telemetry.health.clone(),
            stopped(),
        );
        let stop = stopped();
        tokio::spawn(async move {
            tokio::join!(controller, async {
                tokio::select! {
                    () = drive => {}
                    () = stop => {}
                }
            });
        });
        members
    } else {
        Members::none()
    };
    telemetry.metrics.observe_members(members.clone());
    // Release freezes are cluster-scoped: one watch for the process.
    let freezes = (host && members_crd).then(|| {
        let (freezes, drive) = cafe_operator::runtime::cache::watch(
            &telemetry.health,
            "releasefreezes",
            (
                kube::Api::<ReleaseFreeze>::all(client.clone()),
                kube::runtime::watcher::Config::default(),
            ),
            Duration::from_millis(args.debug_watch_lag_ms),
            cafe_operator::runtime::cache::trim::meta,
            |_: &kube::runtime::watcher::Event<ReleaseFreeze>| {},
        );
        let stop = stopped();
        tokio::spawn(async move {
            tokio::select! {
                () = drive => {}
                () = stop => {}
            }
        });
        freezes
    });
    let controllers = futures::future::join_all(scopes.iter().map(|scope| {
        let members = members.clone();
        let freezes = freezes.clone();
        let namespace = scope.as_deref();
        let (client, telemetry) = (client.clone(), telemetry.clone());
        let concurrency = args.concurrency;
        let stops = (stopped(), stopped(), stopped(), stopped());
        // One watch per kind for the scope, shared by the three controllers.
        let lag = Duration::from_millis(args.debug_watch_lag_ms);
        if !lag.is_zero() {
            warn!(
                ?lag,
                "testing only: every watch event reaches the caches this late"
            );
        }
        let (caches, drive) = Caches::start(&client, namespace, &telemetry.health, lag);
        telemetry.metrics.observe_pods(caches.pods.store.clone());
        telemetry
            .metrics
            .observe_cafedeployments(caches.cafedeployments.store.clone());
        members.observe_cafedeployments(caches.cafedeployments.store.clone());
        async move {
            // The controllers subscribe when first polled, before the watches start.
            tokio::join!(
                cafe_operator::inplaceset::controller::run(
                    client.clone(),
                    &caches,
                    concurrency,
                    telemetry.clone(),
                    stops.0,
                ),
                cafe_operator::traffic::component::run(
                    client.clone(),
                    &caches,
                    namespace,
                    concurrency,
                    telemetry.clone(),
                    stops.1,
                ),
                async {
                    if host {
                        cafe_operator::cafedeployment::controller::run(
                            client.clone(),
                            &caches,
                            &members,
                            freezes.as_ref(),
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
            )
        }
    }));
    let deadline = async {
        stopped().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    let lost = async {
        match leadership.as_mut() {
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
    if let Some(held) = leadership {
        held.release().await;
    }
    // What this run cost the API server, by verb and resource; requests
    // that did not succeed are listed apart with their outcome.
    let requests: Vec<String> = counters
        .snapshot()
        .into_iter()
        .map(|((verb, resource, outcome), n)| match outcome {
            "success" => format!("{verb} {resource}={n}"),
            other => format!("{verb} {resource} ({other})={n}"),
        })
        .collect();
    info!(requests = %requests.join(", "), "stopped; API requests made");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let mut all = vec!["cafe-operator", "run"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).map(|c| c.command) {
            Ok(Command::Run(args)) => args,
            Ok(Command::Crd) => panic!("parsed as crd"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn flags_read_like_controller_runtime_with_our_defaults() {
        let d = run_args(&[]);
        assert!(d.namespaces.is_empty(), "all namespaces by default");
        assert_eq!(d.metrics_bind_address, ":8080");
        assert_eq!(d.health_probe_bind_address, ":8081");
        assert!(!d.leader_elect);
        assert_eq!(d.leader_election_lease_duration, 15);

        let a = run_args(&[
            "--namespace",
            "shop,payments",
            "--namespace",
            "risk",
            "--leader-elect",
            "--log-format",
            "json",
        ]);
        assert_eq!(a.namespaces, ["shop", "payments", "risk"]);
        assert!(a.leader_elect);
        assert!(matches!(a.log_format, LogFormat::Json));
    }

    #[test]
    fn a_lease_shorter_than_two_seconds_is_refused() {
        let all = [
            "cafe-operator",
            "run",
            "--leader-election-lease-duration",
            "1",
        ];
        let err = Cli::try_parse_from(all).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("2..=3600")));
    }
}
