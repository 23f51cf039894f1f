//! The documents the page receives, as JSON (the page's contract is in
//! `assets/app.js`): one per release, one for the whole cluster.

use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub verb: &'static str,
    pub label: String,
    pub enabled: bool,
    pub why: Option<String>,
    pub explain: String,
    pub danger: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub phase: Option<String>,
    pub icon: &'static str,
    pub message: String,
    pub next: String,
    pub strategy: String,
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub revisions: Revisions,
    pub group: GroupCount,
    pub signoff: Option<String>,
    pub banners: Vec<Banner>,
    pub analysis: Option<Analysis>,
    pub history: Vec<Step>,
    pub groups: Vec<GroupHead>,
    pub cells: Vec<Cell>,
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Revisions {
    pub current: Option<String>,
    pub update: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupCount {
    pub done: i32,
    pub of: i32,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Banner {
    pub kind: &'static str,
    pub text: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Analysis {
    pub phase: String,
    pub message: String,
    pub measurements: Vec<Measurement>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Measurement {
    pub query: String,
    pub value: String,
    pub condition: String,
    pub verdict: String,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Step {
    pub at: String,
    pub action: String,
    pub by: String,
    pub revision: String,
    pub group: Option<i32>,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupHead {
    pub group: usize,
    pub label: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    pub name: String,
    pub cluster: Option<String>,
    pub reachability: Option<String>,
    pub last_contact: Option<String>,
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub groups: Vec<CellGroup>,
    pub pods: Vec<PodRow>,
    pub pods_note: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CellGroup {
    pub group: usize,
    /// Pods this group moves in this cell (None: the plan is not known here).
    pub pods: Option<usize>,
    pub state: &'static str,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PodRow {
    pub name: String,
    pub revision: &'static str,
    pub state: &'static str,
    pub holds: Vec<String>,
    pub ready: bool,
    pub restarts: i32,
    pub node: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Global {
    pub freezes: Vec<Freeze>,
    pub members: Vec<Member>,
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Freeze {
    pub name: String,
    pub reason: String,
    pub by: String,
    pub since: String,
    pub scope: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub name: String,
    pub state: String,
    pub message: String,
    pub last_contact: Option<String>,
}
