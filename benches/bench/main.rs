//! `make bench`: a CafeDeployment release against a native Deployment on the
//! same cluster, in one run, with the figures a reviewer asks for:
//!
//! (a) `create-release` (`create_release.rs`): create and release of `--pods`
//!     pods over `--cells` cells in groups of `--group`, against a Deployment
//!     with the same unavailability budget (`maxSurge: 0`,
//!     `maxUnavailable: group`) on the same nodes;
//! (b) `service-release` (`service_release.rs`): the same release with the
//!     `service` traffic component behind a real Service, checked by the
//!     lossless checker;
//! (c) `api-requests` (reported by (a) and (b)): the operator's API requests
//!     per in-place-updated pod, by verb and resource;
//! (d) `fleet` (`fleet.rs`): `--fleet` CafeDeployments of `--fleet-pods` pods:
//!     operator memory once all are healthy, writes during a quiet period, and
//!     the time to release all of them at once, next to as many Deployments
//!     of the same size and budget released at the same moment;
//!     `kubectl cafe console` on the fleet: its memory, its CPU idle and
//!     during that release;
//! (e) `confirm-latency` (`confirm_latency.rs`): the reaction latency from a
//!     confirmation to the first gate flip;
//! (f) `real-containers` (`real_containers.rs`): real containers on the real
//!     nodes: `--real-pods` pods of the test application released in place by
//!     a CafeDeployment and recreated by a Deployment of the same budget
//!     (`--real-group`), with and without the `service` component's draining;
//! (g) `three-clusters` (`three_clusters.rs`): the same release of
//!     `--multi-pods` pods in one cluster and spread over three (the host and
//!     the member control planes of `tests/cluster/members.sh`), with the host
//!     operator's memory and API requests per member;
//! (h) `production-pods` (`production_pods.rs`): `--prod-pods` production-shaped
//!     pods (`examples/production-pod.yaml`) on the real nodes, their image
//!     pulled from the throttled local registry, released losslessly under
//!     load by a Deployment and by a CafeDeployment in place.
//!
//! `--parts` takes the names or the letters. Parts (a)-(e) run on simulated
//! kubelets: the benchmark creates its own kwok nodes (`cafe-bench=true`,
//! cells `bench-cell-*`); parts (f) and (h) on the local control plane's real nodes.
//! It runs one operator process per part (release build, watching only that
//! part's namespace), and removes everything it created when it ends. What
//! the parts share is in `support/`.

mod support;

use std::fmt::Write as _;

use clap::{Parser, ValueEnum};

use confirm_latency::confirm_latency;
use create_release::{create_release, report_runs};
use fleet::fleet;
use production_pods::production_pods;
use real_containers::real_containers;
use service_release::service_release;
use support::cluster::{create_nodes, delete_nodes};
use three_clusters::three_clusters;

mod confirm_latency;
mod create_release;
mod fleet;
mod production_pods;
mod real_containers;
mod service_release;
mod three_clusters;

#[derive(Parser, Clone)]
#[command(about = "CafeDeployment against Deployment on the local control plane")]
struct Args {
    /// Pods in parts (a), (b) and (c).
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Cells (two kwok nodes each).
    #[arg(long, default_value_t = 10)]
    cells: usize,
    /// Pods per release group, and the Deployment's maxUnavailable.
    #[arg(long, default_value_t = 100)]
    group: usize,
    /// CafeDeployments in part (d).
    #[arg(long, default_value_t = 100)]
    fleet: usize,
    /// Pods per CafeDeployment in part (d).
    #[arg(long, default_value_t = 100)]
    fleet_pods: usize,
    /// Seconds of the quiet period in part (d).
    #[arg(long, default_value_t = 60)]
    quiet_seconds: u64,
    /// Runs of part (a). With more than one, every run's times and ratios,
    /// then the median ratios (the Deployment's own time moves by 10-20%
    /// from run to run on a 2-CPU machine); the detailed tables are the
    /// last run's. Every second run has the CafeDeployment go first: a
    /// cluster that served runs before answers more slowly.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Confirmations timed in part (e).
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// Pods in part (f), on the two real nodes.
    #[arg(long, default_value_t = 60)]
    real_pods: usize,
    /// Pods per release group in part (f), and the Deployment's maxUnavailable.
    #[arg(long, default_value_t = 10)]
    real_group: usize,
    /// Pods in part (g), over three cells.
    #[arg(long, default_value_t = 300)]
    multi_pods: usize,
    /// Pods per release group in part (g).
    #[arg(long, default_value_t = 30)]
    multi_group: usize,
    /// Pods in part (h), on the two real nodes.
    #[arg(long, default_value_t = 6)]
    prod_pods: usize,
    /// Pods per release group in part (h), and the Deployment's maxUnavailable.
    #[arg(long, default_value_t = 2)]
    prod_group: usize,
    /// The local registry's bandwidth during part (h)'s releases
    /// (`tests/cluster/registry.sh rate`).
    #[arg(long, default_value = "25M")]
    prod_rate: String,
    /// Requests a second through the Service during part (h)'s releases.
    #[arg(long, default_value_t = 100)]
    prod_load: u32,
    /// The preStop sleep of the Deployment's containers in part (h), seconds
    /// (0: none).
    #[arg(long, default_value_t = 5)]
    prod_prestop: u32,
    /// Parts to run, by name or by letter, e.g. `create-release,api-requests`
    /// or `a,c` (c needs a or b).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "create-release,service-release,api-requests,fleet,confirm-latency,real-containers,three-clusters,production-pods"
    )]
    parts: Vec<Part>,
    /// Also record CPU profiles during each creation and release of part (a),
    /// their first `--profile-seconds`: the API server's as
    /// DIR/{deployment,cafedeployment}{-create,}.pprof
    /// (`go tool pprof -top DIR/cafedeployment.pprof`), kwok's as
    /// DIR/{deployment,cafedeployment}{-create,}-kwok.perf when perf is
    /// installed (`perf report -i`).
    #[arg(long, value_name = "DIR")]
    profile: Option<String>,
    #[arg(long, default_value_t = 20)]
    profile_seconds: u32,
    /// Where the results are written (Markdown), besides the screen.
    #[arg(long, default_value = "target/bench/results.md")]
    out: String,
    /// Ignored: cargo passes it to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The parts of the benchmark; each is also accepted by its letter, which its
