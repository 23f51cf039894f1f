//! Cells that are whole clusters: one CafeDeployment in the host cluster
//! (`.cluster`), released over cell-a (local), cell-b in member dc-2 and
//! cell-c in member dc-3 (`tests/cluster/members.sh up`: two more local
//! control planes). Each member runs the operator in its member role; the
//! host's reaches the members through least-privilege kubeconfigs held in
//! Secrets. These stories share the cluster-scoped MemberClusters: they run
//! one at a time (`make test` runs them in a phase of their own).

mod failover;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cafe_operator::api::names::{CAFEDEPLOYMENT_UID_LABEL, MEMBER_SETS_FINALIZER};
use cafe_operator::api::{CafeDeployment, InPlaceSet, MemberCluster, Phase};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::support::demo::{cafedeployment, confirm_until_healthy};
use crate::support::kubectl::expect;
use crate::support::load::Load;
use crate::support::lossless::Lossless;
use crate::support::members::{
    member_kubeconfig, members_sh, register, register_member, unregister_by_hand,
};
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::support::pods::{image, pod_ready};
use crate::support::random::random_ms;
use crate::support::real_app::testapp;
use crate::support::real_nodes;
use crate::support::real_nodes::{
    MAX_LOAD_TIME, MAX_REQUESTS, RATE, assert_no_failure, service, service_in, wait_routed,
};

mod credentials;
mod late_registration;
mod operators;
mod reach;
mod release_status;

const MEMBERS: [(&str, &str); 2] = [("dc-2", "cell-b"), ("dc-3", "cell-c")];
const CELLS: [&str; 3] = ["cell-a", "cell-b", "cell-c"];
/// Seconds of silence before a story's member reads unreachable.
const UNREACHABLE_AFTER: u64 = 6;

/// A member cluster as a test sees it: its admin client.
struct Side {
    name: &'static str,
    cell: &'static str,
    client: Client,
    admin: PathBuf,
}

impl Side {
    fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// A member's API server, stopped; started again when dropped (also when
/// the test fails), so that a failed story leaves the next one a member.
struct Down(Option<&'static str>);

impl Down {
    fn stop(member: &'static str) -> Self {
        members_sh(&["stop-apiserver", member]);
        Self(Some(member))
    }

    fn start(mut self) {
        if let Some(m) = self.0.take() {
            members_sh(&["start-apiserver", m]);
        }
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            let _ = Command::new("bash")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/cluster/members.sh"
                ))
                .args(["start-apiserver", m])
                .status();
        }
    }
}

/// The host namespace, the same namespace in each member, the members
/// registered, and the operators: the host's and one per member.
struct Federation {
    ns: TestNs,
    members: Vec<Side>,
    host_op: Operator,
    member_ops: Vec<Operator>,
}

impl Federation {
    async fn new(story: &str) -> Self {
        Self::with_host_args(story, &[]).await
    }

    /// A federation whose host operator runs with `host_args` too.
    async fn with_host_args(story: &str, host_args: &[&str]) -> Self {
        let ns = TestNs::new(story).await;
        let mut members = Vec::new();
        for (name, cell) in MEMBERS {
            let spec = json!({ "unreachableAfterSeconds": UNREACHABLE_AFTER });
            members.push(Side {
                name,
                cell,
                client: register_member(&ns, name, cell, spec).await,
                admin: member_kubeconfig(name),
            });
        }
        let host_op = Operator::launch(&format!("{}@host", ns.name), host_args, &[]);
        let member_ops = members
            .iter()
            .map(|side| {
                Operator::launch(
                    &format!("{}@{}", ns.name, side.name),
                    &["--role", "member"],
                    &[("KUBECONFIG", side.admin.to_str().unwrap_or_default())],
                )
            })
            .collect();
        let fed = Self {
            ns,
            members,
            host_op,
            member_ops,
        };
        for side in &fed.members {
            fed.wait_member(side.name, "True").await;
        }
        fed
    }

    /// Registers member `name` again, listing `cell` (as a story's members
    /// are registered), and waits until it answers.
    async fn register_again(&self, name: &str, cell: &str) {
        let spec = json!({ "unreachableAfterSeconds": UNREACHABLE_AFTER });
        register(&self.ns, name, cell, spec).await;
        self.wait_member(name, "True").await;
    }

    fn cds(&self) -> Api<CafeDeployment> {
        self.ns.api()
    }

    async fn cd(&self, name: &str) -> CafeDeployment {
        self.cds().get(name).await.expect("get CafeDeployment")
    }

