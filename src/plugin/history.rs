//! `kubectl cafe history`: the revisions kept for rollback, their images,
//! and who did each step of their releases — `status.history` merged with
//! each ControllerRevision's own record (annotation
//! `cafe.sofastack.io/history`), which outlives the status's last 50 entries.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;
use kube::api::ListParams;
use serde::Serialize;

use super::session::{Failure, Session, unreachable};
use crate::api::names::{CAFEDEPLOYMENT_UID_LABEL, condition};
use crate::api::{CafeDeployment, HistoryEntry, REVISION_HISTORY_ANNOTATION};

/// The revisions of a CafeDeployment, oldest first.
pub(super) async fn revisions(
    s: &Session,
    cd: &CafeDeployment,
) -> Result<Vec<ControllerRevision>, Failure> {
    let uid = cd.uid().unwrap_or_default();
    let mut items = s
        .api::<ControllerRevision>()
        .list(&ListParams::default().labels(&format!("{CAFEDEPLOYMENT_UID_LABEL}={uid}")))
        .await
        .map_err(unreachable)?
        .items;
    items.sort_by_key(|r| r.revision);
    Ok(items)
}

/// A revision's images, `container=image`, as `set image` takes them.
pub(super) fn images(revision: &ControllerRevision) -> Vec<String> {
    revision
        .data
        .as_ref()
        .and_then(|d| d.0.get("spec")?.get("template").cloned())
        .and_then(|t| serde_json::from_value::<PodTemplateSpec>(t).ok())
        .and_then(|t| t.spec)
        .map(|spec| {
            spec.containers
                .iter()
                .map(|c| format!("{}={}", c.name, c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// `kubectl cafe history NAME [-o json|yaml]`.
pub(super) async fn history(s: &Session, name: &str) -> Result<u8, Failure> {
    let cd = s.cd(name).await?;
    let kept = revisions(s, &cd).await?;
    let doc = document(&cd, &kept);
    if s.print(&doc) {
        return Ok(0);
    }
    for line in lines(&doc) {
        println!("{line}");
    }
    Ok(0)
}

/// What `history -o json` prints: one document for tools.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Document {
    pub name: String,
    pub namespace: String,
    /// The condition SignoffVerified is True: a sign-off policy vouches for
    /// the names in `by`.
    pub verified: bool,
    /// Why not, when not (the condition's message).
    #[serde(skip)]
    pub unverified_because: Option<String>,
    /// The kept revisions, by number.
    pub revisions: Vec<Revision>,
    /// Every entry known (status and all revisions' records), by seq.
    pub history: Vec<HistoryEntry>,
}

/// One kept revision.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Revision {
    pub number: i64,
    pub name: String,
    pub images: Vec<String>,
    /// `status.currentRevision`: what every pod ran when the last release
    /// completed (the stable one).
    pub current: bool,
    /// `status.updateRevision`: the one being released (or released).
    pub update: bool,
    /// Its entries, from status and its own record, by seq.
    pub history: Vec<HistoryEntry>,
    /// Entries of its record that this plugin cannot read (a newer
    /// operator's, or a damaged annotation).
    #[serde(skip_serializing_if = "is_zero")]
    pub unreadable: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The entries a revision's annotation holds, and how many of them cannot
/// be read (each entry on its own: one unknown action loses only itself).
pub fn recorded(revision: &ControllerRevision) -> (Vec<HistoryEntry>, usize) {
    let Some(text) = revision.annotations().get(REVISION_HISTORY_ANNOTATION) else {
        return (Vec::new(), 0);
    };
    let Ok(items) = serde_json::from_str::<Vec<serde_json::Value>>(text) else {
        return (Vec::new(), 1);
    };
    let mut unreadable = 0;
    let entries = items
        .into_iter()
        .filter_map(|v| {
            serde_json::from_value(v)
                .inspect_err(|_| unreadable += 1)
                .ok()
        })
        .collect();
    (entries, unreadable)
}

/// The entries of all `lists`, one per seq (the first one seen), by seq.
pub fn merged<'e>(lists: impl IntoIterator<Item = &'e HistoryEntry>) -> Vec<HistoryEntry> {
    let mut by_seq = BTreeMap::new();
    for e in lists {
        by_seq.entry(e.seq).or_insert_with(|| e.clone());
    }
    by_seq.into_values().collect()
}

/// Whether the CafeDeployment's condition SignoffVerified is True, and why
/// not when it is not.
pub fn verification(cd: &CafeDeployment) -> Result<(), String> {
    let found = cd
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == condition::SIGNOFF_VERIFIED);
    match found {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) if !c.message.is_empty() => Err(c.message.clone()),
        Some(c) => Err(format!(
            "condition {} is {} ({})",
            c.type_, c.status, c.reason
        )),
        None => Err(format!(
            "the operator has not reported whether a sign-off policy is in force \
             (no condition {})",
            condition::SIGNOFF_VERIFIED
        )),
    }
}

/// The history document of `cd` and its kept revisions.
pub fn document(cd: &CafeDeployment, kept: &[ControllerRevision]) -> Document {
    let status = cd.status.clone().unwrap_or_default();
    let mut all: Vec<HistoryEntry> = status.history.clone();
    let revisions = kept
        .iter()
        .map(|r| {
            let name = r.name_any();
            let (own, unreadable) = recorded(r);
            all.extend(own.iter().cloned());
            let history = merged(
                status
                    .history
                    .iter()
                    .filter(|e| e.revision == name)
                    .chain(&own),
            );
            Revision {
                number: r.revision,
                current: status.current_revision.as_deref() == Some(name.as_str()),
                update: status.update_revision.as_deref() == Some(name.as_str()),
                images: images(r),
                name,
                history,
                unreadable,
            }
        })
        .collect();
    let verified = verification(cd);
    Document {
        name: cd.name_any(),
        namespace: cd.namespace().unwrap_or_default(),
        verified: verified.is_ok(),
        unverified_because: verified.err(),
        revisions,
        history: merged(&all),
    }
}

/// What an entry came from and its details, in a few words.
fn detail(e: &HistoryEntry) -> String {
    match (e.source.is_empty(), e.message.is_empty()) {
        (false, false) => format!("{}: {}", e.source, e.message),
        (false, true) => e.source.clone(),
        (true, false) => e.message.clone(),
        (true, true) => String::new(),
    }
}

/// The column widths of the entry lines: action, `by X`, `group N`.
struct Widths {
    action: usize,
    by: usize,
    group: usize,
}

fn widths(entries: &[HistoryEntry]) -> Widths {
    let max = |f: &dyn Fn(&HistoryEntry) -> usize| entries.iter().map(f).max().unwrap_or(0);
    Widths {
        action: max(&|e| e.action.as_str().len()),
        by: max(&|e| e.by.chars().count() + 3),
        group: max(&|e| e.group.map_or(0, |g| format!("group {g}").len())),
    }
}

/// One entry: time (RFC 3339), action, by, group, what it came from.
fn entry_line(e: &HistoryEntry, w: &Widths) -> String {
    let mut columns = vec![
        e.at.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        format!("{:<1$}", e.action.as_str(), w.action),
        format!("{:<1$}", format!("by {}", e.by), w.by),
    ];
    if w.group > 0 {
        let group = e.group.map_or(String::new(), |g| format!("group {g}"));
        columns.push(format!("{group:<0$}", w.group));
    }
    columns.push(detail(e));
    format!("  {}", columns.join("  ")).trim_end().to_string()
}

/// What `history` prints: the verification, then each revision with its
/// entries — first those of revisions no longer kept (the older ones),
/// then the kept ones by number.
pub fn lines(doc: &Document) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = &doc.unverified_because {
        out.push(format!("identities are unverified: {why}"));
    }
    let w = widths(&doc.history);
    // Entries of revisions no longer kept, by revision, in order of their first.
    let mut gone: Vec<(&str, Vec<&HistoryEntry>)> = Vec::new();
    for e in &doc.history {
        if doc.revisions.iter().any(|r| r.name == e.revision) {
            continue;
        }
        match gone.iter_mut().find(|(name, _)| *name == e.revision) {
            Some((_, entries)) => entries.push(e),
            None => gone.push((&e.revision, vec![e])),
        }
    }
    for (name, entries) in gone {
        let name = if name.is_empty() { "-" } else { name };
        out.push(format!("revision -  {name}  (revision no longer kept)"));
        out.extend(entries.into_iter().map(|e| entry_line(e, &w)));
    }
    for r in &doc.revisions {
        let mark = match (r.current, r.update) {
            (true, _) => "  (stable)",
            (false, true) => "  (update)",
            (false, false) => "",
        };
        out.push(format!(
            "revision {}  {}{mark}  {}",
            r.number,
            r.name,
            r.images.join(",")
        ));
        if r.history.is_empty() {
            out.push("  (no history recorded)".to_string());
        }
        out.extend(r.history.iter().map(|e| entry_line(e, &w)));
        if r.unreadable > 0 {
            out.push(format!(
                "  ({} entr{} of its annotation {REVISION_HISTORY_ANNOTATION} cannot be read \
                 by this kubectl-cafe: update it)",
                r.unreadable,
                if r.unreadable == 1 { "y" } else { "ies" }
            ));
        }
    }
    if doc.revisions.is_empty() && doc.history.is_empty() {
        out.push(format!("{}: no revisions kept yet", doc.name));
    }
    out
}

#[cfg(test)]
mod tests;
