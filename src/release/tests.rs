//! Random sequences of what users and pods do mid-release, against a model of
//! the InPlaceSets, checking the invariants after every step and that every
//! release converges once the changes stop.

use proptest::prelude::*;

use super::*;

/// A pod in the model: its revision, whether it is out of traffic because
/// the operator is moving it (it comes back on the next step), and whether
/// it is out of traffic on its own (its probe fails, its node is lost).
#[derive(Clone, Debug)]
struct Pod {
    rev: u32,
    moving: bool,
    sick: bool,
}

impl Pod {
    fn available(&self) -> bool {
        !self.moving && !self.sick
    }
}

#[derive(Clone, Debug, Default)]
struct Set {
    pods: Vec<Pod>,
    given: usize,
    partition: usize,
    max_unavailable: usize,
    paused: bool,
    update: u32,
    stable: Option<u32>,
}

impl Set {
    /// As the CafeDeployment observes the set while releasing `update`: the
    /// counts of a set whose template is another revision describe nothing
    /// of this release (as `carries` reads the set's revision annotation).
    fn observe(&self, name: &str, update: u32) -> Observed {
        let available = |p: &&Pod| p.available();
        let carries = self.update == update;
        Observed {
            name: name.to_string(),
            given: Some(self.given),
            live: self.pods.len(),
            available: self.pods.iter().filter(available).count(),
            updated_available: self
                .pods
                .iter()
                .filter(available)
                .filter(|p| carries && p.rev == self.update)
                .count(),
            stable_available: self
                .pods
                .iter()
                .filter(available)
                .filter(|p| carries && Some(p.rev) == self.stable && p.rev != self.update)
                .count(),
            fresh: carries,
            held: None,
        }
    }

    /// One round of the InPlaceSet: moving pods land, then scale, create,
    /// move. `pdb`: what a PodDisruptionBudget over every set's pods still
    /// allows out of traffic (shared by the sets, as the operator's ledger is).
    /// Returns how many available pods it took out of traffic, and how many
    /// pods out of traffic on their own it kept (a scale-in takes those first).
    fn step(&mut self, pdb: &mut Option<usize>) -> (usize, usize) {
        for p in &mut self.pods {
            p.moving = false;
        }
        // Scale-in: not-ready pods would go first; here, strays then surplus.
        while self.pods.len() > self.given {
            let stray = self
                .pods
                .iter()
                .position(|p| p.rev != self.update && Some(p.rev) != self.stable);
            let idx = stray.unwrap_or(self.pods.len() - 1);
            self.pods.remove(idx);
        }
        let want_update = self.given - self.partition.min(self.given);
        let on_update = |pods: &[Pod], u: u32| pods.iter().filter(|p| p.rev == u).count();
        while self.pods.len() < self.given {
            let rev = match self.stable {
                Some(s) if on_update(&self.pods, self.update) >= want_update => s,
                _ => self.update,
            };
            self.pods.push(Pod {
                rev,
                moving: true,
                sick: false,
            });
        }
        let sick = self.pods.iter().filter(|p| p.sick).count();
        if self.paused {
            return (0, sick);
        }
        // Its own unavailable pods use its share; unavailable pods move
        // first and for free (they serve nothing).
        let mut budget = self.max_unavailable.saturating_sub(sick);
        let mut order: Vec<usize> = (0..self.pods.len()).collect();
        order.sort_by_key(|i| !self.pods[*i].sick);
        let mut taken = 0;
        for i in order {
            let free = self.pods[i].sick;
            if !free && (budget == 0 || *pdb == Some(0)) {
                break;
            }
            let updated = on_update(&self.pods, self.update);
            let p = &self.pods[i];
            let to = if p.rev == self.update {
                match self.stable {
                    Some(s) if updated > want_update => Some(s),
                    _ => None,
                }
            } else if updated < want_update {
                Some(self.update)
            } else if Some(p.rev) != self.stable {
                self.stable
            } else {
                None
            };
            if let Some(rev) = to {
                self.pods[i] = Pod {
                    rev,
                    moving: true,
                    sick: false,
                };
                if !free {
                    budget -= 1;
                    taken += 1;
                    if let Some(room) = pdb.as_mut() {
                        *room -= 1;
                    }
                }
            }
        }
        (taken, sick)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Template,
    Scale(usize),
    Cells(Vec<bool>),
    Confirm,
    Pause(bool),
    Rollback,
    LosePod(usize),
    /// This cell's set reports a status older than its spec for one round.
    Stale(usize),
    /// A pod of this cell falls out of traffic on its own.
    Sicken(usize),
    Heal(usize),
    /// A PodDisruptionBudget over all pods (maxUnavailable), or none.
    Pdb(Option<usize>),
    /// This cell's cluster stops answering: the CafeDeployment sees its set
    /// as last seen and cannot write it; the set goes on at what it has.
    Cut(usize),
    Rejoin(usize),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Template),
        1 => (0usize..24).prop_map(Op::Scale),
        1 => proptest::collection::vec(any::<bool>(), 3).prop_map(Op::Cells),
        3 => Just(Op::Confirm),
        1 => any::<bool>().prop_map(Op::Pause),
        1 => Just(Op::Rollback),
        1 => (0usize..3).prop_map(Op::LosePod),
        2 => (0usize..3).prop_map(Op::Stale),
        2 => (0usize..3).prop_map(Op::Sicken),
        1 => (0usize..3).prop_map(Op::Heal),
        1 => proptest::option::of(0usize..3).prop_map(Op::Pdb),
        1 => (0usize..3).prop_map(Op::Cut),
        1 => (0usize..3).prop_map(Op::Rejoin),
        6 => Just(Op::Tick),
    ]
}

