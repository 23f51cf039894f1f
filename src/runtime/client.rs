//! The Kubernetes client, with every API request counted by verb and resource
//! (what the operator costs the API server; reported on shutdown).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::client::ClientBuilder;
use kube::{Client, Config};

/// API requests by (verb, resource), e.g. ("patch", "pods/status").
#[derive(Clone, Default)]
pub struct ApiCounters(Arc<Mutex<BTreeMap<(String, String), u64>>>);

impl ApiCounters {
    fn record(&self, method: &http::Method, path: &str, query: Option<&str>) {
        let key = classify(method, path, query);
        if let Ok(mut map) = self.0.lock() {
            *map.entry(key).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
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
    let counters = ApiCounters::default();
    let recorder = counters.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        recorder.record(req.method(), req.uri().path(), req.uri().query());
        req
    });
    let client = ClientBuilder::try_from(config)?.with_layer(&layer).build();
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
}
