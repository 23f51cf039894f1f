//! `/metrics`: what the operator does (reconciles, API requests) and what it
//! sees (CafeDeployment phases and groups, pods per lifecycle state).
//!
//! Counters and histograms are updated as work happens. Gauges about objects
//! are computed from the controllers' caches at scrape time, so a deleted
//! CafeDeployment leaves no stale series behind and nothing is written per pod.
//! Labels are bounded: controller, verb, resource, outcome, phase and lifecycle
//! state are small fixed sets; objects are named by namespace and name only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::client::ApiCounters;
use crate::api::names::{TRAFFIC_GATE, gate_reason};
use crate::api::pod::Pod;
use crate::api::{AnalysisPhase, CafeDeployment, Phase};

type ControllerLabel = [(&'static str, &'static str); 1];
type PhaseLabel = [(&'static str, &'static str); 1];

/// The operator's metrics. Cloned handles share the same series.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Family<ControllerLabel, Counter>,
    errors: Family<ControllerLabel, Counter>,
    duration: Family<ControllerLabel, Histogram>,
    measurements: Family<PhaseLabel, Counter>,
    verdicts: Family<PhaseLabel, Counter>,
    observed: Arc<Observed>,
    registry: Arc<Registry>,
}

/// What the scrape-time collector reads.
#[derive(Default)]
struct Observed {
    api: ApiCounters,
    leader: AtomicBool,
    cafedeployments: Mutex<Vec<Store<CafeDeployment>>>,
    pods: Mutex<Vec<Store<Pod>>>,
    members: Mutex<Option<MemberSource>>,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observed")
    }
}

impl Metrics {
    pub fn new(api: ApiCounters) -> Self {
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let errors = Family::<ControllerLabel, Counter>::default();
        // 5 ms .. ~41 s: a reconcile is bounded by its 60 s timeout.
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let observed = Arc::new(Observed {
            api,
            ..Observed::default()
        });
        let mut registry = Registry::with_prefix("cafe");
        registry.register(
            "reconciles",
            "Reconciles run, per controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed (and are retried with backoff), per controller",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took, per controller",
            duration.clone(),
        );
        let measurements = Family::<PhaseLabel, Counter>::default();
        let verdicts = Family::<PhaseLabel, Counter>::default();
        registry.register(
            "analysis_measurements",
            "Metric analysis measurements taken, per outcome (Successful, Failed, \
             Inconclusive, Error)",
            measurements.clone(),
        );
        registry.register(
            "analysis_verdicts",
            "Metric analyses concluded, per verdict (Successful, Failed, Inconclusive, Error)",
            verdicts.clone(),
        );
        registry.register_collector(Box::new(observed.clone()));
        Self {
            reconciles,
            errors,
            duration,
            measurements,
            verdicts,
            observed,
            registry: Arc::new(registry),
        }
    }

    /// Runs one reconcile of `controller`, counting it, its failure and its duration.
    pub async fn measure<T, E>(
        &self,
        controller: &'static str,
        reconcile: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let label = [("controller", controller)];
        let start = Instant::now();
        tracing::trace!(controller, "reconcile started");
        let result = reconcile.await;
        tracing::trace!(controller, elapsed = ?start.elapsed(), "reconcile finished");
        self.reconciles.get_or_create(&label).inc();
        if result.is_err() {
            self.errors.get_or_create(&label).inc();
        }
        self.duration
            .get_or_create(&label)
            .observe(start.elapsed().as_secs_f64());
        result
    }

    /// Counts one analysis measurement by its outcome.
    pub fn analysis_measured(&self, phase: AnalysisPhase) {
        self.measurements
            .get_or_create(&[("phase", phase.as_str())])
            .inc();
    }

    /// Counts an analysis that reached its verdict.
    pub fn analysis_concluded(&self, verdict: AnalysisPhase) {
        self.verdicts
            .get_or_create(&[("verdict", verdict.as_str())])
            .inc();
    }

    pub fn observe_cafedeployments(&self, store: Store<CafeDeployment>) {
        if let Ok(mut stores) = self.observed.cafedeployments.lock() {
            stores.push(store);
        }
    }

    pub fn observe_pods(&self, store: Store<Pod>) {
        if let Ok(mut stores) = self.observed.pods.lock() {
            stores.push(store);
        }
    }

