use std::process::ExitCode;

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
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CAFE_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Objects reconciled at once per controller.
    #[arg(long, env = "CAFE_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    #[arg(long, env = "CAFE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `cafe_operator=debug`.
    #[arg(long, env = "CAFE_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG (or in-cluster).
    Run(RunArgs),
    /// Print both CRDs (CafeDeployment, InPlaceSet) as YAML.
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
        let (client, counters) = match cafe_operator::runtime::preflight().await {
            Ok(c) => c,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        info!(namespace = ?args.namespace, "starting the CafeDeployment and InPlaceSet controllers and the service traffic component");
        // One signal stops every controller.
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
        let namespace = args.namespace.as_deref();
        let controllers = async {
            tokio::join!(
                cafe_operator::inplaceset::controller::run(
                    client.clone(),
                    namespace,
                    args.concurrency,
                    stopped(),
                ),
                cafe_operator::traffic::component::run(
                    client.clone(),
                    namespace,
                    args.concurrency,
                    stopped(),
                ),
                cafe_operator::cafedeployment::controller::run(
                    client.clone(),
                    namespace,
                    args.concurrency,
                    stopped(),
                ),
            )
        };
        let deadline = async {
            stopped().await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        tokio::select! {
            _ = controllers => {}
            () = deadline => warn!("controllers did not stop within {STOP_GRACE:?}; exiting anyway"),
        }
        // What this run cost the API server, by verb and resource.
        let requests: Vec<String> = counters
            .snapshot()
            .into_iter()
            .map(|((verb, resource), n)| format!("{verb} {resource}={n}"))
            .collect();
        info!(requests = %requests.join(", "), "stopped; API requests made");
        ExitCode::SUCCESS
    })
}
