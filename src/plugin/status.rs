//! `kubectl cafe status NAME`: wait for the release like `kubectl rollout
//! status` (or, with `--watch=false`, report once), one line per change.

use std::time::Duration;

use super::session::{Failure, Session};
use super::{view, watch};
use crate::api::CafeDeployment;

pub(super) async fn status(
    s: &Session,
    name: &str,
    timeout: Option<Duration>,
    success_on_wait: bool,
    follow: bool,
) -> Result<u8, Failure> {
    if follow {
        return watch::watch_release(s, name, timeout, success_on_wait, false).await;
    }
    let cd = s.cd(name).await?;
    println!("{}", status_line(&cd));
    match view::verdict(&cd, success_on_wait) {
        Some(v) => Ok(v.exit_code()),
        // Still moving: like `kubectl rollout status --watch=false`, not done.
        None => Ok(2),
    }
}

/// The release in one line: phase, what it does, group and pods.
pub(super) fn status_line(cd: &CafeDeployment) -> String {
    let status = cd.status.clone().unwrap_or_default();
    let release = status.release.unwrap_or_default();
    format!(
        "{} {}: {} (group {}/{}, {} of {} pods updated)",
        view::icon(status.phase),
        status.phase.map_or("Unknown".into(), |p| format!("{p:?}")),
        release.message,
        release.group,
        release.groups,
        status.updated_replicas,
        cd.spec.replicas
    )
}
