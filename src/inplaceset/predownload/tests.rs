use super::*;

const NEW: &str = "rev-new";

fn images(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), app.to_string()),
        ("proxy".to_string(), "proxy:1".to_string()),
    ])
}

fn pod(node: &str, revision: &str, app: &str) -> SetPod {
    SetPod {
        node: Some(node.to_string()),
        revision: Some(revision.to_string()),
        terminating: false,
        images: images(app),
    }
}

fn pull(node: &str, age: i64, state: PullState) -> PullPod {
    PullPod {
        name: format!("shop-cell-a-pull-{node}"),
        node: node.to_string(),
        revision: NEW.to_string(),
        age,
        state,
    }
}

fn config(parallelism: i32) -> PreDownload {
    PreDownload {
        parallelism,
        timeout_seconds: 60,
    }
}

fn run(
    config: Option<&PreDownload>,
    pods: &[SetPod],
    pulls: &[PullPod],
    previous: Option<&PreDownloadStatus>,
) -> Plan {
    plan(&Input {
        config,
        revision: NEW,
        images: &images("app:2"),
        pods,
        pulls,
        previous,
    })
}

#[test]
fn the_nodes_of_pods_not_yet_updated_get_only_the_images_that_changed() {
    let pods = [
        pod("n1", "old", "app:1"),
        pod("n2", "old", "app:1"),
        pod("n3", NEW, "app:2"),
    ];
    let plan = run(Some(&config(4)), &pods, &[], None);
    assert_eq!(
        plan.start,
        vec![
            ("n1".to_string(), vec!["app:2".to_string()]),
            ("n2".to_string(), vec!["app:2".to_string()])
        ]
    );
    let status = plan.status.unwrap();
    assert_eq!((status.nodes, status.pulling), (2, 2));
    assert_eq!(status.images, vec!["app:2".to_string()]);
    assert!(status.pulled.is_empty());
}

#[test]
fn no_more_nodes_pull_at_once_than_the_parallelism() {
    let pods: Vec<SetPod> = (0..5)
        .map(|i| pod(&format!("n{i}"), "old", "app:1"))
        .collect();
    let first = run(Some(&config(2)), &pods, &[], None);
    assert_eq!(first.start.len(), 2);
    let pulls = [pull("n0", 3, PullState::Pulling)];
    let second = run(Some(&config(2)), &pods, &pulls, first.status.as_ref());
    assert_eq!(second.start.len(), 1, "one in flight, one more may start");
    assert_ne!(second.start[0].0, "n0");
}

#[test]
fn a_pulled_node_is_remembered_and_its_pod_removed() {
    let pods = [pod("n1", "old", "app:1"), pod("n2", "old", "app:1")];
    let pulls = [
        pull("n1", 5, PullState::Pulled),
        pull("n2", 5, PullState::Pulling),
    ];
    let plan = run(Some(&config(4)), &pods, &pulls, None);
    assert!(
        plan.remove.is_empty(),
        "the finished pull's pod is the only record until the status is written"
    );
    assert!(plan.start.is_empty());
    assert!(plan.busy());
    let status = plan.status.unwrap();
    assert_eq!(status.pulled, vec!["n1".to_string()]);
    assert_eq!((status.nodes, status.pulling), (2, 1));
    // The status records n1: its pod goes.
    let recorded = run(Some(&config(4)), &pods, &pulls, Some(&status));
    assert_eq!(recorded.remove, vec![pulls[0].name.clone()]);
    assert_eq!(recorded.unrecorded, 0);
    // Next round: n1 is not pulled again.
    let again = run(Some(&config(4)), &pods, &pulls[1..], Some(&status));
    assert!(again.start.is_empty());
    assert_eq!(again.status.unwrap().pulled, vec!["n1".to_string()]);
}

#[test]
fn a_finished_pull_holds_its_slot_until_the_status_records_it() {
    let pods = [pod("n1", "old", "app:1"), pod("n2", "old", "app:1")];
    let done = [pull("n1", 5, PullState::Pulled)];
    let plan = run(Some(&config(1)), &pods, &done, None);
    assert!(plan.start.is_empty(), "n2 waits: n1's pod holds the slot");
    assert_eq!(plan.unrecorded, 1);
    let status = plan.status.unwrap();
    assert_eq!(status.pulling, 0);
    let next = run(Some(&config(1)), &pods, &done, Some(&status));
    assert_eq!(next.remove, vec![done[0].name.clone()]);
    assert_eq!(
        next.start,
        vec![("n2".to_string(), vec!["app:2".to_string()])]
    );
}

#[test]
fn a_failing_pull_shows_at_once_and_is_given_up_at_the_timeout() {
    let pods = [pod("n1", "old", "app:1")];
    let failing = PullState::Failing("ErrImagePull: not found".to_string());
    let early = run(
        Some(&config(4)),
        &pods,
        &[pull("n1", 5, failing.clone())],
        None,
    );
    assert!(
        early.remove.is_empty(),
        "kubelet keeps trying until the timeout"
    );
    let status = early.status.clone().unwrap();
    assert_eq!(status.failed[0].node, "n1");
    assert!(status.failed[0].message.contains("not found"));
    assert_eq!(early.newly_failed.len(), 1);
    let late = run(
        Some(&config(4)),
        &pods,
        &[pull("n1", 61, failing)],
        Some(&status),
    );
    assert_eq!(late.remove.len(), 1);
    assert!(late.newly_failed.is_empty(), "reported once");
    assert!(late.start.is_empty(), "not tried again in this revision");
    assert!(late.status.unwrap().failed[0].message.contains("gave up"));
}

