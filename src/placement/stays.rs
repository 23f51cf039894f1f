//! A cell stays where its InPlaceSet is, pure. `resolve` says where a cell
//! should start (the registrations, `topology.clusters`); once its set
//! exists somewhere, that is where the cell runs, and where status says it
//! runs, whatever a registration made since or `topology.clusters` says:
//! a cell's pods are not moved between clusters by a write of ours (a set
//! written elsewhere would be a second copy of the cell, not a move).
//!
//! - A cell with no set yet starts where `resolve` placed it.
//! - A cell whose set is in one cluster runs there; where that differs from
//!   its placement, a notice says what to do (move it: remove it from
//!   `topology.values`, it drains, then add it back; or keep it there and
//!   say so in `topology.clusters`).
//! - A cell with a set in two clusters is refused until one is deleted.
//!
//! Derived from the sets observed now, never remembered: an operator
//! restarted after a registration places the cell as the one before it did.
//! A member no longer registered shows none of its sets: its cells are
//! `resolve`'s to refuse or to place where a person says.

use std::collections::BTreeMap;

use super::rules::{LOCAL, Place, Registered, resolve};

/// Each cell where it runs: its set's cluster, else where `resolve` starts
/// it; and a notice per cell that runs elsewhere than its placement says.
/// Or why the cells cannot be placed: `resolve`'s refusal of a cell with no
/// set, or of a `topology.clusters` entry, or a cell with a set in two
/// clusters. `found`: the clusters each cell has a set in now.
pub fn place_cells(
    cells: &[String],
    explicit: &BTreeMap<String, String>,
    members: &[Registered],
    ran_in: &BTreeMap<String, String>,
    found: &BTreeMap<String, Vec<Place>>,
) -> Result<(BTreeMap<String, Place>, Vec<String>), String> {
    let mut notices = Vec::new();
    let mut out = BTreeMap::new();
    let mut starting = Vec::new();
    for cell in cells {
        let one = match found.get(cell).map(Vec::as_slice) {
            None | Some([]) => {
                starting.push(cell.clone());
                continue;
            }
            Some([one]) => one,
            Some(several) => {
                let names: Vec<String> = several.iter().map(cluster).collect();
                return Err(format!(
                    "cell {cell} has an InPlaceSet in {}: delete the one that should not run \
                     (its pods go with it); nothing is written until one is left",
                    names.join(" and ")
                ));
            }
        };
        // Where the spec and the registrations would start it now.
        let chosen = explicit.contains_key(cell);
        match resolve(
            std::slice::from_ref(cell),
            explicit,
            members,
            &BTreeMap::new(),
        ) {
            Ok(p) => {
                if let Some(placed) = p.get(cell).filter(|p| *p != one) {
                    notices.push(not_moved(cell, one, placed, chosen));
                }
            }
            // A topology.clusters entry the spec must correct.
            Err(e) if chosen => return Err(e),
            Err(e) => notices.push(format!(
                "{e}; cell {cell} runs {} meanwhile and stays there (to say so: \
                 spec.topology.clusters.{cell}: {})",
                where_(one),
                name(one)
            )),
        }
        out.insert(cell.clone(), one.clone());
    }
    out.extend(resolve(&starting, explicit, members, ran_in)?);
    Ok((out, notices))
}

/// What to do about `cell`, which runs in `runs` while its placement
/// (`explicit`: topology.clusters, else the registrations) says `placed`.
fn not_moved(cell: &str, runs: &Place, placed: &Place, explicit: bool) -> String {
    let why = match (explicit, placed) {
        (true, p) => format!("topology.clusters.{cell} names {}", name(p)),
        (false, Place::Member(m)) => format!("MemberCluster {m} lists cell {cell}"),
        (false, Place::Local) => format!("no registered MemberCluster lists cell {cell}"),
    };
    format!(
        "{why}; it runs {} and stays there: a cell is not moved between clusters. To run \
         it {}, remove {cell} from spec.topology.values (its pods drain and its InPlaceSet is \
         deleted), then add it back (it starts there); to keep it where it runs, set \
         spec.topology.clusters.{cell}: {}",
        where_(runs),
        where_(placed),
        name(runs),
    )
}

/// A cluster as a sentence names it.
fn where_(place: &Place) -> String {
    match place {
        Place::Local => format!("here ({LOCAL})"),
        Place::Member(m) => format!("in MemberCluster {m}"),
    }
}

