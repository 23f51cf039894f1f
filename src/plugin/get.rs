//! `kubectl cafe get NAME [-w]`: a release's header and tree, once or
//! redrawn on every change until it completes or stalls.

use std::time::Duration;

use super::session::{Failure, Session};
use super::{view, watch};

pub(super) async fn get(
    s: &Session,
    name: &str,
    follow: bool,
    timeout: Option<Duration>,
) -> Result<u8, Failure> {
    if follow {
        return watch::watch_release(s, name, timeout, false, true).await;
    }
    let cd = s.cd(name).await?;
    if s.print(&cd) {
        return Ok(0);
    }
    let snap = s.snapshot(cd).await?;
    for line in view::frame(&snap) {
        println!("{line}");
    }
    Ok(0)
}
