//! The operator's command line: `cafe-operator run [flags]` (flags read like
//! controller-runtime's, each with an environment variable) and
//! `cafe-operator crd`.

use clap::{Parser, Subcommand, ValueEnum};

/// The CafeDeployment operator.
#[derive(Parser)]
#[command(name = "cafe-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Watch only these namespaces (repeat the flag or separate with commas;
    /// default: all namespaces).
    #[arg(
        long = "namespace",
        env = "CAFE_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Objects reconciled at once per controller.
    #[arg(long, env = "CAFE_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    #[arg(long, env = "CAFE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `cafe_operator=debug`.
    #[arg(long, env = "CAFE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Where `/metrics` is served (`:8080`, `127.0.0.1:8080`, or `0` to turn it off).
    #[arg(long, env = "CAFE_METRICS_BIND_ADDRESS", default_value = ":8080")]
    pub metrics_bind_address: String,
    /// Where `/healthz` and `/readyz` are served (`0` turns them off).
    #[arg(long, env = "CAFE_HEALTH_PROBE_BIND_ADDRESS", default_value = ":8081")]
    pub health_probe_bind_address: String,
    /// Run the controllers only while holding the leader Lease, so that two
    /// replicas (or two installations with the same Lease) never both write.
    /// On by default, as Kubernetes' own controllers; `--leader-elect=false`
    /// turns it off (one process alone, as the tests and the demo run it).
    #[arg(long, env = "CAFE_LEADER_ELECT", default_value_t = true,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// The Lease's namespace (default: the namespace the operator runs in;
    /// outside a pod, the first watched namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// The Lease's name.
    #[arg(long, env = "CAFE_LEADER_ELECTION_ID", default_value = "cafe-operator")]
    pub leader_election_id: String,
    /// This replica's name in the Lease (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub leader_election_identity: Option<String>,
    /// Seconds a leader's claim lasts without renewal: the longest a standby
    /// waits after the leader dies. Renewal starts a third of it before expiry.
    #[arg(long, env = "CAFE_LEADER_ELECTION_LEASE_DURATION", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub leader_election_lease_duration: u64,
    /// Seconds this operator leaves an object alone once it found another
    /// operator writing it too (its AnotherWriter condition says so); then
    /// it looks again.
    #[arg(long, env = "CAFE_ANOTHER_WRITER_STAND_DOWN_SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub another_writer_stand_down_seconds: u64,
    /// The image of the pods that pull a release's images onto a node ahead
    /// of its pods' turn (`spec.strategy.preDownload`). Its container starts
    /// once the images are on the node, so it must be there already: the
    /// sandbox (pause) image of the nodes' container runtime is.
    #[arg(
        long,
        env = "CAFE_PRE_DOWNLOAD_POD_IMAGE",
        default_value = "registry.k8s.io/pause:3.10.2"
    )]
    pub pre_download_pod_image: String,
    /// Testing only: every watch event reaches the caches this many
    /// milliseconds late, as from an API server under heavy load.
    #[arg(
        long,
        env = "CAFE_DEBUG_WATCH_LAG_MS",
        default_value_t = 0,
        hide = true
    )]
    pub debug_watch_lag_ms: u64,
    /// Seconds after the API server was out of reach (a watch failed)
    /// during which no drained pod is changed: the nodes' kube-proxy
    /// reconnects with client-go's backoff (up to a minute) and routes by
    /// the EndpointSlices it saw before until then. 0 turns it off.
    #[arg(long, env = "CAFE_CATCH_UP_AFTER_OUTAGE_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(0..=3600))]
    pub catch_up_after_outage_seconds: i64,
    /// `all`: every controller (a single cluster, or the host of member
    /// clusters). `member`: only what runs inside a member cluster (the
    /// InPlaceSet controller and the traffic components); the host writes
    /// the InPlaceSets.
    #[arg(long, env = "CAFE_ROLE", value_enum, default_value_t = OperatorRole::All)]
    pub role: OperatorRole,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OperatorRole {
    All,
    Member,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the controllers against the cluster in KUBECONFIG (or in-cluster).
    Run(Box<RunArgs>),
    /// Print the CRDs (CafeDeployment, InPlaceSet, MemberCluster) as YAML.
    Crd,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let mut all = vec!["cafe-operator", "run"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).map(|c| c.command) {
            Ok(Command::Run(args)) => *args,
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
        assert!(d.leader_elect, "leader election is on by default");
        assert_eq!(d.leader_election_lease_duration, 15);
        assert!(!run_args(&["--leader-elect=false"]).leader_elect);
        assert!(run_args(&["--leader-elect=true"]).leader_elect);

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
