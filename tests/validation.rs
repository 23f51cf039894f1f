//! The CRDs' CEL rules, evaluated without a cluster: every invalid manifest
//! whose rule is CEL is refused with its expected message, and every example
//! passes. (The e2e suite sends the same corpus to a real API server.)

mod corpus;

use cafe_operator::api::crds;
use kube::core::cel::Validator;
use serde_json::Value;

fn schema_for(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    serde_json::to_value(schema).expect("schema to JSON")
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().expect("every manifest has a kind")
}

#[test]
fn every_invalid_manifest_checked_by_cel_is_refused_with_its_message() {
    let validator = Validator::new();
    let cases = corpus::invalid_cases();
    assert!(cases.len() >= 25, "the corpus has {} cases", cases.len());
    let mut checked = 0;
    for case in cases.iter().filter(|c| c.checked_by == "cel") {
        let (old, new) = match case.documents.as_slice() {
            [new] => (None, new),
            [old, new] => (Some(old), new),
            _ => panic!("{}: one or two documents", case.name),
        };
        let schema = schema_for(kind(new));
        // The message after the API server's "<field>: Invalid value: " prefix.
        let message = case
            .expect
            .split_once("Invalid value: ")
            .map_or(case.expect.as_str(), |(_, m)| m);
        match validator.validate(&schema, new, old) {
            Ok(()) => panic!("{}: accepted, expected: {}", case.name, case.expect),
            Err(errors) => assert!(
                errors.iter().any(|e| e.message.contains(message)),
                "{}: expected a message containing {message:?}, got: {:?}",
                case.name,
                errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            ),
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} CEL cases");
}

#[test]
fn every_example_passes_the_cel_rules() {
    let validator = Validator::new();
    let examples = corpus::examples();
    assert!(!examples.is_empty());
    for (file, doc) in examples {
        if doc["apiVersion"].as_str() != Some("cafe.sofastack.io/v1alpha1") {
            continue;
        }
        let schema = schema_for(kind(&doc));
        if let Err(errors) = validator.validate(&schema, &doc, None) {
            panic!(
                "{file}: {:?}",
                errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn committed_crds_are_fresh() {
    let generated = cafe_operator::api::crds_yaml().expect("render CRDs");
    for path in [
        "crds/cafe-operator.yaml",
        "charts/cafe-operator/crds/cafe-operator.yaml",
    ] {
        let committed = std::fs::read_to_string(corpus::repo().join(path)).unwrap_or_default();
        assert!(
            committed == generated,
            "{path} is stale: run `make crds` and commit the result"
        );
    }
}

#[test]
fn the_demos_analysis_patch_makes_a_valid_cafedeployment() {
    let demo = corpus::examples()
        .into_iter()
        .find(|(file, doc)| file == "demo.yaml" && kind(doc) == "CafeDeployment")
        .map(|(_, doc)| doc)
        .expect("examples/demo.yaml has a CafeDeployment");
    let text = std::fs::read_to_string(corpus::repo().join("examples/patches/demo-analysis.yaml"))
        .expect("the patch");
    let patch = corpus::documents(&text).remove(0);
    let mut patched = demo;
    json_patch::merge(&mut patched, &patch);
    let schema = schema_for("CafeDeployment");
    if let Err(errors) = Validator::new().validate(&schema, &patched, None) {
        panic!(
            "{:?}",
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        );
    }
    let cd: cafe_operator::api::CafeDeployment =
        serde_json::from_value(patched).expect("a CafeDeployment");
    let analysis = cd.spec.strategy.analysis.expect("the analysis");
    for q in &analysis.queries {
        cafe_operator::release::analysis::check_conditions(q).expect("CEL conditions");
    }
}