/// heading in the results shows with its name: `(a) create-release`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// (a) create and release on the simulated nodes, against a Deployment.
    #[value(alias = "a")]
    CreateRelease,
    /// (b) the same release with the `service` component, checked lossless.
    #[value(alias = "b")]
    ServiceRelease,
    /// (c) the operator's API requests per in-place-updated pod (in (a), (b)).
    #[value(alias = "c")]
    ApiRequests,
    /// (d) a fleet: operator memory, quiet writes, a mass release, the console.
    #[value(alias = "d")]
    Fleet,
    /// (e) the latency from a confirmation to the first gate flip.
    #[value(alias = "e")]
    ConfirmLatency,
    /// (f) real containers on the real nodes, against a Deployment.
    #[value(alias = "f")]
    RealContainers,
    /// (g) one cluster against three.
    #[value(alias = "g")]
    ThreeClusters,
    /// (h) production-shaped pods on the real nodes, image pulled, under load.
    #[value(alias = "h")]
    ProductionPods,
}

impl Part {
    fn letter(self) -> char {
        match self {
            Part::CreateRelease => 'a',
            Part::ServiceRelease => 'b',
            Part::ApiRequests => 'c',
            Part::Fleet => 'd',
            Part::ConfirmLatency => 'e',
            Part::RealContainers => 'f',
            Part::ThreeClusters => 'g',
            Part::ProductionPods => 'h',
        }
    }
}

/// `(a) create-release`: the letter the README's figures use, and the name.
impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.to_possible_value().map(|v| v.get_name().to_string());
        write!(f, "({}) {}", self.letter(), name.unwrap_or_default())
    }
}

/// Results, printed and written to `--out` as they come (a failed part
/// keeps the figures of the parts before it).
struct Report {
    text: String,
    out: String,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = writeln!(self.text, "{}", s.as_ref());
        if let Err(e) = std::fs::write(&self.out, &self.text) {
            eprintln!("cannot write {}: {e}", self.out);
        }
    }
}

const IMAGE_1: &str = "nginx:1.25";

const IMAGE_2: &str = "nginx:1.26";

const NODE_LABEL: &str = "cafe-bench";

const WAIT: u64 = 1800;

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {:.0} GiB",
        mem as f64 / 1024.0 / 1024.0
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = support::namespace::client().await;
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut report = Report {
        text: String::new(),
        out: args.out.clone(),
    };
    report.line("# cafe-operator benchmark");
    report.line(format!(
        "\n{} · machine: {} · local control plane (kwok), {} cells of 2 nodes · operator: release build",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        machine(),
        args.cells
    ));
    let nodes = create_nodes(&client, args.cells).await;
    let run = async {
        if args.parts.contains(&Part::CreateRelease) {
            let repeat = args.repeat.max(1);
            let mut runs = Vec::new();
            for i in 0..repeat {
                runs.push(create_release(&args, &mut report, i + 1 == repeat, i % 2 == 1).await);
            }
            if repeat > 1 {
                report_runs(&mut report, &runs);
            }
        }
        if args.parts.contains(&Part::ServiceRelease) {
            service_release(&args, &mut report).await;
        }
        if args.parts.contains(&Part::ConfirmLatency) {
            confirm_latency(&args, &mut report).await;
        }
        if args.parts.contains(&Part::Fleet) {
            fleet(&args, &mut report).await;
        }
        if args.parts.contains(&Part::RealContainers) {
            real_containers(&args, &mut report, &client).await;
        }
        if args.parts.contains(&Part::ThreeClusters) {
            three_clusters(&args, &mut report).await;
        }
        if args.parts.contains(&Part::ProductionPods) {
            production_pods(&args, &mut report, &client).await;
        }
    };
    // A failed part still removes the nodes (its namespace goes with its guard).
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
    delete_nodes(&client, &nodes).await;
    println!("\nresults written to {}", args.out);
    if outcome.is_err() {
        std::process::exit(1);
    }
}
