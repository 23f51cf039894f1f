//! The console's HTTP surface: the page, its live stream, and the two API
//! calls. Every request passes the `Host` check; every POST the token and
//! same-origin checks (see the module above).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt, stream};

use tokio::sync::broadcast::error::RecvError;

use super::Console;
use super::act::{self, answer};
use super::watch::Message;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
/// The header a state-changing request carries the session's token in.
pub const TOKEN_HEADER: &str = "x-cafe-token";

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/events", get(events))
        .route("/api/revisions", get(revisions))
        .route("/api/act", post(act_on))
        .layer(middleware::from_fn_with_state(
            console.clone(),
            only_this_host,
        ))
        .with_state(console)
}

fn refuse(why: &str) -> Response {
    answer(StatusCode::FORBIDDEN, &serde_json::json!({"error": why}))
}

fn asset(kind: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

/// The page names its session's token; nothing else may be framed or
/// loaded from elsewhere.
async fn index(State(console): State<Arc<Console>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        INDEX.replace("{{TOKEN}}", &console.token),
    )
        .into_response()
}

/// Refuses a request whose `Host` is not the console's own: a domain name
/// pointed at 127.0.0.1 by another site (DNS rebinding) reads nothing.
async fn only_this_host(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !host_allowed(host, &console.origin) {
        return refuse(&format!(
            "this console answers at http://{}/ only (Host {host:?} refused)",
            console.origin
        ));
    }
    next.run(request).await
}

/// `localhost:PORT` or an IP address with the console's port: never a
/// domain name (a rebinding site's), never another port.
pub fn host_allowed(host: &str, origin: &str) -> bool {
    let port = origin.rsplit(':').next().unwrap_or_default();
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    p == port && (name == "localhost" || name.parse::<std::net::IpAddr>().is_ok())
}

/// Why a state-changing request is refused before it reaches the API
/// server: another origin, or no token (another tab, a form elsewhere).
pub fn forged(headers: &HeaderMap, token: &str) -> Option<&'static str> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = get("host").unwrap_or_default();
    if let Some(origin) = get("origin")
        && origin != format!("http://{host}")
    {
        return Some("refused: the request came from another origin");
    }
    if let Some(site) = get("sec-fetch-site")
        && site != "same-origin"
    {
        return Some("refused: the request came from another site");
    }
    match get(TOKEN_HEADER) {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => None,
        _ => Some("refused: no valid console token (reload the console's page)"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn event(m: &Message) -> Event {
    Event::default().event(m.event).data(&m.data)
}

/// The live stream: `hello`, everything as it is, then every change.
async fn events(
    State(console): State<Arc<Console>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = console.live.subscribe();
    let hello = serde_json::json!({
        "readOnly": console.options.read_only,
        "scope": if console.options.all_namespaces {
            "all namespaces".to_string()
        } else {
            format!("namespace {}", console.session.namespace)
        },
        "user": console.live.who(),
    });
    let first = stream::iter(
        std::iter::once(Event::default().event("hello").data(hello.to_string()))
            .chain(console.live.everything().iter().map(|m| event(m)))
            .map(Ok)
            .collect::<Vec<_>>(),
    );
    // Each change is read from what was last sent; a page that fell behind
    // the channel is sent everything as it is now.
    let changes = stream::unfold((rx, console), |(mut rx, console)| async move {
        loop {
            let now = match rx.recv().await {
                Ok(change) => console.live.latest(&change).into_iter().collect(),
                Err(RecvError::Lagged(_)) => console.live.everything(),
                Err(RecvError::Closed) => return None,
            };
            if !now.is_empty() {
                let events: Vec<Result<Event, Infallible>> =
                    now.iter().map(|m| Ok(event(m))).collect();
                return Some((stream::iter(events), (rx, console)));
            }
        }
    })
    .flatten();
    Sse::new(first.chain(changes)).keep_alive(KeepAlive::default())
}

async fn revisions(State(console): State<Arc<Console>>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default();
    let params: std::collections::HashMap<String, String> =
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    match (params.get("namespace"), params.get("name")) {
        (Some(ns), Some(name)) => act::revisions(&console, ns, name).await,
        _ => answer(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "give namespace and name"}),
        ),
    }
}

async fn act_on(State(console): State<Arc<Console>>, request: Request) -> Response {
    if let Some(why) = forged(request.headers(), &console.token) {
        return refuse(why);
    }
    if console.options.read_only {
        return refuse("this console is read-only (started with --read-only): it acts for nobody");
    }
    let body: Body = request.into_body();
    let Ok(bytes) = to_bytes(body, 64 * 1024).await else {
        return answer(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "the request body is too large"}),
        );
    };
    match serde_json::from_slice::<act::Request>(&bytes) {
        Ok(asked) => act::run(&console, asked).await,
        Err(e) => answer(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": format!("a request the console does not understand: {e}")}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_consoles_own_address_is_served() {
        let origin = "127.0.0.1:8467";
        for ok in ["127.0.0.1:8467", "localhost:8467", "[::1]:8467"] {
            assert!(host_allowed(ok, origin), "{ok}");
        }
        // A rebinding site's name, another port, no port.
        for refused in ["evil.example:8467", "127.0.0.1:9000", "127.0.0.1", ""] {
            assert!(!host_allowed(refused, origin), "{refused}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("a header value"));
        }
        h
    }

    #[test]
    fn a_write_needs_the_token_and_the_same_origin() {
        let token = "t0k3n";
        let host = ("host", "127.0.0.1:8467");
        let good = headers(&[
            host,
            ("origin", "http://127.0.0.1:8467"),
            ("sec-fetch-site", "same-origin"),
            (TOKEN_HEADER, token),
        ]);
        assert_eq!(forged(&good, token), None);
        let cases: [(&[(&'static str, &str)], &str); 4] = [
            (
                &[
                    host,
                    ("origin", "http://evil.example"),
                    (TOKEN_HEADER, token),
                ],
                "another origin",
            ),
            (
                &[
                    host,
                    ("sec-fetch-site", "cross-site"),
                    (TOKEN_HEADER, token),
                ],
                "another site",
            ),
            (
                &[host, ("origin", "http://127.0.0.1:8467")],
                "no valid console token",
            ),
            (&[host, (TOKEN_HEADER, "guess")], "no valid console token"),
        ];
        for (pairs, why) in cases {
            let said = forged(&headers(pairs), token).expect("refused");
            assert!(said.contains(why), "{pairs:?}: {said}");
        }
    }
}
