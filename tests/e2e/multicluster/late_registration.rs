//! A MemberCluster registered late, listing a cell a CafeDeployment already
//! runs here: the cell stays where its pods are (same pods, status naming
//! this cluster, releases reaching them here), a condition says how to move
//! it, and doing what it says moves it.

use std::time::Duration;

use cafe_operator::api::names::condition;
use cafe_operator::api::{CafeDeployment, InPlaceSet, Phase};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use super::Federation;
use crate::support::pods::image;

/// Each cell's `cluster` in `cd`'s status.
fn clusters(cd: &CafeDeployment) -> Vec<(String, Option<String>)> {
    cd.status
        .iter()
        .flat_map(|s| &s.cells)
        .map(|r| (r.name.clone(), r.cluster.clone()))
        .collect()
}

/// The message of `cd`'s Placement condition, if it has one.
fn placement(cd: &CafeDeployment) -> Option<String> {
    cd.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == condition::PLACEMENT)
        .map(|c| c.message.clone())
}

/// The names of web's InPlaceSets in dc-3.
async fn in_dc3(fed: &Federation) -> Vec<String> {
    fed.members[1]
        .api::<InPlaceSet>(&fed.ns.name)
        .list(&ListParams::default())
        .await
        .expect("dc-3 sets")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| n.starts_with("web-"))
        .collect()
}

async fn set_values(fed: &Federation, cells: &[&str]) {
    let patch = json!({"spec": {"topology": {"values": cells}}});
    fed.cds()
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("topology.values");
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn a_late_registration_moves_no_running_cell_and_says_how_to_move_it() {
    let fed = Federation::new("mc-late").await;
    // dc-3 lists no cell of web at first: cell-c runs here.
    fed.register_again("dc-3", "cell-z").await;
    fed.create("web", json!({})).await;
    let local = vec![
        ("cell-a".to_string(), None),
        ("cell-b".to_string(), Some("dc-2".to_string())),
        ("cell-c".to_string(), None),
    ];
    assert_eq!(clusters(&fed.cd("web").await), local);
    let before = fed.uids("web").await;
    assert_eq!(
        before.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 2, 0],
        "cell-a and cell-c here, cell-b in dc-2: {before:?}"
    );

    // dc-3 registered again, now listing cell-c, which runs here.
    fed.register_again("dc-3", "cell-c").await;
    // For 5 s, read every 200 ms: status names where the pods are.
    for _ in 0..25 {
        let cd = fed.cd("web").await;
        assert_eq!(clusters(&cd), local, "status names where cell-c runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cds = fed.cds();
    let message = fed
        .ns
        .wait("a Placement condition saying what to do", 30, || async {
            placement(&cds.get("web").await.ok()?)
        })
        .await;
    println!("mc-late: {message}");
    for words in [
        "MemberCluster dc-3 lists cell cell-c; it runs here (local) and stays there",
        "remove cell-c from spec.topology.values",
        "spec.topology.clusters.cell-c: local",
    ] {
        assert!(message.contains(words), "{words:?} in {message}");
    }
    assert_eq!(
        fed.uids("web").await,
        before,
        "the same pods, where they were"
    );
    assert!(in_dc3(&fed).await.is_empty(), "nothing of web in dc-3");

    // The host's operator restarted: it places cell-c from what exists.
    let mut fed = fed;
    fed.host_op.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The next release updates cell-c's pods here, in place.
    fed.set_image("web", "nginx:1.26").await;
    fed.wait_phase("web", Phase::WaitingForConfirm, 90).await;
    fed.confirm("web").await;
    let cd = fed.wait_phase("web", Phase::Healthy, 120).await;
    assert_eq!(clusters(&cd), local, "after the release");
    assert_eq!(fed.uids("web").await, before, "updated in place, here");
    let images = fed.images().await;
    assert_eq!(
        images[0], ["nginx:1.26"; 4],
        "cell-a's and cell-c's pods, here"
    );
    assert!(images[2].is_empty(), "nothing in dc-3: {images:?}");
    assert!(in_dc3(&fed).await.is_empty(), "nothing of web in dc-3");

    // Doing what the condition says: cell-c drains here, then starts in dc-3.
    set_values(&fed, &["cell-a", "cell-b"]).await;
    fed.ns
        .wait("cell-c drained and its set deleted here", 120, || async {
            let cd = cds.get("web").await.ok()?;
            let sets = fed
                .ns
                .api::<InPlaceSet>()
                .list(&ListParams::default())
                .await
                .ok()?;
            let gone = !sets.items.iter().any(|s| s.name_any() == "web-cell-c");
            let healthy = cd.status.as_ref()?.phase == Some(Phase::Healthy);
            (gone && healthy && placement(&cd).is_none()).then_some(())
        })
        .await;
    set_values(&fed, &["cell-a", "cell-b", "cell-c"]).await;
    fed.wait_phase("web", Phase::Healthy, 120).await;
    fed.ns
        .wait("cell-c's pods in dc-3", 60, || async {
            let pods = fed.pods_of("web").await;
            (pods[2].len() == 2 && pods[2].iter().all(|p| image(p) == "nginx:1.26")).then_some(())
        })
        .await;
    let cd = fed.cd("web").await;
    let rows = clusters(&cd);
    assert_eq!(rows[2], ("cell-c".to_string(), Some("dc-3".to_string())));
    assert_eq!(placement(&cd), None, "nothing more to say");
    assert_eq!(in_dc3(&fed).await, ["web-cell-c"]);
    fed.delete("web").await;
    fed.finish().await;
}
