//! The GROUP column (`status.release.group`) through whole releases over
//! three clusters, as `kubectl get -w`, kstatus, Argo CD and scripts see
//! it: a counter of one release that never goes back — not after a
//! confirmation, not after a write to the sets, wherever their cells live.

use cafe_operator::api::{CafeDeployment, Phase};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::{CELLS, Federation, on_kwok};
use crate::support::demo::confirm_until_healthy;
use crate::support::group_watch::{GroupWatch, assert_never_back};
use crate::support::pods::image;

/// The revision `name` releases (or released last).
async fn update_revision(fed: &Federation, name: &str) -> String {
    fed.cd(name)
        .await
        .status
        .and_then(|s| s.update_revision)
        .expect("status.updateRevision")
}

/// A creation and a release of 9 pods, three per cell (cell-a here, cell-b
/// in dc-2, cell-c in dc-3), Beta then groups of 2, every group confirmed:
/// sampled every 50 ms throughout, the group counter never decreases.
#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn the_group_counter_never_goes_back_through_a_release_over_three_clusters() {
    let fed = Federation::new("mc-group").await;
    let watch = GroupWatch::start(fed.cds(), "demo");
    let body = on_kwok(
        "demo",
        "demo",
        9,
        &CELLS,
        json!({"upgradeType": "Beta", "batchSize": 2, "needWaitingForConfirm": true}),
    );
    let _: CafeDeployment = fed.ns.create(body).await;
    confirm_until_healthy(&fed.ns).await;
    let created = update_revision(&fed, "demo").await;

    fed.set_image("demo", "nginx:1.26").await;
    // The Beta group first (the status read right after the patch still
    // shows the creation, Healthy).
    fed.wait_phase("demo", Phase::WaitingForConfirm, 90).await;
    confirm_until_healthy(&fed.ns).await;
    let released = update_revision(&fed, "demo").await;
    let samples = watch.finish().await;

    let pods: Vec<Pod> = fed.pods_of("demo").await.concat();
    assert_eq!(pods.len(), 9, "three pods per cell");
    assert!(
        pods.iter().all(|p| image(p) == "nginx:1.26"),
        "all released"
    );
    assert_ne!(created, released);
    assert_never_back(&samples, &created, "mc-group creation");
    assert_never_back(&samples, &released, "mc-group release");
    fed.delete("demo").await;
    fed.finish().await;
}
