//! `kubectl cafe console` as a process of its own, for the stories that open
//! the release console.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A console process, stopped when dropped.
pub(crate) struct Console {
    child: Child,
    pub url: String,
}

impl Console {
    /// `kubectl cafe console --port 0 ARGS` with `kubeconfig`; waits for its URL.
    pub(crate) fn start(kubeconfig: &str, args: &[&str]) -> Console {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-cafe"))
            .args(["--kubeconfig", kubeconfig, "console", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl-cafe console");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("the console's first line");
        // Read the rest, so that the console never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .to_string();
        Console { child, url }
    }

    pub(crate) fn port(&self) -> u16 {
        self.url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the URL")
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
