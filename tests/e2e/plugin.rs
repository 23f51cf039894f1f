//! `kubectl cafe` on a real release: every verb, the exit codes of `status`
//! and `get -w`, kstatus health read by `kubectl wait`, and the live screen of
//! `get -w` drawn in a real pseudo-terminal.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cafe_operator::api::{CafeDeployment, Phase};
use kube::Api;

use crate::support::demo::{create_demo, phase, pods_by_cell};
use crate::support::kubectl::expect;
use crate::support::namespace::TestNs;
use crate::support::operator::Operator;
use crate::support::pods::{image, pod_ready};

/// Waits for the phase with `new` Ready pods per cell on nginx:1.26.
async fn at(ns: &TestNs, want: Phase, new: usize) {
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait(
        &format!("{want:?} with {new} new pods per cell"),
        180,
        || async {
            if phase(&cds).await != Some(want) {
                return None;
            }
            let pods = pods_by_cell(ns).await;
            let ok = ["cell-a", "cell-b"].iter().all(|c| {
                pods.iter()
                    .filter(|(p, cell)| cell == c && image(p) == "nginx:1.26" && pod_ready(p))
                    .count()
                    == new
            });
            ok.then_some(())
        },
    )
    .await;
}

fn kubectl_wait_ready(ns: &str, timeout: &str) -> bool {
    Command::new("kubectl")
        .args([
            "-n",
            ns,
            "wait",
            "--for=condition=Ready",
            "cafedeployment/demo",
        ])
        .arg(format!("--timeout={timeout}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kubectl")
        .success()
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn every_verb_operates_a_real_release_and_status_exit_codes_tell_the_outcome() {
    let ns = TestNs::new("plugin-verbs").await;
    let _op = Operator::start(&ns.name);
    create_demo(&ns).await;
    let n = ns.name.as_str();

    let text = expect(n, &["set", "image", "demo", "app=nginx:1.26"], 0);
    assert!(text.contains("releasing app=nginx:1.26"), "{text}");
    let text = expect(n, &["set", "image", "demo", "web=nginx:1.26"], 1);
    assert!(
        text.contains("no container \"web\"") && text.contains("app"),
        "{text}"
    );
    at(&ns, Phase::WaitingForConfirm, 1).await;

    // Waiting for a person: status blocks (timeout: 2), succeeds on wait if asked,
    // and says "not done" without a watch; kubectl wait for Ready times out.
    expect(n, &["status", "demo", "--timeout", "3s"], 2);
    expect(
        n,
        &["status", "demo", "--success-on-wait", "--timeout", "30s"],
        0,
    );
    let once = expect(n, &["status", "demo", "--watch=false"], 2);
    assert!(once.contains("WaitingForConfirm"), "{once}");
    assert!(
        !kubectl_wait_ready(n, "3s"),
        "not Ready while a group waits"
    );
    let list = expect(n, &["list"], 0);
    assert!(
        list.contains("demo") && list.contains("1/3") && list.contains("confirm"),
        "{list}"
    );
    let all = expect(n, &["list", "-A"], 0);
    assert!(all.contains(n), "{all}");
    let json = expect(n, &["get", "demo", "-o", "json"], 0);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("-o json");
    assert_eq!(parsed["status"]["phase"], "WaitingForConfirm");

    // Confirm moves exactly one group.
    let text = expect(n, &["confirm", "demo"], 0);
    assert!(text.contains("confirmed group 2 of 3"), "{text}");
    at(&ns, Phase::WaitingForConfirm, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    at(&ns, Phase::WaitingForConfirm, 3).await;

    // Pause holds; a confirmation now is refused with what to do.
    expect(n, &["pause", "demo"], 0);
    let cds: Api<CafeDeployment> = ns.api();
    ns.wait("Paused", 60, || async {
        (phase(&cds).await == Some(Phase::Paused)).then_some(())
    })
    .await;
    let text = expect(n, &["confirm", "demo"], 1);
    assert!(
        text.contains("waits for no confirmation (phase Paused)"),
        "{text}"
    );
    expect(n, &["pause", "demo"], 0);
    expect(n, &["resume", "demo"], 0);
    at(&ns, Phase::WaitingForConfirm, 3).await;
    expect(n, &["confirm", "demo"], 0);

    // get -w ends when the release completes; then Ready holds.
    let text = expect(n, &["get", "demo", "-w", "--timeout", "180s"], 0);
    assert!(text.contains("Healthy"), "{text}");
    assert!(
        kubectl_wait_ready(n, "30s"),
        "Ready once the release completed"
    );
    expect(n, &["status", "demo", "--timeout", "10s"], 0);

    let history = expect(n, &["history", "demo"], 0);
    assert!(
        history.contains("app=nginx:1.25") && history.contains("app=nginx:1.26"),
        "{history}"
    );
    // Who did each step: the released revision's entries, merged from status
    // and its ControllerRevision, one line each; -o json for tools.
    let doc: serde_json::Value =
        serde_json::from_str(&expect(n, &["history", "demo", "-o", "json"], 0))
            .expect("history -o json");
    assert_eq!(doc["name"], "demo", "{doc}");
    let verified = doc["verified"].as_bool().expect("verified: a bool");
    assert_eq!(
        !verified,
        history.starts_with("identities are unverified: "),
        "{history}"
    );
    let released = doc["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .find(|r| r["images"] == serde_json::json!(["app=nginx:1.26"]))
        .cloned()
        .expect("the released revision");
    assert_eq!(released["current"], true, "{released}");
    let actions: Vec<&str> = released["history"]
        .as_array()
        .expect("its history")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["TemplateChanged", "Confirmed", "Completed"] {
        assert!(actions.contains(&action), "{action} in {released}");
        assert!(history.contains(action), "{action} in:\n{history}");
    }
    let seqs: Vec<i64> = doc["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["seq"].as_i64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "once each, by seq: {seqs:?}"
    );
    let text = expect(n, &["rollback", "demo", "--to-revision", "99"], 1);
    assert!(text.contains("no revision 99"), "{text}");
    let text = expect(n, &["rollback", "demo"], 0);
    assert!(text.contains("app=nginx:1.25"), "{text}");
    ns.wait("all pods back on nginx:1.25, Healthy", 180, || async {
        let pods = pods_by_cell(&ns).await;
        let back = pods.len() == 10
            && pods
                .iter()
                .all(|(p, _)| image(p) == "nginx:1.25" && pod_ready(p));
        (back && phase(&cds).await == Some(Phase::Healthy)).then_some(())
    })
    .await;
    let text = expect(n, &["confirm", "nosuch"], 1);
    assert!(text.contains("not found"), "{text}");
}

/// The screen a terminal would show, from everything written so far.
fn screen(bytes: &[u8]) -> String {
    let size = |n: u16| std::num::NonZeroU16::new(n).expect("a size");
    let mut parser = vt100::Parser::new(size(50), size(160), 0);
    parser.process(bytes);
    parser.screen().contents()
}

#[tokio::test]
#[ignore = "needs the local control plane: make test"]
async fn get_w_draws_the_release_live_in_a_terminal() {
    let ns = TestNs::new("plugin-tty").await;
    let _op = Operator::start(&ns.name);
    create_demo(&ns).await;
    let n = ns.name.clone();
    expect(&n, &["set", "image", "demo", "app=nginx:1.26"], 0);
    at(&ns, Phase::WaitingForConfirm, 1).await;

    // `script` gives the plugin a real pseudo-terminal and copies what it draws.
    let command = format!(
        "stty rows 50 cols 160; exec {} -n {n} get demo -w --timeout 300s",
        env!("CARGO_BIN_EXE_kubectl-cafe")
    );
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux)");
    let mut stdout = child.stdout.take().expect("stdout");
    let drawn = Arc::new(Mutex::new(Vec::new()));
    let sink = drawn.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(k) = stdout.read(&mut buf) {
            if k == 0 {
                break;
            }
            if let Ok(mut d) = sink.lock() {
                d.extend_from_slice(&buf[..k]);
            }
        }
    });
    let shows = |needles: &'static [&'static str]| {
        let drawn = drawn.clone();
        async move {
            let text = screen(&drawn.lock().map(|d| d.clone()).unwrap_or_default());
            needles.iter().all(|w| text.contains(w)).then_some(text)
        }
    };
    // Point 1: the Beta group done, waiting.
    let first = ns
        .wait("the screen at the Beta wait", 60, || {
            shows(&[
                "⏸ WaitingForConfirm",
                "Group:     1/3 [████████░",
                "kubectl cafe confirm demo",
            ])
        })
        .await;
    assert!(
        first.contains("cell-a") && first.contains("cell-b"),
        "{first}"
    );
    assert!(first.contains("nginx:1.26 (update)  serving"), "{first}");
    assert!(first.contains("nginx:1.25 (stable)  serving"), "{first}");
    assert!(first.contains("traffic [service]"), "{first}");

    // Point 2: after a confirmation, the next wait, redrawn in place.
    expect(&n, &["confirm", "demo"], 0);
    let second = ns
        .wait("the screen at the second wait", 120, || {
            shows(&["⏸ WaitingForConfirm", "Group:     2/3 [████████████████░"])
        })
        .await;
    let updated = second.matches("(update)  serving").count();
    assert_eq!(updated, 6, "three per cell on the new image:\n{second}");
    assert!(
        !second.contains("1/3"),
        "no stale line left behind:\n{second}"
    );

    expect(&n, &["confirm", "demo"], 0);
    let status = ns
        .wait("get -w to exit when the release completes", 120, || {
            let exited = child.try_wait().ok().flatten();
            async move { exited }
        })
        .await;
    assert!(status.success(), "exit 0 on completion: {status:?}");
    let _ = reader.join();
    let last = screen(&drawn.lock().map(|d| d.clone()).unwrap_or_default());
    assert!(last.contains("✔ Healthy"), "{last}");
}
