//! Where a CafeDeployment's cells live: the one seam between the release and
//! the clusters. Each cell's InPlaceSet is read from, and written to, its
//! home — this cluster, or the member cluster that runs the cell — through
//! the same interface; the decision only learns which cells cannot be
//! reached now.
//!
//! A set in a member carries no ownerReference (none crosses clusters): it
//! carries the CafeDeployment's uid (label) and name (annotation), and the
//! CafeDeployment holds a finalizer until its sets there are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use super::holdoff::Held;
use super::members::{MEMBER_TIMEOUT, Member, Members};
use super::{self as placement, Place, Registered};
use crate::api::names::{
    CAFEDEPLOYMENT_NAME_ANNOTATION, CAFEDEPLOYMENT_UID_LABEL, CELL_LABEL, condition,
};
use crate::api::{CafeDeployment, CellStatus, InPlaceSet};

/// A cell whose set cannot be reached: nothing is written or deleted there,
/// and its last seen status stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    /// Why, naming where the cell runs.
    pub why: String,
    pub last_contact: Option<Time>,
}

/// A cluster a set can live in.
#[derive(Clone)]
pub enum Home {
    Local(Client),
    Member(Arc<Member>),
}

impl Home {
    /// The MemberCluster's name (none: this cluster).
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Home::Local(_) => None,
            Home::Member(m) => Some(&m.name),
        }
    }

    /// Why the home cannot be used now (none: it can).
    fn unreachable(&self) -> Option<Unreachable> {
        match self {
            Home::Local(_) => None,
            Home::Member(m) => {
                let reach = m.reach();
                (!reach.reachable).then_some(Unreachable {
                    why: reach.why,
                    last_contact: reach.last_contact,
                })
            }
        }
    }

    fn sets_api(&self, namespace: &str) -> Option<Api<InPlaceSet>> {
        match self {
            Home::Local(client) => Some(Api::namespaced(client.clone(), namespace)),
            Home::Member(m) => m.sets_api(namespace),
        }
    }

    /// Why writes toward this home wait now (none: they may go).
    pub fn held_off(&self) -> Option<Held> {
        match self {
            Home::Local(_) => None,
            Home::Member(m) => m.held_off(),
        }
    }

    /// Writes `desired`, a set of `cd` (server-side apply as `manager`),
    /// bounded in time so that a member that stopped answering cannot hold
    /// up the rest. Toward a member whose connection failed, nothing goes
    /// out while its hold-off lasts: the error is the [`Held`] (see
    /// [`super::holdoff::held_off`]).
    pub async fn apply(
        &self,
        cd: &CafeDeployment,
        desired: &InPlaceSet,
        manager: &str,
    ) -> Result<(), kube::Error> {
        let ns = desired.namespace().unwrap_or_default();
        let Some(api) = self.sets_api(&ns) else {
            return Err(no_client(self));
        };
        let pp = PatchParams::apply(manager).force();
        let body = match self {
            Home::Local(_) => desired.clone(),
            Home::Member(_) => for_member(cd, desired.clone()),
        };
        self.guarded(bounded(api.patch(
            &desired.name_any(),
            &pp,
            &Patch::Apply(&body),
        )))
        .await
        .map(|_| ())
    }

    /// Sends `request` unless the member's hold-off holds it back, and tells
    /// the member what it met.
    async fn guarded<T>(
        &self,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        let Home::Member(m) = self else {
            return request.await;
        };
        m.claim_write()
            .map_err(|held| kube::Error::Service(Box::new(held)))?;
        let result = request.await;
        if let Some(wait) = m.wrote(&result)
            && let Err(e) = &result
        {
            warn!(member = %m.name, retry_in = ?wait, error = %e, "no answer from the member cluster to a write: writes there wait");
        }
        result
    }

    /// Deletes the set `name` (gone already counts as deleted).
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), kube::Error> {
        let Some(api) = self.sets_api(namespace) else {
            return Err(no_client(self));
        };
        match self
            .guarded(bounded(api.delete(name, &Default::default())))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn no_client(home: &Home) -> kube::Error {
    kube::Error::Service(
        format!(
            "member cluster {} has no client",
            home.cluster().unwrap_or_default()
        )
        .into(),
    )
}

async fn bounded<T>(
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    tokio::time::timeout(MEMBER_TIMEOUT, request)
        .await
        .unwrap_or_else(|_| {
            Err(kube::Error::Service(
                format!("no answer within {MEMBER_TIMEOUT:?}").into(),
            ))
        })
}

/// A CafeDeployment's sets, wherever they live, and what the decision must
/// know of their homes.
pub struct Seen {
    /// Every set of the CafeDeployment, in every home (by name).
    pub sets: Vec<Arc<InPlaceSet>>,
    /// Each set's home, by set name; each cell's, by cell.
    set_homes: BTreeMap<String, Home>,
    cell_homes: BTreeMap<String, Home>,
    pub unreachable: BTreeMap<String, Unreachable>,
    /// Why the cells cannot be placed.
    pub misplaced: Option<String>,
    /// Cells that run elsewhere than their placement says, and what to do
    /// (`placement::place_cells`).
    pub not_moved: Vec<String>,
}

impl Seen {
    /// Where the set `desired` is written: where it lives, else its cell's home.
    pub fn home_of(&self, set: &InPlaceSet) -> Option<&Home> {
        self.set_homes.get(&set.name_any()).or_else(|| {
            let cell = set.labels().get(CELL_LABEL)?;
            self.cell_homes.get(cell)
        })
    }

    pub fn home_of_name(&self, name: &str) -> Option<&Home> {
        self.set_homes.get(name)
    }

    /// Sets that live in member clusters.
    pub fn in_members(&self) -> impl Iterator<Item = (&Arc<InPlaceSet>, &Home)> {
        self.sets.iter().filter_map(|s| {
            let home = self.set_homes.get(&s.name_any())?;
            home.cluster().is_some().then_some((s, home))
        })
    }

    /// Whether any cell lives in, or any set is left in, a member cluster.
    pub fn spans_members(&self) -> bool {
        self.cell_homes.values().any(|h| h.cluster().is_some())
            || self.in_members().next().is_some()
    }

    /// The condition `Placement` (False, reason `NotMoved`) while a cell
    /// runs elsewhere than its placement says, naming what to do; none
    /// otherwise.
    pub fn placement_condition(
        &self,
        previous: &[Condition],
        generation: Option<i64>,
        now: &Time,
    ) -> Option<Condition> {
        (!self.not_moved.is_empty()).then(|| {
            crate::api::observed_condition(
                previous,
                condition::PLACEMENT,
                false,
                condition::NOT_MOVED,
                self.not_moved.join("; "),
                generation,
                now,
            )
        })
    }

    /// The cells whose writes wait for their member's hold-off, and why.
    pub fn held_off(&self) -> BTreeMap<String, String> {
        self.cell_homes
            .iter()
            .filter_map(|(cell, home)| {
                let held = home.held_off()?;
                let cluster = home.cluster()?;
                Some((cell.clone(), format!("member cluster {cluster}: {held}")))
            })
            .collect()
    }

    /// The status rows with the cluster of each cell, and Reachable where
    /// the decision found nothing wrong.
    pub fn label_rows(&self, rows: &mut [CellStatus]) {
        for row in rows {
            let Some(cluster) = self.cell_homes.get(&row.name).and_then(Home::cluster) else {
                continue;
            };
            row.cluster = Some(cluster.to_string());
            row.reachability
                .get_or_insert_with(|| "Reachable".to_string());
        }
    }
}

/// Finds `cd`'s sets: `local` (from this cluster's cache) and those in
/// every member's cache; places its cells; finds the homes that cannot be
/// reached now.
pub fn observe(
    cd: &CafeDeployment,
    cells: &[String],
    local: Vec<Arc<InPlaceSet>>,
    client: &Client,
    members: &Members,
) -> Seen {
    let registered = members.registered();
    let listing: Vec<Registered> = registered
        .iter()
        .map(|(name, cells, leaving)| Registered {
            name,
            cells,
            leaving: *leaving,
        })
        .collect();
    let ran_in: BTreeMap<String, String> = cd
        .status
        .iter()
        .flat_map(|s| &s.cells)
        .filter_map(|row| Some((row.name.clone(), row.cluster.clone()?)))
        .collect();
    let local_home = Home::Local(client.clone());
    let Listed {
        sets,
        set_homes,
        found,
        away,
    } = sets_of(cd, local, &local_home, members);
    let explicit = &cd.spec.topology.clusters;
    let (placed, mut misplaced, not_moved) =
        match placement::place_cells(cells, explicit, &listing, &ran_in, &found) {
            Ok((p, notices)) => (p, None, notices),
            Err(e) => (BTreeMap::new(), Some(e), Vec::new()),
        };
    let (cell_homes, mut unreachable) = homes_of(&placed, &local_home, members);
    for (cell, u) in away {
        unreachable.entry(cell).or_insert(u);
    }
    // Judged only where the member's sets are listed (an unlisted member's
    // cells are unreachable: nothing is written there anyway).
    let has_set = |cell: &str, member: &str| {
        unreachable.contains_key(cell)
            || sets.iter().any(|s| {
                s.labels().get(CELL_LABEL).map(String::as_str) == Some(cell)
                    && set_homes.get(&s.name_any()).and_then(Home::cluster) == Some(member)
            })
    };
    if misplaced.is_none() {
        misplaced = placement::refuse_new_in_leaving(&placed, &listing, has_set).err();
    }
    Seen {
        sets,
        set_homes,
        cell_homes,
        unreachable,
        misplaced,
        not_moved,
    }
}

/// Each placed cell's home, and the cells whose home cannot be reached now.
fn homes_of(
    placed: &BTreeMap<String, Place>,
    local_home: &Home,
    members: &Members,
) -> (BTreeMap<String, Home>, BTreeMap<String, Unreachable>) {
    let mut cell_homes = BTreeMap::new();
    let mut unreachable = BTreeMap::new();
    for (cell, place) in placed {
        let home = match place {
            Place::Local => local_home.clone(),
            Place::Member(name) => match members.get(name) {
                Some(m) => Home::Member(m),
                None => {
                    unreachable.insert(
                        cell.clone(),
                        Unreachable {
                            why: format!("member cluster {name} is not connected yet"),
                            last_contact: None,
                        },
                    );
                    continue;
                }
            },
        };
        if let Some(u) = home.unreachable() {
            unreachable.insert(cell.clone(), u);
        }
        cell_homes.insert(cell.clone(), home);
    }
    (cell_homes, unreachable)
}

/// A CafeDeployment's sets wherever they are.
struct Listed {
    /// Sorted by name.
    sets: Vec<Arc<InPlaceSet>>,
    /// Each one's home, by name.
    set_homes: BTreeMap<String, Home>,
    /// The clusters each cell has a set in (two, if a cell's set is in two).
    found: BTreeMap<String, Vec<Place>>,
    /// The cells of sets in a member that cannot be reached now.
    away: BTreeMap<String, Unreachable>,
}

/// `cd`'s sets wherever they are, and where each lives.
fn sets_of(
    cd: &CafeDeployment,
    local: Vec<Arc<InPlaceSet>>,
    local_home: &Home,
    members: &Members,
) -> Listed {
    let ns = cd.namespace().unwrap_or_default();
    let uid = cd.uid().unwrap_or_default();
    let mut out = Listed {
        sets: Vec::new(),
        set_homes: BTreeMap::new(),
        found: BTreeMap::new(),
        away: BTreeMap::new(),
    };
    let mut add = |set: Arc<InPlaceSet>, home: &Home, place: Place| {
        let cell = set.labels().get(CELL_LABEL).cloned().unwrap_or_default();
        let places = out.found.entry(cell).or_default();
        if !places.contains(&place) {
            places.push(place);
        }
        out.set_homes.insert(set.name_any(), home.clone());
        out.sets.push(set);
    };
    for set in local {
        add(set, local_home, Place::Local);
    }
    for member in members.all() {
        let home = Home::Member(member.clone());
        let away = home.unreachable();
        for set in member.sets_of(&ns, &uid) {
            if let Some(u) = &away {
                let cell = set.labels().get(CELL_LABEL).cloned().unwrap_or_default();
                out.away.entry(cell).or_insert_with(|| u.clone());
            }
            add(set, &home, Place::Member(member.name.clone()));
        }
    }
    out.sets
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// `set` as written into a member: no ownerReference, the CafeDeployment's
/// uid and name instead.
pub fn for_member(cd: &CafeDeployment, mut set: InPlaceSet) -> InPlaceSet {
    set.metadata.owner_references = None;
    set.labels_mut().insert(
        CAFEDEPLOYMENT_UID_LABEL.to_string(),
        cd.uid().unwrap_or_default(),
    );
    set.annotations_mut()
        .insert(CAFEDEPLOYMENT_NAME_ANNOTATION.to_string(), cd.name_any());
    set
}