#[test]
fn a_pull_that_never_finishes_fails_at_the_timeout() {
    let pods = [pod("n1", "old", "app:1")];
    let plan = run(
        Some(&config(4)),
        &pods,
        &[pull("n1", 61, PullState::Pulling)],
        None,
    );
    assert_eq!(plan.remove.len(), 1);
    assert!(plan.status.unwrap().failed[0].message.contains("60s"));
}

#[test]
fn a_new_revision_forgets_the_last_and_removes_its_pulls() {
    let pods = [pod("n1", "old", "app:1")];
    let previous = PreDownloadStatus {
        revision: "rev-older".to_string(),
        pulled: vec!["n1".to_string()],
        nodes: 1,
        ..PreDownloadStatus::default()
    };
    let mut stale = pull("n1", 5, PullState::Pulling);
    stale.revision = "rev-older".to_string();
    let plan = run(Some(&config(4)), &pods, &[stale.clone()], Some(&previous));
    assert_eq!(plan.remove, vec![stale.name]);
    assert_eq!(plan.start.len(), 1, "n1 needs the new revision's images");
    assert!(plan.status.unwrap().pulled.is_empty());
}

#[test]
fn turned_off_removes_every_pull_and_reports_nothing() {
    let pods = [pod("n1", "old", "app:1")];
    let plan = run(None, &pods, &[pull("n1", 5, PullState::Pulling)], None);
    assert_eq!(plan.remove.len(), 1);
    assert!(plan.status.is_none() && plan.start.is_empty());
}

#[test]
fn nothing_to_pull_when_every_pod_is_updated_and_no_release_ran() {
    let pods = [pod("n1", NEW, "app:2")];
    let plan = run(Some(&config(4)), &pods, &[], None);
    assert_eq!(plan, Plan::default());
}

#[test]
fn a_finished_release_keeps_its_figures_and_removes_leftover_pulls() {
    let pods = [pod("n1", NEW, "app:2")];
    let previous = PreDownloadStatus {
        revision: NEW.to_string(),
        images: vec!["app:2".to_string()],
        nodes: 1,
        pulled: vec!["n1".to_string()],
        pulling: 0,
        failed: Vec::new(),
    };
    let plan = run(
        Some(&config(4)),
        &pods,
        &[pull("n1", 5, PullState::Pulling)],
        Some(&previous),
    );
    assert_eq!(plan.remove.len(), 1);
    assert_eq!(plan.status, Some(previous));
}

#[test]
fn unscheduled_and_terminating_pods_need_nothing() {
    let mut unscheduled = pod("n1", "old", "app:1");
    unscheduled.node = None;
    let mut leaving = pod("n2", "old", "app:1");
    leaving.terminating = true;
    assert!(
        run(Some(&config(4)), &[unscheduled, leaving], &[], None)
            .start
            .is_empty()
    );
}

#[test]
fn kubelet_states_read_as_pulling_pulled_or_failing() {
    let from = |status: serde_json::Value| -> PullState {
        state(&serde_json::from_value(serde_json::json!({"status": status})).unwrap())
    };
    assert_eq!(
        from(serde_json::json!({"phase": "Pending"})),
        PullState::Pulling
    );
    assert_eq!(
        from(
            serde_json::json!({"containerStatuses": [{"name": "pull", "image": "p",
            "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}}]})
        ),
        PullState::Pulled
    );
    let failing = from(
        serde_json::json!({"containerStatuses": [{"name": "pull", "image": "p",
        "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}}}]}),
    );
    assert_eq!(
        failing,
        PullState::Failing("ErrImagePull: manifest unknown".to_string())
    );
    assert_eq!(
        from(
            serde_json::json!({"containerStatuses": [{"name": "pull", "image": "p",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]})
        ),
        PullState::Pulling
    );
}

#[test]
fn pull_names_are_one_per_slot_and_short() {
    let long = "x".repeat(80);
    let name = pull_name(&long, 3);
    assert!(name.len() <= 63, "{name}");
    assert!(name.ends_with("-pull-3"), "{name}");
    assert_eq!(pull_name("shop-cell-a", 0), "shop-cell-a-pull-0");
}

#[test]
fn a_pull_starts_only_into_a_slot_no_pull_pod_holds() {
    let taken = BTreeSet::from(["shop-pull-1"]);
    assert_eq!(
        free_slots("shop", 3, &taken),
        vec!["shop-pull-0".to_string(), "shop-pull-2".to_string()]
    );
    // A stale cache plans a second pull while one runs: with parallelism 1
    // its only name is the running pull's, which the API server refuses.
    assert_eq!(
        free_slots("shop", 1, &BTreeSet::new()),
        vec!["shop-pull-0".to_string()]
    );
    assert_eq!(
        (slots(&config(0)), slots(&config(3))),
        (1, 3),
        "one slot at least"
    );
    // Parallelism lowered under running pulls: only the slots below it.
    let both = BTreeSet::from(["shop-pull-0", "shop-pull-3"]);
    assert_eq!(
        free_slots("shop", 2, &both),
        vec!["shop-pull-1".to_string()]
    );
}

#[test]
fn a_cached_pod_is_read_with_its_revision_node_and_images() {
    let pod: crate::api::pod::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "labels": {crate::api::names::REVISION_LABEL: "rev-old"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "app:1"}]},
    }))
    .expect("pod");
    let read = set_pod(&pod);
    assert_eq!(read.revision.as_deref(), Some("rev-old"));
    assert_eq!(read.node.as_deref(), Some("n1"));
    assert_eq!(read.images.get("app").map(String::as_str), Some("app:1"));
}
