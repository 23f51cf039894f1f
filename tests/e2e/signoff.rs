//! Sign-off stories: the API server records who did each step (admission
//! policies from the chart), four-eyes refuses the template's author, the
//! history is append-only and outlives the status, release windows hold a
//! release on the controller's clock. Several real identities: users
//! impersonated by the admin (`--as`), a ServiceAccount's own token.

use std::process::Command;
use std::time::Duration;

use cafe_operator::api::names::condition;
use cafe_operator::api::{CafeDeployment, HistoryAction, HistoryEntry, Phase, stamp};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;

use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::support::signoff::{
    annotate, api, as_user, confirm, confirm_until_healthy, demo, dry_run_create, history,
    kubeconfig_as, merge, recorded, set_image, signed_namespace, wait_phase,
};

const BREAK_GLASS: &str = "cafe:break-glass";

/// A client with the ServiceAccount's own token (no impersonation).
async fn as_service_account(ns: &TestNs, name: &str) -> Client {
    let sas: Api<ServiceAccount> = ns.api();
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}})).expect("request");
    let token = sas
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("token")
        .status
        .expect("token status")
        .token;
    let mut config = Config::infer().await.expect("kubeconfig");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..kube::config::AuthInfo::default()
    };
    Client::try_from(config).expect("client")
}

