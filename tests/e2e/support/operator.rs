//! The operator under test, as a real process: one per test, watching only
//! the test's namespace, so a test may kill it (SIGKILL) and start it again;
//! and which of its replicas holds the leader Lease.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::support::namespace::TestNs;

pub struct Operator {
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub log: PathBuf,
}

impl Operator {
    /// The operator watching `namespace`, its endpoints off (tests run in parallel).
    pub fn start(namespace: &str) -> Self {
        Self::launch(namespace, &[], &[])
    }

    /// One operator process of possibly several in `namespace`: `name` tells
    /// their logs apart; `args` replace the default of each flag they set.
    pub fn launch(name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-logs");
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("{name}.log"));
        let namespace = name.split('@').next().unwrap_or(name);
        let mut all: Vec<String> = vec!["run".to_string()];
        // Defaults, unless the caller sets the flag.
        for (flag, value) in [
            ("--namespace", namespace),
            ("--log-level", "info"),
            ("--metrics-bind-address", "0"),
            ("--health-probe-bind-address", "0"),
            // The real nodes' sandbox image (tests/images): always there.
            ("--pre-download-pod-image", "cafe.local/pause:1"),
        ] {
            if !args.contains(&flag) {
                all.extend([flag.to_string(), value.to_string()]);
            }
        }
        // Leader election is on by default; a story's operator runs alone
        // (a SIGKILLed one is restarted at once) unless the story sets a
        // --leader-elect* flag (a story that sets only the Lease's namespace
        // runs the operator's own default).
        if !args.iter().any(|a| a.starts_with("--leader-elect")) {
            all.push("--leader-elect=false".to_string());
        }
        all.extend(args.iter().map(|s| s.to_string()));
        let mut op = Self {
            child: None,
            args: all,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log,
        };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log file");
        let child = Command::new(env!("CARGO_BIN_EXE_cafe-operator"))
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start cafe-operator");
        self.child = Some(child);
    }

    /// The exit status, if the process has exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The process id, while it runs (the benchmark reads its memory).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no graceful shutdown, like a crashed or evicted operator.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT: the process is frozen, its connections left open.
    pub fn freeze(&self, frozen: bool) {
        if let Some(c) = &self.child {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([signal, &c.id().to_string()])
                .status();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM and wait: the operator reports the API requests it made.
    pub fn stop(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Who holds the Lease `cafe-operator` in the test namespace.
pub(crate) async fn holder(ns: &TestNs) -> Option<String> {
    let leases: Api<Lease> = ns.api();
    leases
        .get_opt("cafe-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}