    /// Waits until MemberCluster `name` reads Ready `status`.
    async fn wait_member(&self, name: &str, status: &str) -> MemberCluster {
        let registry: Api<MemberCluster> = Api::all(self.ns.client.clone());
        self.ns
            .wait(
                &format!("MemberCluster {name} Ready={status}"),
                60,
                || async {
                    let m = registry.get_opt(name).await.ok().flatten()?;
                    let ready = m
                        .status
                        .as_ref()?
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "Ready")?;
                    (ready.status == status).then_some(m)
                },
            )
            .await
    }

    /// Creates a Service `web` selecting app=web in every cluster, and
    /// starts the lossless checker of each.
    async fn lossless(&self) -> Vec<(String, Lossless)> {
        let service = |name: &str| -> Service {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
            }))
            .expect("service")
        };
        self.ns
            .api::<Service>()
            .create(&PostParams::default(), &service("web"))
            .await
            .expect("host Service");
        let mut out = vec![("host".to_string(), Lossless::start(&self.ns, "web").await)];
        for side in &self.members {
            side.api::<Service>(&self.ns.name)
                .create(&PostParams::default(), &service("web"))
                .await
                .expect("member Service");
            out.push((
                side.name.to_string(),
                Lossless::start_in(&side.client, &self.ns.name, "web").await,
            ));
        }
        out
    }

    /// The live pods of app=web in each cluster (host first).
    async fn pods(&self) -> Vec<Vec<Pod>> {
        self.pods_of("web").await
    }

    /// The UIDs of app's live pods in each cluster, sorted (host first).
    async fn uids(&self, app: &str) -> Vec<Vec<String>> {
        self.pods_of(app)
            .await
            .iter()
            .map(|pods| {
                let mut uids: Vec<String> = pods.iter().filter_map(|p| p.uid()).collect();
                uids.sort();
                uids
            })
            .collect()
    }

    /// The live pods of `app` in each cluster (host first).
    async fn pods_of(&self, app: &str) -> Vec<Vec<Pod>> {
        let live = |pods: Vec<Pod>| -> Vec<Pod> {
            pods.into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect()
        };
        let lp = ListParams::default().labels(&format!("app={app}"));
        let mut out = vec![live(
            self.ns
                .api::<Pod>()
                .list(&lp)
                .await
                .map(|l| l.items)
                .unwrap_or_default(),
        )];
        for side in &self.members {
            out.push(live(
                side.api::<Pod>(&self.ns.name)
                    .list(&lp)
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default(),
            ));
        }
        out
    }

    /// Waits until the CafeDeployment reads `phase` at its generation.
    async fn wait_phase(&self, name: &str, phase: Phase, seconds: u64) -> CafeDeployment {
        let cds = self.cds();
        self.ns
            .wait(&format!("{name} {phase:?}"), seconds, || async {
                let cd = cds.get(name).await.ok()?;
                let status = cd.status.as_ref()?;
                (status.phase == Some(phase)
                    && status.observed_generation == cd.metadata.generation)
                    .then_some(cd)
            })
            .await
    }

    async fn confirm(&self, name: &str) {
        let patch = json!({"metadata": {"annotations": {
            "cafe.sofastack.io/upgrade-confirmed": "true"}}});
        self.cds()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("confirm");
    }

    /// Releases `image` in the first container (the rest of it unchanged: a
    /// merge patch would replace the whole list).
    async fn set_image(&self, name: &str, image: &str) {
        let patch: json_patch::Patch = serde_json::from_value(json!([{"op": "replace",
            "path": "/spec/template/spec/containers/0/image", "value": image}]))
        .expect("a JSON patch");
        self.cds()
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .expect("new image");
    }

    /// Images of the live pods per cluster, sorted (host first).
    async fn images(&self) -> Vec<Vec<String>> {
        self.pods()
            .await
            .iter()
            .map(|pods| {
                let mut images: Vec<String> = pods.iter().map(image).collect();
                images.sort();
                images
            })
            .collect()
    }

    /// Creates `name` (6 pods of nginx:1.25, two per cell, Beta then batches
    /// of 3 with confirmations) and waits until it is Healthy.
    async fn create(&self, name: &str, extra: serde_json::Value) {
        let mut body = on_kwok(
            name,
            "web",
            6,
            &CELLS,
            json!({"upgradeType": "Beta", "batchSize": 3, "needWaitingForConfirm": true,
                   "progressDeadlineSeconds": 20}),
        );
        if let Some(topology) = extra.get("topology") {
            for (k, v) in topology.as_object().into_iter().flatten() {
                body["spec"]["topology"][k] = v.clone();
            }
        }
        let _: CafeDeployment = self.ns.create(body).await;
        // The creation waits for a confirmation after its Beta group.
        self.wait_phase(name, Phase::WaitingForConfirm, 90).await;
        self.confirm(name).await;
        self.wait_phase(name, Phase::Healthy, 90).await;
    }

    /// Creates `name`, releases nginx:1.26 and waits for its Beta group to
    /// be done (one pod per cell in each cluster, waiting for a person).
    async fn beta_waiting(&self, name: &str) -> CafeDeployment {
        self.create(name, json!({})).await;
        self.set_image(name, "nginx:1.26").await;
        self.wait_phase(name, Phase::WaitingForConfirm, 90).await
    }

    /// Asserts the images of the live pods of each cluster (two per cell).
    async fn assert_images(&self, wanted: [&str; 2], what: &str) {
        for (cluster, images) in ["host", "dc-2", "dc-3"].iter().zip(self.images().await) {
            assert_eq!(images, wanted, "{what} in {cluster}");
        }
    }

    /// Deletes `name` and waits until it and its sets in every cluster are gone.
    async fn delete(&self, name: &str) {
        self.cds()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        let cds = self.cds();
        self.ns
            .wait(
                "the CafeDeployment and its member sets to go",
                60,
                || async {
                    let mut left = 0;
                    for side in &self.members {
                        left += side
                            .api::<InPlaceSet>(&self.ns.name)
                            .list(&ListParams::default())
                            .await
                            .map(|l| {
                                l.items
                                    .iter()
                                    .filter(|s| s.name_any().starts_with(&format!("{name}-")))
                                    .count()
                            })
                            .unwrap_or(1);
                    }
                    let gone = cds.get_opt(name).await.ok()?.is_none();
                    (gone && left == 0).then_some(())
                },
            )
            .await;
    }

    /// Deletes what the story left (its CafeDeployments, then the
    /// MemberClusters, which the host's operator unregisters once nothing
    /// uses them), then stops the operators.
    async fn finish(mut self) {
        let left = self
            .cds()
            .list(&ListParams::default())
            .await
            .expect("list CafeDeployments");
        for cd in left {
            self.delete(&cd.name_any()).await;
        }
        let registry: Api<MemberCluster> = Api::all(self.ns.client.clone());
        for side in &self.members {
            let _ = registry.delete(side.name, &DeleteParams::default()).await;
            self.ns
                .wait(&format!("{} to be unregistered", side.name), 30, || async {
                    registry
                        .get_opt(side.name)
                        .await
                        .ok()?
                        .is_none()
                        .then_some(())
                })
                .await;
            let namespaces: Api<Namespace> = Api::all(side.client.clone());
            let _ = namespaces
                .delete(&self.ns.name, &DeleteParams::background())
                .await;
        }
        self.host_op.stop();
        for op in &mut self.member_ops {
            op.stop();
        }
    }
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn one_release_over_three_clusters_is_one_plan_beta_one_pod_per_cell_lossless_everywhere() {
    let fed = Federation::new("mc-release").await;
    fed.create("web", json!({})).await;
    let checkers = fed.lossless().await;
    let before = fed.uids("web").await;
    assert!(
        before.iter().all(|uids| uids.len() == 2),
        "two pods per cluster: {before:?}"
    );

    // What the host wrote into each member: no ownerReference crosses
    // clusters; the uid label and the finalizer stand in for it.
    let cd = fed.cd("web").await;
    assert!(cd.finalizers().iter().any(|f| f == MEMBER_SETS_FINALIZER));
    for side in &fed.members {
        let set = side
            .api::<InPlaceSet>(&fed.ns.name)
            .get(&format!("web-{}", side.cell))
            .await
            .expect("member set");
        assert!(set.owner_references().is_empty());
        assert_eq!(
            set.labels().get(CAFEDEPLOYMENT_UID_LABEL),
            cd.uid().as_ref()
        );
    }
    let rows = cd.status.as_ref().expect("status").cells.clone();
    let placed: Vec<(String, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.name.clone(), r.cluster.clone(), r.reachability.clone()))
        .collect();
    assert_eq!(
        placed,
        vec![
            ("cell-a".into(), None, None),
            (
                "cell-b".into(),
                Some("dc-2".into()),
                Some("Reachable".into())
            ),
            (
                "cell-c".into(),
                Some("dc-3".into()),
                Some("Reachable".into())
            ),
        ]
    );

    // Beta: one pod per cell, in each of the three clusters.
    fed.set_image("web", "nginx:1.26").await;
    fed.wait_phase("web", Phase::WaitingForConfirm, 90).await;
    fed.assert_images(["nginx:1.25", "nginx:1.26"], "Beta updated exactly one pod")
        .await;
    fed.confirm("web").await;
    fed.wait_phase("web", Phase::Healthy, 120).await;
    fed.assert_images(["nginx:1.26", "nginx:1.26"], "all").await;
    let after = fed.uids("web").await;
    assert_eq!(
        after, before,
        "updated in place in every cluster: the same pods"
    );
    for (cluster, checker) in &checkers {
        let summary = checker.verify().await;
        println!(
            "mc-release: {cluster}: {} changed, {} deleted, fewest ready endpoints {}",
            summary.changed, summary.deleted, summary.min_ready
        );
        assert_eq!(summary.changed, 2, "{cluster}: each pod changed once");
        assert_eq!(summary.deleted, 0, "{cluster}");
        assert!(
            summary.min_ready >= 1,
            "{cluster}: never without an endpoint"
        );
    }

    // Deleting it removes its sets everywhere, then the finalizer.
    fed.delete("web").await;
    fed.finish().await;
}

