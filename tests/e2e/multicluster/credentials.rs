//! A member's credential revoked mid-release: the member reads as such,
//! naming the Secret to fix; the release waits and shrinks nothing there;
//! a fresh kubeconfig in the Secret lets it complete.

use cafe_operator::api::{InPlaceSet, MemberCluster, Phase};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{Federation, messages};
use crate::support::members::members_sh;

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn a_member_whose_credential_is_revoked_mid_release_reads_unauthorized_naming_the_secret_and_nothing_there_shrinks()
 {
    let fed = Federation::new("mc-cred").await;
    fed.beta_waiting("web").await;
    let dc3 = &fed.members[1];
    let sets: Api<InPlaceSet> = dc3.api(&fed.ns.name);
    let before = sets
        .get("web-cell-c")
        .await
        .expect("web-cell-c in dc-3")
        .spec;

    // dc-3's identity is recreated: the token in the host's Secret stops
    // working.
    members_sh(&["rotate", "dc-3"]);
    let secret = format!("Secret {}/kubeconfig-dc-3 key kubeconfig", fed.ns.name);
    let registry: Api<MemberCluster> = Api::all(fed.ns.client.clone());
    let ready = fed
        .ns
        .wait("dc-3 to read Unauthorized", 60, || async {
            let m = registry.get_opt("dc-3").await.ok().flatten()?;
            let c = m
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (c.reason == "Unauthorized").then_some(c)
        })
        .await;
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains(&secret)
            && ready.message.contains(&format!(
                "expired or revoked. Put a fresh kubeconfig in {secret}"
            )),
        "{}",
        ready.message
    );
    // The person confirms the next group: the CafeDeployment names the
    // credential too, while the host and dc-2 release their part of it.
    fed.confirm("web").await;
    let said = fed
        .ns
        .wait("the CafeDeployment to name dc-3's Secret", 60, || async {
            let said = messages(&fed.cd("web").await);
            said.contains(&secret).then_some(said)
        })
        .await;
    assert!(said.contains("member cluster dc-3"), "{said}");
    fed.ns
        .wait("host and dc-2 released", 90, || async {
            let images = fed.images().await;
            (images[0] == ["nginx:1.26", "nginx:1.26"] && images[1] == ["nginx:1.26", "nginx:1.26"])
                .then_some(())
        })
        .await;
    let cd = fed.cd("web").await;
    assert_ne!(
        cd.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Healthy),
        "the release waits for dc-3"
    );
    // Nothing in dc-3 was written meanwhile: its set is as it was, none of
    // its pods shrunk away.
    let during = sets.get("web-cell-c").await.expect("web-cell-c").spec;
    assert_eq!(during.replicas, before.replicas, "dc-3's set is not shrunk");
    assert_eq!(
        serde_json::to_value(&during.strategy).ok(),
        serde_json::to_value(&before.strategy).ok(),
        "nothing was written to dc-3's set"
    );
    assert_eq!(fed.pods().await[2].len(), 2, "dc-3 keeps its two pods");

    // A fresh kubeconfig goes into the Secret: the release completes.
    let secrets: Api<Secret> = fed.ns.api();
    let patch = json!({"stringData": {"kubeconfig": members_sh(&["kubeconfig", "dc-3"])}});
    secrets
        .patch(
            "kubeconfig-dc-3",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("a fresh kubeconfig");
    fed.wait_member("dc-3", "True").await;
    fed.wait_phase("web", Phase::Healthy, 120).await;
    fed.assert_images(["nginx:1.26", "nginx:1.26"], "all").await;
    fed.delete("web").await;
    fed.finish().await;
}
