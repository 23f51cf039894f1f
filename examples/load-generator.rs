//! The e2e stories' load generator as a program, for `make demo`: a steady
//! stream of HTTP requests to an address on this machine (a Service's
//! ClusterIP on the real nodes), one connection each, printing the requests
//! answered and failed so far every second, and a summary at the end. It stops
//! by itself after `--max-requests` or `--max-seconds`, or on SIGTERM/Ctrl-C;
//! it exits 1 if any request failed.
//!
//! cargo run --example load-generator -- --target 198.19.0.10:80 --rate 200

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

// The same code the stories measure with; this program uses part of it.
#[allow(dead_code)]
#[path = "../tests/e2e/support/load.rs"]
mod load;

#[derive(Parser)]
struct Args {
    /// ADDRESS:PORT; the Network rule: an address on this machine.
    #[arg(long)]
    target: SocketAddr,
    /// Requests a second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    #[arg(long, default_value_t = 120_000)]
    max_requests: u64,
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let load = load::Load::start(
        args.target,
        args.rate,
        args.max_requests,
        Duration::from_secs(args.max_seconds),
    );
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every_second.tick() => {
                let (answered, failed) = load.so_far();
                println!("answered {answered} failed {failed}");
                if load.is_done() {
                    break;
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let report = load.finish().await;
    println!("{}", report.summary());
    if report.failed().is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
