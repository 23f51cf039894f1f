//! A small Prometheus HTTP API client: instant queries (`/api/v1/query`),
//! sent as a form POST so that a long query (a group's pod names) never
//! meets a URL length limit. Every failure is an `Err` with words a person can
//! act on; reading the answer is pure (`release::analysis::parse_answer`),
//! so this returns the body as Prometheus sent it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tracing::warn;

/// Answers larger than this are refused (a query over every series of a
/// big cluster, by mistake); analysis queries return a few numbers.
const MAX_ANSWER_BYTES: usize = 4 << 20;

#[derive(Clone)]
pub struct Prometheus {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Prometheus {
    /// http:// and https:// (the system's trust roots; none found means
    /// https fails each query with that reason, http still works).
    pub fn new() -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "no system TLS roots: https Prometheus addresses will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("no TLS configuration for Prometheus queries: {e}"))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let https = builder.https_or_http().enable_http1().build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// The answer to the instant query `promql` now, from the Prometheus at
    /// `address`: the JSON body of a success or of a refused query.
    pub async fn query(
        &self,
        address: &str,
        promql: &str,
        timeout: Duration,
    ) -> Result<Bytes, String> {
        let url = format!("{}/api/v1/query", address.trim_end_matches('/'));
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish();
        let request = http::Request::post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| format!("cannot build a request to {url}: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("cannot reach Prometheus at {url}: {}", chain(&e)))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading Prometheus' answer from {url}: {e}"))?
                .to_bytes();
            // Prometheus answers a bad query with 400/422 and a JSON error,
            // which the caller reads; anything else is the server's state.
            if !status.is_success() && status.as_u16() != 400 && status.as_u16() != 422 {
                return Err(format!(
                    "Prometheus at {url} answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ));
            }
            Ok(body)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "Prometheus at {url} did not answer within {}s",
                timeout.as_secs()
            )),
        }
    }
}

/// The error and its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
