//! Stage 2 of a CafeDeployment's reconcile: the spec, checked and resolved,
//! without a client. What the CRD's rules cannot check (pinned replicas that
//! do not fit the cells, a `strategy.batchSize` that does not resolve, a cell
//! that cannot be placed, an analysis condition that does not compile) ends
//! here: the decision then reads `Stalled=True` reason `InvalidSpec` with
//! these words, and nothing is changed until the spec is (a rollback a person
//! asks for still goes through: it may be what fixes the spec).

use super::build;
use crate::api::CafeDeployment;
use crate::api::count::resolve;
use crate::release::analysis::check_conditions;
use crate::topology::distribute;

/// A spec the decision can act on, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Valid {
    /// The cells, in `topology.values` order.
    pub cells: Vec<String>,
    /// `spec.replicas` over the cells (`topology.unitReplicas` pins honoured).
    pub distribution: Vec<(String, usize)>,
    /// `strategy.batchSize` resolved against `spec.replicas`, at least 1.
    pub batch: usize,
}

/// Why the spec cannot be acted on, in words that say what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

/// Checks and resolves `cd`'s spec. `misplaced`: why its cells cannot be
/// placed on the clusters (read with the member clusters), if they cannot.
pub fn validate(cd: &CafeDeployment, misplaced: Option<&str>) -> Result<Valid, Invalid> {
    let spec = &cd.spec;
    let replicas = usize::try_from(spec.replicas).unwrap_or(0);
    let cells = build::cells(&spec.topology);
    let distribution = distribute(replicas, &cells, &spec.topology.unit_replicas)
        .map_err(|e| Invalid(e.to_string()))?;
    let batch = resolve(&spec.strategy.batch_size, replicas, false)
        .map_err(|e| Invalid(format!("strategy.batchSize {e}")))?
        .max(1);
    if let Some(why) = misplaced {
        return Err(Invalid(why.to_string()));
    }
    if let Some(e) = spec
        .strategy
        .analysis
        .iter()
        .flat_map(|a| &a.queries)
        .find_map(|q| check_conditions(q).err())
    {
        return Err(Invalid(format!("strategy.{e}")));
    }
    Ok(Valid {
        cells,
        distribution,
        batch,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Ten pods over cell-a and cell-b in batches of 4; `patch` is merged
    /// into the spec.
    fn cd(patch: serde_json::Value) -> CafeDeployment {
        let mut spec = json!({
            "replicas": 10,
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {"metadata": {"labels": {"app": "demo"}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
            "topology": {"values": ["cell-a", "cell-b"]},
            "strategy": {"batchSize": 4}
        });
        json_patch::merge(&mut spec, &patch);
        serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "CafeDeployment",
            "metadata": {"name": "demo", "namespace": "shop"},
            "spec": spec
        }))
        .expect("cd")
    }

    fn why(cd: &CafeDeployment, misplaced: Option<&str>) -> String {
        match validate(cd, misplaced) {
            Err(Invalid(why)) => why,
            Ok(valid) => panic!("invalid, not {valid:?}"),
        }
    }

    /// `cd` is invalid in words that begin with `start` and hold `words`.
    fn says(cd: &CafeDeployment, misplaced: Option<&str>, start: &str, words: &str) {
        let why = why(cd, misplaced);
        assert!(why.starts_with(start) && why.contains(words), "{why}");
    }

    #[test]
    fn a_valid_spec_gives_its_cells_their_shares_and_the_batch() {
        let valid = validate(&cd(json!({})), None).expect("valid");
        assert_eq!(valid.cells, ["cell-a", "cell-b"]);
        assert_eq!(
            valid.distribution,
            [("cell-a".to_string(), 5), ("cell-b".to_string(), 5)]
        );
        assert_eq!(valid.batch, 4);
        let pinned = cd(json!({"topology": {"unitReplicas": {"cell-a": 7}},
                                "strategy": {"batchSize": "25%"}}));
        let valid = validate(&pinned, None).expect("valid");
        assert_eq!(
            valid.distribution,
            [("cell-a".to_string(), 7), ("cell-b".to_string(), 3)]
        );
        assert_eq!(valid.batch, 2, "25% of 10, rounded down");
        let none = validate(&cd(json!({"strategy": {"batchSize": 0}})), None).expect("valid");
        assert_eq!(none.batch, 1, "a batch is at least one pod");
    }

    #[test]
    fn pins_that_do_not_fit_the_cells_are_invalid() {
        let over = cd(json!({"topology": {"unitReplicas": {"cell-a": "70%", "cell-b": "70%"}}}));
        says(&over, None, "topology.unitReplicas", "spec.replicas is 10");
        let unknown = cd(json!({"topology": {"unitReplicas": {"cell-z": 1}}}));
        says(&unknown, None, "topology.unitReplicas", "cell-z");
    }

    #[test]
    fn a_batch_size_that_does_not_resolve_is_invalid_naming_the_field() {
        let bad = cd(json!({"strategy": {"batchSize": -1}}));
        says(&bad, None, "strategy.batchSize ", "-1");
    }

    #[test]
    fn a_cell_that_cannot_be_placed_is_invalid_in_the_placement_s_words() {
        let misplaced = "topology.values: cell cell-b is listed by MemberClusters dc-2 and dc-3";
        assert_eq!(why(&cd(json!({})), Some(misplaced)), misplaced);
    }

    #[test]
    fn an_analysis_condition_that_does_not_compile_is_invalid_naming_the_field() {
        let bad = cd(json!({"strategy": {"analysis": {
            "prometheus": {"address": "http://127.0.0.1:9090"},
            "queries": [{"name": "errors", "query": "x", "successCondition": "result <"}]
        }}}));
        says(&bad, None, "strategy.analysis", "successCondition");
    }

    #[test]
    fn the_first_rule_broken_is_the_one_said() {
        let both = cd(json!({"topology": {"unitReplicas": {"cell-z": 1}},
                             "strategy": {"batchSize": -1}}));
        says(&both, Some("misplaced"), "topology.unitReplicas", "cell-z");
        let batch = cd(json!({"strategy": {"batchSize": -1}}));
        says(&batch, Some("misplaced"), "strategy.batchSize", "");
    }
}
