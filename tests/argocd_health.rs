//! The Argo CD health check shipped in deploy/argocd runs its own test cases
//! (Argo CD's `health_test.yaml` format) in Lua 5.1, as Argo CD would.

use std::path::PathBuf;

use mlua::{Lua, LuaSerdeExt, Table};
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    tests: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    health_status: Expected,
    input_path: String,
}

#[derive(Deserialize)]
struct Expected {
    status: String,
    message: String,
}

#[test]
fn the_argocd_health_check_passes_its_cases() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/argocd/cafe.sofastack.io/CafeDeployment");
    let script = std::fs::read_to_string(dir.join("health.lua")).expect("health.lua");
    let cases: Cases = serde_yaml::from_str(
        &std::fs::read_to_string(dir.join("health_test.yaml")).expect("health_test.yaml"),
    )
    .expect("health_test.yaml parses");
    assert!(cases.tests.len() >= 8, "every phase has a case");
    for case in cases.tests {
        let input: serde_json::Value = serde_yaml::from_str(
            &std::fs::read_to_string(dir.join(&case.input_path)).expect("input"),
        )
        .expect("input parses");
        let lua = Lua::new();
        let obj = lua.to_value(&input).expect("obj as a Lua table");
        lua.globals().set("obj", obj).expect("set obj");
        let hs: Table = lua
            .load(&script)
            .set_name("health.lua")
            .eval()
            .unwrap_or_else(|e| panic!("{}: {e}", case.input_path));
        let status: String = hs.get("status").expect("hs.status");
        let message: String = hs.get("message").expect("hs.message");
        assert_eq!(
            (status.as_str(), message.as_str()),
            (
                case.health_status.status.as_str(),
                case.health_status.message.as_str()
            ),
            "{}",
            case.input_path
        );
    }
}
