//! The world the release tests drive: the CafeDeployment's record and spec,
//! the cells' sets, and the random changes made to them.

use super::check::{Round, check, on_template, seen_on_template};
use super::model::Set;
use super::*;

#[derive(Clone, Debug)]
pub(super) enum Op {
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

pub(super) fn op() -> impl Strategy<Value = Op> {
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

pub(super) struct World {
    pub(super) record: Record,
    pub(super) template: u32,
    pub(super) replicas: usize,
    pub(super) values: Vec<bool>,
    pub(super) sets: BTreeMap<String, Set>,
    pub(super) paused: bool,
    pub(super) confirmed: bool,
    pub(super) next_template: u32,
    pub(super) beta: bool,
    pub(super) batch: usize,
    /// Without confirmation a release opens every group; the budget paces it.
    pub(super) need_confirm: bool,
    /// Cells whose next observation is stale.
    pub(super) stale: Vec<String>,
    /// Each cell's last report (its set's template then, and its counts).
    pub(super) reported: BTreeMap<String, (u32, Observed)>,
    /// (template, group) of every wait that began: none begins twice.
    pub(super) waits: Vec<(u32, usize)>,
    pub(super) pdb: Option<usize>,
    /// Cells whose cluster does not answer, with their set as last seen.
    pub(super) cut: BTreeMap<String, Option<Set>>,
}

impl World {
    /// A world on template r1 over cells a and b, nothing created yet.
    pub(super) fn new(replicas: usize, beta: bool, batch: usize, need_confirm: bool) -> Self {
        World {
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
            reported: BTreeMap::new(),
            waits: Vec::new(),
            pdb: None,
            cut: BTreeMap::new(),
        }
    }

    pub(super) fn cells(&self) -> Vec<(String, usize)> {
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
        let (active, removed) = self.observe(&cells);
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
        self.write(&decision.targets);
        decision
    }

    /// The sets as the CafeDeployment sees them: per cell of `cells` (stale
    /// where marked so, for this round only), and those of cells removed.
    fn observe(&mut self, cells: &[(String, usize)]) -> (Vec<Option<Observed>>, Vec<Observed>) {
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
                seen(c).map(|o| match self.reported.get(c) {
                    Some(then) if stale.contains(c) => self.lagging(c, then, o),
                    _ => o,
                })
            })
            .collect();
        let removed: Vec<Observed> = self
            .sets
            .keys()
            .filter(|c| !cells.iter().any(|(n, _)| n == *c))
            .filter_map(seen)
            .collect();
        for ((c, _), o) in cells.iter().zip(&active) {
            if let (Some(o), Some(set)) = (o, self.sets.get(c))
                && !stale.contains(c)
            {
                self.reported.insert(c.clone(), (set.update, o.clone()));
            }
        }
        (active, removed)
    }

    /// A set whose status lags the spec written last: it shows none of the
    /// pods moved since its last report (`then`), as the InPlaceSet's status
    /// does until its controller acts on the write; a status counted for the
    /// set's template before counts nothing of this release.
    fn lagging(&self, cell: &str, then: &(u32, Observed), now: Observed) -> Observed {
        let (template, then) = then;
        let same = self
            .sets
            .get(cell)
            .is_some_and(|s| s.update == *template && s.update == self.template);
        let count = |a: usize, b: usize| if same { a.min(b) } else { 0 };
        Observed {
            live: then.live.min(now.live),
            available: then.available.min(now.available),
            updated_available: count(then.updated_available, now.updated_available),
            stable_available: count(then.stable_available, now.stable_available),
            ..now
        }
    }

    /// Write the targets to the sets the host can reach; a retired set with
    /// no pods left goes.
    fn write(&mut self, targets: &[Target]) {
        let rev = |r: &Option<String>| {
            r.as_deref()
                .and_then(|r| r.strip_prefix('r'))
                .and_then(|n| n.parse::<u32>().ok())
        };
        for t in targets {
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

    /// One reconcile and one round of the sets, checked.
    pub(super) fn round(&mut self) -> Result<Decision, TestCaseError> {
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

    /// Make the change `op` (a round follows each).
    pub(super) fn apply(&mut self, op: Op) {
        match op {
            Op::Template => {
                self.template = self.next_template;
                self.next_template += 1;
            }
            Op::Scale(n) => self.replicas = n,
            Op::Cells(on) => {
                if on.iter().any(|b| *b) {
                    self.values = on;
                }
            }
            Op::Confirm => self.confirmed = true,
            Op::Pause(p) => self.paused = p,
            Op::Rollback => {
                if let Some(stable) = self
                    .record
                    .stable
                    .as_deref()
                    .and_then(|r| r.strip_prefix('r'))
                    .and_then(|n| n.parse::<u32>().ok())
                {
                    self.template = stable;
                    self.record.rollback = true;
                }
            }
            Op::LosePod(cell) => {
                if let Some(set) = self.sets.get_mut(CELLS[cell]) {
                    set.pods.pop();
                }
            }
            Op::Stale(cell) => self.stale.push(CELLS[cell].to_string()),
            Op::Sicken(cell) => {
                if let Some(p) = self
                    .sets
                    .get_mut(CELLS[cell])
                    .and_then(|s| s.pods.iter_mut().find(|p| !p.sick))
                {
                    p.sick = true;
                }
            }
            Op::Heal(cell) => {
                for p in self
                    .sets
                    .get_mut(CELLS[cell])
                    .into_iter()
                    .flat_map(|s| &mut s.pods)
                {
                    p.sick = false;
                }
            }
            Op::Pdb(max) => self.pdb = max,
            Op::Cut(cell) => {
                let name = CELLS[cell].to_string();
                let last = self.sets.get(&name).cloned();
                self.cut.entry(name).or_insert(last);
            }
            Op::Rejoin(cell) => {
                self.cut.remove(CELLS[cell]);
            }
            Op::Tick => {}
        }
    }

    /// Converges: every cluster answering again, unpaused, confirming
    /// every wait, pods healthy again, and scaled up if it was at zero
    /// (the release kept goes on). Checks every round, and the end state.
    pub(super) fn converge(&mut self) -> Result<(), TestCaseError> {
        self.cut.clear();
        self.paused = false;
        self.replicas = self.replicas.max(4);
        // A budget allowing no disruption holds a release for ever, as it
        // holds a node drain: the person raises it.
        self.pdb = self.pdb.map(|max| max.max(1));
        for p in self.sets.values_mut().flat_map(|s| &mut s.pods) {
            p.sick = false;
        }
        let mut done = false;
        for _ in 0..400 {
            self.confirmed = true;
            let d = self.round()?;
            let cells = self.cells();
            let settled = self.sets.keys().all(|c| cells.iter().any(|(n, _)| n == c))
                && cells
                    .iter()
                    .all(|(c, n)| self.sets.get(c).map_or(0, |s| s.pods.len()) == *n);
            if d.progress.phase == progress::Phase::Complete && settled {
                done = true;
                break;
            }
        }
        prop_assert!(done, "the release did not converge: {:?}", self.record);
        let cells = self.cells();
        for (name, size) in &cells {
            let set = self.sets.get(name);
            let pods = set.map_or(0, |s| s.pods.len());
            prop_assert_eq!(pods, *size, "cell {}", name);
            prop_assert!(set.is_none_or(|s| s.pods.iter().all(|p| p.rev == self.template)));
        }
        Ok(())
    }
}
