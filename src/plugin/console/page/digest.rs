//! What the console keeps of a pod and of a set: what the page shows, not
//! the objects as read.

use kube::ResourceExt;

use crate::api::InPlaceSet;
use crate::api::names::{CELL_LABEL, REVISION_LABEL, TRAFFIC_GATE};
use crate::api::pod::Pod;
use crate::plugin::view;
use crate::traffic::declared_components;

/// A pod as the page needs it: the console keeps 10,000 of these, not pods
/// (a pod as read is five to six times the size).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodDigest {
    pub name: String,
    /// The InPlaceSet that owns it.
    pub owner: String,
    pub revision: Option<String>,
    pub deleting: bool,
    /// The traffic gate's status and reason.
    pub gate: Option<(String, String)>,
    pub declared: Vec<String>,
    pub registered: Vec<String>,
    pub ready: bool,
    pub restarts: i32,
    pub node: Option<String>,
}

impl PodDigest {
    pub fn of(pod: &Pod) -> PodDigest {
        let condition = |type_: &str| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        };
        PodDigest {
            name: pod.name_any(),
            owner: pod
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone())
                .unwrap_or_default(),
            revision: pod.labels().get(REVISION_LABEL).map(str::to_string),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            gate: condition(TRAFFIC_GATE).map(|g| {
                (
                    g.status.to_string(),
                    g.reason.as_deref().unwrap_or_default().to_string(),
                )
            }),
            declared: declared_components(pod),
            registered: view::registered(pod),
            ready: condition("Ready").is_some_and(|c| c.status == "True"),
            restarts: view::restarts(pod),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        }
    }
}

/// An InPlaceSet as the page needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetDigest {
    pub uid: String,
    pub cell: Option<String>,
    /// Its owners' uids (its CafeDeployment's).
    pub owners: Vec<String>,
    pub update_revision: Option<String>,
}

impl SetDigest {
    pub fn of(set: &InPlaceSet) -> SetDigest {
        SetDigest {
            uid: set.metadata.uid.clone().unwrap_or_default(),
            cell: set.labels().get(CELL_LABEL).cloned(),
            owners: set
                .owner_references()
                .iter()
                .map(|o| o.uid.clone())
                .collect(),
            update_revision: set.status.as_ref().and_then(|s| s.update_revision.clone()),
        }
    }
}
