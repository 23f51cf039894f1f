//! What holds a release besides the user's pause, pure: an emergency
//! ReleaseFreeze, or a deny window (the CafeDeployment's own, or a
//! ReleaseFreeze's scheduled ones) unless an override opens it. Time rules
//! are the controller's (CEL has no clock): `now` decides.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::history::FreezeFact;
use super::model::Frozen;
use crate::api::{
    CafeDeployment, DenyWindow, ReleaseFreeze, UNVERIFIED, WINDOW_OVERRIDE_ANNOTATION,
    WindowStatus, stamp,
};
use crate::release::window;

/// What holds a CafeDeployment now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Held {
    /// The freeze or window that holds it (as a pause), if any.
    pub frozen: Option<Frozen>,
    /// The deny window in force, held or overridden.
    pub window: Option<WindowStatus>,
    /// Every ReleaseFreeze that selects it, for the history.
    pub freezes: Vec<FreezeFact>,
    /// Seconds until a window begins or ends: the controller looks again then.
    pub wake: Option<i64>,
}

/// The freezes and windows that apply to `cd` at `now`. `verified`: the
/// override's stamp is the API server's word.
pub fn held(
    cd: &CafeDeployment,
    freezes: &[Arc<ReleaseFreeze>],
    verified: bool,
    now: &Time,
) -> Held {
    let selecting = selecting(cd, freezes);
    let facts = selecting
        .iter()
        .map(|f| FreezeFact {
            name: f.name_any(),
            reason: f.spec.reason.clone(),
            by: f.spec.requested_by.clone(),
            thawed_by: f.spec.thawed.as_ref().map(|t| t.by.clone()),
        })
        .collect();
    let in_force: Vec<&Arc<ReleaseFreeze>> = selecting
        .into_iter()
        .filter(|f| f.spec.thawed.is_none())
        .collect();
    // Emergency stops first: they hold at all times until thawed.
    let emergency: Vec<&&Arc<ReleaseFreeze>> = in_force
        .iter()
        .filter(|f| f.spec.windows.is_empty())
        .collect();
    let windows = deny_windows(cd, &in_force);
    let mut held = Held {
        freezes: facts,
        ..Held::default()
    };
    if let Some(f) = emergency.first() {
        held.frozen = Some(emergency_stop(f, emergency.len()));
    }
    let at = now.0;
    let active = match window::active(&windows, at) {
        Ok(active) => active,
        Err(why) => {
            // Fail closed: a window that cannot be read holds the release.
            held.frozen.get_or_insert(Frozen {
                name: "window/invalid".to_string(),
                message: format!(
                    "held: a deny window cannot be read ({why}); fix spec.strategy.denyWindows \
                     or the ReleaseFreeze's windows"
                ),
                lets_rollback: true,
            });
            return held;
        }
    };
    let ends = active.as_ref().map(|a| a.reopens_at);
    let begins = window::next_begin(&windows, at);
    held.wake = [ends, begins]
        .into_iter()
        .flatten()
        .map(|t| (t.as_second() - at.as_second()).max(1))
        .min();
    if let Some(active) = active {
        in_window(cd, active, verified, &mut held);
    }
    held
}

/// The ReleaseFreezes that select `cd`, oldest first.
fn selecting<'a>(
    cd: &CafeDeployment,
    freezes: &'a [Arc<ReleaseFreeze>],
) -> Vec<&'a Arc<ReleaseFreeze>> {
    let ns = cd.namespace().unwrap_or_default();
    let mut selecting: Vec<&Arc<ReleaseFreeze>> = freezes
        .iter()
        .filter(|f| f.selects(&ns, cd.labels()))
        .collect();
    selecting.sort_by_key(|f| f.metadata.creation_timestamp.clone().map(|t| t.0));
    selecting
}

