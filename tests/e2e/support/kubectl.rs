//! `kubectl` as a user types it, and the `kubectl cafe` plugin this crate
//! builds.

use std::process::{Command, Output, Stdio};

/// `kubectl -n NS ARGS...`; fails the test unless it succeeds.
pub(crate) fn kubectl(ns: &str, args: &[&str]) {
    let status = Command::new("kubectl")
        .args(["-n", ns])
        .args(args)
        .status()
        .expect("kubectl on PATH");
    assert!(status.success(), "kubectl {args:?}");
}

/// `kubectl patch` a merge patch `body` into the CafeDeployment demo, as a
/// user would.
pub(crate) fn kubectl_patch_demo(ns: &str, body: &str) {
    kubectl(
        ns,
        &[
            "patch",
            "cafedeployment",
            "demo",
            "--type",
            "merge",
            "-p",
            body,
        ],
    );
}

/// `kubectl patch` a rollback request, as a user would.
pub(crate) fn kubectl_rollback(ns: &str, revision: i64) {
    let body = format!(r#"{{"spec":{{"rollbackTo":{{"revision":{revision}}}}}}}"#);
    kubectl_patch_demo(ns, &body);
}

pub(crate) fn kubectl_annotate_confirm(ns: &str) {
    kubectl(
        ns,
        &[
            "annotate",
            "cafedeployment",
            "demo",
            "cafe.sofastack.io/upgrade-confirmed=true",
            "--overwrite",
        ],
    );
}

/// `kubectl cafe -n NS ARGS...` (this crate's plugin binary), its output.
fn cafe(ns: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-cafe"))
        .args(["-n", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl-cafe")
}

/// Runs a verb; asserts its exit code; returns stdout and stderr together.
pub(crate) fn expect(ns: &str, args: &[&str], code: i32) -> String {
    let out = cafe(ns, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "kubectl cafe {args:?} exited {:?}:\n{text}",
        out.status.code()
    );
    text
}
