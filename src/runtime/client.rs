//! The Kubernetes client, with every API request counted by verb, resource and
//! outcome (what the operator costs the API server; on `/metrics` and in the
//! shutdown log).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use kube::client::ClientBuilder;
use kube::{Client, Config};

/// (verb, resource, outcome), e.g. ("patch", "pods/status", "success").
pub type RequestKey = (String, String, &'static str);

/// API requests by (verb, resource, outcome).
#[derive(Clone, Default)]
pub struct ApiCounters(Arc<Mutex<BTreeMap<RequestKey, u64>>>);

impl ApiCounters {
    fn record(&self, (verb, resource): (String, String), outcome: &'static str) {
        if let Ok(mut map) = self.0.lock() {
            *map.entry((verb, resource, outcome)).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<RequestKey, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// The outcome of a request as a bounded label: `success`, `conflict`,
/// `not_found`, `client_error`, `server_error` or `transport_error`.
pub fn outcome(status: Option<http::StatusCode>) -> &'static str {
    match status.map(|s| s.as_u16()) {
        None => "transport_error",
        Some(409) => "conflict",
        Some(404) => "not_found",
        Some(s) if s < 400 => "success",
        Some(s) if s < 500 => "client_error",
        Some(_) => "server_error",
    }
}

/// A tower layer that counts each request once its response (or failure) is known.
#[derive(Clone)]
struct CountLayer(ApiCounters);

impl<S> tower::Layer<S> for CountLayer {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counters: self.0.clone(),
        }
    }
}

struct Counted<S> {
    inner: S,
    counters: ApiCounters,
}

impl<S, B> tower::Service<http::Request<kube::client::Body>> for Counted<S>
where
    S: tower::Service<http::Request<kube::client::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let key = classify(req.method(), req.uri().path(), req.uri().query());
        let counters = self.counters.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let result = response.await;
            let status = result.as_ref().ok().map(http::Response::status);
            counters.record(key, outcome(status));
            result
        })
    }
}

/// The verb and resource of an API path: `/api/v1/namespaces/ns/pods/p/status`
/// is ("patch", "pods/status") for a PATCH.
pub fn classify(method: &http::Method, path: &str, query: Option<&str>) -> (String, String) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named) = match rest {
        [resource] => ((*resource).to_string(), false),
        [resource, _name] => ((*resource).to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
        _ => ("other".to_string(), false),
    };
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true"));
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    };
    (verb.to_string(), resource)
}

/// A client for the cluster in KUBECONFIG (or in-cluster) that counts its requests.
pub async fn counted_client() -> Result<(Client, ApiCounters), kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    client_for(config)
}

/// A client for `config` that counts its requests (a member cluster's).
pub fn client_for(config: Config) -> Result<(Client, ApiCounters), kube::Error> {
    let counters = ApiCounters::default();
    let client = ClientBuilder::try_from(config)?
        .with_layer(&CountLayer(counters.clone()))
        .build();
    Ok((client, counters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_by_verb_and_resource() {
        let c = |m: http::Method, p: &str, q: Option<&str>| {
            let (v, r) = classify(&m, p, q);
            format!("{v} {r}")
        };
        assert_eq!(
            c(
                http::Method::PATCH,
                "/api/v1/namespaces/a/pods/p/status",
                None
            ),
            "patch pods/status"
        );
        assert_eq!(
            c(http::Method::GET, "/api/v1/namespaces/a/pods/p", None),
            "get pods"
        );
        assert_eq!(
            c(
                http::Method::GET,
                "/api/v1/pods",
                Some("labelSelector=x&watch=true")
            ),
            "watch pods"
        );
        assert_eq!(
            c(http::Method::POST, "/api/v1/namespaces/a/pods", None),
            "create pods"
        );
        assert_eq!(
            c(
                http::Method::PATCH,
                "/apis/cafe.sofastack.io/v1alpha1/namespaces/a/inplacesets/s/status",
                None
            ),
            "patch inplacesets/status"
        );
    }

    #[test]
    fn outcomes_are_a_bounded_set() {
        use http::StatusCode;
        assert_eq!(outcome(Some(StatusCode::OK)), "success");
        assert_eq!(outcome(Some(StatusCode::CREATED)), "success");
        assert_eq!(outcome(Some(StatusCode::CONFLICT)), "conflict");
        assert_eq!(outcome(Some(StatusCode::NOT_FOUND)), "not_found");
        assert_eq!(outcome(Some(StatusCode::FORBIDDEN)), "client_error");
        assert_eq!(
            outcome(Some(StatusCode::SERVICE_UNAVAILABLE)),
            "server_error"
        );
        assert_eq!(outcome(None), "transport_error");
    }
}