    /// Member clusters: reachability, silence and requests per member.
    pub fn observe_members(&self, members: MemberSource) {
        if let Ok(mut m) = self.observed.members.lock() {
            *m = Some(members);
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.observed.leader.store(leader, Ordering::Relaxed);
    }

    /// Every series in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Where a pod is in its lifecycle, as a bounded label: the traffic gate's
/// reason (`Serving`, `DrainingForUpdate`, `DrainingForDelete`), `Starting`
/// before the gate is first written, `Terminating` once deleted.
pub fn lifecycle_state(pod: &Pod) -> &'static str {
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating";
    }
    let reason = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == TRAFFIC_GATE))
        .and_then(|c| c.reason.as_deref());
    match reason {
        Some(gate_reason::SERVING) => "Serving",
        Some(gate_reason::DRAINING_FOR_UPDATE) => "DrainingForUpdate",
        Some(gate_reason::DRAINING_FOR_DELETE) => "DrainingForDelete",
        _ => "Starting",
    }
}

const LIFECYCLE_STATES: [&str; 5] = [
    "Starting",
    "Serving",
    "DrainingForUpdate",
    "DrainingForDelete",
    "Terminating",
];

impl Collector for Observed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_requests(&mut encoder)?;
        self.encode_leader(&mut encoder)?;
        self.encode_cafedeployments(&mut encoder)?;
        self.encode_pods(&mut encoder)?;
        self.encode_members(&mut encoder)
    }
}

/// What `/metrics` reads of one member cluster at scrape time.
pub struct MemberReading {
    pub name: String,
    /// It answers and its InPlaceSets are listed.
    pub reachable: bool,
    /// Seconds since it last answered (none: never).
    pub silence: Option<f64>,
    /// API requests made to it, by (verb, resource, outcome).
    pub requests: std::collections::BTreeMap<super::client::RequestKey, u64>,
}

/// Reads every member cluster (the registry, `crate::placement::members`).
pub type MemberSource = Arc<dyn Fn() -> Vec<MemberReading> + Send + Sync>;

