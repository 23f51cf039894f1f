//! Where each cell of a CafeDeployment runs, pure: in the cluster the
//! CafeDeployment lives in (local), or in a member cluster that registered it.
//!
//! - A cell no MemberCluster lists is local: a single-cluster user sees no
//!   change.
//! - A cell one MemberCluster lists runs there.
//! - `topology.clusters` names the cluster of a cell explicitly: required
//!   where two MemberClusters list the same cell; "local" keeps a listed cell
//!   here.
//! - Anything else (an unknown cluster, a cluster that does not list the
//!   cell, a cell two clusters claim) is refused with a message that names
//!   the field to change.
//! - A cell that ran in a MemberCluster no longer registered is not moved
//!   anywhere else (here, or to another member listing it) without
//!   `topology.clusters` saying so: its pods may still be running there.
//! - A MemberCluster being deleted keeps the cells it runs and takes no new
//!   one ([`refuse_new_in_leaving`]).

use std::collections::BTreeMap;

/// The name `topology.clusters` uses for the CafeDeployment's own cluster.
pub const LOCAL: &str = "local";

/// Where a cell runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    Local,
    /// The MemberCluster of that name.
    Member(String),
}

impl Place {
    pub fn member(&self) -> Option<&str> {
        match self {
            Place::Local => None,
            Place::Member(m) => Some(m),
        }
    }
}

/// A registered member: its name and the cells it lists.
#[derive(Clone, Copy, Debug)]
pub struct Registered<'a> {
    pub name: &'a str,
    pub cells: &'a [String],
    /// Its MemberCluster is being deleted.
    pub leaving: bool,
}

/// Refuses a cell placed in a member being deleted that has no set there
/// yet (`has_set(cell, member)`): the deletion waits for the cells the
/// member runs, and a new one would keep it forever (or be orphaned).
pub fn refuse_new_in_leaving(
    placed: &BTreeMap<String, Place>,
    members: &[Registered],
    has_set: impl Fn(&str, &str) -> bool,
) -> Result<(), String> {
    for (cell, place) in placed {
        let Some(name) = place.member() else { continue };
        if members.iter().any(|m| m.name == name && m.leaving) && !has_set(cell, name) {
            return Err(format!(
                "cell {cell} would start in MemberCluster {name}, which is being deleted and \
                 takes no new cells: choose another cluster with topology.clusters.{cell} \
                 (\"{LOCAL}\" or a MemberCluster listing it), or remove the cell from \
                 topology.values"
            ));
        }
    }
    Ok(())
}

