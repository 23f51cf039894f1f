//! The API server itself refuses every invalid manifest with a message that
//! names the field and says what to change, and accepts every example.

use kube::api::{DynamicObject, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::Value;

use crate::corpus;
use crate::support::namespace::TestNs;

fn api_for(client: &Client, ns: &str, doc: &Value) -> Api<DynamicObject> {
    let api_version = doc["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = doc["kind"].as_str().expect("kind");
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let plural = match kind {
        "CafeDeployment" => "cafedeployments".to_string(),
        "InPlaceSet" => "inplacesets".to_string(),
        other => format!("{}s", other.to_lowercase()),
    };
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
    match kind {
        // Cluster-scoped: registered in the host, not in a namespace (and a
        // namespace an example creates).
        "MemberCluster" | "ReleaseFreeze" | "Namespace" => Api::all_with(client.clone(), &resource),
        _ => Api::namespaced_with(client.clone(), ns, &resource),
    }
}

/// The object to send: in the test's namespace (an example may name its own).
fn object(doc: &Value) -> DynamicObject {
    let mut doc = doc.clone();
    if let Some(meta) = doc["metadata"].as_object_mut() {
        meta.remove("namespace");
    }
    serde_json::from_value(doc).expect("a Kubernetes object")
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn the_api_server_refuses_every_invalid_manifest_with_its_message() {
    let ns = TestNs::new("invalid").await;
    let cases = corpus::invalid_cases();
    assert!(cases.len() >= 25, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // Each case gets its own object name, so update cases do not collide.
        let name = format!("case-{i}");
        let docs: Vec<Value> = case
            .documents
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d["metadata"]["name"] = Value::from(name.clone());
                d
            })
            .collect();
        let api = api_for(&ns.client, &ns.name, &docs[0]);
        let result = match docs.as_slice() {
            [new] => api
                .create(&PostParams::default(), &object(new))
                .await
                .map(|_| ()),
            [old, new] => {
                api.create(&PostParams::default(), &object(old))
                    .await
                    .unwrap_or_else(|e| panic!("{}: the original must be valid: {e}", case.name));
                let patch = kube::api::Patch::Merge(new.clone());
                api.patch(&name, &PatchParams::default(), &patch)
                    .await
                    .map(|_| ())
            }
            _ => panic!("{}: one or two documents", case.name),
        };
        match result {
            Ok(()) => failures.push(format!(
                "{}: accepted, expected the {} rule to refuse it with: {}",
                case.name, case.checked_by, case.expect
            )),
            Err(kube::Error::Api(status)) => {
                if !status.message.contains(&case.expect) {
                    failures.push(format!(
                        "{}:\n    expected: {}\n    got:      {}",
                        case.name, case.expect, status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error {e}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn every_example_is_accepted_by_server_side_dry_run() {
    let ns = TestNs::new("examples").await;
    let examples = corpus::examples();
    assert!(!examples.is_empty());
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for (file, doc) in examples {
        let api = api_for(&ns.client, &ns.name, &doc);
        if let Err(e) = api.create(&dry_run, &object(&doc)).await {
            panic!(
                "{file}: {} {} refused: {e}",
                doc["kind"], doc["metadata"]["name"]
            );
        }
    }
}
