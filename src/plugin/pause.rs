//! `kubectl cafe pause NAME` / `resume NAME`: `spec.strategy.pause`.

use serde_json::json;

use super::session::{Failure, Session};

/// Pauses (`on`) or resumes `name`; says what happened.
pub(crate) async fn pause(s: &Session, name: &str, on: bool) -> Result<String, Failure> {
    let cd = s.cd(name).await?;
    if cd.spec.strategy.pause == on {
        return Ok(format!(
            "{name}: already {}",
            if on { "paused" } else { "running" }
        ));
    }
    s.patch(name, json!({"spec": {"strategy": {"pause": on}}}))
        .await?;
    Ok(format!("{name}: {}", if on { "paused" } else { "resumed" }))
}
