//! (a) create-release and (c) api-requests: create and release the same pods with a CafeDeployment and
//! with a Deployment of the same budget, on the same nodes, and the
//! operator's API requests per in-place-updated pod.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cafe_operator::api::CafeDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PatchParams;
use serde_json::json;

use crate::support::cluster::{
    cafedeployment, deployment, deployment_done, operator, remove, set_image, wait_cd, wait_until,
};
use crate::support::metrics::{
    Cpu, Writes, report_cpu, report_writes, requests, writes_between, writes_by_kind,
};
use crate::support::namespace::TestNs;
use crate::support::release::{Release, release};
use crate::support::stages::{
    CREATION_STAGES, RELEASE_STAGES, Stages, creation_marks, release_marks, report_stages,
    watch_stages,
};
use crate::{Args, IMAGE_1, IMAGE_2, NODE_LABEL, Part, Report, WAIT};

/// With `--profile DIR`, the CPU profiles of the API server and of kwok (the
/// simulated kubelets) from now on, written to DIR/`name`.pprof
/// (`go tool pprof`) and DIR/`name`-kwok.perf (`perf report -i`, when perf is
/// installed) when the returned thread ends (kubectl from PATH, as
/// hack/bench.sh sets it).
pub(crate) fn profile(args: &Args, name: &str) -> Option<std::thread::JoinHandle<()>> {
    let dir = args.profile.clone()?;
    let path = format!("{dir}/{name}.pprof");
    let kwok_path = format!("{dir}/{name}-kwok.perf");
    let url = format!("/debug/pprof/profile?seconds={}", args.profile_seconds);
    let seconds = args.profile_seconds.to_string();
    let _ = std::fs::create_dir_all(&dir);
    // kwok serves no CPU profile; perf (when installed) samples it instead.
    let kwok_pid = std::fs::read_to_string(".cluster/pids/kwok.pid").unwrap_or_default();
    let kwok = std::thread::spawn(move || {
        let recorded = std::process::Command::new("perf")
            .args(["record", "-q", "-F", "499", "-g", "-o", &kwok_path, "-p"])
            .args([kwok_pid.trim(), "--", "sleep", &seconds])
            .output();
        match recorded {
            Ok(o) if o.status.success() => eprintln!("kwok profile: {kwok_path} (perf report -i)"),
            Ok(o) => eprintln!("no kwok profile: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("no kwok profile (perf): {e}"),
        }
    });
    Some(std::thread::spawn(move || {
        let out = std::process::Command::new("kubectl")
            .args(["get", "--raw", &url])
            .output();
        match out {
            Ok(o) if o.status.success() => match std::fs::write(&path, o.stdout) {
                Ok(()) => eprintln!("API server profile: {path}"),
                Err(e) => eprintln!("cannot write {path}: {e}"),
            },
            Ok(o) => eprintln!("no profile: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("no profile (kubectl): {e}"),
        }
        let _ = kwok.join();
    }))
}

/// Waits for a profile started by [`profile`] to be written.
pub(crate) async fn profiled(profile: Option<std::thread::JoinHandle<()>>) {
    if let Some(p) = profile {
        let _ = tokio::task::spawn_blocking(move || p.join()).await;
    }
}

/// One run of part (a) create-release: how long each side took.
pub(crate) struct Run {
    pub(crate) cd_create: Duration,
    pub(crate) deploy_create: Duration,
    pub(crate) cd_release: Duration,
    pub(crate) deploy_release: Duration,
    /// The CafeDeployment's side ran first.
    pub(crate) cd_first: bool,
}

impl Run {
    pub(crate) fn ratios(&self) -> (f64, f64) {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        (
            ratio(self.cd_create, self.deploy_create),
            ratio(self.cd_release, self.deploy_release),
        )
    }
}

/// Every run of part (a) create-release, and the median ratios.
pub(crate) fn report_runs(report: &mut Report, runs: &[Run]) {
    report.line(format!(
        "\n### part {}, {} runs\n",
        Part::CreateRelease,
        runs.len()
    ));
    report.line(
        "| run | first | create: CafeDeployment | Deployment | ratio | release: CafeDeployment | Deployment | ratio |",
    );
    report.line("|---|---|---:|---:|---:|---:|---:|---:|");
    for (i, r) in runs.iter().enumerate() {
        let (create, release) = r.ratios();
        report.line(format!(
            "| {} | {} | {:.1} s | {:.1} s | {create:.2}x | {:.1} s | {:.1} s | {release:.2}x |",
            i + 1,
            first_side(r.cd_first),
            r.cd_create.as_secs_f64(),
            r.deploy_create.as_secs_f64(),
            r.cd_release.as_secs_f64(),
            r.deploy_release.as_secs_f64(),
        ));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let create = median(runs.iter().map(|r| r.ratios().0).collect());
    let release = median(runs.iter().map(|r| r.ratios().1).collect());
    report.line(format!(
        "| **median** | | | | **{create:.2}x** | | | **{release:.2}x** |"
    ));
}

/// One side of part (a) create-release, measured: its creation and its release, the CPU
/// and API server writes before the creation, after it and after the release,
/// and where each created pod's time went.
pub(crate) struct Side {
    pub(crate) create: Duration,
    pub(crate) release: Duration,
    pub(crate) cpu: [Cpu; 3],
    pub(crate) writes: [Writes; 3],
    pub(crate) created: Arc<Mutex<Stages>>,
    pub(crate) start: Instant,
}

/// The Deployment's side: the same nodes, the same budget (`maxSurge: 0`,
/// `maxUnavailable`: one group). Its namespace is removed before it returns.
pub(crate) async fn deployment_side(args: &Args) -> Side {
    let ns = TestNs::new("bench-deploy").await;
    let deployments: Api<Deployment> = ns.api();
    let body = deployment(
        args.pods,
        args.group,
        json!({"metadata": {"labels": {"app": "bench"}},
               "spec": {"nodeSelector": {NODE_LABEL: "true"},
                        "containers": [{"name": "app", "image": IMAGE_1}]}}),
    );
    let client = ns.client.clone();
    let cpu_0 = Cpu::read(None);
    let writes_0 = Writes::read(&client).await;
    let (created, watch) = watch_stages(&ns, &CREATION_STAGES, creation_marks);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let profile_create = profile(args, "deployment-create");
    let start = Instant::now();
    ns.create::<Deployment>(body).await;
    let deploy_done = |what: &'static str| {
        let api = deployments.clone();
        let n = args.pods;
        async move {
            wait_until(what, WAIT, || async {
                let d = api.get("bench").await.ok()?;
                deployment_done(&d, n).then_some(())
            })
            .await
        }
    };
    deploy_done("the Deployment to be ready").await;
    let create = start.elapsed();
    watch.abort();
    profiled(profile_create).await;
    let cpu_1 = Cpu::read(None);
    let writes_1 = Writes::read(&client).await;
    // The same watch of the pods as during the CafeDeployment's release, so
    // that both releases serve one more watcher.
    let (_, watch) = watch_stages(&ns, &RELEASE_STAGES, |p| release_marks(p, IMAGE_2));
    let profile_release = profile(args, "deployment");
    let release_start = Instant::now();
    deployments
        .patch("bench", &PatchParams::default(), &set_image(IMAGE_2))
        .await
        .expect("patch the Deployment");
    deploy_done("the Deployment's rollout").await;
    let release = release_start.elapsed();
    let cpu_2 = Cpu::read(None);
    let writes_2 = Writes::read(&client).await;
    watch.abort();
    profiled(profile_release).await;
    remove(ns).await;
    Side {
        create,
        release,
        cpu: [cpu_0, cpu_1, cpu_2],
        writes: [writes_0, writes_1, writes_2],
        created,
        start,
    }
}

/// The CafeDeployment's side, with its operator (counted in the CPU): the
/// side, the measured release, and with `details` the writes in the 10 s
/// after it. Its namespace is removed before it returns.
pub(crate) async fn cafedeployment_side(
    args: &Args,
    details: bool,
) -> (Side, Release, Option<String>) {
    let ns = TestNs::new("bench-cd").await;
    let client = ns.client.clone();
    let (mut op, port) = operator(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let traffic = json!({"components": [], "settleSeconds": 0});
    let cpu_0 = Cpu::read(op.pid());
    let writes_0 = Writes::read(&client).await;
    let (created, watch) = watch_stages(&ns, &CREATION_STAGES, creation_marks);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let profile_create = profile(args, "cafedeployment-create");
    let start = Instant::now();
    ns.create::<CafeDeployment>(cafedeployment(
        "bench", args, args.pods, args.group, traffic,
    ))
    .await;
    wait_cd(&cds, "bench", args.pods).await;
    let create = start.elapsed();
    watch.abort();
    profiled(profile_create).await;
    let cpu_1 = Cpu::read(op.pid());
    let writes_1 = Writes::read(&client).await;
    let profile_release = profile(args, "cafedeployment");
    let measured = release(&ns, port, args.pods, IMAGE_2).await;
    let cpu_2 = Cpu::read(op.pid());
    let writes_2 = Writes::read(&client).await;
    profiled(profile_release).await;
    // Idle: nothing to do, nothing written.
    let idle = if details {
        let before = requests(port).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = requests(port).await;
        let idle: u64 = writes_between(&before, &after);
        Some(format!(
            "\nwrites in the 10 s right after the release: {idle} ({})",
            writes_by_kind(&before, &after)
        ))
    } else {
        None
    };
    op.stop();
    remove(ns).await;
    let side = Side {
        create,
        release: measured.took,
        cpu: [cpu_0, cpu_1, cpu_2],
        writes: [writes_0, writes_1, writes_2],
        created,
        start,
    };
    (side, measured, idle)
}

/// Which side of part (a) create-release went first.
pub(crate) fn first_side(cd_first: bool) -> &'static str {
    if cd_first {
        "CafeDeployment"
    } else {
        "Deployment"
    }
}

/// (a) create-release and (c) api-requests: create and release `pods` pods, the Deployment then the
/// CafeDeployment, or the other way round with `cd_first` (a cluster that
/// served runs before answers more slowly: alternating the order keeps that
/// from favouring one side); the detailed tables only with `details`.
pub(crate) async fn create_release(
    args: &Args,
    report: &mut Report,
    details: bool,
    cd_first: bool,
) -> Run {
    report.line(format!(
        "\n## {}: {} pods, {} cells, groups of {}: CafeDeployment vs Deployment ({} first)\n",
        Part::CreateRelease,
        args.pods,
        args.cells,
        args.group,
        first_side(cd_first)
    ));
    let (deploy, (cd, measured, idle)) = if cd_first {
        let cd = cafedeployment_side(args, details).await;
        (deployment_side(args).await, cd)
    } else {
        let deploy = deployment_side(args).await;
        (deploy, cafedeployment_side(args, details).await)
    };
    let run = Run {
        cd_create: cd.create,
        deploy_create: deploy.create,
        cd_release: cd.release,
        deploy_release: deploy.release,
        cd_first,
    };
    let (create_ratio, release_ratio) = run.ratios();
    report.line("| | CafeDeployment | Deployment | ratio |");
    report.line("|---|---:|---:|---:|");
    report.line(format!(
        "| create from zero -> all ready | {:.1} s | {:.1} s | **{create_ratio:.2}x** |",
        cd.create.as_secs_f64(),
        deploy.create.as_secs_f64(),
    ));
    report.line(format!(
        "| new image -> all ready | {:.1} s | {:.1} s | **{release_ratio:.2}x** |",
        cd.release.as_secs_f64(),
        deploy.release.as_secs_f64(),
    ));
    if !details {
        return run;
    }
    report_cpu(
        report,
        &[
            ("create, CafeDeployment", &cd.cpu[1].since(&cd.cpu[0])),
            ("create, Deployment", &deploy.cpu[1].since(&deploy.cpu[0])),
            ("release, CafeDeployment", &cd.cpu[2].since(&cd.cpu[1])),
            ("release, Deployment", &deploy.cpu[2].since(&deploy.cpu[1])),
        ],
    );
    report_writes(
        report,
        args.pods,
        &[
            ("create, CafeDeployment", &cd.writes[1].since(&cd.writes[0])),
            (
                "create, Deployment",
                &deploy.writes[1].since(&deploy.writes[0]),
            ),
            (
                "release, CafeDeployment",
                &cd.writes[2].since(&cd.writes[1]),
            ),
            (
                "release, Deployment",
                &deploy.writes[2].since(&deploy.writes[1]),
            ),
        ],
    );
    for (title, side) in [
        ("where the CafeDeployment's creation went", &cd),
        ("where the Deployment's creation went", &deploy),
    ] {
        if let Ok(st) = side.created.lock() {
            report_stages(report, title, &st, side.start);
        }
    }
    measured.report(
        report,
        args,
        &format!(
            "## {}: operator API requests per in-place-updated pod (no traffic component)",
            Part::ApiRequests
        ),
    );
    if let Some(idle) = idle {
        report.line(idle);
    }
    run
}