/// Real requests in every data center: the test application on the real node
/// of each cluster (host: real-cell-a; dc-2 and dc-3 each have one in their
/// own network namespace), a steady stream of requests to each cluster's
/// Service, a three-cluster release with confirmations, and dc-3's API
/// server stopped in the middle of a group. No request may fail anywhere:
/// dc-3's pods keep serving while nobody can reach its API, and nothing was
/// taken out of traffic that its node could not give back.
#[tokio::test]
#[ignore = "needs the local control plane and its members with their real nodes (make test)"]
async fn a_three_cluster_release_on_real_nodes_fails_no_request_even_with_a_member_down_mid_group()
{
    let fed = Federation::new("mc-real").await;
    let mut targets = vec![("host", service(&fed.ns, "demo", "demo").await)];
    for side in &fed.members {
        targets.push((
            side.name,
            service_in(&side.client, &fed.ns.name, "demo", "demo").await,
        ));
    }
    // Two pods per cell, one cell per cluster; Beta (one per cell), then
    // groups of 2, each confirmed.
    let mut demo = real_nodes::demo(6, 2, "v1");
    demo["spec"]["topology"]["values"] = json!(CELLS);
    let _: CafeDeployment = fed.ns.create(demo).await;
    confirm_until_healthy(&fed.ns).await;
    for (cluster, pods) in ["host", "dc-2", "dc-3"]
        .iter()
        .zip(fed.pods_of("demo").await)
    {
        assert_eq!(pods.len(), 2, "{cluster}: two pods");
        for p in &pods {
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
            assert!(
                node.as_deref().is_some_and(|n| n.starts_with("real-")),
                "{cluster}: {} runs on a real node, not {node:?}",
                p.name_any()
            );
            assert!(
                ip.as_deref().is_some_and(|ip| ip.starts_with("198.18.")),
                "{cluster}: pod address {ip:?}"
            );
        }
    }
    for (_, target) in &targets {
        wait_routed(&fed.ns, *target).await;
    }
    let before = fed.uids("demo").await;
    let loads: Vec<(&str, Load)> = targets
        .iter()
        .map(|(cluster, target)| {
            (
                *cluster,
                Load::start(*target, RATE / 2, MAX_REQUESTS, MAX_LOAD_TIME),
            )
        })
        .collect();

    // Beta: one pod per cell in each cluster; group 2 is confirmed and
    // dc-3's API server stops at once, while the group's pods leave traffic:
    // once it is back, the pods' Services, the nodes' proxies and the
    // operators all catch up, and no pod may change before the proxies have.
    fed.set_image("demo", &testapp("v2")).await;
    fed.wait_phase("demo", Phase::WaitingForConfirm, 120).await;
    fed.confirm("demo").await;
    let down = Down::stop("dc-3");
    let dc3 = &loads[2].1;
    let (answered_at_stop, _) = dc3.so_far();
    fed.wait_member("dc-3", "Unknown").await;
    // Its data center serves on while nobody can reach its API.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (answered_while_down, failed_while_down) = dc3.so_far();
    assert!(
        answered_while_down > answered_at_stop + 100,
        "dc-3 answered while its API server was down ({answered_at_stop} -> {answered_while_down})"
    );
    assert_eq!(failed_while_down, 0, "dc-3 failed requests while down");
    down.start();
    fed.wait_member("dc-3", "True").await;
    confirm_until_healthy(&fed.ns).await;
    wait_n_on_everywhere(&fed, "demo", &testapp("v2")).await;
    // A moment of steady state, then the verdict.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (cluster, load) in loads {
        let report = load.finish().await;
        assert_no_failure(&format!("mc-real: {cluster}"), &report);
        let versions = report.versions();
        for v in ["v1", "v2"] {
            assert!(
                versions.contains_key(v),
                "{cluster}: {v} answered no request: {versions:?}"
            );
        }
    }
    assert_eq!(
        fed.uids("demo").await,
        before,
        "updated in place in every cluster: the same pods"
    );
    fed.delete("demo").await;
    fed.finish().await;
}