/// The API server's refusal message, or a failure naming what went through.
fn refusal(result: Result<CafeDeployment, kube::Error>, what: &str) -> String {
    match result {
        Err(kube::Error::Api(e)) => {
            assert!(e.code == 403 || e.code == 422, "{what}: refused with {e:?}");
            e.message
        }
        Err(e) => panic!("{what}: {e}"),
        Ok(_) => panic!("{what} went through; the sign-off policy must refuse it"),
    }
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn the_api_server_records_who_released_and_who_confirmed_and_refuses_the_author() {
    let ns = signed_namespace("signoff").await;
    let _op = Operator::start(&ns.name);
    let alice = api(&as_user("alice", &[]).await, &ns);
    let alice_break_glass = api(&as_user("alice", &[BREAK_GLASS]).await, &ns);
    let bob = api(&as_user("bob", &[]).await, &ns);
    let deployer = api(&as_service_account(&ns, "deployer").await, &ns);

    // alice creates it (four-eyes on); bob confirms the creation's groups.
    let body: CafeDeployment = serde_json::from_value(demo(json!({"fourEyes": true}))).expect("cd");
    alice
        .create(&PostParams::default(), &body)
        .await
        .expect("alice creates demo");
    let created = recorded(&ns, HistoryAction::TemplateChanged, None, 0).await;
    assert_eq!(created.by, "alice", "{created:?}");
    confirm_until_healthy(&ns, &bob).await;

    // alice releases nginx:1.26: the history names her.
    let last = history(&bob).await.last().map_or(0, |e| e.seq);
    set_image(&alice, "nginx:1.26")
        .await
        .expect("alice releases");
    let changed = recorded(&ns, HistoryAction::TemplateChanged, None, last).await;
    assert_eq!(changed.by, "alice");
    wait_phase(&ns, Phase::WaitingForConfirm).await;

    // alice may not confirm her own release: the API server says why.
    let message = refusal(confirm(&alice).await, "alice confirming her own release");
    assert!(
        message.contains("four-eyes") && message.contains("alice changed the template"),
        "{message}"
    );
    // The same through kubectl cafe as alice: the API server's words, exit 1.
    let said = crate::support::kubectl::expect(
        &ns.name,
        &[
            "--kubeconfig",
            &kubeconfig_as(&ns, "alice"),
            "confirm",
            "demo",
        ],
        1,
    );
    assert!(
        said.contains("Error from server (Forbidden)") && said.contains("four-eyes"),
        "{said}"
    );
    // bob does; the history says bob.
    confirm(&bob).await.expect("bob confirms");
    let beta = recorded(&ns, HistoryAction::Confirmed, Some(2), changed.seq).await;
    assert_eq!(beta.by, "bob", "{beta:?}");

    // Forging a stamp, editing a past entry: refused, whoever has the RBAC.
    let message = refusal(
        annotate(&bob, stamp::CONFIRMED, "carol").await,
        "bob writing confirmed-by: carol",
    );
    assert!(message.contains("written by the API server"), "{message}");
    let mut edited = bob.get_status("demo").await.expect("status");
    let status = edited.status.as_mut().expect("status");
    status.history[0].by = "mallory".into();
    let message = refusal(
        bob.replace_status("demo", &PostParams::default(), &edited)
            .await,
        "bob editing a past history entry",
    );
    assert!(message.contains("cannot be edited or removed"), "{message}");
    let mut wiped = bob.get_status("demo").await.expect("status");
    wiped.status.as_mut().expect("status").history.clear();
    refusal(
        bob.replace_status("demo", &PostParams::default(), &wiped)
            .await,
        "a status rewrite without the history",
    );

    // alice in the break-glass group may confirm her own release: recorded
    // as a bypass, in the history and in the API server's audit log.
    wait_phase(&ns, Phase::WaitingForConfirm).await;
    confirm(&alice_break_glass)
        .await
        .expect("break-glass confirms");
    let bypass = recorded(&ns, HistoryAction::Confirmed, Some(3), beta.seq).await;
    assert_eq!(bypass.by, "alice");
    assert!(bypass.message.contains("break-glass"), "{bypass:?}");
    let audit =
        std::env::var("CAFE_AUDIT_LOG").unwrap_or_else(|_| ".cluster/logs/audit.log".into());
    let found = ns
        .wait("the bypass in the API server's audit log", 30, || async {
            let text = std::fs::read_to_string(&audit).ok()?;
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|e| {
                    let ours = e["objectRef"]["namespace"] == ns.name.as_str()
                        && e["responseStatus"]["code"] == 200;
                    let note =
                        e["annotations"]["e2e-cafe-operator-signoff/break-glass"].as_str()?;
                    ours.then(|| (e["impersonatedUser"]["username"].clone(), note.to_string()))
                })
        })
        .await;
    assert_eq!(found.0, "alice", "the audit event names alice: {found:?}");
    assert!(found.1.contains("four-eyes bypassed"), "{found:?}");
    wait_phase(&ns, Phase::Healthy).await;

    // Safety steps stay open to the author: pause, resume, roll back.
    let seq = history(&bob).await.last().map_or(0, |e| e.seq);
    merge(&alice, json!({"spec": {"strategy": {"pause": true}}}))
        .await
        .expect("alice pauses");
    assert_eq!(
        recorded(&ns, HistoryAction::Paused, None, seq).await.by,
        "alice"
    );
    merge(&alice, json!({"spec": {"strategy": {"pause": false}}}))
        .await
        .expect("alice resumes");
    assert_eq!(
        recorded(&ns, HistoryAction::Resumed, None, seq).await.by,
        "alice"
    );
    merge(&alice, json!({"spec": {"rollbackTo": {"revision": 0}}}))
        .await
        .expect("alice rolls back");
    let rolled = recorded(&ns, HistoryAction::RolledBack, None, seq).await;
    assert_eq!(rolled.by, "alice", "{rolled:?}");
    wait_phase(&ns, Phase::Healthy).await;

    // A ServiceAccount's own token: the API server names it.
    let seq = history(&bob).await.last().map_or(0, |e| e.seq);
    set_image(&deployer, "nginx:1.27")
        .await
        .expect("the deployer releases");
    let by_sa = recorded(&ns, HistoryAction::TemplateChanged, None, seq).await;
    assert_eq!(
        by_sa.by,
        format!("system:serviceaccount:{}:deployer", ns.name)
    );
    // ... and alice may confirm it: she is not its author.
    wait_phase(&ns, Phase::WaitingForConfirm).await;
    confirm(&alice)
        .await
        .expect("alice confirms the deployer's release");
    assert_eq!(
        recorded(&ns, HistoryAction::Confirmed, Some(2), by_sa.seq)
            .await
            .by,
        "alice"
    );

    let cd = bob.get("demo").await.expect("demo");
    let verified = cd
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == condition::SIGNOFF_VERIFIED)
        .map(|c| c.status.clone());
    assert_eq!(verified.as_deref(), Some("True"));
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn without_the_policies_the_history_reads_unverified_and_says_why() {
    let ns = TestNs::new("signoff-none").await;
    let _op = Operator::start(&ns.name);
    ns.create::<CafeDeployment>(demo(json!({}))).await;
    crate::support::demo::confirm_until_healthy(&ns).await;
    let cds: Api<CafeDeployment> = ns.api();
    let cd = cds.get("demo").await.expect("demo");
    let status = cd.status.expect("status");
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::SIGNOFF_VERIFIED)
        .expect("the SignoffVerified condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PoliciesNotInForce")
    );
    assert!(
        c.message.contains("unverified") && c.message.contains("signoff.enabled"),
        "{}",
        c.message
    );
    let created = status
        .history
        .iter()
        .find(|e| e.action == HistoryAction::TemplateChanged)
        .expect("the creation recorded");
    assert_eq!(created.by, "unverified");
    let confirmed = status
        .history
        .iter()
        .filter(|e| e.action == HistoryAction::Confirmed)
        .count();
    assert!(confirmed >= 1, "{:?}", status.history);
    assert!(
        status
            .history
            .iter()
            .filter(|e| e.action == HistoryAction::Confirmed)
            .all(|e| e.by == "unverified")
    );
    // Nothing else changes without them: the release completed as ever (a
    // completed release can read Progressing for a moment: issue 35, item 3).
    wait_phase(&ns, Phase::Healthy).await;
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn the_history_survives_a_killed_operator_and_twenty_releases() {
    let ns = signed_namespace("signoff-history").await;
    let mut op = Operator::start(&ns.name);
    let bob = api(&as_user("bob", &[]).await, &ns);
    let alice = api(&as_user("alice", &[]).await, &ns);
    let mut body = demo(json!({}));
    body["spec"]["historyLimit"] = json!(25);
    let body: CafeDeployment = serde_json::from_value(body).expect("cd");
    alice
        .create(&PostParams::default(), &body)
        .await
        .expect("create");
    confirm_until_healthy(&ns, &bob).await;

    // The operator frozen, bob confirms, the operator killed before it could
    // act: the one that starts records the confirmation, once.
    let seq = history(&bob).await.last().map_or(0, |e| e.seq);
    set_image(&alice, "nginx:1.26").await.expect("release");
    wait_phase(&ns, Phase::WaitingForConfirm).await;
    op.freeze(true);
    confirm(&bob).await.expect("bob confirms");
    tokio::time::sleep(Duration::from_millis(500)).await;
    op.kill();
    op.restart();
    let confirmed = recorded(&ns, HistoryAction::Confirmed, Some(2), seq).await;
    assert_eq!(confirmed.by, "bob");
    confirm_until_healthy(&ns, &bob).await;
    let once = history(&bob)
        .await
        .iter()
        .filter(|e| {
            e.action == HistoryAction::Confirmed
                && e.revision == confirmed.revision
                && e.group == Some(2)
        })
        .count();
    assert_eq!(once, 1, "one record of bob's confirmation");

    // Twenty releases: the status keeps the newest 50 entries, each
    // revision its own, so who released the oldest is still known.
    for i in 0..20 {
        let seq = history(&bob).await.last().map_or(0, |e| e.seq);
        set_image(&alice, &format!("nginx:1.{}", 30 + i))
            .await
            .expect("release");
        recorded(&ns, HistoryAction::TemplateChanged, None, seq).await;
        confirm_until_healthy(&ns, &bob).await;
        let done = recorded(&ns, HistoryAction::Completed, None, seq).await;
        assert_eq!(done.by, "operator");
    }
    let status_history = history(&bob).await;
    assert_eq!(status_history.len(), 50, "the status keeps 50 entries");
    let seqs: Vec<i64> = status_history.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "numbered without gaps: {seqs:?}"
    );
    let first_kept = seqs[0];
    // The revision of nginx:1.26 (older than the status window) keeps its record.
    let revisions: Api<k8s_openapi::api::apps::v1::ControllerRevision> = ns.api();
    let revision = revisions
        .get(&confirmed.revision)
        .await
        .expect("the 1.26 revision is kept");
    let kept: Vec<HistoryEntry> = serde_json::from_str(
        revision
            .annotations()
            .get("cafe.sofastack.io/history")
            .expect("the revision's history"),
    )
    .expect("entries");
    assert!(
        kept.iter()
            .any(|e| e.action == HistoryAction::TemplateChanged && e.by == "alice")
    );
    assert!(
        kept.iter()
            .any(|e| e.action == HistoryAction::Confirmed && e.by == "bob" && e.group == Some(2))
    );
    assert!(
        kept.iter().all(|e| e.seq < first_kept),
        "older than what the status holds (from #{first_kept}): {kept:?}"
    );
    // kubectl cafe history shows who released and confirmed 1.26, from its
    // revision, after the status rolled over.
    let printed = crate::support::kubectl::expect(&ns.name, &["history", "demo", "-o", "json"], 0);
    let printed: serde_json::Value = serde_json::from_str(&printed).expect("history -o json");
    let of_126 = printed["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .find(|r| r["name"] == confirmed.revision.as_str())
        .expect("the 1.26 revision listed");
    let steps: Vec<(String, String)> = of_126["history"]
        .as_array()
        .expect("its history")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["by"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        steps.contains(&("TemplateChanged".into(), "alice".into())),
        "{steps:?}"
    );
    assert!(
        steps.contains(&("Confirmed".into(), "bob".into())),
        "{steps:?}"
    );
    // A restart reads the history back; nothing is recorded twice.
    op.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = history(&bob).await;
    assert_eq!(
        after.last().map(|e| e.seq),
        status_history.last().map(|e| e.seq)
    );
}

