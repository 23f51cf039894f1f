//! The GROUP column (`status.release.group`) of a single-cluster release,
//! as `kubectl get -w`, kstatus, Argo CD and scripts see it: sampled every
//! 50 ms through CAFE's example created and released group by group, it
//! never goes back (the counter is the one the multi-cluster story checks:
//! `multicluster/release_status.rs`).

use cafe_operator::api::{CafeDeployment, Phase};
use kube::Api;

use crate::support::demo::{
    confirm_until_healthy, create_demo_paused_at_each_group, release_image, settle,
    update_revision, wait_all_on,
};
use crate::support::group_watch::{GroupWatch, assert_never_back};
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn the_group_counter_never_goes_back_through_a_single_cluster_release() {
    let ns = TestNs::new("cd-group").await;
    let _op = Operator::start(&ns.name);
    let cds: Api<CafeDeployment> = ns.api();
    let watch = GroupWatch::start(cds.clone(), "demo");
    create_demo_paused_at_each_group(&ns).await;
    confirm_until_healthy(&ns).await;
    let created = update_revision(&cds).await;
    release_image(&cds, "nginx:1.26").await;
    settle(&ns, Phase::WaitingForConfirm, 1).await;
    confirm_until_healthy(&ns).await;
    wait_all_on(&ns, "nginx:1.26").await;
    let released = update_revision(&cds).await;
    let samples = watch.finish().await;
    assert_ne!(created, released);
    assert_never_back(&samples, &created, "cd-group creation");
    assert_never_back(&samples, &released, "cd-group release");
}
