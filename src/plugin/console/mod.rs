//! `kubectl cafe console`: a live web console of the releases, served by the
//! plugin itself.
//!
//! What a security review asks of it, and where it is answered:
//! - it listens on 127.0.0.1 only unless `--address` says otherwise (and
//!   then warns); requests whose `Host` is not the address it was opened
//!   at are refused, so another site cannot reach it by DNS rebinding;
//! - every read and write goes to the API server with the user's own
//!   kubeconfig credentials: RBAC, the admission policies and four-eyes
//!   apply to the person, and a refusal is shown as the API server said it;
//! - a state-changing request needs the session's token (in the page, never
//!   in a cookie) and a same-origin `Origin`: another tab cannot act;
//! - buttons the person may not use are disabled, from
//!   SelfSubjectAccessReviews; a forced request still meets the API server.
//!
//! The page, its script and style are compiled into the binary (no CDN).
//! State reaches the page as Server-Sent Events: one event per changed
//! release, computed from watches, never a list of everything per second.

mod act;
mod http;
mod page;
mod rights;
mod watch;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::cli::ConsoleOptions as Options;
use super::session::{Failure, Session, unreachable};

/// What every request handler shares.
pub(super) struct Console {
    pub session: Session,
    pub options: Options,
    /// The per-session secret a state-changing request must carry.
    pub token: String,
    /// `host:port` the page was opened at: the only `Host`/`Origin` accepted.
    pub origin: String,
    pub live: watch::Live,
}

pub(super) async fn serve(session: Session, options: &Options) -> Result<u8, Failure> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(options.address, options.port))
        .await
        .map_err(|e| {
            unreachable(format!(
                "cannot listen on {}:{}: {e} (choose another with --port, or --port 0 for any)",
                options.address, options.port
            ))
        })?;
    let bound = listener.local_addr().map_err(unreachable)?;
    if !options.address.is_loopback() {
        eprintln!(
            "warning: the console listens on {bound}, reachable from other machines; whoever \
             reaches it sees what you may see (it acts only with the page's token, as you)"
        );
    }
    let who = rights::whoami(&session.client).await;
    let scope = if options.all_namespaces {
        None
    } else {
        Some(session.namespace.clone())
    };
    let live = watch::Live::start(
        session.client.clone(),
        scope.clone(),
        who.clone(),
        options.read_only,
    );
    let origin = match bound.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", bound.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", bound.port()),
    };
    let console = Arc::new(Console {
        session,
        options: options.clone(),
        token: token()?,
        origin: origin.clone(),
        live,
    });
    let url = format!("http://{origin}/");
    println!(
        "cafe console for {} as {}{}: {url}",
        scope.map_or("all namespaces".to_string(), |ns| format!("namespace {ns}")),
        who.as_deref().unwrap_or("(unknown user)"),
        if options.read_only { ", read-only" } else { "" }
    );
    println!("Ctrl-C stops it.");
    if options.open {
        open_in_browser(&url);
    }
    let router = http::router(console);
    tokio::select! {
        served = axum::serve(listener, router) => served.map_err(unreachable)?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(0)
}

/// 32 random bytes, hex: the kernel's randomness, read once. Without it
/// the console does not start (no weaker token).
fn token() -> Result<String, Failure> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            unreachable(format!(
                "cannot read /dev/urandom for the session token: {e}"
            ))
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn open_in_browser(url: &str) {
    for opener in ["xdg-open", "open"] {
        if std::process::Command::new(opener)
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
        {
            return;
        }
    }
    eprintln!("could not open a browser (no xdg-open or open): visit {url}");
}
