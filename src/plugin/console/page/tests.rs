use std::sync::Arc;

use serde_json::json;

use super::release::pod_row;
use super::*;
use crate::api::names::{CELL_LABEL, REVISION_LABEL, TRAFFIC_GATE};
use crate::api::pod::Pod;
use crate::api::{CafeDeployment, InPlaceSet, Phase, ReleaseFreeze};
use crate::plugin::view;

/// demo in shop: 6 pods over cell-a (here) and cell-c (member dc-3, not
/// answering), Beta then batches of 2; the Beta is done, group 2 waits.
fn waiting() -> CafeDeployment {
    serde_json::from_value(json!({
        "apiVersion": crate::api::names::API_VERSION, "kind": "CafeDeployment",
        "metadata": {"name": "demo", "namespace": "shop", "uid": "cd-uid",
                     "labels": {"tier": "core"}},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {"metadata": {"labels": {"app": "demo"}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}},
            "topology": {"values": ["cell-a", "cell-c"], "clusters": {"cell-c": "dc-3"}},
            "strategy": {"upgradeType": "Beta", "batchSize": 2, "needWaitingForConfirm": true}
        },
        "status": {
            "phase": "WaitingForConfirm", "currentRevision": "demo-1", "updateRevision": "demo-2",
            "updatedReplicas": 2, "readyReplicas": 6,
            "release": {"revision": "demo-2", "group": 1, "opened": 1, "groups": 3,
                        "message": "group 1 of 3 done",
                        "awaitingConfirmation": {"revision": "demo-2", "group": 2}},
            "cells": [
                {"name": "cell-a", "replicas": 3, "updated": 1, "ready": 3, "available": 3},
                {"name": "cell-c", "replicas": 3, "updated": 1, "ready": 3, "available": 3,
                 "cluster": "dc-3", "reachability": "Unknown",
                 "lastContact": "2026-12-07T10:00:00Z"}
            ],
            "history": [
                {"seq": 1, "action": "TemplateChanged", "by": "alice",
                 "at": "2026-12-07T09:59:00Z", "revision": "demo-2", "source": "stamp"},
                {"seq": 2, "action": "Confirmed", "by": "bob", "group": 1,
                 "at": "2026-12-07T09:59:30Z", "revision": "demo-2", "source": "stamp"}
            ]
        }
    }))
    .expect("cd")
}

fn set() -> InPlaceSet {
    serde_json::from_value(json!({
        "apiVersion": crate::api::names::API_VERSION, "kind": "InPlaceSet",
        "metadata": {"name": "demo-cell-a", "namespace": "shop", "uid": "set-uid",
                     "labels": {CELL_LABEL: "cell-a"},
                     "ownerReferences": [{"apiVersion": crate::api::names::API_VERSION,
                         "kind": "CafeDeployment", "name": "demo", "uid": "cd-uid", "controller": true}]},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "demo"}},
                 "template": {"metadata": {"labels": {"app": "demo"}},
                              "spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
        "status": {"updateRevision": "h2", "currentRevision": "h1"}
    }))
    .expect("set")
}

fn pod(name: &str, revision: &str, held_by: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {REVISION_LABEL: revision},
                     "annotations": {"cafe.sofastack.io/traffic-components": "service"},
                     "finalizers": held_by.iter().map(|c| format!("traffic.cafe.sofastack.io/{c}")).collect::<Vec<_>>(),
                     "ownerReferences": [{"apiVersion": crate::api::names::API_VERSION,
                         "kind": "InPlaceSet", "name": "demo-cell-a", "uid": "set-uid", "controller": true}]},
        "spec": {"containers": [], "nodeName": "node-1"},
        "status": {"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "cafe.sofastack.io/traffic-ready", "status": "True", "reason": "Serving"}]}
    }))
    .expect("pod")
}

