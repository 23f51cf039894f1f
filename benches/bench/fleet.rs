//! (d) fleet: a fleet of CafeDeployments: the operator's memory, its writes while
//! nothing changes, and the time to release all of them at once next to a
//! fleet of Deployments of the same size and budget released at the same
//! moment; and a person's `kubectl cafe console` watching all of it.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use cafe_operator::api::CafeDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{ListParams, PatchParams};
use serde_json::json;

use crate::support::cluster::{
    cafedeployment, cd_done, deployment_done, deployment_named, operator, remove, set_image,
    wait_until,
};
use crate::support::console::ConsoleProbe;
use crate::support::metrics::{requests, rss_kib, writes_between, writes_by_kind};
use crate::support::namespace::TestNs;
use crate::{Args, IMAGE_1, IMAGE_2, NODE_LABEL, Part, Report, WAIT};

/// How many of `list` are done: all their pods ready on the current template.
fn count_done<K>(list: &[K], done: impl Fn(&K) -> bool) -> usize {
    list.iter().filter(|o| done(o)).count()
}

/// (d) fleet: a fleet of CafeDeployments: memory, quiet writes, a mass release.
pub(crate) async fn fleet(args: &Args, report: &mut Report) {
    let total = args.fleet * args.fleet_pods;
    report.line(format!(
        "\n## {}: {} CafeDeployments x {} pods = {total} pods\n",
        Part::Fleet,
        args.fleet,
        args.fleet_pods
    ));
    let ns = TestNs::new("bench-fleet").await;
    // The Deployments' own namespace: the operator watches only its own.
    let deploy_ns = TestNs::new("bench-fleet-deploy").await;
    let (mut op, port) = operator(&ns.name);
    let pid = op.pid().expect("operator pid");
    let cds: Api<CafeDeployment> = ns.api();
    let deployments: Api<Deployment> = deploy_ns.api();
    let group = (args.fleet_pods / 4).max(1);
    let start = Instant::now();
    for i in 0..args.fleet {
        let traffic = json!({"components": [], "settleSeconds": 0});
        let body = cafedeployment(&format!("fleet-{i}"), args, args.fleet_pods, group, traffic);
        ns.create::<CafeDeployment>(body).await;
        // The same budget per object: one group out at once, none surged.
        let name = format!("fleet-deploy-{i}");
        let template = json!({"metadata": {"labels": {"app": name}},
                              "spec": {"nodeSelector": {NODE_LABEL: "true"},
                                       "containers": [{"name": "app", "image": IMAGE_1}]}});
        deploy_ns
            .create::<Deployment>(deployment_named(&name, args.fleet_pods, group, template))
            .await;
    }
    let (n, per) = (args.fleet, args.fleet_pods);
    let cds_done = || async {
        let list = cds.list(&ListParams::default()).await.ok()?;
        (count_done(&list.items, |c| cd_done(c, per)) == n).then_some(())
    };
    let deployments_done = || async {
        let list = deployments.list(&ListParams::default()).await.ok()?;
        (count_done(&list.items, |d| deployment_done(d, per)) == n).then_some(())
    };
    wait_until("the fleet to be ready", WAIT * 2, cds_done).await;
    let created = start.elapsed();
    wait_until("the Deployments to be ready", WAIT * 2, deployments_done).await;
    // A person opens the console on the fleet, a page connected to it.
    let console_started = Instant::now();
    let console = ConsoleProbe::start(&ns.name).await;
    let first_view = console.wait_shown(args.fleet, console_started).await;
    // Let the watch caches and allocator settle before reading memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = rss_kib(pid, "VmRSS");
    let console_rss = console.rss_mib("VmRSS");
    let before = requests(port).await;
    let (console_cpu, console_events) = (console.cpu_seconds(), console.events.load(Relaxed));
    tokio::time::sleep(Duration::from_secs(args.quiet_seconds)).await;
    let console_idle = (console.cpu_seconds() - console_cpu) / args.quiet_seconds as f64;
    let idle_events = console.events.load(Relaxed) - console_events;
    let after = requests(port).await;
    let quiet = writes_between(&before, &after);
    let rss_quiet = rss_kib(pid, "VmRSS");
    let console_cpu = console.cpu_seconds();
    let console_events = console.events.load(Relaxed);
    // Both fleets released at the same moment: each CafeDeployment's patch
    // next to its Deployment's, which goes first alternating.
    let (pp, release) = (PatchParams::default(), set_image(IMAGE_2));
    let start = Instant::now();
    for i in 0..args.fleet {
        let names = (format!("fleet-{i}"), format!("fleet-deploy-{i}"));
        let cd = cds.patch(&names.0, &pp, &release);
        let deployment = deployments.patch(&names.1, &pp, &release);
        if i % 2 == 0 {
            cd.await.expect("patch a fleet CafeDeployment");
            deployment.await.expect("patch a fleet Deployment");
        } else {
            deployment.await.expect("patch a fleet Deployment");
            cd.await.expect("patch a fleet CafeDeployment");
        }
    }
    // Each side's time: when the last of its objects was done.
    let deadline = start + Duration::from_secs(WAIT * 2);
    let (mut cd_took, mut deploy_took) = (None, None);
    while cd_took.is_none() || deploy_took.is_none() {
        if cd_took.is_none() && cds_done().await.is_some() {
            cd_took = Some(start.elapsed());
        }
        if deploy_took.is_none() && deployments_done().await.is_some() {
            deploy_took = Some(start.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {}s waiting for the fleets' release",
            WAIT * 2
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (released, deploy_released) =
        (cd_took.unwrap_or_default(), deploy_took.unwrap_or_default());
    let console_busy = (console.cpu_seconds() - console_cpu) / released.as_secs_f64();
    let release_events = console.events.load(Relaxed) - console_events;
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
        "| {} Deployments x {} pods (maxSurge 0, maxUnavailable {group}) released at the same moment | {:.1} s |",
        args.fleet,
        args.fleet_pods,
        deploy_released.as_secs_f64()
    ));
    report.line(format!(
        "| release: CafeDeployments / Deployments | **{:.2}x** |",
        released.as_secs_f64() / deploy_released.as_secs_f64().max(1e-9)
    ));
    report.line(format!(
        "| writes per pod in that release | {:.2} |",
        writes_between(&after, &after_release) as f64 / total as f64
    ));
    report.line(format!(
        "| operator peak RSS (VmHWM) | {:.0} MiB |",
        peak as f64 / 1024.0
    ));
    report.line(format!(
        "\n`kubectl cafe console -n {}` on these {} CafeDeployments and {total} pods, one page connected:\n",
        ns.name, args.fleet
    ));
    report.line("| console | |");
    report.line("|---|---:|");
    report.line(format!(
        "| start -> the page shows all {} releases | {:.1} s |",
        args.fleet,
        first_view.as_secs_f64()
    ));
    report.line(format!("| RSS, all shown | **{console_rss:.0} MiB** |"));
    report.line(format!(
        "| CPU idle ({} s, {idle_events} events sent) | **{:.2} % of a core** |",
        args.quiet_seconds,
        console_idle * 100.0
    ));
    report.line(format!(
        "| CPU during the release of all ({release_events} events sent) | {:.1} % of a core |",
        console_busy * 100.0
    ));
    report.line(format!(
        "| peak RSS (VmHWM) | {:.0} MiB |",
        console.rss_mib("VmHWM")
    ));
    drop(console);
    op.stop();
    remove(ns).await;
    remove(deploy_ns).await;
}