/// Waits until every live pod of `app`, in every cluster, runs `image` and is ready.
/// A CafeDeployment of `app` on the kwok nodes (no settle time) over `cells`.
fn on_kwok(
    name: &str,
    app: &str,
    replicas: i64,
    cells: &[&str],
    strategy: serde_json::Value,
) -> serde_json::Value {
    let mut body = cafedeployment(
        name,
        app,
        replicas,
        cells,
        strategy,
        json!({"settleSeconds": 0}),
    );
    body["spec"]["template"]["spec"]["nodeSelector"] = json!({"type": "kwok"});
    body
}

/// Every message of `cd`'s status (its conditions and its release's).
fn messages(cd: &CafeDeployment) -> String {
    let Some(s) = cd.status.as_ref() else {
        return String::new();
    };
    let mut all: Vec<&str> = s.conditions.iter().map(|c| c.message.as_str()).collect();
    all.extend(s.release.iter().map(|r| r.message.as_str()));
    all.join(" | ")
}

/// The message of `cd`'s Stalled condition.
fn stalled_message(cd: &CafeDeployment) -> String {
    cd.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

async fn wait_n_on_everywhere(fed: &Federation, app: &str, image_name: &str) {
    fed.ns
        .wait(&format!("every {app} pod on {image_name}"), 120, || async {
            fed.pods_of(app)
                .await
                .iter()
                .flatten()
                .all(|p| image(p) == image_name && pod_ready(p))
                .then_some(())
        })
        .await;
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn a_member_that_drops_off_holds_its_group_stalls_naming_it_and_the_release_ends_without_replay()
 {
    let fed = Federation::new("mc-down").await;
    let waiting = fed.beta_waiting("web").await;
    let opened = waiting.status.and_then(|s| s.release).map(|r| r.opened);

    // The on-call person's console (the admin's kubeconfig) shows every
    // cell reachable, and then the one whose cluster dropped off.
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_else(|_| ".cluster/kubeconfig".into());
    let console = crate::support::console::Console::start(&kubeconfig, &["-n", &fed.ns.name]);
    let browser = crate::support::browser::Browser::start().await;
    browser.open(&console.url).await;
    let cell_c = format!(
        "[data-key=\"{}/web\"] [data-cell=\"cell-c\"] .reach",
        fed.ns.name
    );
    let reach = "const r = document.querySelector(arguments[0]); \
                 return r && r.getAttribute('data-reach') === arguments[1];";
    browser
        .wait(
            "cell-c reachable on the page",
            30,
            reach,
            json!([cell_c, "Reachable"]),
        )
        .await;

    // dc-3 drops off, then the person confirms group 2.
    let down = Down::stop("dc-3");
    fed.wait_member("dc-3", "Unknown").await;
    browser
        .wait(
            "cell-c unreachable on the page",
            30,
            reach,
            json!([cell_c, "Unreachable"]),
        )
        .await;
    fed.confirm("web").await;
    // The reachable clusters finish their part and keep serving.
    fed.ns
        .wait("host and dc-2 released, dc-3 untouched", 90, || async {
            let images = fed.images().await;
            let serving = fed.pods().await[..2]
                .iter()
                .flatten()
                .filter(|p| pod_ready(p))
                .count();
            (images[0] == ["nginx:1.26", "nginx:1.26"]
                && images[1] == ["nginx:1.26", "nginx:1.26"]
                && serving == 4)
                .then_some(())
        })
        .await;
    let stalled = fed.wait_phase("web", Phase::Stalled, 90).await;
    let status = stalled.status.expect("status");
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .expect("Stalled");
    assert_eq!(condition.reason, "MemberUnreachable");
    assert!(
        condition
            .message
            .contains("cell cell-c is unreachable: member cluster dc-3"),
        "{}",
        condition.message
    );
    let row = status
        .cells
        .iter()
        .find(|r| r.name == "cell-c")
        .expect("cell-c");
    assert_eq!(row.reachability.as_deref(), Some("Unknown"));
    assert!(row.last_contact.is_some());
    let during = status.release.as_ref().map(|r| r.opened);
    assert!(during >= opened, "the groups opened never go back");
    // One member down delays nothing else: a CafeDeployment over the other
    // two clusters is created and released meanwhile.
    let other = on_kwok(
        "other",
        "other",
        4,
        &["cell-a", "cell-b"],
        json!({"upgradeType": "Batch", "batchSize": 2}),
    );
    let _: CafeDeployment = fed.ns.create(other).await;
    fed.wait_phase("other", Phase::Healthy, 60).await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:1.26"}]}}}});
    fed.cds()
        .patch("other", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("release other");
    fed.wait_phase("other", Phase::Healthy, 60).await;

    // dc-3 returns: its part is released, the release completes, and the
    // confirmed group is not asked for again.
    down.start();
    fed.wait_member("dc-3", "True").await;
    browser
        .wait(
            "cell-c reachable again on the page",
            60,
            reach,
            json!([cell_c, "Reachable"]),
        )
        .await;
    drop(browser);
    drop(console);
    let healthy = fed.wait_phase("web", Phase::Healthy, 180).await;
    fed.assert_images(["nginx:1.26", "nginx:1.26"], "all").await;
    assert_eq!(
        healthy
            .annotations()
            .get("cafe.sofastack.io/upgrade-confirmed")
            .map(String::as_str),
        Some("true"),
        "no new confirmation wait began (it would have reset the annotation)"
    );
    fed.delete("web").await;
    fed.finish().await;
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn a_rollback_while_a_member_is_down_reaches_it_when_it_returns() {
    let fed = Federation::new("mc-rollback").await;
    fed.beta_waiting("web").await;
    let down = Down::stop("dc-2");
    fed.wait_member("dc-2", "Unknown").await;
    let patch = json!({"spec": {"rollbackTo": {"revision": 0}}});
    fed.cds()
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("roll back");
    // The reachable clusters roll back at once; dc-2 keeps its Beta pod.
    fed.ns
        .wait("host and dc-3 rolled back", 90, || async {
            let images = fed.images().await;
            (images[0] == ["nginx:1.25", "nginx:1.25"] && images[2] == ["nginx:1.25", "nginx:1.25"])
                .then_some(())
        })
        .await;
    down.start();
    fed.wait_phase("web", Phase::Healthy, 180).await;
    fed.assert_images(["nginx:1.25", "nginx:1.25"], "{cluster} rolled back")
        .await;
    fed.delete("web").await;
    fed.finish().await;
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn a_member_in_use_stays_registered_and_a_cell_whose_member_left_is_moved_by_nobody() {
    let fed = Federation::new("mc-unregister").await;
    fed.create("web", json!({})).await;
    let before = fed.uids("web").await;
    let registry: Api<MemberCluster> = Api::all(fed.ns.client.clone());

    // Deleting dc-3 while web runs cell-c there: it stays registered and
    // says who holds it.
    registry
        .delete("dc-3", &DeleteParams::default())
        .await
        .expect("delete dc-3");
    let held = fed
        .ns
        .wait("dc-3 to say who holds it", 30, || async {
            let m = registry.get_opt("dc-3").await.ok().flatten()?;
            let c = m
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Deleting")?;
            (c.reason == "InUse").then_some(c.message)
        })
        .await;
    assert!(
        held.contains(&format!("{}/web (cells cell-c)", fed.ns.name)),
        "{held}"
    );
    // It takes no new cells: a CafeDeployment created now over cell-c
    // stalls naming the field, and nothing of it is written to dc-3.
    let late = on_kwok(
        "late",
        "late",
        2,
        &["cell-a", "cell-c"],
        json!({"upgradeType": "Batch", "batchSize": 1}),
    );
    let _: CafeDeployment = fed.ns.create(late).await;
    let message = stalled_message(&fed.wait_phase("late", Phase::Stalled, 30).await);
    assert!(
        message.contains("cell cell-c would start in MemberCluster dc-3, which is being deleted")
            && message.contains("topology.clusters.cell-c"),
        "{message}"
    );
    let in_dc3 = fed.members[1]
        .api::<InPlaceSet>(&fed.ns.name)
        .list(&ListParams::default())
        .await
        .expect("dc-3 sets");
    assert!(
        !in_dc3
            .items
            .iter()
            .any(|s| s.name_any().starts_with("late-")),
        "nothing of late in dc-3"
    );
    fed.delete("late").await;

    // It is still served: a release reaches all three clusters.
    fed.set_image("web", "nginx:1.26").await;
    fed.wait_phase("web", Phase::WaitingForConfirm, 90).await;
    fed.confirm("web").await;
    fed.wait_phase("web", Phase::Healthy, 120).await;
    fed.assert_images(
        ["nginx:1.26", "nginx:1.26"],
        "released while dc-3 was being deleted",
    )
    .await;
    assert!(registry.get_opt("dc-3").await.expect("get").is_some());

    // The person says dc-3 is lost for good: the registration goes, and
    // cell-c is started nowhere else; the release stalls naming the field.
    unregister_by_hand(&registry, "dc-3").await;
    let message = stalled_message(&fed.wait_phase("web", Phase::Stalled, 60).await);
    assert!(
        message.contains("cell cell-c ran in MemberCluster dc-3, which is no longer registered")
            && message.contains("topology.clusters.cell-c"),
        "{message}"
    );
    // Given time to do harm, it does none: no set for cell-c here, dc-3's
    // pods untouched.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let here: Vec<String> = fed
        .ns
        .api::<InPlaceSet>()
        .list(&ListParams::default())
        .await
        .expect("host sets")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert!(!here.iter().any(|n| n.contains("cell-c")), "{here:?}");
    assert_eq!(fed.uids("web").await, before, "no pod replaced anywhere");

    // dc-3 registered again: its sets are found where they were and the
    // CafeDeployment is whole again, with the same pods.
    fed.register_again("dc-3", "cell-c").await;
    fed.wait_phase("web", Phase::Healthy, 60).await;
    assert_eq!(fed.uids("web").await, before, "no pod replaced anywhere");

    // Once nothing uses it, a deletion goes through at once (finish).
    fed.delete("web").await;
    fed.finish().await;
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn a_rotated_kubeconfig_secret_rebuilds_the_members_client_mid_release() {
    let fed = Federation::new("mc-rotate").await;
    fed.beta_waiting("web").await;
    // The old identity is revoked: its token no longer works.
    members_sh(&["rotate", "dc-2"]);
    let refused = fed.wait_member("dc-2", "False").await;
    let ready = refused.status.expect("status").conditions;
    assert_eq!(ready[0].reason, "Unauthorized", "{:?}", ready[0]);
    // The new kubeconfig goes into the same Secret.
    let secrets: Api<Secret> = fed.ns.api();
    let patch = json!({"stringData": {"kubeconfig": members_sh(&["kubeconfig", "dc-2"])}});
    secrets
        .patch(
            "kubeconfig-dc-2",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("rotate the Secret");
    fed.wait_member("dc-2", "True").await;
    fed.confirm("web").await;
    fed.wait_phase("web", Phase::Healthy, 120).await;
    fed.assert_images(["nginx:1.26", "nginx:1.26"], "all").await;
    let log = std::fs::read_to_string(&fed.host_op.log).unwrap_or_default();
    assert!(
        log.contains(
            "member cluster client built from its kubeconfig Secret member=dc-2 rotated=true"
        ),
        "the host rebuilt dc-2's client"
    );
    fed.delete("web").await;
    fed.finish().await;
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn failover_moves_a_lost_cells_pods_to_the_others_by_a_persons_decision_and_gives_them_back()
{
    let fed = Federation::new("mc-failover").await;
    fed.create("web", json!({})).await;
    let down = Down::stop("dc-3");
    fed.wait_member("dc-3", "Unknown").await;
    // Nothing moves on its own.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let counts: Vec<usize> = fed.pods().await[..2].iter().map(Vec::len).collect();
    assert_eq!(counts, [2, 2], "no failover without a person's decision");
    let patch = json!({"spec": {"topology": {"failover": ["cell-c"]}}});
    fed.cds()
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("fail over");
    fed.ns
        .wait("cell-c's pods run in cell-a and cell-b", 90, || async {
            let pods = fed.pods().await;
            let ready: Vec<usize> = pods[..2]
                .iter()
                .map(|p| p.iter().filter(|p| pod_ready(p)).count())
                .collect();
            (ready == [3, 3]).then_some(())
        })
        .await;
    let cd = fed.cd("web").await;
    let row = cd
        .status
        .as_ref()
        .and_then(|s| s.cells.iter().find(|r| r.name == "cell-c").cloned())
        .expect("cell-c row");
    assert_eq!(row.failed_over, 2);
    // dc-3 comes back: its pods were never touched; the others give theirs back.
    down.start();
    fed.ns
        .wait("the surge given back", 120, || async {
            let counts: Vec<usize> = fed.pods().await.iter().map(Vec::len).collect();
            (counts == [2, 2, 2]).then_some(())
        })
        .await;
    fed.wait_phase("web", Phase::Healthy, 60).await;
    fed.delete("web").await;
    fed.finish().await;
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn a_freeze_stops_the_release_in_every_cluster_and_is_kept_as_a_record() {
    crate::support::signoff::install_policies();
    let fed = Federation::new("mc-freeze").await;
    fed.beta_waiting("web").await;
    let ns = fed.ns.name.clone();
    let freeze = format!("{ns}-incident");
    let text = expect(
        &ns,
        &[
            "freeze",
            "--reason",
            "incident 4711",
            "--namespaces",
            &ns,
            "--name",
            &freeze,
        ],
        0,
    );
    assert!(
        text.contains(&format!("{ns}/web")),
        "it names the release it holds: {text}"
    );
    // The person's confirmation does not get past the freeze, in any cluster.
    fed.confirm("web").await;
    let frozen = fed.wait_phase("web", Phase::Frozen, 60).await;
    let message = frozen
        .status
        .and_then(|s| s.release)
        .map(|r| r.message)
        .unwrap_or_default();
    assert!(
        message.contains(&format!(
            "frozen by ReleaseFreeze {freeze}: incident 4711 by "
        )),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    fed.assert_images(["nginx:1.25", "nginx:1.26"], "nothing moved")
        .await;
    for side in &fed.members {
        let set = side
            .api::<InPlaceSet>(&ns)
            .get(&format!("web-{}", side.cell))
            .await
            .expect("member set");
        assert!(set.spec.strategy.paused, "{}'s set is paused", side.name);
    }
    // `kubectl cafe get` draws the tree by cluster.
    let tree = expect(&ns, &["get", "web"], 0);
    assert!(tree.contains("Frozen"), "{tree}");
    for line in [
        "cluster (this one)",
        "cluster dc-2  Reachable",
        "cluster dc-3  Reachable",
    ] {
        assert!(tree.contains(line), "{line} in:\n{tree}");
    }
    assert!(
        tree.contains("⟶ InPlaceSet web-cell-c"),
        "the member's sets are read:\n{tree}"
    );
    // Thawed: the release goes on; the freeze stays as the record.
    expect(&ns, &["unfreeze", &freeze], 0);
    fed.wait_phase("web", Phase::Healthy, 120).await;
    fed.assert_images(["nginx:1.26", "nginx:1.26"], "all").await;
    let record = Api::<cafe_operator::api::ReleaseFreeze>::all(fed.ns.client.clone())
        .get(&freeze)
        .await
        .expect("the record stays");
    // Who froze and who thawed: the API server's word (the sign-off policy
    // stamps ReleaseFreezes cluster-wide), not the plugin's.
    assert_eq!(record.spec.requested_by.as_deref(), Some("cafe-admin"));
    let thawed = record.spec.thawed.expect("thawed");
    assert_eq!(thawed.by.as_deref(), Some("cafe-admin"));
    let _ = Api::<cafe_operator::api::ReleaseFreeze>::all(fed.ns.client.clone())
        .delete(&freeze, &DeleteParams::default())
        .await;
    fed.delete("web").await;
    fed.finish().await;
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn sigkills_of_the_host_and_member_operators_mid_release_update_every_pod_once() {
    const PER_CLUSTER: usize = 4;
    const KILLS: usize = 12;
    let mut fed = Federation::new("mc-chaos").await;
    let mut body = cafedeployment(
        "web",
        "web",
        12,
        &CELLS,
        json!({"upgradeType": "Batch", "batchSize": 2, "minReadySeconds": 2}),
        json!({"settleSeconds": 0}),
    );
    body["spec"]["template"]["spec"]["nodeSelector"] = json!({"type": "kwok"});
    let _: CafeDeployment = fed.ns.create(body).await;
    fed.wait_phase("web", Phase::Healthy, 120).await;
    let checkers = fed.lossless().await;
    let uids = |pods: &Vec<Vec<Pod>>| -> Vec<Vec<String>> {
        pods.iter()
            .map(|p| {
                let mut u: Vec<String> = p.iter().filter_map(|p| p.uid()).collect();
                u.sort();
                u
            })
            .collect()
    };
    let before = uids(&fed.pods().await);
    assert!(before.iter().all(|u| u.len() == PER_CLUSTER), "{before:?}");

    fed.set_image("web", "nginx:1.26").await;
    let mut kills = 0;
    let started = std::time::Instant::now();
    loop {
        let cd = fed.cd("web").await;
        let done = cd.status.as_ref().is_some_and(|s| {
            s.phase == Some(Phase::Healthy) && s.observed_generation == cd.metadata.generation
        });
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the release did not complete within 300 s of chaos ({kills} kills)\n{}",
            fed.ns.report().await
        );
        {
            tokio::time::sleep(random_ms(400, 1500)).await;
            // The host's, then each member's, in turn: SIGKILL, back at once.
            match kills % 3 {
                0 => fed.host_op.restart(),
                i => fed.member_ops[i - 1].restart(),
            }
            kills += 1;
        }
    }
    println!(
        "mc-chaos: {kills} SIGKILLs (host and members) during a release of {:?}",
        started.elapsed()
    );
    assert!(
        kills >= KILLS,
        "only {kills} kills before the release ended: not enough chaos"
    );
    let after = fed.pods().await;
    assert_eq!(
        uids(&after),
        before,
        "the same pods in every cluster: updated in place"
    );
    for (cluster, pods) in ["host", "dc-2", "dc-3"].iter().zip(&after) {
        for p in pods {
            assert_eq!(image(p), "nginx:1.26");
            assert_eq!(
                crate::support::pods::restarts(p),
                1,
                "{cluster}: pod {} restarted exactly once",
                p.name_any()
            );
        }
    }
    for (cluster, checker) in &checkers {
        let summary = checker.verify().await;
        assert_eq!(
            summary.changed, PER_CLUSTER,
            "{cluster}: each pod changed once"
        );
        assert_eq!(summary.deleted, 0, "{cluster}");
        assert!(summary.min_ready >= 1, "{cluster}");
    }
    fed.delete("web").await;
    fed.finish().await;
}
