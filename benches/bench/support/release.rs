//! A measured release of the CafeDeployment `bench`, shared by the parts
//! that release it on the simulated nodes (create-release, service-release)
//! and on the real ones (real-containers).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cafe_operator::api::CafeDeployment;
use kube::Api;
use kube::api::PatchParams;

use crate::support::cluster::{set_image, wait_cd};
use crate::support::metrics::{operator_metrics, per_pod, reconciles_in, requests_in};
use crate::support::namespace::TestNs;
use crate::support::stages::{
    RELEASE_STAGES, Stages, release_marks, report_stages, report_window, watch_stages,
};
use crate::{Args, Part, Report};

/// A measured release of the CafeDeployment `bench`: how long it took,
/// where each pod's time went, and the operator's requests before and after.
pub(crate) struct Release {
    pub(crate) took: Duration,
    pub(crate) start: Instant,
    pub(crate) stages: Arc<Mutex<Stages>>,
    pub(crate) before: BTreeMap<(String, String), u64>,
    pub(crate) after: BTreeMap<(String, String), u64>,
    /// The operator's reconciles during the release, by controller: (count, seconds).
    pub(crate) reconciles: BTreeMap<String, (f64, f64)>,
}

/// Releases `to` to the CafeDeployment `bench` of `pods` pods in `ns`, its
/// operator's metrics on `port`.
pub(crate) async fn release(ns: &TestNs, port: u16, pods: usize, to: &str) -> Release {
    let cds: Api<CafeDeployment> = ns.api();
    let metrics = operator_metrics(port).await;
    let (before, reconciled) = (requests_in(&metrics), reconciles_in(&metrics));
    let target = to.to_string();
    let (stages, task) = watch_stages(ns, &RELEASE_STAGES, move |p| release_marks(p, &target));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    cds.patch("bench", &PatchParams::default(), &set_image(to))
        .await
        .expect("patch the CafeDeployment");
    let took = wait_cd(&cds, "bench", pods).await;
    let metrics = operator_metrics(port).await;
    let (after, mut reconciles) = (requests_in(&metrics), reconciles_in(&metrics));
    for (controller, (n, secs)) in &mut reconciles {
        let (n0, secs0) = reconciled.get(controller).copied().unwrap_or_default();
        *n -= n0;
        *secs -= secs0;
    }
    task.abort();
    Release {
        took,
        start,
        stages,
        before,
        after,
        reconciles,
    }
}

impl Release {
    /// Where each pod's time went and, with part (c) api-requests, the requests per pod.
    pub(crate) fn report(&self, report: &mut Report, args: &Args, requests_title: &str) {
        if let Ok(st) = self.stages.lock() {
            report_stages(report, "where the release's time went", &st, self.start);
            report_window(report, &st, args.group);
        }
        let took = self.took.as_secs_f64();
        for (controller, (n, secs)) in &self.reconciles {
            report.line(format!(
                "\n{controller} reconciles: {n:.0} ({:.1} a second), {:.0} ms each on average, \
                 {:.0}% of the release's time summed over its concurrent reconciles",
                n / took,
                1000.0 * secs / n.max(1.0),
                100.0 * secs / took
            ));
        }
        if args.parts.contains(&Part::ApiRequests) {
            per_pod(report, requests_title, &self.before, &self.after, args.pods);
        }
    }
}