impl Observed {
    /// The Kubernetes API requests made, by verb, resource and outcome.
    fn encode_requests(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let requests = self.api.snapshot();
        let mut m = encoder.encode_descriptor(
            "api_requests",
            "Kubernetes API requests made, by verb, resource and outcome",
            None,
            MetricType::Counter,
        )?;
        for ((verb, resource, outcome), n) in &requests {
            let labels = [
                ("verb", verb.as_str()),
                ("resource", resource.as_str()),
                ("outcome", *outcome),
            ];
            ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// Whether this replica leads.
    fn encode_leader(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let leader = i64::from(self.leader.load(Ordering::Relaxed));
        let m = encoder.encode_descriptor(
            "leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(leader).encode(m)?;
        Ok(())
    }

    /// Per CafeDeployment: its phase (1 for the current one, 0 for the others)
    /// and its release's groups completed and planned.
    fn encode_cafedeployments(
        &self,
        encoder: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let cds: Vec<Arc<CafeDeployment>> = self
            .cafedeployments
            .lock()
            .map(|s| s.iter().flat_map(Store::state).collect())
            .unwrap_or_default();
        let mut m = encoder.encode_descriptor(
            "cafedeployment_phase",
            "1 for the phase a CafeDeployment is in, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for cd in &cds {
            let (ns, name) = (cd.namespace().unwrap_or_default(), cd.name_any());
            let current = cd.status.as_ref().and_then(|s| s.phase);
            for phase in Phase::ALL {
                let label = format!("{phase:?}");
                let labels = [
                    ("namespace", ns.as_str()),
                    ("name", name.as_str()),
                    ("phase", label.as_str()),
                ];
                let value = i64::from(current == Some(phase));
                ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
            }
        }
        for (metric, help, pick) in [
            (
                "cafedeployment_release_group",
                "Groups of the current release completed",
                (|r: &crate::api::ReleaseStatus| r.group) as fn(&crate::api::ReleaseStatus) -> i32,
            ),
            (
                "cafedeployment_release_groups",
                "Groups in the current release's plan",
                |r: &crate::api::ReleaseStatus| r.groups,
            ),
        ] {
            let mut m = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for cd in &cds {
                let Some(release) = cd.status.as_ref().and_then(|s| s.release.as_ref()) else {
                    continue;
                };
                let (ns, name) = (cd.namespace().unwrap_or_default(), cd.name_any());
                let labels = [("namespace", ns.as_str()), ("name", name.as_str())];
                ConstGauge::new(i64::from(pick(release))).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// The pods managed, per lifecycle state.
    fn encode_pods(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut by_state: BTreeMap<&str, i64> = LIFECYCLE_STATES.iter().map(|s| (*s, 0)).collect();
        if let Ok(stores) = self.pods.lock() {
            for pod in stores.iter().flat_map(Store::state) {
                *by_state.entry(lifecycle_state(&pod)).or_default() += 1;
            }
        }
        let mut m = encoder.encode_descriptor(
            "pods",
            "Pods managed by the operator, per lifecycle state",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in by_state {
            ConstGauge::new(n).encode(m.encode_family(&[("lifecycle_state", state)])?)?;
        }
        Ok(())
    }

    /// Per member cluster: whether it is reachable, how long since it last
    /// answered (a watch or probe; the lag of what the host knows of it),
    /// and the API requests made to it.
    fn encode_members(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let members = self
            .members
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|read| read()))
            .unwrap_or_default();
        let mut m = encoder.encode_descriptor(
            "member_reachable",
            "1 while a member cluster answers and its InPlaceSets are listed, else 0",
            None,
            MetricType::Gauge,
        )?;
        for member in &members {
            let value = i64::from(member.reachable);
            ConstGauge::new(value).encode(m.encode_family(&[("member", member.name.as_str())])?)?;
        }
        let mut m = encoder.encode_descriptor(
            "member_silence_seconds",
            "Seconds since a member cluster last answered (its watch or its probe)",
            None,
            MetricType::Gauge,
        )?;
        for member in &members {
            if let Some(s) = member.silence {
                ConstGauge::new(s).encode(m.encode_family(&[("member", member.name.as_str())])?)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "member_api_requests",
            "API requests made to a member cluster, by verb, resource and outcome",
            None,
            MetricType::Counter,
        )?;
        for member in &members {
            for ((verb, resource, outcome), n) in &member.requests {
                let labels = [
                    ("member", member.name.as_str()),
                    ("verb", verb.as_str()),
                    ("resource", resource.as_str()),
                    ("outcome", outcome),
                ];
                ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::{PodCondition, PodStatus};

    fn pod_with_gate(reason: Option<&str>) -> Pod {
        Pod::new(
            Default::default(),
            None,
            Some(PodStatus {
                conditions: reason.map(|r| {
                    vec![PodCondition {
                        type_: TRAFFIC_GATE.into(),
                        status: "False".into(),
                        reason: Some(r.to_string().into()),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        )
    }

    #[test]
    fn lifecycle_states_come_from_the_gate_reason() {
        assert_eq!(lifecycle_state(&pod_with_gate(None)), "Starting");
        assert_eq!(lifecycle_state(&pod_with_gate(Some("Serving"))), "Serving");
        assert_eq!(
            lifecycle_state(&pod_with_gate(Some("DrainingForUpdate"))),
            "DrainingForUpdate"
        );
        assert_eq!(
            lifecycle_state(&pod_with_gate(Some("SomethingElse"))),
            "Starting"
        );
        let mut gone = pod_with_gate(Some("DrainingForDelete"));
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert_eq!(lifecycle_state(&gone), "Terminating");
    }

    #[tokio::test]
    async fn the_text_format_names_every_family() {
        let metrics = Metrics::new(ApiCounters::default());
        metrics
            .measure("inplaceset", async { Ok::<_, ()>(()) })
            .await
            .ok();
        metrics
            .measure("inplaceset", async { Err::<(), _>(()) })
            .await
            .ok();
        let text = metrics.render();
        for needle in [
            "cafe_reconciles_total{controller=\"inplaceset\"} 2",
            "cafe_reconcile_errors_total{controller=\"inplaceset\"} 1",
            "cafe_reconcile_duration_seconds_count{controller=\"inplaceset\"} 2",
            "cafe_leader 0",
            "cafe_pods{lifecycle_state=\"Serving\"} 0",
            "# TYPE cafe_api_requests_total counter",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
