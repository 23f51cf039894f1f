//! The HTTP endpoints: `/metrics` on the metrics address, `/healthz` and
//! `/readyz` on the health-probe address (all three on one listener when
//! both addresses are the same).

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::health::Health;
use super::metrics::Metrics;

/// Parses a bind address the way controller-runtime users write it:
/// `:8080` (all interfaces), `127.0.0.1:8080`, or `0` to turn the endpoint off.
pub fn parse_bind_address(flag: &str, value: &str) -> Result<Option<SocketAddr>, String> {
    let value = value.trim();
    if value == "0" || value.is_empty() {
        return Ok(None);
    }
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    full.parse().map(Some).map_err(|_| {
        format!("{flag} {value:?} is not an address: write :8080, 127.0.0.1:8080, or 0 to disable")
    })
}

fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}

fn probe_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    match health.ready() {
                        Ok(why) => (StatusCode::OK, format!("ok: {why}\n")).into_response(),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        )
                            .into_response(),
                    }
                }
            }),
        )
}

async fn listen(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot serve {what} on {addr}: {e}"))?;
    let bound = listener.local_addr().map_or(addr, |a| a);
    tracing::info!(address = %bound, "serving {what}");
    Ok(listener)
}

/// Binds the listeners (failing at once, with the address, if one is taken)
/// and serves them in the background.
pub async fn start(
    metrics_addr: Option<SocketAddr>,
    probe_addr: Option<SocketAddr>,
    metrics: Metrics,
    health: Health,
) -> Result<(), String> {
    let mut servers = Vec::new();
    match (metrics_addr, probe_addr) {
        (Some(m), Some(p)) if m == p => {
            let router = metrics_router(metrics).merge(probe_router(health));
            servers.push((listen(m, "/metrics, /healthz and /readyz").await?, router));
        }
        (m, p) => {
            if let Some(m) = m {
                servers.push((listen(m, "/metrics").await?, metrics_router(metrics)));
            }
            if let Some(p) = p {
                servers.push((
                    listen(p, "/healthz and /readyz").await?,
                    probe_router(health),
                ));
            }
        }
    }
    for (listener, router) in servers {
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "HTTP endpoint stopped");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_read_like_controller_runtime_flags() {
        let p = |v: &str| parse_bind_address("--metrics-bind-address", v);
        assert_eq!(p(":8080"), Ok(Some("0.0.0.0:8080".parse().unwrap())));
        assert_eq!(
            p("127.0.0.1:9090"),
            Ok(Some("127.0.0.1:9090".parse().unwrap()))
        );
        assert_eq!(p("0"), Ok(None));
        let err = p("localhost").unwrap_err();
        assert!(
            err.contains("--metrics-bind-address") && err.contains(":8080"),
            "{err}"
        );
    }
}
