//! The test application on the real nodes, as `examples/real-nodes.yaml`
//! declares it: the e2e stories and the benchmark's real-node part build their
//! pods from that example, so they run the very template a user reads.

use serde::Deserialize;
use serde_json::json;

/// The test application's image at `version` (tests/images builds v1, v2, v3, crash).
pub fn testapp(version: &str) -> String {
    format!("cafe.local/testapp:{version}")
}

/// `examples/real-nodes.yaml`, the CafeDeployment `make demo` releases under load.
const EXAMPLE: &str = include_str!("../../../examples/real-nodes.yaml");

/// The example's CafeDeployment, as JSON.
pub fn example() -> serde_json::Value {
    serde_yaml::Deserializer::from_str(EXAMPLE)
        .map(|doc| serde_json::Value::deserialize(doc).expect("examples/real-nodes.yaml is YAML"))
        .find(|doc| doc["kind"] == "CafeDeployment")
        .expect("examples/real-nodes.yaml has a CafeDeployment")
}

/// The test application's pod template for the real nodes, the example's:
/// imported image (never pulled), an HTTP preStop hook (the image has no
/// shell; the app logs it), a readiness probe every second from 2 s after the
/// start, small requests. A release changes only the image, so it is made in
/// place. `app` labels the pods, `version` is the image's tag.
pub fn template(app: &str, version: &str) -> serde_json::Value {
    let mut template = example()["spec"]["template"].take();
    template["metadata"]["labels"] = json!({"app": app});
    template["spec"]["containers"][0]["image"] = json!(testapp(version));
    template
}
