//! What the console's page shows, pure: the watched objects in, one JSON
//! document per release and one for the whole cluster out (the page's
//! contract is in `assets/app.js`). Every word a button or dialog says is
//! decided here, where it is unit-tested, not in the script.

//!
//! `release` makes a release's document (its grid of cells by groups),
//! `record` what it tells of the release's record (banners, analysis,
//! history), `actions` the buttons and what each says, `global` the
//! cluster-wide document; `document` is the JSON's shape, `digest` what the
//! console keeps of pods and sets.

mod actions;
mod digest;
mod document;
mod global;
mod record;
mod release;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::{CafeDeployment, MemberCluster, ReleaseFreeze};

pub use digest::{PodDigest, SetDigest};
pub use document::{
    Action, Analysis, Banner, Cell, CellGroup, Freeze, Global, GroupCount, GroupHead, Measurement,
    Member, PodRow, Release, Revisions, Step,
};
pub use global::global;
pub use release::{key, releases};

/// Everything the console watches, at one moment.
pub struct World<'a> {
    pub cds: &'a [Arc<CafeDeployment>],
    pub sets: &'a [Arc<SetDigest>],
    pub pods: &'a [Arc<PodDigest>],
    pub freezes: &'a [Arc<ReleaseFreeze>],
    pub members: &'a [Arc<MemberCluster>],
    pub rights: &'a Rights,
}

/// What the person may do, as the API server answered (see `rights`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    pub who: Option<String>,
    pub read_only: bool,
    /// Namespace -> may patch CafeDeployments there.
    pub operate: BTreeMap<String, bool>,
    pub freeze: bool,
    pub thaw: bool,
}

impl Rights {
    fn you(&self) -> String {
        self.who
            .as_deref()
            .map_or("you".to_string(), |w| format!("you ({w})"))
    }

    /// Why an action is not offered, or None when it is.
    fn refusal(&self, allowed: bool, what: &str) -> Option<String> {
        if self.read_only {
            Some("read-only console (--read-only)".to_string())
        } else if !allowed {
            Some(format!("{} may not {what}", self.you()))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