fn freeze(name: &str, thawed: bool) -> ReleaseFreeze {
    let mut f = json!({
        "apiVersion": crate::api::names::API_VERSION, "kind": "ReleaseFreeze",
        "metadata": {"name": name, "creationTimestamp": "2026-12-07T10:01:00Z"},
        "spec": {"reason": "incident 4711", "requestedBy": "carol", "namespaces": ["shop"]}
    });
    if thawed {
        f["spec"]["thawed"] = json!({"at": "2026-12-07T10:02:00Z", "by": "carol"});
    }
    serde_json::from_value(f).expect("freeze")
}

fn rights(who: &str, operate: bool) -> Rights {
    Rights {
        who: Some(who.to_string()),
        read_only: false,
        operate: [("shop".to_string(), operate)].into(),
        freeze: true,
        thaw: false,
    }
}

fn shown(cd: CafeDeployment, freezes: Vec<ReleaseFreeze>, rights: &Rights) -> (Release, Global) {
    let cds = [Arc::new(cd)];
    let sets = [Arc::new(SetDigest::of(&set()))];
    let pods = [
        Arc::new(PodDigest::of(&pod("demo-cell-a-2", "h1", &["service"]))),
        Arc::new(PodDigest::of(&pod("demo-cell-a-1", "h2", &["service"]))),
    ];
    let freezes: Vec<Arc<ReleaseFreeze>> = freezes.into_iter().map(Arc::new).collect();
    let world = World {
        cds: &cds,
        sets: &sets,
        pods: &pods,
        freezes: &freezes,
        members: &[],
        rights,
    };
    let mut all = releases(&world, None);
    (all.remove("shop/demo").expect("shop/demo"), global(&world))
}

#[test]
fn the_grid_is_cells_by_groups_with_each_groups_pods_and_state() {
    let (r, _) = shown(waiting(), vec![], &rights("bob", true));
    let labels: Vec<&str> = r.groups.iter().map(|g| g.label.as_str()).collect();
    assert_eq!(labels, ["Beta", "2", "3"]);
    let a = &r.cells[0];
    let states: Vec<(Option<usize>, &str)> = a.groups.iter().map(|g| (g.pods, g.state)).collect();
    assert_eq!(
        states,
        [
            (Some(1), "done"),
            (Some(1), "waiting"),
            (Some(1), "pending")
        ]
    );
    // Pods sorted by name; the update revision is the set's.
    let pods: Vec<(&str, &str, &str)> = a
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.revision, p.state))
        .collect();
    assert_eq!(
        pods,
        [
            ("demo-cell-a-1", "update", "serving"),
            ("demo-cell-a-2", "stable", "serving")
        ]
    );
    assert_eq!(a.pods[0].holds, ["service"]);
    assert_eq!(a.pods[0].node.as_deref(), Some("node-1"));
    // A member that does not answer: its cell says so, and where its pods are.
    let c = &r.cells[1];
    assert_eq!(c.reachability.as_deref(), Some("Unreachable"));
    assert_eq!(c.last_contact.as_deref(), Some("2026-12-07T10:00:00Z"));
    assert!(
        c.pods_note
            .as_deref()
            .is_some_and(|n| n.contains("member cluster dc-3"))
    );
    assert_eq!(
        r.signoff.as_deref(),
        Some("Template by alice · group 1 confirmed by bob")
    );
    assert_eq!(r.history[0].by, "bob", "newest first");
}

#[test]
fn the_confirm_dialog_says_which_cells_and_how_many_pods_move() {
    let (r, _) = shown(waiting(), vec![], &rights("bob", true));
    let verbs: Vec<&str> = r.actions.iter().map(|a| a.verb).collect();
    assert_eq!(verbs, ["confirm", "pause", "rollback"]);
    let confirm = &r.actions[0];
    assert_eq!(confirm.label, "Confirm group 2 of 3");
    assert!(confirm.enabled && confirm.why.is_none());
    assert_eq!(
        confirm.explain,
        "Group 2 starts: cell-a 1 pod, cell-c 1 pod (2 pods) move to demo-2, each drained \
         from its traffic components first."
    );
    assert!(r.actions[2].danger, "a rollback is marked as such");
}

