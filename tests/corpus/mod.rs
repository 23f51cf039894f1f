//! The manifests under `tests/data/invalid/` and `examples/`, shared by the
//! CEL unit test (no cluster) and the API-server e2e test.

use std::path::{Path, PathBuf};

/// One invalid manifest: the message it must be refused with, and which layer
/// refuses it (`cel` rules can be checked without a cluster; `schema`
/// constraints like `minimum` and `enum` only by the API server).
pub struct InvalidCase {
    pub name: String,
    pub expect: String,
    pub checked_by: String,
    /// Documents: one to create, or two (an existing object, then its update).
    pub documents: Vec<serde_json::Value>,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

pub fn documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_json::Value::deserialize(d).expect("valid YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn invalid_cases() -> Vec<InvalidCase> {
    yaml_files(&repo().join("tests/data/invalid"))
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read case");
            let header = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .unwrap_or_else(|| panic!("{} has no '# {key}:' line", path.display()))
                    .to_string()
            };
            InvalidCase {
                name: path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into(),
                expect: header("expect"),
                checked_by: header("checked-by"),
                documents: documents(&text),
            }
        })
        .collect()
}

/// Every document of every `examples/*.yaml`, with its file name.
pub fn examples() -> Vec<(String, serde_json::Value)> {
    yaml_files(&repo().join("examples"))
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).expect("read example");
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            documents(&text).into_iter().map(move |d| (name.clone(), d))
        })
        .collect()
}
