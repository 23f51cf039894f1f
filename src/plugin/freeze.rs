//! `kubectl cafe freeze` / `unfreeze`: the emergency stop of every release
//! in progress (in every cluster the host releases to), or of those a
//! namespace list or a label selector picks, recorded as a ReleaseFreeze
//! with who, why and when; thawing keeps the record. Who froze and who
//! thawed are written by the API server (the sign-off policy stamps
//! `spec.requestedBy` and `spec.thawed.by`, and refuses values a client
//! sends): the plugin sends neither and prints what was recorded.

use kube::api::{ListParams, Patch, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::session::{Failure, MANAGER, Session, api_failure, refused, unreachable};
use crate::api::{CafeDeployment, Phase, ReleaseFreeze};
use crate::runtime::patch_as;

/// Who the API server recorded, in words: "by alice", or that nobody
/// vouches for it.
pub fn recorded_by(by: Option<&str>) -> String {
    match by.filter(|b| !b.is_empty()) {
        Some(b) => format!("by {b}"),
        None => "by an unverified user (no sign-off policy stamped it)".to_string(),
    }
}

/// A label selector as `kubectl -l` writes it: `k=v,k2=v2` (equality only).
fn parse_selector(text: &str) -> Result<serde_json::Value, Failure> {
    let mut labels = serde_json::Map::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(refused(format!(
                "-l {text}: write labels as key=value[,key=value]"
            )));
        };
        labels.insert(
            k.trim().to_string(),
            json!(v.trim().trim_start_matches('=')),
        );
    }
    Ok(json!({"matchLabels": labels}))
}

/// The ReleaseFreeze `freeze` creates: what and why, never who (the API
/// server writes `spec.requestedBy`).
fn request(
    name: &str,
    reason: &str,
    namespaces: &[String],
    selector: Option<&str>,
) -> Result<ReleaseFreeze, Failure> {
    let mut spec = json!({"reason": reason, "namespaces": namespaces});
    if let Some(sel) = selector {
        spec["selector"] = parse_selector(sel)?;
    }
    serde_json::from_value(json!({
        "apiVersion": crate::api::names::API_VERSION, "kind": "ReleaseFreeze",
        "metadata": {"name": name}, "spec": spec
    }))
    .map_err(|e| refused(e.to_string()))
}

/// The patch that thaws a freeze: when, never who (the API server writes
/// `spec.thawed.by`).
fn thaw(at: &str) -> serde_json::Value {
    json!({"spec": {"thawed": {"at": at}}})
}

/// A freeze as the person asked for it: why, over what, its name.
pub(crate) struct Asked<'a> {
    pub reason: &'a str,
    /// Only these namespaces (none: all of them).
    pub namespaces: &'a [String],
    /// Only CafeDeployments with these labels (`k=v,k2=v2`).
    pub selector: Option<&'a str>,
    /// Its name (none: `freeze-<date>-<time>`).
    pub name: Option<&'a str>,
}

pub(super) async fn freeze(s: &Session, asked: &Asked<'_>) -> Result<u8, Failure> {
    let made = create(s, asked).await?;
    if s.print(&made) {
        return Ok(0);
    }
    println!("{}", said(s, &made).await);
    Ok(0)
}

/// Creates a ReleaseFreeze (named `freeze-<date>-<time>` unless named).
pub(crate) async fn create(s: &Session, asked: &Asked<'_>) -> Result<ReleaseFreeze, Failure> {
    let name = asked.name.map_or_else(
        || {
            format!(
                "freeze-{}",
                k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S")
            )
        },
        str::to_string,
    );
    let body = request(&name, asked.reason, asked.namespaces, asked.selector)?;
    let freezes: Api<ReleaseFreeze> = Api::all(s.client.clone());
    let pp = PostParams {
        field_manager: Some(MANAGER.to_string()),
        ..PostParams::default()
    };
    freezes.create(&pp, &body).await.map_err(|e| match e {
        kube::Error::Api(r) if r.code == 409 => refused(r.message),
        kube::Error::Api(r) if r.code == 404 => refused(
            "the ReleaseFreeze CRD is not installed: install the operator's CRDs \
             (cafe-operator crd | kubectl apply --server-side -f -)",
        ),
        e => api_failure(e),
    })
}

