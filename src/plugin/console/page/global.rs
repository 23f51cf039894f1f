//! The cluster-wide document: freezes in force, member clusters, and the
//! cluster-wide actions.

use std::sync::Arc;

use kube::ResourceExt;

use super::actions::cluster_actions;
use super::record::who;
use super::{Freeze, Global, Member, World};
use crate::api::names::condition;
use crate::api::{MemberCluster, ReleaseFreeze};

/// Freezes in force, member clusters, and the cluster-wide actions.
pub fn global(world: &World) -> Global {
    let mut freezes: Vec<&Arc<ReleaseFreeze>> = world
        .freezes
        .iter()
        .filter(|f| f.spec.thawed.is_none())
        .collect();
    freezes.sort_by_key(|f| f.name_any());
    let mut members: Vec<Member> = world.members.iter().map(|m| member(m)).collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Global {
        actions: cluster_actions(world.rights, &freezes),
        freezes: freezes.iter().map(|f| freeze(f)).collect(),
        members,
    }
}

/// A member cluster's row: its Ready condition in words.
fn member(m: &MemberCluster) -> Member {
    let ready = m
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == condition::READY));
    Member {
        name: m.name_any(),
        state: match ready.map(|c| c.status.as_str()) {
            Some("True") => "Reachable".to_string(),
            Some("False") => "Unreachable".to_string(),
            _ => "Unknown".to_string(),
        },
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
        last_contact: m
            .status
            .as_ref()
            .and_then(|s| s.last_contact.as_ref())
            .map(|t| t.0.to_string()),
    }
}

/// A freeze in force: who, why, since when, over what.
fn freeze(f: &ReleaseFreeze) -> Freeze {
    Freeze {
        name: f.name_any(),
        reason: f.spec.reason.clone(),
        by: who(f.spec.requested_by.as_deref().unwrap_or_default()),
        since: f
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        scope: freeze_scope(f),
    }
}

fn freeze_scope(f: &ReleaseFreeze) -> String {
    let mut parts = Vec::new();
    if !f.spec.namespaces.is_empty() {
        parts.push(format!("namespaces {}", f.spec.namespaces.join(",")));
    }
    if let Some(s) = &f.spec.selector {
        parts.push(format!("labels {}", crate::api::selector_string(s)));
    }
    if parts.is_empty() {
        "everything".to_string()
    } else {
        parts.join("; ")
    }
}
