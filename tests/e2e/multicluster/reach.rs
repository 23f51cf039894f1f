//! A member's API server goes down while a release writes toward it: how
//! often the host tries, when the member reads unreachable and in which
//! words, when the group that waits for it stalls, and what an operator
//! started during the outage says.

use std::time::{Duration, Instant};

use cafe_operator::api::{MemberCluster, Phase};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{Down, Federation, messages};
use crate::support::net::{free_port, http_get};

/// dc-3 reads Unknown after this long without an answer.
const UNREACHABLE_AFTER: u64 = 20;
/// The CafeDeployment's progress deadline: longer than UNREACHABLE_AFTER, so
/// the stall comes from the deadline, not from the moment dc-3 reads Unknown.
const DEADLINE: i64 = 40;

/// The host's InPlaceSet writes (patches) toward `member` so far, any outcome.
fn writes_toward(port: u16, member: &str) -> u64 {
    let (_, page) = http_get(port, "/metrics").unwrap_or_default();
    page.lines()
        .filter(|l| l.starts_with("cafe_member_api_requests_total{"))
        .filter(|l| l.contains(&format!("member=\"{member}\"")))
        .filter(|l| l.contains("verb=\"patch\"") && l.contains("resource=\"inplacesets\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// MemberCluster `name`'s Ready condition: (status, reason, message).
async fn ready(registry: &Api<MemberCluster>, name: &str) -> Option<(String, String, String)> {
    let m = registry.get_opt(name).await.ok().flatten()?;
    let c = m
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

/// What the story saw between the stop of dc-3's API server and dc-3 read
/// Unknown.
struct Outage {
    /// Seconds after the stop began at which a write toward dc-3 was counted.
    writes: Vec<f64>,
    /// Seconds after the stop began at which dc-3 first read Unknown, and
    /// whether it read True until then.
    unknown_at: f64,
    /// The Ready message then.
    unknown_message: String,
    /// A CafeDeployment message that said the writes were held off.
    held_message: Option<String>,
}

/// Samples every 100 ms, from `began` until dc-3 reads Unknown (at most
/// UNREACHABLE_AFTER + 30 s): the host's writes toward it, its Ready
/// condition, and the CafeDeployment's messages.
async fn watch_outage(fed: &Federation, port: u16, began: Instant) -> Outage {
    let registry: Api<MemberCluster> = Api::all(fed.ns.client.clone());
    let mut counted = writes_toward(port, "dc-3");
    let mut writes = Vec::new();
    let mut held_message = None;
    let give_up = began + Duration::from_secs(UNREACHABLE_AFTER + 30);
    while Instant::now() < give_up {
        let now = writes_toward(port, "dc-3");
        for _ in counted..now {
            writes.push(began.elapsed().as_secs_f64());
        }
        counted = counted.max(now);
        let cd = fed.cd("web").await;
        let said = messages(&cd);
        if held_message.is_none() && said.contains("writes there are held off until") {
            held_message = Some(said);
        }
        match ready(&registry, "dc-3").await {
            Some((status, _, message)) if status != "True" => {
                return Outage {
                    writes,
                    unknown_at: began.elapsed().as_secs_f64(),
                    unknown_message: format!("{status}: {message}"),
                    held_message,
                };
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "dc-3 still reads Ready=True {}s after its API server stopped; writes toward it: {writes:?}",
        UNREACHABLE_AFTER + 30
    );
}

#[tokio::test]
#[ignore = "needs the local control plane and its members (make test)"]
async fn a_member_going_down_mid_release_gets_a_handful_of_writes_reads_unknown_on_time_and_stalls_the_group_at_its_deadline()
 {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut fed = Federation::with_host_args("mc-reach", &["--metrics-bind-address", &addr]).await;
    let registry: Api<MemberCluster> = Api::all(fed.ns.client.clone());
    let patch = json!({"spec": {"unreachableAfterSeconds": UNREACHABLE_AFTER}});
    registry
        .patch("dc-3", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("unreachableAfterSeconds");
    fed.create("web", json!({})).await;
    let patch = json!({"spec": {"strategy": {"progressDeadlineSeconds": DEADLINE}}});
    fed.cds()
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("progressDeadlineSeconds");
    fed.set_image("web", "nginx:1.26").await;
    fed.wait_phase("web", Phase::WaitingForConfirm, 90).await;

    // dc-3's API server goes down; the person confirms the next group at
    // once, so the host has a write toward dc-3 to make while it is down
    // and not yet judged unreachable.
    let began = Instant::now();
    let down = Down::stop("dc-3");
    let stopped = began.elapsed().as_secs_f64();
    fed.confirm("web").await;
    let outage = watch_outage(&fed, port, began).await;
    eprintln!(
        "stop took {stopped:.1}s; writes toward dc-3 at {:?}; Unknown at {:.1}s: {}",
        outage.writes, outage.unknown_at, outage.unknown_message
    );

    // A handful of attempts, each wait longer than the one before (100 ms
    // sampling), not one per reconcile.
    assert!(
        !outage.writes.is_empty(),
        "the host wrote toward dc-3 while it was down: the story tests nothing otherwise"
    );
    assert!(
        outage.writes.len() <= 6,
        "at most a handful of writes toward a member going down, got {:?}",
        outage.writes
    );
    let gaps: Vec<f64> = outage.writes.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= 0.3) && gaps.windows(2).all(|g| g[1] + 0.3 >= g[0]),
        "the waits between writes are at least the first hold-off (0.5 s) and grow: {gaps:?}"
    );
    if outage.writes.len() > 1 {
        let held = outage.held_message.as_deref().unwrap_or_default();
        assert!(
            held.contains("cell cell-c: member cluster dc-3: writes there are held off until"),
            "the CafeDeployment said the writes wait: {:?}",
            outage.held_message
        );
    }
    // Ready=True until unreachableAfterSeconds after the last answer (a
    // probe every 2 s, before the stop began), Unknown after, naming the
    // error.
    let after = UNREACHABLE_AFTER as f64;
    assert!(
        outage.unknown_at >= after - 2.5 && outage.unknown_at <= stopped + after + 3.0,
        "dc-3 read Unknown {:.1}s after its API server began to stop (it stopped after \
         {stopped:.1}s), not about {after}s: {}",
        outage.unknown_at,
        outage.unknown_message
    );
    let message = &outage.unknown_message;
    assert!(
        message.starts_with("Unknown: member cluster dc-3 has not answered since")
            && message.to_lowercase().contains("connect")
            && message.contains("check that its API server is up"),
        "{message}"
    );

    // The group that needs dc-3 stalls when its progress deadline passes,
    // counted from when it opened.
    let cd = fed.cd("web").await;
    let opened_at = cd
        .status
        .as_ref()
        .and_then(|s| s.release.as_ref())
        .and_then(|r| r.opened_at.clone())
        .expect("status.release.openedAt");
    let stalled = fed.wait_phase("web", Phase::Stalled, 90).await;
    let at = k8s_openapi::jiff::Timestamp::now().as_second() - opened_at.0.as_second();
    let condition = stalled
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == "Stalled")
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default();
    eprintln!("stalled {at}s after the group opened: {condition:?}");
    assert_eq!(condition.0, "MemberUnreachable");
    assert!(
        (DEADLINE..=DEADLINE + 4).contains(&at),
        "stalled {at}s after the group opened, for a {DEADLINE}s deadline"
    );

    // An operator started during the outage says since when dc-3 is silent,
    // from the last contact its status recorded.
    let recorded = registry
        .get("dc-3")
        .await
        .expect("dc-3")
        .status
        .and_then(|s| s.last_contact)
        .expect("dc-3's status recorded a last contact");
    let recorded = serde_json::to_value(&recorded).expect("time");
    let recorded = recorded.as_str().unwrap_or_default().to_string();
    fed.host_op.restart();
    let said = fed
        .ns
        .wait("the new operator's words for dc-3", 30, || async {
            let (_, _, message) = ready(&registry, "dc-3").await?;
            // The previous operator's words say "since <recorded>" too,
            // without "this operator has tried since".
            message
                .contains("this operator has tried since")
                .then_some(message)
        })
        .await;
    assert!(
        said.contains(&format!(
            "member cluster dc-3 has not answered since {recorded} (the last contact on record)"
        )) && !said.contains("never answered"),
        "{said}"
    );
    let kept = registry.get("dc-3").await.expect("dc-3").status;
    let kept = kept.and_then(|s| s.last_contact);
    assert_eq!(
        serde_json::to_value(&kept).ok(),
        Some(json!(recorded)),
        "the recorded last contact is kept"
    );

    // dc-3 returns: the release completes.
    down.start();
    fed.wait_member("dc-3", "True").await;
    fed.wait_phase("web", Phase::Healthy, 180).await;
    fed.assert_images(["nginx:1.26", "nginx:1.26"], "all").await;
    fed.delete("web").await;
    fed.finish().await;
}
