//! The member clusters dc-2 and dc-3 (`tests/cluster/members.sh`): their
//! admin clients and kubeconfigs, and their registration as MemberClusters.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::support::namespace::TestNs;

/// Runs `tests/cluster/members.sh` (the member clusters dc-2 and dc-3) and
/// returns its output; fails the caller with its error.
pub fn members_sh(args: &[&str]) -> String {
    cluster_script(
        "members.sh",
        args,
        "are the members up? tests/cluster/members.sh up",
    )
}

/// Runs `tests/cluster/<script>` with `args` and returns its output; fails
/// the caller with its error and `hint` (what to check).
pub fn cluster_script(script: &str, args: &[&str], hint: &str) -> String {
    let path = format!("{}/tests/cluster/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {path}: {e}"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({hint}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The admin kubeconfig of member `name` (dc-2, dc-3).
pub fn member_kubeconfig(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(".cluster-{name}/kubeconfig"))
}

/// An admin client for member `name`.
pub async fn member_client(name: &str) -> Client {
    let path = member_kubeconfig(name);
    let config = kube::config::Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "member {name} is not running ({e}): start the members with tests/cluster/members.sh up"
        )
    });
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("member config");
    Client::try_from(config).expect("member client")
}

/// Registers member `name` (running `cell`) for `ns`'s stories: the same
/// namespace in the member, a Secret in `ns` with a kubeconfig for the host's
/// least-privilege identity there, and the MemberCluster (replacing one left
/// by an earlier story; `spec` adds to its spec). Returns an admin client of
/// the member.
pub async fn register_member(
    ns: &TestNs,
    name: &str,
    cell: &str,
    spec: serde_json::Value,
) -> Client {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    let client = member_client(name).await;
    sweep_earlier_stories(&client, &ns.name).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let body: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns.name}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &body)
        .await
        .unwrap_or_else(|e| panic!("create namespace {} in {name}: {e}", ns.name));
    // As in the host (TestNs::new): a story starts once the namespace can
    // have pods. A member's controller manager can take most of a minute
    // to make it after the member's API server restarted.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    ns.wait(
        &format!("the default ServiceAccount in {name}"),
        120,
        || async { sas.get_opt("default").await.ok().flatten() },
    )
    .await;
    let secret_name = format!("kubeconfig-{name}");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": secret_name},
        "stringData": {"kubeconfig": members_sh(&["kubeconfig", name])}
    }))
    .expect("secret");
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("kubeconfig Secret");
    register(ns, name, cell, spec).await;
    client
}

/// Deletes what earlier stories left in a member when they failed before
/// their end: their InPlaceSets there, whose finalizer only their (stopped)
/// host operator would have taken off, and their namespaces. Such a set
/// keeps the member in use, and every later story would wait in vain for
/// the member's unregistration.
async fn sweep_earlier_stories(client: &Client, keep: &str) {
    use cafe_operator::api::InPlaceSet;
    use cafe_operator::api::names::MEMBER_SETS_FINALIZER;
    use kube::ResourceExt;
    let all: Api<InPlaceSet> = Api::all(client.clone());
    let Ok(sets) = all.list(&Default::default()).await else {
        return;
    };
    let mut left = std::collections::BTreeSet::new();
    for set in sets {
        let ns = set.namespace().unwrap_or_default();
        if !ns.starts_with("e2e-") || ns == keep {
            continue;
        }
        let api: Api<InPlaceSet> = Api::namespaced(client.clone(), &ns);
        if let Some(ops) =
            cafe_operator::api::finalizer_removed(&set.metadata, MEMBER_SETS_FINALIZER)
        {
            let patch: json_patch::Patch = serde_json::from_value(ops).expect("a JSON patch");
            let _ = api
                .patch(
                    &set.name_any(),
                    &Default::default(),
                    &kube::api::Patch::Json::<()>(patch),
                )
                .await;
        }
        let _ = api.delete(&set.name_any(), &DeleteParams::default()).await;
        left.insert(ns);
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in left {
        println!("members: deleting {ns}, left by an earlier story that failed");
        let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    }
}

/// Registers member `name` (running `cell`) by the kubeconfig Secret
/// `kubeconfig-<name>` in `ns`, replacing an earlier registration.
pub async fn register(ns: &TestNs, name: &str, cell: &str, spec: serde_json::Value) {
    use cafe_operator::api::MemberCluster;
    let secret_name = format!("kubeconfig-{name}");
    let registry: Api<MemberCluster> = Api::all(ns.client.clone());
    let _ = registry.delete(name, &DeleteParams::default()).await;
    // The previous story's operator, which would take its finalizer off
    // once nothing used the member, is gone: take it off by hand.
    unregister_by_hand(&registry, name).await;
    ns.wait("the previous registration to go", 30, || async {
        registry.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
    let mut body = json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": name, "labels": {"cafe.sofastack.io/e2e": "true"}},
        "spec": {"kubeconfigSecretRef": {"namespace": ns.name, "name": secret_name},
                 "cells": [cell]}
    });
    for (k, v) in spec.as_object().into_iter().flatten() {
        body["spec"][k] = v.clone();
    }
    let body: MemberCluster = serde_json::from_value(body).expect("member");
    registry
        .create(&PostParams::default(), &body)
        .await
        .expect("MemberCluster");
}

/// Takes the operator's finalizer off MemberCluster `name` (what a person
/// does when the member is lost for good); the others are kept.
pub async fn unregister_by_hand(registry: &Api<cafe_operator::api::MemberCluster>, name: &str) {
    use cafe_operator::api::names::MEMBER_IN_USE_FINALIZER;
    let Ok(Some(member)) = registry.get_opt(name).await else {
        return;
    };
    let Some(ops) =
        cafe_operator::api::finalizer_removed(&member.metadata, MEMBER_IN_USE_FINALIZER)
    else {
        return;
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("a JSON patch");
    let _ = registry
        .patch(
            name,
            &Default::default(),
            &kube::api::Patch::Json::<()>(patch),
        )
        .await;
}
