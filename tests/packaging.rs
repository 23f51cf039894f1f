//! The image and the chart agree: the Dockerfile's entrypoint is the chart's
//! command, the image runs as a non-root user, the build is multi-stage and
//! static.

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The JSON array after `key` on its line, e.g. `ENTRYPOINT ["/cafe-operator"]`.
fn array_after(text: &str, key: &str) -> Vec<String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no line starting with {key:?}"));
    let json = line[key.len()..].trim();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[test]
fn the_image_entrypoint_is_the_charts_command() {
    let dockerfile = read("Dockerfile");
    let deployment = read("charts/cafe-operator/templates/deployment.yaml");
    let entrypoint = array_after(&dockerfile, "ENTRYPOINT");
    let command = array_after(&deployment, "command:");
    assert_eq!(entrypoint, command);
    // The chart's first argument is the subcommand the image runs by default.
    assert_eq!(array_after(&dockerfile, "CMD"), vec!["run".to_string()]);
    assert!(
        deployment.contains("            - run\n"),
        "the chart runs `run`"
    );
}

#[test]
fn the_image_is_multi_stage_static_and_non_root() {
    let dockerfile = read("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    assert!(
        dockerfile.contains("--target x86_64-unknown-linux-musl"),
        "static binary"
    );
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "USER {user}"
    );
    let runtime = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with("FROM "))
        .unwrap_or_default();
    assert!(
        runtime.contains("static") && runtime.contains("nonroot"),
        "{runtime}"
    );
}

#[test]
fn the_krew_manifest_names_the_plugin_binary() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plugin.yaml"))
        .expect("plugin.yaml");
    let manifest: serde_yaml::Value = serde_yaml::from_str(&text).expect("plugin.yaml parses");
    assert_eq!(manifest["kind"].as_str(), Some("Plugin"));
    assert_eq!(manifest["metadata"]["name"].as_str(), Some("cafe"));
    let platform = &manifest["spec"]["platforms"][0];
    assert_eq!(platform["bin"].as_str(), Some("kubectl-cafe"));
    assert!(
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/bin/kubectl-cafe.rs"
        ))
        .exists(),
        "the binary krew installs is built by this crate"
    );
}