const CELLS: [&str; 3] = ["a", "b", "c"];

struct World {
    record: Record,
    template: u32,
    replicas: usize,
    values: Vec<bool>,
    sets: BTreeMap<String, Set>,
    paused: bool,
    confirmed: bool,
    next_template: u32,
    beta: bool,
    batch: usize,
    /// Without confirmation a release opens every group; the budget paces it.
    need_confirm: bool,
    /// Cells whose next observation is stale.
    stale: Vec<String>,
    /// (template, group) of every wait that began: none begins twice.
    waits: Vec<(u32, usize)>,
    pdb: Option<usize>,
    /// Cells whose cluster does not answer, with their set as last seen.
    cut: BTreeMap<String, Option<Set>>,
}

impl World {
    fn cells(&self) -> Vec<(String, usize)> {
        let names: Vec<&str> = CELLS
            .iter()
            .zip(&self.values)
            .filter(|(_, on)| **on)
            .map(|(c, _)| *c)
            .collect();
        let n = names.len().max(1);
        names
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.to_string(),
                    self.replicas / n + usize::from(i < self.replicas % n),
                )
            })
            .collect()
    }

    /// One reconcile of the CafeDeployment, then one round of every set.
    fn reconcile(&mut self) -> Decision {
        let cells = self.cells();
        let update = format!("r{}", self.template);
        let stale = std::mem::take(&mut self.stale);
        // A cut cell is seen as it was last, and holds the share it has.
        let seen = |c: &String| -> Option<Observed> {
            match self.cut.get(c) {
                Some(last) => last.as_ref().map(|s| Observed {
                    held: Some(s.max_unavailable),
                    ..s.observe(c, self.template)
                }),
                None => self.sets.get(c).map(|s| s.observe(c, self.template)),
            }
        };
        let active: Vec<Option<Observed>> = cells
            .iter()
            .map(|(c, _)| {
                seen(c).map(|mut o| {
                    if stale.contains(c) {
                        o.fresh = false;
                    }
                    o
                })
            })
            .collect();
        let removed: Vec<Observed> = self
            .sets
            .keys()
            .filter(|c| !cells.iter().any(|(n, _)| n == *c))
            .filter_map(seen)
            .collect();
        let decision = decide(&Input {
            record: &self.record,
            update: &update,
            cells: &cells,
            active: &active,
            removed: &removed,
            beta: self.beta,
            batch: self.batch,
            need_confirm: self.need_confirm,
            paused: self.paused,
            confirmed: self.confirmed,
        });
        if decision.begins_waiting {
            self.confirmed = false;
            let group = decision.record.awaiting.unwrap_or(0);
            assert!(
                !self.waits.contains(&(self.template, group)),
                "the wait for group {group} of r{} began twice (a confirmation given meanwhile would be lost)",
                self.template
            );
            self.waits.push((self.template, group));
        }
        self.record = decision.record.clone();
        let rev = |r: &Option<String>| {
            r.as_deref()
                .and_then(|r| r.strip_prefix('r'))
                .and_then(|n| n.parse::<u32>().ok())
        };
        for t in &decision.targets {
            if self.cut.contains_key(&t.name) {
                // Not written: it goes on with what it has.
                continue;
            }
            if t.retiring
                && t.replicas == 0
                && self.sets.get(&t.name).is_some_and(|s| s.pods.is_empty())
            {
                self.sets.remove(&t.name);
                continue;
            }
            let set = self.sets.entry(t.name.clone()).or_default();
            set.given = t.replicas;
            set.partition = t.partition;
            set.max_unavailable = t.max_unavailable;
            set.paused = self.paused || t.retiring;
            if !t.retiring {
                set.update = self.template;
                set.stable = rev(&self.record.stable);
            }
        }
        decision
    }

    /// One round of every set: how many available pods the sets the host
    /// can write took out of traffic and how many pods out of traffic on
    /// their own they kept, and how many the cut sets took out (on their
    /// own, within the share they hold: the host sees none of it).
    fn tick(&mut self) -> (usize, usize, usize) {
        let sick = self.sick();
        let mut room = self.pdb.map(|max| max.saturating_sub(sick));
        let cut = &self.cut;
        self.sets
            .iter_mut()
            .fold((0, 0, 0), |(t, s, c), (name, set)| {
                let (taken, sick) = set.step(&mut room);
                if cut.contains_key(name) {
                    (t, s, c + taken)
                } else {
                    (t + taken, s + sick, c)
                }
            })
    }

    fn sick(&self) -> usize {
        self.sets
            .values()
            .flat_map(|s| &s.pods)
            .filter(|p| p.sick)
            .count()
    }
}

