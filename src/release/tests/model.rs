//! The model of an InPlaceSet the release tests drive: its pods, and one
//! round of what the set does with what the CafeDeployment gave it.

use super::*;

/// A pod in the model: its revision, whether it is out of traffic because
/// the operator is moving it (it comes back on the next step), and whether
/// it is out of traffic on its own (its probe fails, its node is lost).
#[derive(Clone, Debug)]
pub(super) struct Pod {
    pub(super) rev: u32,
    pub(super) moving: bool,
    pub(super) sick: bool,
}

impl Pod {
    fn available(&self) -> bool {
        !self.moving && !self.sick
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Set {
    pub(super) pods: Vec<Pod>,
    pub(super) given: usize,
    pub(super) partition: usize,
    pub(super) max_unavailable: usize,
    pub(super) paused: bool,
    pub(super) update: u32,
    pub(super) stable: Option<u32>,
}

/// Pods of `pods` on revision `u`.
fn on_update(pods: &[Pod], u: u32) -> usize {
    pods.iter().filter(|p| p.rev == u).count()
}

impl Set {
    /// As the CafeDeployment observes the set while releasing `update`: the
    /// counts of a set whose template is another revision describe nothing
    /// of this release (as `carries` reads the set's revision annotation).
    pub(super) fn observe(&self, name: &str, update: u32) -> Observed {
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
            held: None,
        }
    }

    /// One round of the InPlaceSet: moving pods land, then scale, create,
    /// move. `pdb`: what a PodDisruptionBudget over every set's pods still
    /// allows out of traffic (shared by the sets, as the operator's ledger is).
    /// Returns how many available pods it took out of traffic, and how many
    /// pods out of traffic on their own it kept (a scale-in takes those first).
    pub(super) fn step(&mut self, pdb: &mut Option<usize>) -> (usize, usize) {
        for p in &mut self.pods {
            p.moving = false;
        }
        let want_update = self.given - self.partition.min(self.given);
        self.scale(want_update);
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
            if let Some(rev) = self.moves_to(i, want_update) {
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

    /// Scale to `given`: in, strays then surplus (not-ready pods would go
    /// first); out, new pods on the update until it holds its share.
    fn scale(&mut self, want_update: usize) {
        while self.pods.len() > self.given {
            let stray = self
                .pods
                .iter()
                .position(|p| p.rev != self.update && Some(p.rev) != self.stable);
            let idx = stray.unwrap_or(self.pods.len() - 1);
            self.pods.remove(idx);
        }
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
    }

    /// The revision pod `i` moves to now, if it moves.
    fn moves_to(&self, i: usize, want_update: usize) -> Option<u32> {
        let updated = on_update(&self.pods, self.update);
        let p = &self.pods[i];
        if p.rev == self.update {
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
        }
    }
}
