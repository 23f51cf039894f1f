use super::*;
use serde_json::json;

#[test]
fn a_sets_change_stands_for_its_cafedeployments() {
    let set: InPlaceSet = serde_json::from_value(json!({
        "apiVersion": "cafe.sofastack.io/v1alpha1", "kind": "InPlaceSet",
        "metadata": {"name": "demo-cell-a", "uid": "set-uid",
                     "ownerReferences": [{"apiVersion": "cafe.sofastack.io/v1alpha1",
                         "kind": "CafeDeployment", "name": "demo", "uid": "cd-uid"}]},
        "spec": {"replicas": 1, "selector": {}, "template": {}}
    }))
    .expect("set");
    let touched: HashSet<String> = ["set-uid".to_string(), "other-cd".to_string()].into();
    let mut found: Vec<String> = owners(&touched, &[Arc::new(SetDigest::of(&set))])
        .into_iter()
        .collect();
    found.sort();
    assert_eq!(found, ["cd-uid", "other-cd", "set-uid"]);
}
