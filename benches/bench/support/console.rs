//! `kubectl cafe console` watching the fleet of part (d): what a person's
//! console costs on their machine, idle and while every release moves. The
//! console runs as a person runs it (release build, the admin's
//! kubeconfig) and a page is connected to it (its event stream), so it
//! computes what it would show.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::support::metrics::rss_kib;

pub(crate) struct ConsoleProbe {
    child: Child,
    pub(crate) pid: u32,
    /// Events the connected page has received.
    pub(crate) events: Arc<AtomicUsize>,
    /// The releases it has been shown.
    shown: Arc<Mutex<HashSet<String>>>,
}

impl ConsoleProbe {
    pub(crate) async fn start(namespace: &str) -> ConsoleProbe {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-cafe"))
            .args(["-n", namespace, "console", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl-cafe console");
        let pid = child.id();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("the console's first line");
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let port: u16 = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .and_then(|u| u.trim_end_matches('/').rsplit(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no URL in {first:?}"));
        let events = Arc::new(AtomicUsize::new(0));
        let shown = Arc::new(Mutex::new(HashSet::new()));
        tokio::spawn(page(port, events.clone(), shown.clone()));
        ConsoleProbe {
            child,
            pid,
            events,
            shown,
        }
    }

    /// Waits until the page has been shown `n` releases; how long it took.
    pub(crate) async fn wait_shown(&self, n: usize, started: Instant) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.shown.lock().map(|s| s.len()).unwrap_or(0) < n {
            assert!(
                Instant::now() < deadline,
                "the console did not show {n} releases in 300 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    }

    pub(crate) fn rss_mib(&self, field: &str) -> f64 {
        rss_kib(self.pid, field) as f64 / 1024.0
    }

    /// CPU seconds the console has used so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                let f: Vec<u64> = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                Some(f.iter().sum::<u64>() as f64 / 100.0)
            })
            .unwrap_or(0.0)
    }
}

impl Drop for ConsoleProbe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page's event stream, read as a browser reads it.
async fn page(port: u16, events: Arc<AtomicUsize>, shown: Arc<Mutex<HashSet<String>>>) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let request = format!(
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let mut release = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(event) = line.strip_prefix("event: ") {
            events.fetch_add(1, Ordering::Relaxed);
            release = event == "release";
        } else if let Some(data) = line.strip_prefix("data: ")
            && release
            && let Some(key) = serde_json::from_str::<serde_json::Value>(data)
                .ok()
                .and_then(|v| v["key"].as_str().map(str::to_string))
            && let Ok(mut s) = shown.lock()
        {
            s.insert(key);
        }
    }
}