/// The deny windows of `cd` and of the freezes in force that have windows
/// (named `<freeze>/<window>`).
fn deny_windows(cd: &CafeDeployment, in_force: &[&Arc<ReleaseFreeze>]) -> Vec<DenyWindow> {
    let mut windows: Vec<DenyWindow> = cd.spec.strategy.deny_windows.clone();
    for f in in_force.iter().filter(|f| !f.spec.windows.is_empty()) {
        windows.extend(f.spec.windows.iter().map(|w| DenyWindow {
            name: format!("{}/{}", f.name_any(), w.name),
            ..w.clone()
        }));
    }
    windows
}

/// Inside the `active` window: it holds the release unless an override (a
/// reason, and who the API server stamped) opens it, or a freeze holds it
/// already; either way it is the window in force.
fn in_window(cd: &CafeDeployment, active: window::Active, verified: bool, held: &mut Held) {
    let reason = cd
        .annotations()
        .get(WINDOW_OVERRIDE_ANNOTATION)
        .filter(|r| !r.trim().is_empty());
    let by = reason.map(|_| {
        cd.annotations()
            .get(stamp::WINDOW_OVERRIDE)
            .filter(|_| verified)
            .cloned()
            .unwrap_or_else(|| UNVERIFIED.to_string())
    });
    let name = cd.name_any();
    if reason.is_none() && held.frozen.is_none() {
        held.frozen = Some(Frozen {
            name: format!("window/{}", active.name),
            message: format!(
                "held by deny window {} since {} until {}: no group opens and no pod starts \
                 moving until then (a pause or a rollback still go through); to release inside \
                 the window, give a reason: kubectl annotate cafedeployment {name} \
                 {WINDOW_OVERRIDE_ANNOTATION}='<reason>'",
                active.name, active.since, active.reopens_at
            ),
            lets_rollback: true,
        });
    }
    held.window = Some(WindowStatus {
        name: active.name,
        since: Time(active.since),
        reopens_at: Time(active.reopens_at),
        overridden_by: by,
        override_reason: reason.cloned(),
    });
}

