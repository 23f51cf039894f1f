//! The analysis's I/O: a group's pods named for its queries, the due
//! measurement taken against Prometheus and kept in the release record, and
//! the pause an analysis verdict asks for.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;
use tracing::info;

use super::analysis as gate;
use super::build::REVISION_ANNOTATION;
use super::context::{Context, event_type};
use super::model::Error;
use super::revisions::patch_spec;
use crate::api::names::{CELL_LABEL, REVISION_LABEL};
use crate::api::{AnalysisPhase, CafeDeployment, CafeDeploymentStatus, InPlaceSet};
use crate::inplaceset::revision;
use crate::release::analysis::{self as verdicts, Facts};
use crate::traffic::gate as traffic_gate;

/// The pods of the group the analysis measures: on the update revision, put
/// in traffic since the group opened (all of the revision's, if that time is
/// not on record), with their cells.
pub(super) fn group_facts(
    cd: &CafeDeployment,
    ctx: &Context,
    sets: &[Arc<InPlaceSet>],
    update: &str,
    group: usize,
) -> Facts {
    let ns = cd.namespace().unwrap_or_default();
    let since = cd
        .status
        .as_ref()
        .and_then(|s| s.release.as_ref())
        .and_then(|r| r.opened_at.as_ref())
        .map(|t| t.0.as_second());
    let mut pods = Vec::new();
    let mut cells = std::collections::BTreeSet::new();
    let mut pod_revisions = std::collections::BTreeSet::new();
    for set in sets {
        // Pods carry their set's revision (its template with the cell's
        // labels), so the update's pods are those on the revision of the
        // template of a set that carries the update.
        if set
            .annotations()
            .get(REVISION_ANNOTATION)
            .map(String::as_str)
            != Some(update)
        {
            continue;
        }
        let set_revision = revision::revision(&set.spec.template.spec());
        pod_revisions.insert(set_revision.clone());
        for pod in ctx
            .pods_by_set
            .owned(&ctx.pods, &ns, &set.uid().unwrap_or_default())
        {
            if pod.labels().get(REVISION_LABEL) != Some(set_revision.as_str())
                || pod.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            // In traffic since the group opened (a gate without a time
            // reads 0: counted, as before the time was recorded).
            let gate = traffic_gate::read(&pod);
            let released = gate.open == Some(true)
                && (gate.since == 0 || since.is_none_or(|since| gate.since >= since));
            if released {
                pods.push(pod.name_any());
                if let Some(cell) = pod.labels().get(CELL_LABEL) {
                    cells.insert(cell.to_string());
                }
            }
        }
    }
    pods.sort();
    Facts {
        namespace: ns,
        name: cd.name_any(),
        revision: update.to_string(),
        pod_revisions: pod_revisions.into_iter().collect(),
        group,
        cells: cells.into_iter().collect(),
        pods,
    }
}

/// Takes the measurement of the analysis of `group` that the decision found
/// due, and adds it to the record in `status` (the decision's), which the
/// next decision judges.
pub(super) async fn measure(
    cd: &CafeDeployment,
    ctx: &Context,
    sets: &[Arc<InPlaceSet>],
    (update, group): (&str, usize),
    now: &Time,
    status: &mut CafeDeploymentStatus,
) {
    let Some(spec) = cd.spec.strategy.analysis.as_ref() else {
        return;
    };
    let Some(release) = status.release.as_mut() else {
        return;
    };
    let Some(record) = gate::of(release.analysis.as_ref(), update, group) else {
        return;
    };
    let facts = group_facts(cd, ctx, sets, update, group);
    let timeout = Duration::from_secs(
        u64::try_from(spec.prometheus.timeout_seconds)
            .unwrap_or(10)
            .clamp(1, 30),
    );
    let measurements = futures::future::join_all(spec.queries.iter().map(|q| {
        let promql = verdicts::fill(&q.query, &facts);
        async move {
            let answer = match &ctx.prometheus {
                Ok(p) => p
                    .query(&spec.prometheus.address, &promql, timeout)
                    .await
                    .and_then(|body| verdicts::parse_answer(&body)),
                Err(e) => Err(e.clone()),
            };
            verdicts::judge(q, answer, now)
        }
    }))
    .await;
    for m in &measurements {
        ctx.telemetry.metrics.analysis_measured(m.phase);
        info!(
            cafedeployment = %cd.name_any(), query = %m.query, phase = ?m.phase,
            value = %m.value, "{}", m.message
        );
    }
    let next = verdicts::record(spec, record, measurements);
    if next.phase != AnalysisPhase::Running {
        ctx.telemetry.metrics.analysis_concluded(next.phase);
        let reason = format!("Analysis{}", next.phase.as_str());
        let warning = next.phase != AnalysisPhase::Successful;
        info!(cafedeployment = %cd.name_any(), reason = %reason, "{}", next.summary());
        ctx.event_as(
            cd,
            event_type(warning),
            &reason,
            &next.event_action(),
            next.summary(),
        )
        .await;
    }
    release.analysis = Some(next);
}

/// The pause an analysis verdict asked for, once its record (with the
/// action taken) is written.
pub(super) async fn pause(cd: &CafeDeployment, ctx: &Context) -> Result<Action, Error> {
    ctx.event(
        cd,
        EventType::Warning,
        "PausedByAnalysis",
        "the analysis paused the release (spec.strategy.pause: true)".to_string(),
    )
    .await;
    patch_spec(
        cd,
        ctx,
        json!([{"op": "add", "path": "/spec/strategy/pause", "value": true}]),
    )
    .await
}
