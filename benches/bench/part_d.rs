//! (d): a fleet of CafeDeployments: the operator's memory, its writes while
//! nothing changes, and the time to release all of them at once.

use std::time::{Duration, Instant};

use cafe_operator::api::CafeDeployment;
use kube::Api;
use kube::api::{ListParams, PatchParams};
use serde_json::json;

use crate::cluster::{cafedeployment, cd_done, operator, remove, set_image, wait_until};
use crate::metrics::{requests, rss_kib, writes_between, writes_by_kind};
use crate::support::TestNs;
use crate::{Args, IMAGE_2, Report, WAIT};

/// (d): a fleet of CafeDeployments: memory, quiet writes, a mass release.
pub(crate) async fn part_d(args: &Args, report: &mut Report) {
    let total = args.fleet * args.fleet_pods;
    report.line(format!(
        "\n## (d) {} CafeDeployments x {} pods = {total} pods\n",
        args.fleet, args.fleet_pods
    ));
    let ns = TestNs::new("bench-fleet").await;
    let (mut op, port) = operator(&ns.name);
    let pid = op.pid().expect("operator pid");
    let cds: Api<CafeDeployment> = ns.api();
    let group = (args.fleet_pods / 4).max(1);
    let start = Instant::now();
    for i in 0..args.fleet {
        let traffic = json!({"components": [], "settleSeconds": 0});
        let body = cafedeployment(&format!("fleet-{i}"), args, args.fleet_pods, group, traffic);
        ns.create::<CafeDeployment>(body).await;
    }
    let all_done = || async {
        let list = cds.list(&ListParams::default()).await.ok()?;
        let done = list
            .items
            .iter()
            .filter(|c| cd_done(c, args.fleet_pods))
            .count();
        (done == args.fleet).then_some(())
    };
    wait_until("the fleet to be ready", WAIT * 2, all_done).await;
    let created = start.elapsed();
    // Let the watch caches and allocator settle before reading memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = rss_kib(pid, "VmRSS");
    let before = requests(port).await;
    tokio::time::sleep(Duration::from_secs(args.quiet_seconds)).await;
    let after = requests(port).await;
    let quiet = writes_between(&before, &after);
    let rss_quiet = rss_kib(pid, "VmRSS");
    let start = Instant::now();
    for i in 0..args.fleet {
        cds.patch(
            &format!("fleet-{i}"),
            &PatchParams::default(),
            &set_image(IMAGE_2),
        )
        .await
        .expect("patch a fleet CafeDeployment");
    }
    wait_until("the fleet's release", WAIT * 2, all_done).await;
    let released = start.elapsed();
    let peak = rss_kib(pid, "VmHWM");
    let after_release = requests(port).await;
    report.line("| | |");
    report.line("|---|---:|");
    report.line(format!(
        "| create all -> all ready | {:.1} s |",
        created.as_secs_f64()
    ));
    report.line(format!(
        "| operator RSS once all are ready | **{:.0} MiB** |",
        rss as f64 / 1024.0
    ));
    report.line(format!(
        "| operator RSS after {} s quiet | {:.0} MiB |",
        args.quiet_seconds,
        rss_quiet as f64 / 1024.0
    ));
    report.line(format!(
        "| API writes during {} s quiet | **{quiet}** {} |",
        args.quiet_seconds,
        writes_by_kind(&before, &after)
    ));
    report.line(format!(
        "| release all at once (groups of {group}) -> all ready | **{:.1} s** |",
        released.as_secs_f64()
    ));
    report.line(format!(
        "| writes per pod in that release | {:.2} |",
        writes_between(&after, &after_release) as f64 / total as f64
    ));
    report.line(format!(
        "| operator peak RSS (VmHWM) | {:.0} MiB |",
        peak as f64 / 1024.0
    ));
    op.stop();
    remove(ns).await;
}