/// The phase message of an emergency stop (the oldest of `count` freezes).
fn emergency_stop(f: &ReleaseFreeze, count: usize) -> Frozen {
    let since = f
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(String::new(), |t| format!(" since {}", t.0));
    let by = f
        .spec
        .requested_by
        .as_deref()
        .map_or(String::new(), |b| format!(" by {b}"));
    let name = f.name_any();
    let others = match count {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Frozen {
        message: format!(
            "frozen by ReleaseFreeze {name}{others}: {}{by}{since}; no group opens and no pod \
             starts moving until it is thawed: kubectl cafe unfreeze {name}",
            f.spec.reason
        ),
        name,
        lets_rollback: false,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// A CafeDeployment of one cell with `strategy` and `annotations`.
    pub(in crate::cafedeployment) fn cd(
        strategy: serde_json::Value,
        annotations: serde_json::Value,
    ) -> CafeDeployment {
        serde_json::from_value(json!({
            "apiVersion": crate::api::names::API_VERSION, "kind": "CafeDeployment",
            "metadata": {"name": "demo", "namespace": "shop", "annotations": annotations},
            "spec": {"selector": {"matchLabels": {"app": "demo"}},
                     "template": {"metadata": {"labels": {"app": "demo"}}},
                     "topology": {"values": ["cell-a"]}, "strategy": strategy}
        }))
        .expect("cd")
    }

    fn freeze(name: &str, spec: serde_json::Value) -> Arc<ReleaseFreeze> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": crate::api::names::API_VERSION, "kind": "ReleaseFreeze",
                "metadata": {"name": name, "creationTimestamp": "2026-12-01T00:00:00Z"},
                "spec": spec
            }))
            .expect("freeze"),
        )
    }

    fn at(t: &str) -> Time {
        Time(t.parse().expect("time"))
    }

    const WEEKEND: &str = r#"{"denyWindows": [{"name": "weekend", "schedule": "0 16 * * FRI",
        "duration": "2d16h", "timeZone": "Europe/Zurich"}]}"#;

    #[test]
    fn a_deny_window_holds_until_it_reopens_and_says_how_to_override() {
        let cd = cd(serde_json::from_str(WEEKEND).expect("json"), json!({}));
        // Saturday 2026-12-05 12:00 UTC is inside Friday 16:00 - Monday 08:00 Zurich.
        let held = held(&cd, &[], true, &at("2026-12-05T12:00:00Z"));
        let frozen = held.frozen.expect("held");
        assert_eq!(frozen.name, "window/weekend");
        assert!(
            frozen.message.contains("window-override"),
            "{}",
            frozen.message
        );
        let window = held.window.expect("window");
        assert_eq!(window.reopens_at, at("2026-12-07T07:00:00Z"));
        assert_eq!(
            held.wake,
            Some(43 * 3600),
            "Saturday 12:00 UTC to Monday 07:00 UTC"
        );
        let monday = super::held(&cd, &[], true, &at("2026-12-07T07:00:00Z"));
        assert_eq!((monday.frozen, monday.window), (None, None));
    }

    #[test]
    fn an_override_opens_the_window_and_names_who_the_api_server_stamped() {
        let cd = cd(
            serde_json::from_str(WEEKEND).expect("json"),
            json!({WINDOW_OVERRIDE_ANNOTATION: "hotfix INC-42", stamp::WINDOW_OVERRIDE: "bob"}),
        );
        let held_ = held(&cd, &[], true, &at("2026-12-05T12:00:00Z"));
        assert_eq!(held_.frozen, None);
        let window = held_.window.expect("window");
        assert_eq!(window.overridden_by.as_deref(), Some("bob"));
        assert_eq!(window.override_reason.as_deref(), Some("hotfix INC-42"));
        let unverified = held(&cd, &[], false, &at("2026-12-05T12:00:00Z"));
        assert_eq!(
            unverified.window.and_then(|w| w.overridden_by).as_deref(),
            Some(UNVERIFIED)
        );
    }

    #[test]
    fn a_freeze_with_windows_holds_only_inside_them_and_an_emergency_stop_always() {
        let cd = cd(json!({}), json!({}));
        let weekends = freeze(
            "weekends",
            json!({"reason": "no weekend changes", "windows": serde_json::from_str::<serde_json::Value>(WEEKEND).expect("json")["denyWindows"]}),
        );
        let tuesday = held(
            &cd,
            std::slice::from_ref(&weekends),
            true,
            &at("2026-12-08T12:00:00Z"),
        );
        assert_eq!(tuesday.frozen, None);
        assert_eq!(tuesday.freezes.len(), 1);
        let saturday = held(
            &cd,
            std::slice::from_ref(&weekends),
            true,
            &at("2026-12-05T12:00:00Z"),
        );
        assert_eq!(
            saturday.frozen.map(|f| f.name).as_deref(),
            Some("window/weekends/weekend")
        );
        let stop = freeze(
            "incident",
            json!({"reason": "payments down", "requestedBy": "carol"}),
        );
        let frozen = held(&cd, &[stop], true, &at("2026-12-08T12:00:00Z"))
            .frozen
            .expect("frozen");
        assert!(
            frozen.message.contains("payments down by carol"),
            "{}",
            frozen.message
        );
    }

    #[test]
    fn a_window_that_cannot_be_read_holds_the_release() {
        let cd = cd(
            json!({"denyWindows": [{"name": "x", "schedule": "0 16 * * FRI", "duration": "1h",
                                    "timeZone": "Mars/Olympus"}]}),
            json!({}),
        );
        let held = held(&cd, &[], true, &at("2026-12-08T12:00:00Z"));
        assert!(
            held.frozen
                .expect("held")
                .message
                .contains("cannot be read")
        );
    }
}
