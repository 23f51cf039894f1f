//! A tiny Prometheus exporter for `make demo`: it serves
//! `app_error_ratio{namespace, pod}` for every pod a label selector picks,
//! valued by the image the pod runs (`--ratio IMAGE=VALUE`, 0 otherwise), so
//! that a release of a "bad" image shows a bad error ratio on exactly its
//! pods. With `--target-file`, it registers itself with Prometheus through a
//! file_sd target file (removed again on Ctrl-C or SIGTERM).
//!
//! cargo run --example error-ratio-exporter -- --namespace demo --selector app=demo \
//!     --ratio nginx:1.28=0.4 --target-file .cluster/prometheus/targets/demo.json

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    namespace: String,
    /// A label selector, e.g. app=demo.
    #[arg(long)]
    selector: String,
    /// IMAGE=RATIO, e.g. nginx:1.28=0.4 (repeatable).
    #[arg(long = "ratio", value_parser = parse_ratio)]
    ratios: Vec<(String, f64)>,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// A file_sd target file to write (and remove on exit).
    #[arg(long)]
    target_file: Option<PathBuf>,
}

fn parse_ratio(s: &str) -> Result<(String, f64), String> {
    let (image, value) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?}: write IMAGE=RATIO, e.g. nginx:1.28=0.4"))?;
    let value = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    Ok((image.to_string(), value))
}

async fn render(pods: Api<Pod>, selector: String, ratios: BTreeMap<String, f64>) -> String {
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out = String::from(
        "# HELP app_error_ratio Errors per request of the pod (set by image)\n\
         # TYPE app_error_ratio gauge\n",
    );
    for p in listed {
        let image = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let value = ratios.get(&image).copied().unwrap_or(0.0);
        out.push_str(&format!(
            "app_error_ratio{{namespace=\"{}\",pod=\"{}\"}} {value}\n",
            p.namespace().unwrap_or_default(),
            p.name_any()
        ));
    }
    out
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = Client::try_default().await?;
    let pods: Api<Pod> = Api::namespaced(client, &args.namespace);
    let ratios: BTreeMap<String, f64> = args.ratios.into_iter().collect();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let address = listener.local_addr()?;
    let selector = args.selector.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || render(pods.clone(), selector.clone(), ratios.clone())),
    );
    if let Some(file) = &args.target_file {
        let target = serde_json::json!([{
            "targets": [address.to_string()],
            "labels": {"job": "error-ratio-exporter"}
        }]);
        std::fs::write(file, target.to_string())?;
    }
    println!("serving app_error_ratio on http://{address}/metrics");
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    if let Some(file) = &args.target_file {
        let _ = std::fs::remove_file(file);
    }
    Ok(())
}
