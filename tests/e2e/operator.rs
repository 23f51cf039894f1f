//! The operator under test, as a real process: one per test, watching only
//! the test's namespace, so a test may kill it (SIGKILL) and start it again.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Operator {
    child: Option<Child>,
    namespace: String,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(namespace: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-logs");
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("{namespace}.log"));
        let mut op = Self {
            child: None,
            namespace: namespace.to_string(),
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
            .args(["run", "--namespace", &self.namespace, "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start cafe-operator");
        self.child = Some(child);
    }

    /// SIGKILL: no graceful shutdown, like a crashed or evicted operator.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
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
