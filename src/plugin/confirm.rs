//! `kubectl cafe confirm NAME`: confirm the group the release waits for,
//! by the confirmation annotation (as `kubectl annotate` would).

use kube::ResourceExt;
use kube::api::Patch;
use serde_json::json;

use super::session::{Failure, MANAGER, Session, api_failure, refused};
use crate::api::names::UPGRADE_CONFIRMED_ANNOTATION;
use crate::api::{CafeDeployment, Phase};
use crate::runtime::patch_as;

/// Confirms the group `name` waits for; says what happened.
pub(crate) async fn confirm(s: &Session, name: &str) -> Result<String, Failure> {
    let cd = s.cd(name).await?;
    let status = cd.status.clone().unwrap_or_default();
    if status.phase != Some(Phase::WaitingForConfirm) {
        return Err(refused(format!(
            "{name} waits for no confirmation (phase {}); `kubectl cafe get {name}` shows what it does",
            status.phase.map_or("Unknown".into(), |p| format!("{p:?}"))
        )));
    }
    if cd
        .annotations()
        .get(UPGRADE_CONFIRMED_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        return Ok(format!("{name}: already confirmed; the next group starts"));
    }
    // Conditional on what was read: a confirmation lands on the wait it saw.
    // The operator writes the object's status meanwhile (counts catching up):
    // as long as the same wait is on record, confirm again on the new version.
    let wait = status
        .release
        .as_ref()
        .and_then(|r| r.awaiting_confirmation.clone());
    let mut seen = cd;
    for _ in 0..5 {
        let patch = json!({"metadata": {
            "resourceVersion": seen.resource_version(),
            "annotations": {UPGRADE_CONFIRMED_ANNOTATION: "true"}
        }});
        match s
            .api::<CafeDeployment>()
            .patch(name, &patch_as(MANAGER), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                let release = status.release.unwrap_or_default();
                return Ok(format!(
                    "{name}: confirmed group {} of {}",
                    release.group + 1,
                    release.groups
                ));
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                seen = s.cd(name).await?;
                let still = seen.status.as_ref().and_then(|st| {
                    (st.phase == Some(Phase::WaitingForConfirm))
                        .then(|| st.release.as_ref()?.awaiting_confirmation.clone())
                        .flatten()
                });
                if still.is_none() || still != wait {
                    break;
                }
            }
            // Refused by the API server (four-eyes, RBAC): its words, exit 1.
            Err(e) => return Err(api_failure(e)),
        }
    }
    Err(refused(format!(
        "{name} changed while confirming; look again with `kubectl cafe get {name}` and confirm again"
    )))
}
