//! Stage 2 of a set's reconcile: the spec, checked and resolved, without a
//! client. What the CRD's rules cannot check (a `stableTemplatePatch` that
//! does not apply to the template, a percentage that does not resolve) ends
//! here: the set then reads `Stalled=True` reason `InvalidSpec` with the
//! reason, and nothing is changed until the spec is.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::lifecycle::Timing;
use super::plan::SetSpec;
use crate::api::count::resolve;
use crate::api::{InPlaceSet, UpdateMode};

/// A spec the controller can act on.
pub struct Valid {
    /// The stable template, resolved (`stableTemplate`, or `stableTemplatePatch`
    /// applied to the template).
    pub stable: Option<PodTemplateSpec>,
    pub spec: SetSpec,
    pub timing: Timing,
}

/// Why the spec cannot be acted on, in words that say what to change.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

/// Checks and resolves `set`'s spec. `held_until`: no drained pod is changed
/// before this (epoch seconds; see `Timing::held_until`).
pub fn validate(set: &InPlaceSet, held_until: i64) -> Result<Valid, Invalid> {
    let stable = set.spec.resolved_stable_template().map_err(Invalid)?;
    let replicas = usize::try_from(set.spec.replicas).unwrap_or(0);
    let strategy = &set.spec.strategy;
    let partition = resolve(&strategy.partition, replicas, false)
        .map_err(|e| Invalid(format!("strategy.partition {e}")))?;
    let max_unavailable = resolve(&strategy.max_unavailable, replicas, true)
        .map_err(|e| Invalid(format!("strategy.maxUnavailable {e}")))?;
    let spec = SetSpec {
        replicas,
        partition,
        max_unavailable,
        paused: strategy.paused,
        pace_creation: strategy.pace_creation,
        recreate: strategy.update_mode == UpdateMode::ReCreate,
        min_ready_seconds: i64::from(set.spec.min_ready_seconds),
        disruptions_allowed: None,
    };
    let timing = Timing {
        drain_timeout_seconds: i64::from(set.spec.traffic.drain_timeout_seconds),
        settle_seconds: i64::from(set.spec.traffic.settle_seconds),
        held_until,
    };
    Ok(Valid {
        stable,
        spec,
        timing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InPlaceSetSpec;

    fn set(patch: serde_json::Value) -> InPlaceSet {
        let spec: InPlaceSetSpec = serde_json::from_value(serde_json::json!({
            "replicas": 2,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "app", "image": "app:2"}]}
            },
            "stableTemplatePatch": patch,
        }))
        .unwrap();
        InPlaceSet::new("a", spec)
    }

    #[test]
    fn a_stable_patch_that_applies_resolves_the_stable_template() {
        let valid = validate(
            &set(serde_json::json!([
                {"op": "replace", "path": "/spec/containers/0/image", "value": "app:1"}
            ])),
            0,
        )
        .unwrap();
        let stable = valid.stable.unwrap();
        let image = stable.spec.unwrap().containers[0].image.clone();
        assert_eq!(image.as_deref(), Some("app:1"));
        assert_eq!(valid.spec.replicas, 2);
    }

    #[test]
    fn a_stable_patch_that_does_not_apply_says_so() {
        let Err(Invalid(why)) = validate(
            &set(serde_json::json!([
                {"op": "replace", "path": "/spec/containers/5/image", "value": "app:1"}
            ])),
            0,
        ) else {
            panic!("a patch over a missing container must not validate");
        };
        assert!(
            why.contains("stableTemplatePatch does not apply to template"),
            "{why}"
        );
    }

    #[test]
    fn an_invalid_spec_stalls_the_set_and_keeps_its_counts() {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap(),
        );
        let previous = crate::api::InPlaceSetStatus {
            replicas: 2,
            ready_replicas: 2,
            ..Default::default()
        };
        let status = crate::inplaceset::status::invalid(&previous, Some(3), "the reason", &now);
        assert_eq!(status.replicas, 2);
        assert_eq!(status.ready_replicas, 2);
        assert_eq!(status.observed_generation, Some(3));
        let stalled = status
            .conditions
            .iter()
            .find(|c| c.type_ == crate::api::names::condition::STALLED)
            .unwrap();
        assert_eq!(stalled.status, "True");
        assert_eq!(stalled.reason, "InvalidSpec");
        assert!(
            stalled.message.contains("the reason"),
            "{}",
            stalled.message
        );
        // Computed again from what it wrote, it is the same (nothing more is written).
        let again = crate::inplaceset::status::invalid(&status, Some(3), "the reason", &now);
        assert_eq!(again, status);
    }
}