impl World {
    /// One reconcile and one round of the sets, checked.
    fn round(&mut self) -> Result<Decision, TestCaseError> {
        let before = on_template(self);
        let seen_before = seen_on_template(self);
        let stable_before = self.record.stable.clone();
        let decision = self.reconcile();
        let (taken, sick, taken_by_cut) = self.tick();
        check(
            self,
            &Round {
                decision: &decision,
                before: &before,
                seen_before: &seen_before,
                stable_before,
                sick,
                taken,
                taken_by_cut,
            },
        )?;
        Ok(decision)
    }
}

/// Pods on the template's revision per cell, before a round.
fn on_template(world: &World) -> BTreeMap<String, usize> {
    world
        .sets
        .iter()
        .map(|(c, s)| {
            (
                c.clone(),
                s.pods.iter().filter(|p| p.rev == world.template).count(),
            )
        })
        .collect()
}

/// `on_template` as the host sees it: a cut cell as it was last seen (what
/// it does alone since, such as replacing a lost pod, is unknown to it).
fn seen_on_template(world: &World) -> BTreeMap<String, usize> {
    let mut seen = on_template(world);
    for (c, last) in &world.cut {
        let n = last.as_ref().map_or(0, |s| {
            s.pods.iter().filter(|p| p.rev == world.template).count()
        });
        seen.insert(c.clone(), n);
    }
    seen
}

/// What a round changed, for the checks.
struct Round<'a> {
    decision: &'a Decision,
    /// Pods on the template per cell before the round.
    before: &'a BTreeMap<String, usize>,
    /// The same, as the host saw them (cut cells as last seen).
    seen_before: &'a BTreeMap<String, usize>,
    /// The stable revision before the round.
    stable_before: Option<String>,
    /// Pods out of traffic on their own that the sets the host can write
    /// kept.
    sick: usize,
    /// Available pods the sets the host can write took out of traffic.
    taken: usize,
    /// Available pods the cut sets took out of traffic, on their own.
    taken_by_cut: usize,
}

