//! Sign-off: the chart's admission policies, namespaces under them,
//! people as impersonated clients, and the release history they write.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use cafe_operator::api::{CafeDeployment, HistoryAction, HistoryEntry, Phase, stamp};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;

use crate::support::demo::{cafedeployment, phase};
use crate::support::namespace::TestNs;

/// The label that puts a namespace under the stories' policies (the chart
/// rendered with `signoff.namespaceSelector`), so the other stories run
/// without them, as on a cluster that has none.
const SIGNED: &str = "cafe.sofastack.io/signoff";

/// The chart's sign-off policies, rendered by helm and applied once per run.
pub(crate) fn install_policies() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let rendered = Command::new("helm")
            .args([
                "template",
                "e2e",
                "charts/cafe-operator",
                "--show-only",
                "templates/signoff.yaml",
                "--api-versions",
                "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",
                "--set-string",
                "signoff.namespaceSelector.matchLabels.cafe\\.sofastack\\.io/signoff=on",
            ])
            .output()
            .expect("helm on PATH");
        assert!(
            rendered.status.success(),
            "helm template: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let mut apply = Command::new("kubectl")
            .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("kubectl on PATH");
        use std::io::Write;
        apply
            .stdin
            .take()
            .expect("stdin")
            .write_all(&rendered.stdout)
            .expect("write");
        assert!(
            apply.wait().expect("kubectl").success(),
            "kubectl apply of the policies"
        );
    });
}

/// A namespace under the policies, with a Role that lets people release
/// (patch CafeDeployments and their status: the policies, not RBAC, stop
/// what follows) bound to alice, bob, carol and the ServiceAccount deployer.
pub(crate) async fn signed_namespace(story: &str) -> TestNs {
    install_policies();
    let ns = TestNs::new(story).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ns.client.clone());
    namespaces
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {SIGNED: "on"}}})),
        )
        .await
        .expect("label the namespace");
    ns.create::<Role>(json!({
        "metadata": {"name": "releaser"},
        "rules": [
            {"apiGroups": ["cafe.sofastack.io"], "resources": ["cafedeployments"],
             "verbs": ["get", "list", "watch", "create", "patch", "update"]},
            {"apiGroups": ["cafe.sofastack.io"], "resources": ["cafedeployments/status"],
             "verbs": ["get", "patch", "update"]}
        ]
    }))
    .await;
    ns.create::<ServiceAccount>(json!({"metadata": {"name": "deployer"}}))
        .await;
    ns.create::<RoleBinding>(json!({
        "metadata": {"name": "releaser"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "releaser"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"},
            {"kind": "ServiceAccount", "name": "deployer", "namespace": ns.name}
        ]
    }))
    .await;
    // The policies apply once the API server has loaded them: a dry run
    // shows the stamp.
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait("the sign-off policies in force", 60, || async {
        let mut probe = serde_json::from_value::<CafeDeployment>(cafedeployment(
            "probe",
            "probe",
            0,
            &["cell-a"],
            json!({}),
            json!({}),
        ))
        .ok()?;
        probe
            .annotations_mut()
            .insert(stamp::PROBE.into(), "?".into());
        let made = dry_run_create(&cds, &probe).await?;
        (made.annotations().get(stamp::PROBE).map(String::as_str) == Some(stamp::PROBE_ANSWER))
            .then_some(())
    })
    .await;
    ns
}

/// What the API server would store for `body` (admission included), stored
/// nowhere.
pub(crate) async fn dry_run_create(
    cds: &Api<CafeDeployment>,
    body: &CafeDeployment,
) -> Option<CafeDeployment> {
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    cds.create(&dry, body).await.ok()
}

/// A client acting as `user` (in `groups`), impersonated by the admin.
pub(crate) async fn as_user(user: &str, groups: &[&str]) -> Client {
    let mut config = Config::infer().await.expect("kubeconfig");
    config.auth_info.impersonate = Some(user.to_string());
    if !groups.is_empty() {
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    }
    Client::try_from(config).expect("client")
}

/// A kubeconfig file that acts as `user` (the admin's, impersonating), for
/// `kubectl cafe` as that person.
pub(crate) fn kubeconfig_as(ns: &TestNs, user: &str) -> String {
    let admin = std::env::var("KUBECONFIG").unwrap_or_else(|_| ".cluster/kubeconfig".into());
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&admin).expect("the admin kubeconfig"))
            .expect("kubeconfig");
    for u in config["users"].as_sequence_mut().expect("users") {
        u["user"]["as"] = serde_yaml::Value::from(user);
    }
    let path = std::env::temp_dir().join(format!("{}-{user}.kubeconfig", ns.name));
    std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write");
    path.to_string_lossy().into_owned()
}

pub(crate) fn api(client: &Client, ns: &TestNs) -> Api<CafeDeployment> {
    Api::namespaced(client.clone(), &ns.name)
}

pub(crate) async fn set_image(
    cds: &Api<CafeDeployment>,
    image: &str,
) -> Result<CafeDeployment, kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}
    ]))
    .expect("a JSON patch");
    cds.patch("demo", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
}

/// A merge patch of demo as `cds`'s user.
pub(crate) async fn merge(
    cds: &Api<CafeDeployment>,
    patch: serde_json::Value,
) -> Result<CafeDeployment, kube::Error> {
    cds.patch("demo", &PatchParams::default(), &Patch::Merge(patch))
        .await
}

pub(crate) async fn annotate(
    cds: &Api<CafeDeployment>,
    key: &str,
    value: &str,
) -> Result<CafeDeployment, kube::Error> {
    merge(cds, json!({"metadata": {"annotations": {key: value}}})).await
}

pub(crate) async fn confirm(cds: &Api<CafeDeployment>) -> Result<CafeDeployment, kube::Error> {
    annotate(cds, "cafe.sofastack.io/upgrade-confirmed", "true").await
}

pub(crate) async fn history(cds: &Api<CafeDeployment>) -> Vec<HistoryEntry> {
    cds.get("demo")
        .await
        .ok()
        .and_then(|cd| cd.status)
        .map(|s| s.history)
        .unwrap_or_default()
}

/// Waits for a history entry of `action` (for `group`, if given) and returns it.
pub(crate) async fn recorded(
    ns: &TestNs,
    action: HistoryAction,
    group: Option<i32>,
    after_seq: i64,
) -> HistoryEntry {
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(
        &format!("history entry {action:?} {group:?} after #{after_seq}"),
        90,
        || async {
            history(&cds).await.into_iter().find(|e| {
                e.action == action && e.seq > after_seq && (group.is_none() || e.group == group)
            })
        },
    )
    .await
}

pub(crate) async fn wait_phase(ns: &TestNs, want: Phase) {
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(&format!("phase {want:?}"), 120, || async {
        (phase(&cds).await == Some(want)).then_some(())
    })
    .await;
}

/// Six pods over two cells: Beta (one pod per cell), then two batches of
/// two, each group confirmed.
pub(crate) fn demo(signoff: serde_json::Value) -> serde_json::Value {
    let mut cd = cafedeployment(
        "demo",
        "demo",
        6,
        &["cell-a", "cell-b"],
        json!({"upgradeType": "Beta", "batchSize": 2, "needWaitingForConfirm": true}),
        json!({"components": []}),
    );
    cd["spec"]["signoff"] = signoff;
    cd
}

/// Confirms every wait as `cds`'s user until the release is Healthy.
pub(crate) async fn confirm_until_healthy(ns: &TestNs, cds: &Api<CafeDeployment>) {
    crate::support::demo::confirm_until_healthy_with(ns, || async {
        let _ = confirm(cds).await;
    })
    .await;
}
