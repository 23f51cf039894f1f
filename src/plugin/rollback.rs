//! `kubectl cafe rollback NAME [--to-revision N]`: `spec.rollbackTo`, to a
//! revision `history` lists.

use kube::ResourceExt;
use serde_json::json;

use super::history;
use super::session::{Failure, Session, refused};

/// Rolls `name` back to revision `to` (default: the newest earlier one);
/// says to which.
pub(crate) async fn rollback(s: &Session, name: &str, to: Option<i64>) -> Result<String, Failure> {
    let cd = s.cd(name).await?;
    let history = history::revisions(s, &cd).await?;
    let update = cd.status.as_ref().and_then(|st| st.update_revision.clone());
    let target = match to {
        Some(n) => history.iter().find(|r| r.revision == n),
        None => history
            .iter()
            .filter(|r| Some(r.name_any()) != update)
            .max_by_key(|r| r.revision),
    };
    let Some(target) = target else {
        let kept: Vec<i64> = history.iter().map(|r| r.revision).collect();
        return Err(refused(match to {
            Some(n) => format!(
                "{name} has no revision {n} (kept: {kept:?}); see `kubectl cafe history {name}`"
            ),
            None => format!("{name} has no earlier revision to roll back to"),
        }));
    };
    s.patch(
        name,
        json!({"spec": {"rollbackTo": {"revision": target.revision}}}),
    )
    .await?;
    Ok(format!(
        "{name}: rolling back to revision {} ({})",
        target.revision,
        history::images(target).join(",")
    ))
}