#[test]
fn a_person_without_the_right_sees_disabled_buttons_that_say_why() {
    let (r, g) = shown(waiting(), vec![freeze("f1", false)], &rights("dave", false));
    for a in &r.actions {
        assert!(!a.enabled, "{a:?}");
        assert_eq!(
            a.why.as_deref(),
            Some("you (dave) may not patch cafedeployments in namespace shop")
        );
    }
    let thaw = g
        .actions
        .iter()
        .find(|a| a.verb == "thaw")
        .expect("a thaw button");
    assert_eq!(thaw.freeze.as_deref(), Some("f1"));
    assert_eq!(
        thaw.why.as_deref(),
        Some("you (dave) may not patch releasefreezes (thaw)")
    );
    let read_only = Rights {
        read_only: true,
        ..rights("bob", true)
    };
    let (r, g) = shown(waiting(), vec![], &read_only);
    assert!(
        r.actions
            .iter()
            .chain(&g.actions)
            .all(|a| !a.enabled && a.why.as_deref() == Some("read-only console (--read-only)"))
    );
}

#[test]
fn a_freeze_in_force_is_a_banner_with_reason_and_author_and_a_thawed_one_is_not() {
    let (r, g) = shown(
        waiting(),
        vec![freeze("f1", false), freeze("f0", true)],
        &rights("bob", true),
    );
    let banners: Vec<&str> = r.banners.iter().map(|b| b.text.as_str()).collect();
    assert_eq!(
        banners,
        ["❄ Frozen by ReleaseFreeze f1 (by carol): incident 4711"]
    );
    assert_eq!(g.freezes.len(), 1);
    assert_eq!(g.freezes[0].scope, "namespaces shop");
    assert_eq!(g.freezes[0].by, "carol");
}

#[test]
fn a_paused_release_offers_resume_and_a_healthy_one_no_pause() {
    let mut cd = waiting();
    cd.spec.strategy.pause = true;
    if let Some(s) = cd.status.as_mut() {
        s.phase = Some(Phase::Paused);
    }
    let (r, _) = shown(cd, vec![], &rights("bob", true));
    let verbs: Vec<&str> = r.actions.iter().map(|a| a.verb).collect();
    assert_eq!(verbs, ["resume", "rollback"]);
    let mut cd = waiting();
    if let Some(s) = cd.status.as_mut() {
        s.phase = Some(Phase::Healthy);
    }
    let (r, _) = shown(cd, vec![], &rights("bob", true));
    let verbs: Vec<&str> = r.actions.iter().map(|a| a.verb).collect();
    assert_eq!(verbs, ["rollback"]);
}

#[test]
fn a_pods_digest_is_judged_as_the_pod_itself() {
    let gates = [
        None,
        Some(("True", "Serving")),
        Some(("False", "DrainingForUpdate")),
        Some(("False", "DrainingForDelete")),
    ];
    for gate in gates {
        for held in [&[][..], &["service"][..]] {
            for revision in ["h1", "h2"] {
                let mut p = pod("p", revision, held);
                if let Some(cs) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) {
                    cs.retain(|c| c.type_ != TRAFFIC_GATE);
                    if let Some((status, reason)) = gate {
                        cs.push(
                            serde_json::from_value(json!(
                            {"type": TRAFFIC_GATE, "status": status, "reason": reason}))
                            .expect("condition"),
                        );
                    }
                }
                for update in [Some("h2"), None] {
                    assert_eq!(
                        pod_row(&PodDigest::of(&p), update).state,
                        view::pod_state(&p, update),
                        "{gate:?} {held:?} {revision} {update:?}"
                    );
                }
            }
        }
    }
}