/// Each cell's place, or why the cells cannot be placed. `ran_in` is the
/// MemberCluster each cell last ran in (the CafeDeployment's status).
pub fn resolve(
    cells: &[String],
    explicit: &BTreeMap<String, String>,
    members: &[Registered],
    ran_in: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Place>, String> {
    let listing = |cell: &String| -> Vec<&str> {
        let mut names: Vec<&str> = members
            .iter()
            .filter(|m| m.cells.contains(cell))
            .map(|m| m.name)
            .collect();
        names.sort_unstable();
        names
    };
    let mut out = BTreeMap::new();
    for cell in cells {
        let place = match explicit.get(cell).map(String::as_str) {
            Some(LOCAL) => Place::Local,
            Some(name) => {
                let Some(member) = members.iter().find(|m| m.name == name) else {
                    let mut known: Vec<&str> = members.iter().map(|m| m.name).collect();
                    known.sort_unstable();
                    return Err(format!(
                        "topology.clusters.{cell} names MemberCluster {name}, which is not \
                         registered (registered: [{}]): register it or write \"{LOCAL}\"",
                        known.join(", ")
                    ));
                };
                if !member.cells.contains(cell) {
                    return Err(format!(
                        "topology.clusters.{cell} names MemberCluster {name}, which does not \
                         list cell {cell} in spec.cells (it lists [{}]): add the cell there or \
                         name the cluster that runs it",
                        member.cells.join(", ")
                    ));
                }
                Place::Member(name.to_string())
            }
            None => {
                if let Some(was) = ran_in.get(cell)
                    && !members.iter().any(|m| m.name == was)
                {
                    return Err(format!(
                        "cell {cell} ran in MemberCluster {was}, which is no longer registered \
                         (its pods there are left as they are): register {was} again to go on \
                         there, or choose where the cell runs now with topology.clusters.{cell} \
                         (\"{LOCAL}\" or a MemberCluster listing it)"
                    ));
                }
                match listing(cell).as_slice() {
                    [] => Place::Local,
                    [one] => Place::Member((*one).to_string()),
                    several => {
                        return Err(format!(
                            "topology.values: cell {cell} is listed by MemberClusters {}: \
                             choose one with topology.clusters.{cell}",
                            several.join(" and ")
                        ));
                    }
                }
            }
        };
        out.insert(cell.clone(), place);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn cells_no_member_lists_are_local() {
        let placed =
            resolve(&cells(&["a", "b"]), &BTreeMap::new(), &[], &BTreeMap::new()).expect("placed");
        assert!(placed.values().all(|p| *p == Place::Local));
    }

    #[test]
    fn a_listed_cell_runs_in_its_member_and_others_stay_local() {
        let dc2 = cells(&["b"]);
        let dc3 = cells(&["c", "d"]);
        let members = [
            Registered {
                name: "dc-2",
                cells: &dc2,
                leaving: false,
            },
            Registered {
                name: "dc-3",
                cells: &dc3,
                leaving: false,
            },
        ];
        let placed = resolve(
            &cells(&["a", "b", "c"]),
            &BTreeMap::new(),
            &members,
            &BTreeMap::new(),
        )
        .expect("ok");
        assert_eq!(placed["a"], Place::Local);
        assert_eq!(placed["b"], Place::Member("dc-2".into()));
        assert_eq!(placed["c"], Place::Member("dc-3".into()));
    }

    #[test]
    fn a_cell_two_members_list_needs_a_choice_naming_the_field() {
        let both = cells(&["b"]);
        let members = [
            Registered {
                name: "dc-3",
                cells: &both,
                leaving: false,
            },
            Registered {
                name: "dc-2",
                cells: &both,
                leaving: false,
            },
        ];
        let e = resolve(&cells(&["b"]), &BTreeMap::new(), &members, &BTreeMap::new())
            .expect_err("ambiguous");
        assert_eq!(
            e,
            "topology.values: cell b is listed by MemberClusters dc-2 and dc-3: choose one \
             with topology.clusters.b"
        );
        let chosen = BTreeMap::from([("b".to_string(), "dc-3".to_string())]);
        let placed = resolve(&cells(&["b"]), &chosen, &members, &BTreeMap::new()).expect("chosen");
        assert_eq!(placed["b"], Place::Member("dc-3".into()));
        let here = BTreeMap::from([("b".to_string(), LOCAL.to_string())]);
        let placed = resolve(&cells(&["b"]), &here, &members, &BTreeMap::new()).expect("local");
        assert_eq!(placed["b"], Place::Local);
    }

    #[test]
    fn unknown_or_inconsistent_clusters_are_refused_naming_the_field() {
        let dc2 = cells(&["b"]);
        let members = [Registered {
            name: "dc-2",
            cells: &dc2,
            leaving: false,
        }];
        let unknown = BTreeMap::from([("a".to_string(), "dc-9".to_string())]);
        let e = resolve(&cells(&["a"]), &unknown, &members, &BTreeMap::new()).expect_err("unknown");
        assert!(
            e.starts_with("topology.clusters.a names MemberCluster dc-9, which is not registered (registered: [dc-2])"),
            "{e}"
        );
        let elsewhere = BTreeMap::from([("a".to_string(), "dc-2".to_string())]);
        let e = resolve(&cells(&["a"]), &elsewhere, &members, &BTreeMap::new())
            .expect_err("not listed");
        assert!(
            e.contains("does not list cell a in spec.cells (it lists [b])"),
            "{e}"
        );
    }

    #[test]
    fn a_cell_whose_member_left_moves_only_where_a_person_says() {
        let dc2 = cells(&["b"]);
        let dc4 = cells(&["c"]);
        let ran_in = BTreeMap::from([
            ("b".to_string(), "dc-2".to_string()),
            ("c".to_string(), "dc-3".to_string()),
        ]);
        // dc-2 is still registered: b goes on there.
        let with_dc2 = [Registered {
            name: "dc-2",
            cells: &dc2,
            leaving: false,
        }];
        let placed = resolve(&cells(&["b"]), &BTreeMap::new(), &with_dc2, &ran_in).expect("b");
        assert_eq!(placed["b"], Place::Member("dc-2".into()));
        // dc-3 left: c is neither started here nor in dc-4, which lists it.
        let with_dc4 = [Registered {
            name: "dc-4",
            cells: &dc4,
            leaving: false,
        }];
        for members in [&[][..], &with_dc4[..]] {
            let e =
                resolve(&cells(&["c"]), &BTreeMap::new(), members, &ran_in).expect_err("not moved");
            assert!(
                e.starts_with("cell c ran in MemberCluster dc-3, which is no longer registered"),
                "{e}"
            );
            assert!(e.contains("topology.clusters.c"), "{e}");
        }
        // A person's choice moves it.
        let here = BTreeMap::from([("c".to_string(), LOCAL.to_string())]);
        let placed = resolve(&cells(&["c"]), &here, &[], &ran_in).expect("here");
        assert_eq!(placed["c"], Place::Local);
        let there = BTreeMap::from([("c".to_string(), "dc-4".to_string())]);
        let placed = resolve(&cells(&["c"]), &there, &with_dc4, &ran_in).expect("dc-4");
        assert_eq!(placed["c"], Place::Member("dc-4".into()));
    }

    #[test]
    fn a_member_being_deleted_keeps_its_cells_and_takes_no_new_one() {
        let dc3 = cells(&["c", "d"]);
        let members = [Registered {
            name: "dc-3",
            cells: &dc3,
            leaving: true,
        }];
        let placed = resolve(
            &cells(&["c", "d"]),
            &BTreeMap::new(),
            &members,
            &BTreeMap::new(),
        )
        .expect("placed");
        // c has its set there: it goes on; d has none: refused.
        let e = refuse_new_in_leaving(&placed, &members, |cell, m| cell == "c" && m == "dc-3")
            .expect_err("d is new");
        assert!(
            e.starts_with("cell d would start in MemberCluster dc-3, which is being deleted"),
            "{e}"
        );
        assert!(e.contains("topology.clusters.d"), "{e}");
        refuse_new_in_leaving(&placed, &members, |_, _| true).expect("both have sets");
        let staying = [Registered {
            leaving: false,
            ..members[0]
        }];
        refuse_new_in_leaving(&placed, &staying, |_, _| false).expect("not leaving");
    }
}