fn check(world: &World, round: &Round) -> Result<(), TestCaseError> {
    let (decision, before) = (round.decision, round.before);
    let cells = world.cells();
    let sizes: Vec<usize> = cells.iter().map(|(_, n)| *n).collect();
    let plan = Plan::new(&sizes, world.beta && !decision.record.rollback, world.batch);
    let allowed = if decision.record.releases_stable() {
        sizes.clone()
    } else {
        plan.moved_after(decision.progress.opened)
    };
    let stable_rev = decision
        .record
        .stable
        .as_deref()
        .and_then(|r| r.strip_prefix('r'))
        .and_then(|n| n.parse::<u32>().ok());
    // (a) per cell, pods on the update revision within what the groups opened
    // (pods that existed before a re-plan are never added to, only moved off).
    for ((name, _), allowed) in cells.iter().zip(&allowed) {
        if world.cut.contains_key(name) {
            // Cut off, a set goes on toward what it was last given, under
            // the allowance of when it was given (nothing is written to it
            // since): checked when it was written.
            continue;
        }
        if let Some(set) = world.sets.get(name)
            && Some(world.template) != stable_rev
        {
            let on_update = set.pods.iter().filter(|p| p.rev == world.template).count();
            let had = before.get(name).copied().unwrap_or(0);
            prop_assert!(
                on_update <= (*allowed).max(had),
                "cell {name}: {on_update} pods on r{} but the groups opened allow {allowed} ({:?})",
                world.template,
                decision.record
            );
        }
    }
    // (b) the budget handed out is one group at most, and leaves an endpoint.
    // A cut cell holds the share it was last given, which a smaller budget
    // (a scale-in meanwhile) cannot take back: nothing more is handed out
    // then, and the others get nothing.
    let held: usize = world
        .cut
        .values()
        .flatten()
        .map(|s| s.max_unavailable)
        .sum();
    let bound = decision.budget.max(held);
    let handed: usize = decision.targets.iter().map(|t| t.max_unavailable).sum();
    let desired: usize = sizes.iter().sum();
    prop_assert!(
        handed <= bound,
        "handed {handed}, budget {}, held {held}",
        decision.budget
    );
    prop_assert!(decision.budget <= desired.saturating_sub(1).max(1));
    // (b) over the whole CafeDeployment: a pod leaves traffic only while the
    // pods out of it, for any reason, stay within the budget, and within
    // the PodDisruptionBudget's maxUnavailable.
    // A cut set goes on alone within the share it holds: it cannot learn of
    // pods falling sick elsewhere meanwhile (docs/design.md, Several clusters:
    // a member cut off keeps serving and self-healing at its last partition),
    // so the whole can exceed the budget by at most what the cut sets hold.
    prop_assert!(
        round.taken_by_cut <= held,
        "cut sets took {} pods out of traffic, holding {held}",
        round.taken_by_cut
    );
    // The sets the host writes take a pod out of traffic only while theirs
    // out of it, for any reason, and the cut sets' shares stay within it.
    if round.taken > 0 {
        prop_assert!(
            round.taken + round.sick + held <= bound,
            "{} pods taken out of traffic with {} unhealthy and {held} held: budget {}; targets {:?}; sets {:?}",
            round.taken,
            round.sick,
            decision.budget,
            decision.targets,
            world.sets
        );
        if let Some(max) = world.pdb {
            prop_assert!(
                round.taken + round.sick <= max,
                "PDB maxUnavailable {}",
                max
            );
        }
    }
    // The template's revision becomes stable only from a release whose pods
    // all run it: never from an empty plan (scaled to zero mid-release).
    // (A first creation interrupted by a new template makes the pods it
    // created the stable baseline: that revision is not the template.) A cut
    // cell counts as last seen: complete then, it completed its part.
    let stable = decision.record.stable.clone();
    if stable != round.stable_before
        && let Some(rev) = stable.as_deref().and_then(|r| r.strip_prefix('r'))
        && rev == world.template.to_string()
    {
        let on_it: usize = round.seen_before.values().sum();
        prop_assert!(
            desired > 0 && on_it >= desired,
            "r{} became stable with {} of {} pods on it",
            rev,
            on_it,
            desired
        );
    }
    Ok(())
}

