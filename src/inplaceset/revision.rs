//! Revisions of a pod template, and whether moving between two of them can
//! happen in place.
//!
//! A revision is a hash of the whole template. Its *shape* is a hash of the
//! template with everything an in-place update may change blanked out
//! (container images, metadata labels and annotations). Two templates of the
//! same shape differ only in what a pod can take without being re-created, so
//! "is this change in-place-able" is one comparison of two stored strings: no
//! revision history is needed to decide it.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// FNV-1a, 64 bit: small, and stable across Rust versions and platforms
/// (unlike `DefaultHasher`), so a revision survives an operator upgrade.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// `serde_json::Value` keeps object keys sorted, so equal templates always
/// serialise to the same bytes.
fn hash_value(value: &Value) -> String {
    let hash = fnv1a(value.to_string().as_bytes());
    // Ten hex digits: short enough for a label value, wide enough to never collide in practice.
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

fn to_value(template: &PodTemplateSpec) -> Value {
    serde_json::to_value(template).unwrap_or(Value::Null)
}

/// The revision hash of a template (the value of the pod label `cafe.sofastack.io/revision`).
pub fn revision(template: &PodTemplateSpec) -> String {
    hash_value(&to_value(template))
}

/// The hash of what an in-place update cannot change.
pub fn shape(template: &PodTemplateSpec) -> String {
    let mut v = to_value(template);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("labels");
        meta.remove("annotations");
    }
    if let Some(containers) = v
        .get_mut("spec")
        .and_then(|s| s.get_mut("containers"))
        .and_then(Value::as_array_mut)
    {
        for c in containers {
            if let Some(c) = c.as_object_mut() {
                c.remove("image");
            }
        }
    }
    hash_value(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str, env: &str, label: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "demo", "tier": label}},
            "spec": {"containers": [{"name": "app", "image": image,
                                     "env": [{"name": "MODE", "value": env}]}]}
        }))
        .expect("template")
    }

    #[test]
    fn revision_is_stable_and_ten_hex_digits() {
        let t = template("nginx:1.25", "a", "web");
        assert_eq!(revision(&t), revision(&t.clone()));
        assert_eq!(revision(&t).len(), 10);
        assert!(revision(&t).chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn any_change_is_a_new_revision() {
        let t = template("nginx:1.25", "a", "web");
        assert_ne!(revision(&t), revision(&template("nginx:1.26", "a", "web")));
        assert_ne!(revision(&t), revision(&template("nginx:1.25", "b", "web")));
        assert_ne!(revision(&t), revision(&template("nginx:1.25", "a", "api")));
    }

    #[test]
    fn images_and_labels_keep_the_shape_other_changes_do_not() {
        let t = template("nginx:1.25", "a", "web");
        assert_eq!(shape(&t), shape(&template("nginx:1.26", "a", "api")));
        assert_ne!(shape(&t), shape(&template("nginx:1.25", "b", "web")));
    }
}
