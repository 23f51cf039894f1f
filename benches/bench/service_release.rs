//! (b) service-release: the release of part (a) create-release behind a Service, drained by the `service`
//! component and checked by the lossless checker.

use cafe_operator::api::CafeDeployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use serde_json::json;

use crate::support::cluster::{cafedeployment, operator, remove, wait_cd};
use crate::support::lossless;
use crate::support::namespace::TestNs;
use crate::support::release::release;
use crate::{Args, IMAGE_2, Part, Report};

/// (b) service-release: the same release behind a Service, drained by the `service` component.
pub(crate) async fn service_release(args: &Args, report: &mut Report) {
    report.line(format!(
        "\n## {}: the same release with the `service` component ({} pods behind a Service)\n",
        Part::ServiceRelease,
        args.pods
    ));
    let ns = TestNs::new("bench-svc").await;
    ns.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bench"},
        "spec": {"selector": {"app": "bench"}, "ports": [{"port": 80}]}
    }))
    .await;
    let (mut op, port) = operator(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let traffic = json!({"components": ["service"]});
    ns.create::<CafeDeployment>(cafedeployment(
        "bench", args, args.pods, args.group, traffic,
    ))
    .await;
    wait_cd(&cds, "bench", args.pods).await;
    let checker = lossless::Lossless::start(&ns, "bench").await;
    let measured = release(&ns, port, args.pods, IMAGE_2).await;
    let took = measured.took;
    let summary = checker.verify().await;
    report.line(format!(
        "new image -> all ready: **{:.1} s** (settleSeconds 3 per group); lossless: {} pods \
         changed in place, {} deleted, never a changed pod still an endpoint (fewest ready \
         endpoints seen: {} of {}, counted from the first slice listed)",
        took.as_secs_f64(),
        summary.changed,
        summary.deleted,
        summary.min_ready,
        args.pods
    ));
    assert_eq!(
        summary.changed, args.pods,
        "every pod changed in place once"
    );
    measured.report(
        report,
        args,
        &format!(
            "## {}: API requests per in-place-updated pod with the `service` component",
            Part::ApiRequests
        ),
    );
    op.stop();
    remove(ns).await;
}
