//! What a CafeDeployment's children should be: the cells, and each cell's
//! InPlaceSet. Pure: no client, so every rule is a unit test.

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::api::names::{CELL_LABEL, CELL_NODE_LABEL, ZONE_NODE_LABEL};
use crate::api::{
    CafeDeployment, InPlaceSet, InPlaceSetSpec, InPlaceSetStrategy, Topology, UnitType,
    template_patch,
};

/// The annotation on each InPlaceSet naming the CafeDeployment revision its
/// template carries.
pub const REVISION_ANNOTATION: &str = "cafe.sofastack.io/cafedeployment-revision";
/// The annotation on each InPlaceSet naming the CafeDeployment revision its
/// stable template carries.
pub const STABLE_REVISION_ANNOTATION: &str = "cafe.sofastack.io/cafedeployment-stable-revision";

/// What a cell's InPlaceSet is built from.
pub struct CellSet<'a> {
    pub cell: &'a str,
    pub replicas: usize,
    pub partition: usize,
    pub max_unavailable: usize,
    pub paused: bool,
    /// New pods only within `max_unavailable` (a creation).
    pub pace_creation: bool,
    /// The update template and its CafeDeployment revision name.
    pub update: (&'a PodTemplateSpec, &'a str),
    /// The stable template and its revision name, when there is one.
    pub stable: Option<(&'a PodTemplateSpec, &'a str)>,
}

/// The cells, in order. `unitType: None` is one unit, named by its single
/// value or "default".
pub fn cells(topology: &Topology) -> Vec<String> {
    match topology.unit_type {
        UnitType::None => vec![
            topology
                .values
                .first()
                .cloned()
                .unwrap_or_else(|| "default".to_string()),
        ],
        _ => topology.values.clone(),
    }
}

/// The node label that names a node's unit, or none for `unitType: None`.
pub fn unit_key(topology: &Topology) -> Option<String> {
    if let Some(key) = &topology.unit_key {
        return Some(key.clone());
    }
    match topology.unit_type {
        UnitType::Cell => Some(CELL_NODE_LABEL.to_string()),
        UnitType::Zone => Some(ZONE_NODE_LABEL.to_string()),
        UnitType::None => None,
    }
}

pub fn inplaceset_name(cd: &CafeDeployment, cell: &str) -> String {
    format!("{}-{}", cd.name_any(), cell)
}

/// A CafeDeployment template as a cell runs it: the cell label, and a
/// required node affinity to the cell's nodes.
pub fn cell_template(
    topology: &Topology,
    template: &PodTemplateSpec,
    cell: &str,
) -> PodTemplateSpec {
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(CELL_LABEL.to_string(), cell.to_string());
    if let Some(key) = unit_key(topology) {
        let pod_spec = template.spec.get_or_insert_with(Default::default);
        require_node_label(
            pod_spec.affinity.get_or_insert_with(Affinity::default),
            &key,
            cell,
        );
    }
    template
}

/// A count this module writes into a set's strategy (partition,
/// maxUnavailable: always an integer); `None` for a percentage, which a
/// CafeDeployment never writes there.
pub(super) fn written_count(value: &IntOrString) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(_) => None,
    }
}

/// A cell's InPlaceSet: the update and stable templates pinned to the cell,
/// `replicas` pods, `partition` of them kept on the stable revision, and the
/// cell's share of the unavailability budget. The CafeDeployment paces the
/// release through these, so the InPlaceSet may move its share at once.
pub fn inplaceset(cd: &CafeDeployment, cell: &CellSet) -> InPlaceSet {
    let spec = &cd.spec;
    let template = cell_template(&spec.topology, cell.update.0, cell.cell);
    // The stable template as a patch of the update's: the set carries the
    // template once, however large (a release must fit wherever the
    // CafeDeployment itself does).
    let stable_template_patch = cell
        .stable
        .map(|(t, _)| template_patch(&template, &cell_template(&spec.topology, t, cell.cell)));
    let (replicas, partition) = (cell.replicas, cell.partition);
    let cell_name = cell.cell;
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(CELL_LABEL.to_string(), cell_name.to_string());

    let mut set = InPlaceSet::new(
        &inplaceset_name(cd, cell_name),
        InPlaceSetSpec {
            replicas: i32::try_from(replicas).unwrap_or(i32::MAX),
            selector,
            template: template.into(),
            stable_template: None,
            stable_template_patch,
            min_ready_seconds: spec.strategy.min_ready_seconds,
            progress_deadline_seconds: spec.strategy.progress_deadline_seconds,
            strategy: InPlaceSetStrategy {
                partition: IntOrString::Int(i32::try_from(partition).unwrap_or(i32::MAX)),
                max_unavailable: IntOrString::Int(
                    i32::try_from(cell.max_unavailable).unwrap_or(i32::MAX),
                ),
                update_mode: spec.strategy.update_mode,
                paused: cell.paused,
                pace_creation: cell.pace_creation,
            },
            traffic: spec.traffic.clone(),
            pre_download: spec.strategy.pre_download.clone(),
        },
    );
    set.metadata.namespace = cd.namespace();
    set.metadata.labels = Some([(CELL_LABEL.to_string(), cell_name.to_string())].into());
    let mut annotations = std::collections::BTreeMap::from([(
        REVISION_ANNOTATION.to_string(),
        cell.update.1.to_string(),
    )]);
    if let Some((_, stable)) = cell.stable {
        annotations.insert(STABLE_REVISION_ANNOTATION.to_string(), stable.to_string());
    }
    set.metadata.annotations = Some(annotations);
    set.metadata.owner_references = cd.controller_owner_ref(&()).map(|o| vec![o]);
    set
}

