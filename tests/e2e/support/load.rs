//! Real requests: a steady stream of HTTP requests to an address on this
//! machine (a Service's ClusterIP on the real nodes, through kube-proxy),
//! every outcome recorded. Each request opens its own connection, so every
//! one is load-balanced by kube-proxy afresh (the way new clients arrive).
//! The stream is bounded: it stops at a count, at a time limit, or when told.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::sync::oneshot;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests in flight at most; beyond it a tick is counted as a failure
/// ("overloaded"), never queued, so the rate stays what was asked.
const MAX_IN_FLIGHT: usize = 512;

/// One request's outcome, with when it was sent (since the load started).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub sent_at: Duration,
    pub latency: Duration,
    /// `Ok(version that answered)`, or what went wrong.
    pub result: Result<String, String>,
}

/// The load runs on a thread of its own with its own runtime: a test that
/// blocks its runtime (a `helm` or `kubectl` command run to completion)
/// neither pauses the requests nor adds its time to their latency.
pub struct Load {
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
    done: oneshot::Receiver<Vec<Outcome>>,
    finished: Arc<AtomicBool>,
}

/// The counts so far, while the load runs (`make demo` shows them live).
#[derive(Default)]
struct Live {
    answered: AtomicU64,
    failed: AtomicU64,
}

impl Load {
    /// Starts `rate` requests a second to `http://target/` until `max_requests`
    /// were sent or `max_time` passed (whichever first), or `finish` is called.
    pub fn start(target: SocketAddr, rate: u32, max_requests: u64, max_time: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let live = Arc::new(Live::default());
        let counts = live.clone();
        let (send, done) = oneshot::channel();
        let finished = Arc::new(AtomicBool::new(false));
        let finish = finished.clone();
        let run = async move {
            let start = Instant::now();
            let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut requests = Vec::new();
            let mut sent = 0u64;
            while sent < max_requests && start.elapsed() < max_time && !flag.load(Ordering::Relaxed)
            {
                tick.tick().await;
                sent += 1;
                let sent_at = start.elapsed();
                let counts = counts.clone();
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    requests.push(tokio::spawn(async move {
                        Outcome {
                            sent_at,
                            latency: Duration::ZERO,
                            result: Err("overloaded: too many requests in flight".into()),
                        }
                    }));
                    continue;
                };
                requests.push(tokio::spawn(async move {
                    let began = Instant::now();
                    let result = request(target).await;
                    drop(slot);
                    let count = match result {
                        Ok(_) => &counts.answered,
                        Err(_) => &counts.failed,
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                    Outcome {
                        sent_at,
                        latency: began.elapsed(),
                        result,
                    }
                }));
            }
            let mut outcomes = Vec::with_capacity(requests.len());
            for r in requests {
                if let Ok(o) = r.await {
                    outcomes.push(o);
                }
            }
            outcomes
        };
        std::thread::Builder::new()
            .name("load".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the load's runtime");
                let outcomes = runtime.block_on(run);
                finish.store(true, Ordering::Relaxed);
                let _ = send.send(outcomes);
            })
            .expect("the load's thread");
        Self {
            stop,
            live,
            done,
            finished,
        }
    }

    /// Requests answered and failed so far (those in flight are in neither).
    pub fn so_far(&self) -> (u64, u64) {
        (
            self.live.answered.load(Ordering::Relaxed),
            self.live.failed.load(Ordering::Relaxed),
        )
    }

    /// Whether the load stopped by itself (its count or time was reached).
    pub fn is_done(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    /// Waits until the load stopped by itself (count or time), then reports.
    pub async fn finish_when_done(self) -> Report {
        Report::new(self.done.await.expect("the load's thread panicked"), false)
    }

    /// Stops sending, waits for the requests in flight, and reports.
    /// If the load had already stopped by itself, the report says so: it
    /// does not cover what happened since.
    pub async fn finish(self) -> Report {
        let ran_out = self.is_done();
        self.stop.store(true, Ordering::Relaxed);
        let outcomes = self.done.await.expect("the load's thread panicked");
        Report::new(outcomes, ran_out)
    }
}

async fn request(target: SocketAddr) -> Result<String, String> {
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect: {}", e.kind())),
        Err(_) => return Err("connect: timed out".into()),
    };
    let exchange = async {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = match tokio::time::timeout(RESPONSE_TIMEOUT, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("exchange: {}", e.kind())),
        Err(_) => return Err("response: timed out".into()),
    };
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).unwrap_or("none");
    if status != "200" {
        return Err(format!("status {status}"));
    }
    text.split("version=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .ok_or_else(|| "a 200 without a version".to_string())
}

/// What a load saw.
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// The load reached its count or time limit before `finish`.
    pub ran_out: bool,
}

impl Report {
    fn new(mut outcomes: Vec<Outcome>, ran_out: bool) -> Self {
        outcomes.sort_by_key(|o| o.sent_at);
        Self { outcomes, ran_out }
    }

    pub fn sent(&self) -> usize {
        self.outcomes.len()
    }

    pub fn failed(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.result.is_err()).collect()
    }

    /// Requests answered by each version.
    pub fn versions(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in &self.outcomes {
            if let Ok(v) = &o.result {
                *out.entry(v.clone()).or_default() += 1;
            }
        }
        out
    }

    fn latency(&self, quantile: f64) -> Duration {
        let mut l: Vec<Duration> = self
            .outcomes
            .iter()
            .filter(|o| o.result.is_ok())
            .map(|o| o.latency)
            .collect();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * quantile).round() as usize;
        l.get(i).copied().unwrap_or_default()
    }

    /// One line: sent, failed (by cause), versions, latency.
    pub fn summary(&self) -> String {
        let mut causes: BTreeMap<&str, usize> = BTreeMap::new();
        for o in self.failed() {
            if let Err(e) = &o.result {
                *causes.entry(e).or_default() += 1;
            }
        }
        let first = self
            .failed()
            .first()
            .map(|o| format!(", first failure at {:.1}s", o.sent_at.as_secs_f64()))
            .unwrap_or_default();
        format!(
            "sent {}, failed {} {causes:?}{first}, answered by {:?}, latency p50 {:?} p99 {:?} max {:?}",
            self.sent(),
            self.failed().len(),
            self.versions(),
            self.latency(0.5),
            self.latency(0.99),
            self.latency(1.0),
        )
    }
}