/// A cluster as a list names it.
fn cluster(place: &Place) -> String {
    match place {
        Place::Local => "this cluster".to_string(),
        Place::Member(m) => format!("MemberCluster {m}"),
    }
}

/// A cluster as `topology.clusters` names it.
fn name(place: &Place) -> &str {
    match place {
        Place::Local => LOCAL,
        Place::Member(m) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_string()).collect()
    }

    fn dc2() -> Place {
        Place::Member("dc-2".into())
    }

    fn place(
        explicit: &[(&str, &str)],
        members: &[Registered],
        found: &[(&str, Vec<Place>)],
    ) -> Result<(BTreeMap<String, Place>, Vec<String>), String> {
        let explicit = explicit
            .iter()
            .map(|(c, p)| ((*c).to_string(), (*p).to_string()))
            .collect();
        let found = found
            .iter()
            .map(|(c, p)| ((*c).to_string(), p.clone()))
            .collect();
        place_cells(
            &cells(&["a", "b"]),
            &explicit,
            members,
            &BTreeMap::new(),
            &found,
        )
    }

    #[test]
    fn a_cell_without_a_set_starts_where_it_is_placed() {
        let b = cells(&["b"]);
        let dc = [Registered {
            name: "dc-2",
            cells: &b,
            leaving: false,
        }];
        let (out, notices) = place(&[], &dc, &[]).expect("ok");
        assert_eq!((out["a"].clone(), out["b"].clone()), (Place::Local, dc2()));
        assert!(notices.is_empty());
    }

    #[test]
    fn a_late_registration_moves_no_running_cell_and_says_what_to_do() {
        // dc-2 registered listing cell a, whose set runs here.
        let a = cells(&["a"]);
        let dc = [Registered {
            name: "dc-2",
            cells: &a,
            leaving: false,
        }];
        let (out, notices) = place(&[], &dc, &[("a", vec![Place::Local])]).expect("ok");
        assert_eq!(out["a"], Place::Local);
        assert_eq!(
            notices,
            [
                "MemberCluster dc-2 lists cell a; it runs here (local) and stays there: a cell \
              is not moved between clusters. To run it in MemberCluster dc-2, remove a from \
              spec.topology.values (its pods drain and its InPlaceSet is deleted), then add it \
              back (it starts there); to keep it where it runs, set \
              spec.topology.clusters.a: local"
            ]
        );
        // Said so in topology.clusters: nothing to say.
        let (out, notices) = place(&[("a", LOCAL)], &dc, &[("a", vec![Place::Local])]).expect("ok");
        assert_eq!((out["a"].clone(), notices.len()), (Place::Local, 0));
        // Two members list it: it still runs here, and the notice says so.
        let dc3 = [
            dc[0],
            Registered {
                name: "dc-3",
                ..dc[0]
            },
        ];
        let (out, notices) = place(&[], &dc3, &[("a", vec![Place::Local])]).expect("ok");
        assert_eq!(out["a"], Place::Local);
        assert!(
            notices[0].contains("runs here (local) meanwhile and stays"),
            "{notices:?}"
        );
    }

    #[test]
    fn topology_clusters_naming_another_cluster_moves_no_running_cell() {
        let b = cells(&["b"]);
        let dc = [Registered {
            name: "dc-2",
            cells: &b,
            leaving: false,
        }];
        let (out, notices) = place(&[("b", LOCAL)], &dc, &[("b", vec![dc2()])]).expect("ok");
        assert_eq!(out["b"], dc2());
        assert!(
            notices[0]
                .starts_with("topology.clusters.b names local; it runs in MemberCluster dc-2"),
            "{notices:?}"
        );
        assert!(
            notices[0].ends_with("set spec.topology.clusters.b: dc-2"),
            "{notices:?}"
        );
        // A topology.clusters entry naming no registered member is the spec's error.
        let e = place(&[("b", "dc-9")], &dc, &[("b", vec![dc2()])]).expect_err("unknown");
        assert!(
            e.starts_with("topology.clusters.b names MemberCluster dc-9"),
            "{e}"
        );
    }

    #[test]
    fn a_cell_with_a_set_in_two_clusters_is_refused_until_one_is_deleted() {
        let e = place(&[], &[], &[("a", vec![Place::Local, dc2()])]).expect_err("two");
        assert_eq!(
            e,
            "cell a has an InPlaceSet in this cluster and MemberCluster dc-2: delete the \
             one that should not run (its pods go with it); nothing is written until one is left"
        );
    }
}