/// A creation stops pacing once a group is available, and a set whose
/// status lags its spec (as it does after every write to it) does not make it
/// pace again: the sets are not rewritten back and forth.
#[test]
fn a_proven_creation_stays_unpaced_while_a_status_lags() {
    let cells = vec![("a".to_string(), 10), ("b".to_string(), 10)];
    let input = |active: &[Option<Observed>]| {
        decide(&Input {
            record: &Record::default(),
            update: "r1",
            cells: &cells,
            active,
            removed: &[],
            beta: false,
            batch: 5,
            need_confirm: false,
            paused: false,
            confirmed: false,
        })
    };
    let paced = |d: &Decision| {
        d.targets
            .iter()
            .map(|t| t.pace_creation)
            .collect::<Vec<_>>()
    };
    assert_eq!(paced(&input(&[None, None])), [true, true]);
    let observed = |available: usize, fresh: bool| Observed {
        name: String::new(),
        given: Some(10),
        live: 10,
        available,
        updated_available: available,
        stable_available: 0,
        fresh,
        held: None,
    };
    let proven = [Some(observed(3, true)), Some(observed(3, true))];
    assert_eq!(paced(&input(&proven)), [false, false]);
    for lagging in [
        [Some(observed(3, false)), Some(observed(3, true))],
        [Some(observed(4, false)), Some(observed(3, false))],
    ] {
        assert_eq!(paced(&input(&lagging)), [false, false], "{lagging:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn invariants_hold_after_every_change_and_every_release_converges(
        ops in proptest::collection::vec(op(), 0..40),
        replicas in 0usize..16,
        beta in any::<bool>(),
        batch in 1usize..6,
        need_confirm in any::<bool>(),
    ) {
        let mut world = World {
            record: Record::default(),
            template: 1,
            replicas,
            values: vec![true, true, false],
            sets: BTreeMap::new(),
            paused: false,
            confirmed: false,
            next_template: 2,
            beta,
            batch,
            need_confirm,
            stale: Vec::new(),
            waits: Vec::new(),
            pdb: None,
            cut: BTreeMap::new(),
        };
        for op in ops {
            match op {
                Op::Template => {
                    world.template = world.next_template;
                    world.next_template += 1;
                }
                Op::Scale(n) => world.replicas = n,
                Op::Cells(on) => {
                    if on.iter().any(|b| *b) {
                        world.values = on;
                    }
                }
                Op::Confirm => world.confirmed = true,
                Op::Pause(p) => world.paused = p,
                Op::Rollback => {
                    if let Some(stable) = world.record.stable.as_deref()
                        .and_then(|r| r.strip_prefix('r'))
                        .and_then(|n| n.parse::<u32>().ok())
                    {
                        world.template = stable;
                        world.record.rollback = true;
                    }
                }
                Op::LosePod(cell) => {
                    if let Some(set) = world.sets.get_mut(CELLS[cell]) {
                        set.pods.pop();
                    }
                }
                Op::Stale(cell) => world.stale.push(CELLS[cell].to_string()),
                Op::Sicken(cell) => {
                    if let Some(p) = world
                        .sets
                        .get_mut(CELLS[cell])
                        .and_then(|s| s.pods.iter_mut().find(|p| !p.sick))
                    {
                        p.sick = true;
                    }
                }
                Op::Heal(cell) => {
                    for p in world.sets.get_mut(CELLS[cell]).into_iter().flat_map(|s| &mut s.pods) {
                        p.sick = false;
                    }
                }
                Op::Pdb(max) => world.pdb = max,
                Op::Cut(cell) => {
                    let name = CELLS[cell].to_string();
                    let last = world.sets.get(&name).cloned();
                    world.cut.entry(name).or_insert(last);
                }
                Op::Rejoin(cell) => {
                    world.cut.remove(CELLS[cell]);
                }
                Op::Tick => {}
            }
            world.round()?;
        }
        // Converges: every cluster answering again, unpaused, confirming
        // every wait, pods healthy again, and scaled up if it was at zero
        // (the release kept goes on).
        world.cut.clear();
        world.paused = false;
        world.replicas = world.replicas.max(4);
        // A budget allowing no disruption holds a release for ever, as it
        // holds a node drain: the person raises it.
        world.pdb = world.pdb.map(|max| max.max(1));
        for p in world.sets.values_mut().flat_map(|s| &mut s.pods) {
            p.sick = false;
        }
        let mut done = false;
        for _ in 0..400 {
            world.confirmed = true;
            let d = world.round()?;
            let cells = world.cells();
            let settled = world.sets.keys().all(|c| cells.iter().any(|(n, _)| n == c))
                && cells.iter().all(|(c, n)| world.sets.get(c).map_or(0, |s| s.pods.len()) == *n);
            if d.progress.phase == progress::Phase::Complete && settled {
                done = true;
                break;
            }
        }
        prop_assert!(done, "the release did not converge: {:?}", world.record);
        let cells = world.cells();
        for (name, size) in &cells {
            let set = world.sets.get(name);
            let pods = set.map_or(0, |s| s.pods.len());
            prop_assert_eq!(pods, *size, "cell {}", name);
            prop_assert!(set.is_none_or(|s| s.pods.iter().all(|p| p.rev == world.template)));
        }
    }
}