#[test]
#[ignore = "needs helm (make cluster-up builds it): make test"]
fn the_plain_policy_manifest_is_the_charts_rendering() {
    let rendered = Command::new("hack/signoff-policies.sh")
        .output()
        .expect("hack/signoff-policies.sh");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let committed = std::fs::read_to_string("deploy/signoff/policies.yaml").expect("the manifest");
    assert!(
        String::from_utf8_lossy(&rendered.stdout) == committed,
        "deploy/signoff/policies.yaml is stale: run make signoff-policies"
    );
}

/// A deny window named `name` that began a minute or two ago in `zone`
/// (read on the controller's clock) and ends at least `at_least` seconds from
/// now; returns it and when it ends.
fn deny_window(
    name: &str,
    zone: &str,
    at_least: i64,
) -> (serde_json::Value, k8s_openapi::jiff::Timestamp) {
    use k8s_openapi::jiff::{ToSpan, Unit, Zoned, tz::TimeZone};
    let tz = TimeZone::get(zone).expect("zone");
    let now = Zoned::now().with_time_zone(tz);
    let minute = now.round(Unit::Minute).expect("round");
    let minute = if minute > now {
        minute.checked_sub(1.minute()).expect("minute")
    } else {
        minute
    };
    let began = minute.checked_sub(1.minute()).expect("began");
    let ends = |length: i64| {
        began
            .checked_add(length.minutes())
            .expect("end")
            .timestamp()
    };
    let mut length = 2;
    while ends(length).as_second() - now.timestamp().as_second() < at_least {
        length += 1;
    }
    let window = json!({
        "name": name,
        "schedule": format!("{} {} * * *", began.minute(), began.hour()),
        "duration": format!("{length}m"),
        "timeZone": zone
    });
    (window, ends(length))
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_deny_window_holds_a_confirmed_group_until_it_reopens_and_an_override_is_recorded() {
    let ns = signed_namespace("signoff-window").await;
    let _op = Operator::start(&ns.name);
    let alice = api(&as_user("alice", &[]).await, &ns);
    let bob = api(&as_user("bob", &[]).await, &ns);
    // Behind a Service, drained by the service component: the holds and the
    // rollback inside a window are checked by the lossless checker.
    crate::support::demo::demo_service(&ns).await;
    let mut body = demo(json!({}));
    body["spec"]["traffic"] = json!({"components": ["service"], "settleSeconds": 1});
    let body: CafeDeployment = serde_json::from_value(body).expect("cd");
    alice
        .create(&PostParams::default(), &body)
        .await
        .expect("create");
    confirm_until_healthy(&ns, &bob).await;
    let lossless = crate::support::lossless::Lossless::start(&ns, "demo").await;
    let seq = history(&bob).await.last().map_or(0, |e| e.seq);
    set_image(&alice, "nginx:1.26").await.expect("release");
    wait_phase(&ns, Phase::WaitingForConfirm).await;

    // A window in India's time zone (UTC+05:30: a controller reading it as
    // UTC would not hold) that reopens in 20-80 s; bob confirms inside it.
    let (window, reopens) = deny_window("change-freeze", "Asia/Kolkata", 20);
    merge(
        &alice,
        json!({"spec": {"strategy": {"denyWindows": [window]}}}),
    )
    .await
    .expect("a deny window");
    confirm(&bob).await.expect("bob confirms inside the window");
    let held = ns
        .wait("the window to hold the confirmed group", 30, || async {
            let cd = bob.get("demo").await.ok()?;
            let status = cd.status?;
            (status.phase == Some(Phase::Frozen)).then_some(status)
        })
        .await;
    let window = held.window.clone().expect("status.window");
    assert_eq!(window.name, "change-freeze");
    assert_eq!(window.reopens_at.0, reopens, "status says when it reopens");
    assert!(
        held.release
            .as_ref()
            .is_some_and(|r| r.message.contains("deny window change-freeze")),
        "{:?}",
        held.release
    );
    let opened = held.release.as_ref().map_or(0, |r| r.opened);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = bob.get("demo").await.expect("demo").status.expect("status");
    assert_eq!(
        still.release.map(|r| r.opened),
        Some(opened),
        "no group opened in the window"
    );
    // When it reopens, the confirmed group opens.
    let confirmed = recorded(&ns, HistoryAction::Confirmed, Some(2), seq).await;
    assert_eq!(confirmed.by, "bob");
    let now = k8s_openapi::jiff::Timestamp::now();
    assert!(
        now >= reopens,
        "the group opened at {now}, before the window ended at {reopens}"
    );
    let closed = history(&bob).await;
    assert!(
        closed
            .iter()
            .any(|e| e.action == HistoryAction::WindowClosed)
    );
    assert!(
        closed
            .iter()
            .any(|e| e.action == HistoryAction::WindowOpened)
    );
    confirm_until_healthy(&ns, &bob).await;

    // A window of an hour: alice releases inside it with a reason.
    let seq = history(&bob).await.last().map_or(0, |e| e.seq);
    let (hour, _) = deny_window("all-day", "UTC", 3600);
    merge(
        &alice,
        json!({"spec": {"strategy": {"denyWindows": [hour]}}}),
    )
    .await
    .expect("an all-day window");
    set_image(&alice, "nginx:1.27").await.expect("release");
    wait_phase(&ns, Phase::Frozen).await;
    annotate(
        &alice,
        "cafe.sofastack.io/window-override",
        "hotfix INC-4711",
    )
    .await
    .expect("alice overrides with a reason");
    let override_ = recorded(&ns, HistoryAction::WindowOverride, None, seq).await;
    assert_eq!(
        (override_.by.as_str(), override_.message.as_str()),
        ("alice", "hotfix INC-4711")
    );
    wait_phase(&ns, Phase::WaitingForConfirm).await;
    let status = bob.get("demo").await.expect("demo").status.expect("status");
    assert_eq!(
        status.window.and_then(|w| w.overridden_by).as_deref(),
        Some("alice")
    );

    // The override taken back: held again; a rollback goes through anyway.
    bob.patch(
        "demo",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "remove", "path": "/metadata/annotations/cafe.sofastack.io~1window-override"}]))
                .expect("patch"),
        ),
    )
    .await
    .expect("override removed");
    merge(&alice, json!({"spec": {"rollbackTo": {"revision": 0}}}))
        .await
        .expect("alice rolls back inside the window");
    assert_eq!(
        recorded(&ns, HistoryAction::RolledBack, None, seq).await.by,
        "alice"
    );
    wait_phase(&ns, Phase::Healthy).await;
    let cd = bob.get("demo").await.expect("demo");
    let image = cd
        .spec
        .template
        .spec
        .as_ref()
        .map(|s| s.containers[0].image.clone());
    assert_eq!(
        image.flatten().as_deref(),
        Some("nginx:1.26"),
        "rolled back inside the window"
    );
    let summary = lossless.verify().await;
    assert!(summary.changed > 0, "pods were updated in place");
    assert!(summary.min_ready >= 1, "the Service kept an endpoint");
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn a_namespace_asks_for_four_eyes_and_turning_a_rule_off_needs_the_right() {
    let ns = signed_namespace("signoff-ns").await;
    let _op = Operator::start(&ns.name);
    ns.create::<k8s_openapi::api::core::v1::ConfigMap>(json!({
        "metadata": {"name": "cafe-signoff"},
        "data": {"fourEyes": "true", "humanBeta": "true"}
    }))
    .await;
    let alice = api(&as_user("alice", &[]).await, &ns);
    let bob = api(&as_user("bob", &[]).await, &ns);
    // The namespace's rules reach the object (and the operator) as the API
    // server stamps them; the parameter takes a moment to be loaded.
    let body: CafeDeployment = serde_json::from_value(demo(json!({}))).expect("cd");
    ns.wait(
        "the namespace's rules stamped on a creation",
        30,
        || async {
            let made = dry_run_create(&alice, &body).await?;
            (made
                .annotations()
                .get("cafe.sofastack.io/signoff-rules")
                .map(String::as_str)
                == Some("fourEyes,humanBeta"))
            .then_some(())
        },
    )
    .await;
    alice
        .create(&PostParams::default(), &body)
        .await
        .expect("alice creates demo");
    confirm_until_healthy(&ns, &bob).await;
    set_image(&alice, "nginx:1.26")
        .await
        .expect("alice releases");
    wait_phase(&ns, Phase::WaitingForConfirm).await;
    let message = refusal(
        confirm(&alice).await,
        "alice confirming in a four-eyes namespace",
    );
    assert!(
        message.contains("four-eyes (ConfigMap cafe-signoff in")
            && message.contains("alice changed the template"),
        "{message}"
    );
    confirm(&bob).await.expect("bob confirms");

    // spec.signoff: turning four-eyes on needs nothing, off needs the verb.
    merge(&alice, json!({"spec": {"signoff": {"fourEyes": true}}}))
        .await
        .expect("alice turns four-eyes on");
    let message = refusal(
        merge(&alice, json!({"spec": {"signoff": {"fourEyes": false}}})).await,
        "alice turning four-eyes off",
    );
    assert!(message.contains("verb \"signoff\""), "{message}");
    ns.create::<Role>(json!({
        "metadata": {"name": "signoff-admin"},
        "rules": [{"apiGroups": ["cafe.sofastack.io"], "resources": ["cafedeployments"], "verbs": ["signoff"]}]
    }))
    .await;
    ns.create::<RoleBinding>(json!({
        "metadata": {"name": "signoff-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "signoff-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]
    }))
    .await;
    // A freeze and its thaw: who froze and who thawed, as stamped.
    let seq = history(&bob).await.last().map_or(0, |e| e.seq);
    let freeze_name = format!("{}-freeze", ns.name);
    let freeze: cafe_operator::api::ReleaseFreeze = serde_json::from_value(json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "ReleaseFreeze",
        "metadata": {"name": freeze_name},
        "spec": {"reason": "incident 4711", "namespaces": [ns.name], "requestedBy": "mallory"}
    }))
    .expect("freeze");
    let admin_freezes: Api<cafe_operator::api::ReleaseFreeze> = Api::all(ns.client.clone());
    let made = admin_freezes
        .create(&PostParams::default(), &freeze)
        .await
        .expect("the admin freezes");
    assert_eq!(
        made.spec.requested_by.as_deref(),
        Some("cafe-admin"),
        "the client's name is replaced"
    );
    let frozen = recorded(&ns, HistoryAction::Frozen, None, seq).await;
    assert_eq!(
        (frozen.by.as_str(), frozen.message.as_str()),
        ("cafe-admin", "incident 4711")
    );
    let thawed = admin_freezes
        .patch(
            &freeze_name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"thawed": {"at": "2026-12-07T10:00:00Z", "by": "mallory"}}}),
            ),
        )
        .await
        .expect("thawed");
    assert_eq!(
        thawed.spec.thawed.and_then(|t| t.by).as_deref(),
        Some("cafe-admin"),
        "the client's name is replaced"
    );
    assert_eq!(
        recorded(&ns, HistoryAction::Thawed, None, frozen.seq)
            .await
            .by,
        "cafe-admin"
    );
    let _ = admin_freezes
        .delete(&freeze_name, &Default::default())
        .await;
    let carol = api(&as_user("carol", &[]).await, &ns);
    ns.wait("carol, given the verb, turns four-eyes off", 30, || async {
        merge(&carol, json!({"spec": {"signoff": {"fourEyes": false}}}))
            .await
            .ok()
    })
    .await;
}