/// Adds `key In [value]` to every required node selector term (or creates one),
/// keeping whatever affinity the user wrote.
fn require_node_label(affinity: &mut Affinity, key: &str, value: &str) {
    let requirement = NodeSelectorRequirement {
        key: key.to_string(),
        operator: "In".to_string(),
        values: Some(vec![value.to_string()]),
    };
    let node = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: Vec::new(),
        });
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_expressions
            .get_or_insert_with(Vec::new)
            .push(requirement.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cd(topology: serde_json::Value) -> CafeDeployment {
        serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "CafeDeployment",
            "metadata": {"name": "demo", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "replicas": 10,
                "selector": {"matchLabels": {"app": "demo"}},
                "template": {"metadata": {"labels": {"app": "demo"}},
                             "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
                "topology": topology
            }
        }))
        .expect("cd")
    }

    fn cell_set<'a>(
        d: &'a CafeDeployment,
        cell: &'a str,
        replicas: usize,
        partition: usize,
    ) -> CellSet<'a> {
        CellSet {
            cell,
            replicas,
            partition,
            max_unavailable: 1,
            paused: false,
            pace_creation: false,
            update: (&d.spec.template, "r2"),
            stable: Some((&d.spec.template, "r1")),
        }
    }

    #[test]
    fn a_cell_set_is_pinned_to_its_cell_and_selects_only_its_pods() {
        let d = cd(json!({"values": ["cell-a", "cell-b"]}));
        let set = inplaceset(&d, &cell_set(&d, "cell-b", 5, 4));
        assert_eq!(set.name_any(), "demo-cell-b");
        let labels = set.spec.selector.match_labels.clone().unwrap_or_default();
        assert_eq!(labels.get(CELL_LABEL).map(String::as_str), Some("cell-b"));
        let template_labels = set.spec.template.labels();
        assert!(
            labels
                .iter()
                .all(|(k, v)| template_labels.get(k) == Some(v))
        );
        let affinity = serde_json::to_value(set.spec.template.spec().spec).expect("spec");
        let expr = &affinity["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0];
        assert_eq!(expr["key"], CELL_NODE_LABEL);
        assert_eq!(expr["values"], json!(["cell-b"]));
        assert_eq!(set.spec.strategy.partition, IntOrString::Int(4));
        let stable = set
            .spec
            .resolved_stable_template()
            .expect("a patch that applies")
            .expect("the stable template");
        assert_eq!(
            stable,
            set.spec.template.spec(),
            "pinned to the cell like the update"
        );
        assert_eq!(set.owner_references()[0].uid, "u-1");
    }

    #[test]
    fn a_set_carries_a_large_template_once_and_its_stable_template_as_a_patch() {
        let mut d = cd(json!({"values": ["cell-a"]}));
        let big = "x".repeat(600_000);
        let mut stable = d.spec.template.clone();
        if let Some(c) = stable.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
                name: "BLOB".into(),
                value: Some(big),
                ..Default::default()
            }]);
        }
        let mut update = stable.clone();
        if let Some(c) = update.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            c.image = Some("nginx:1.26".into());
        }
        d.spec.template = update.clone();
        let set = inplaceset(
            &d,
            &CellSet {
                update: (&update, "demo-2"),
                stable: Some((&stable, "demo-1")),
                ..cell_set(&d, "cell-a", 5, 4)
            },
        );
        let size = serde_json::to_vec(&set).expect("set").len();
        assert!(
            size < 700_000,
            "{size} bytes: the template once, the stable one as a patch"
        );
        let resolved = set
            .spec
            .resolved_stable_template()
            .expect("applies")
            .expect("a stable template");
        assert_eq!(
            resolved,
            cell_template(&d.spec.topology, &stable, "cell-a"),
            "the patch gives back the stable template, pinned to the cell"
        );
    }

    #[test]
    fn zone_custom_key_and_none_topologies() {
        assert_eq!(
            unit_key(
                &cd(json!({"unitType": "Zone", "values": ["z"]}))
                    .spec
                    .topology
            )
            .as_deref(),
            Some(ZONE_NODE_LABEL)
        );
        assert_eq!(
            unit_key(
                &cd(json!({"unitKey": "example.com/rack", "values": ["r1"]}))
                    .spec
                    .topology
            )
            .as_deref(),
            Some("example.com/rack")
        );
        let none = cd(json!({"unitType": "None"}));
        assert_eq!(unit_key(&none.spec.topology), None);
        assert_eq!(cells(&none.spec.topology), vec!["default"]);
        let set = inplaceset(&none, &cell_set(&none, "default", 3, 0));
        assert!(
            set.spec
                .template
                .spec()
                .spec
                .and_then(|s| s.affinity)
                .is_none()
        );
    }
}
