//! The CafeDeployments the stories release.

use serde_json::json;

/// A CafeDeployment manifest: `replicas` pods of nginx:1.25 labelled
/// `app: <app>` over `cells`, with the given strategy and traffic.
pub fn cafedeployment(
    name: &str,
    app: &str,
    replicas: i64,
    cells: &[&str],
    strategy: serde_json::Value,
    traffic: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "CafeDeployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
            "topology": {"values": cells},
            "strategy": strategy,
            "traffic": traffic
        }
    })
}