/// What a new freeze does, and the releases in progress it holds now.
pub(crate) async fn said(s: &Session, made: &ReleaseFreeze) -> String {
    let name = made.name_any();
    let mut text = format!(
        "ReleaseFreeze {name} created {}: no group opens and no pod starts moving in the \
         releases it holds, in every cluster, until: kubectl cafe unfreeze {name}\n",
        recorded_by(made.spec.requested_by.as_deref())
    );
    // The freeze is made: a person who may not list every CafeDeployment
    // is told so, not told the freeze failed.
    let Ok(held) = releases_held(s, made).await else {
        text.push_str("The releases it holds now could not be listed with your rights.");
        return text;
    };
    if held.is_empty() {
        text.push_str(
            "No release is in progress in what it selects now; releases that start later wait too.",
        );
    } else {
        text.push_str(&format!(
            "Releases in progress it holds now: {}",
            held.join(", ")
        ));
    }
    text
}

/// The releases in progress `freeze` selects, as `namespace/name`.
async fn releases_held(s: &Session, freeze: &ReleaseFreeze) -> Result<Vec<String>, Failure> {
    let cds: Api<CafeDeployment> = Api::all(s.client.clone());
    let all = cds
        .list(&ListParams::default())
        .await
        .map_err(unreachable)?
        .items;
    Ok(all
        .iter()
        .filter(|cd| freeze.holds(&cd.namespace().unwrap_or_default(), cd.labels()))
        .filter(|cd| {
            cd.status
                .as_ref()
                .and_then(|st| st.phase)
                .is_some_and(|p| p != Phase::Healthy)
        })
        .map(|cd| format!("{}/{}", cd.namespace().unwrap_or_default(), cd.name_any()))
        .collect())
}

pub(super) async fn unfreeze(s: &Session, names: &[String], all: bool) -> Result<u8, Failure> {
    let freezes: Api<ReleaseFreeze> = Api::all(s.client.clone());
    let names: Vec<String> = if all {
        freezes
            .list(&ListParams::default())
            .await
            .map_err(unreachable)?
            .items
            .iter()
            .filter(|f| f.spec.thawed.is_none())
            .map(ResourceExt::name_any)
            .collect()
    } else if names.is_empty() {
        return Err(refused(
            "name the freezes to thaw (kubectl get releasefreezes), or --all",
        ));
    } else {
        names.to_vec()
    };
    for name in &names {
        println!("{}", thaw_one(s, name).await?);
    }
    Ok(0)
}

/// Thaws freeze `name`; says by whom, as the API server recorded it.
pub(crate) async fn thaw_one(s: &Session, name: &str) -> Result<String, Failure> {
    let freezes: Api<ReleaseFreeze> = Api::all(s.client.clone());
    match freezes.get_opt(name).await.map_err(unreachable)? {
        None => return Err(refused(format!("ReleaseFreeze {name} not found"))),
        Some(f) if f.spec.thawed.is_some() => {
            return Ok(format!("ReleaseFreeze {name} was thawed already"));
        }
        Some(_) => {}
    }
    let patch = thaw(&k8s_openapi::jiff::Timestamp::now().to_string());
    let thawed = freezes
        .patch(name, &patch_as(MANAGER), &Patch::Merge(&patch))
        .await
        .map_err(api_failure)?;
    Ok(format!(
        "ReleaseFreeze {name} thawed {}: the releases it held go on (the record stays)",
        recorded_by(thawed.spec.thawed.as_ref().and_then(|t| t.by.as_deref()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_froze_is_what_the_api_server_recorded() {
        assert_eq!(recorded_by(Some("alice")), "by alice");
        for nobody in [None, Some("")] {
            assert_eq!(
                recorded_by(nobody),
                "by an unverified user (no sign-off policy stamped it)"
            );
        }
    }

    #[test]
    fn neither_a_freeze_nor_a_thaw_sends_who() {
        let body =
            request("f", "incident 4711", &["shop".into()], Some("tier=core")).expect("a freeze");
        let sent = serde_json::to_value(&body).expect("json");
        assert_eq!(
            sent["spec"],
            json!({"reason": "incident 4711", "namespaces": ["shop"],
                   "selector": {"matchLabels": {"tier": "core"}}})
        );
        assert_eq!(
            thaw("2026-12-07T10:00:00Z"),
            json!({"spec": {"thawed": {"at": "2026-12-07T10:00:00Z"}}})
        );
    }
}
