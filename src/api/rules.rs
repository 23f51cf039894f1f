//! CEL validation rules attached to the generated CRD schemas.
//!
//! Rules are enforced by the API server (`x-kubernetes-validations`), so a bad
//! manifest is refused at `kubectl apply` time with a message that says what to
//! change. `fieldPath` makes the API server name the offending field.

use schemars::Schema;
use serde_json::{Value, json};

/// One `x-kubernetes-validations` entry.
pub struct Rule {
    pub rule: &'static str,
    pub message: &'static str,
    /// Relative to the object the rule is attached to, e.g. `.selector`.
    pub field_path: &'static str,
}

/// Appends `rules` to the schema's `x-kubernetes-validations`.
pub fn push(schema: &mut Schema, rules: &[Rule]) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let list = object
        .entry("x-kubernetes-validations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        for r in rules {
            let mut entry = json!({"rule": r.rule, "message": r.message});
            if !r.field_path.is_empty() {
                entry["fieldPath"] = json!(r.field_path);
            }
            list.push(entry);
        }
    }
}

/// Sets a JSON-schema keyword (e.g. `maxItems`) at a path of nested schema
/// keys (`["properties", "values", "items"]`). CEL rules are only accepted when
/// the API server can bound their cost, so every list, map and string a rule
/// walks needs such a bound.
pub fn bound(schema: &mut Schema, path: &[&str], keyword: &str, value: Value) {
    let mut node = schema
        .as_object_mut()
        .map(|o| o as &mut serde_json::Map<String, Value>);
    for key in path {
        node = node
            .and_then(|o| o.get_mut(*key))
            .and_then(Value::as_object_mut);
    }
    if let Some(target) = node {
        target.insert(keyword.to_string(), value);
    }
}

/// Bounds for the selector and template labels, which the selector rule walks:
/// Kubernetes' own limits for label values (63) and keys (317), and at most
/// 64 labels and 16 expressions, far beyond any real workload.
pub fn bound_selector_and_template_labels(schema: &mut Schema) {
    let labels = ["properties", "selector", "properties", "matchLabels"];
    bound(schema, &labels, "maxProperties", json!(64));
    bound(
        schema,
        &[&labels[..], &["additionalProperties"]].concat(),
        "maxLength",
        json!(63),
    );
    let exprs = ["properties", "selector", "properties", "matchExpressions"];
    bound(schema, &exprs, "maxItems", json!(16));
    let expr = [&exprs[..], &["items", "properties"]].concat();
    bound(
        schema,
        &[&expr[..], &["key"]].concat(),
        "maxLength",
        json!(317),
    );
    bound(
        schema,
        &[&expr[..], &["operator"]].concat(),
        "maxLength",
        json!(16),
    );
    bound(
        schema,
        &[&expr[..], &["values"]].concat(),
        "maxItems",
        json!(64),
    );
    bound(
        schema,
        &[&expr[..], &["values", "items"]].concat(),
        "maxLength",
        json!(63),
    );
    let template_labels = [
        "properties",
        "template",
        "properties",
        "metadata",
        "properties",
        "labels",
    ];
    bound(schema, &template_labels, "maxProperties", json!(64));
    bound(
        schema,
        &[&template_labels[..], &["additionalProperties"]].concat(),
        "maxLength",
        json!(63),
    );
}

/// The pod selector must select the pod template (on both resources), so that
/// the pods a controller creates are the pods it owns. Covers matchLabels and
/// every matchExpressions operator.
pub const SELECTOR_MATCHES_TEMPLATE: Rule = Rule {
    rule: "(!has(self.selector.matchLabels) || self.selector.matchLabels.all(k, \
             has(self.template.metadata) && has(self.template.metadata.labels) && \
             k in self.template.metadata.labels && \
             self.template.metadata.labels[k] == self.selector.matchLabels[k])) && \
           (!has(self.selector.matchExpressions) || self.selector.matchExpressions.all(e, \
             e.operator == 'In' ? (has(self.template.metadata) && has(self.template.metadata.labels) && \
                 e.key in self.template.metadata.labels && has(e.values) && \
                 self.template.metadata.labels[e.key] in e.values) : \
             e.operator == 'NotIn' ? (!has(self.template.metadata) || !has(self.template.metadata.labels) || \
                 !(e.key in self.template.metadata.labels) || !has(e.values) || \
                 !(self.template.metadata.labels[e.key] in e.values)) : \
             e.operator == 'Exists' ? (has(self.template.metadata) && has(self.template.metadata.labels) && \
                 e.key in self.template.metadata.labels) : \
             (!has(self.template.metadata) || !has(self.template.metadata.labels) || \
                 !(e.key in self.template.metadata.labels))))",
    message: "selector does not match template.metadata.labels: add the selector's labels to \
              template.metadata.labels (or narrow the selector) so the pods created are selected",
    field_path: ".selector",
};

/// A selector must not be empty: an empty selector selects every pod in the namespace.
pub const SELECTOR_NOT_EMPTY: Rule = Rule {
    rule: "(has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0) || \
           (has(self.selector.matchExpressions) && size(self.selector.matchExpressions) > 0)",
    message: "selector is empty and would select every pod in the namespace: \
              set selector.matchLabels, for example {app: demo}",
    field_path: ".selector",
};

/// Changing the selector would orphan every running pod.
pub const SELECTOR_IMMUTABLE: Rule = Rule {
    rule: "self.selector == oldSelf.selector",
    message: "selector is immutable: delete and re-create the resource to change it",
    field_path: ".selector",
};

/// Traffic component names become finalizer names `traffic.cafe.sofastack.io/<name>`.
pub const TRAFFIC_COMPONENT_NAMES: Rule = Rule {
    rule: "!has(self.components) || \
           self.components.all(c, c.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",
    message: "each traffic component name must be a lower-case DNS label of at most 63 \
              characters (a-z, 0-9 and '-', e.g. service or rpc-registry): it becomes the pod \
              finalizer traffic.cafe.sofastack.io/<name>",
    field_path: ".components",
};

pub const TRAFFIC_COMPONENTS_UNIQUE: Rule = Rule {
    rule: "!has(self.components) || self.components.all(c, self.components.exists_one(d, d == c))",
    message: "traffic components must not repeat: list each component once",
    field_path: ".components",
};

/// An IntOrString count: an integer >= 0 or a percentage from 0% to 100%.
/// Int-or-string rules match on `string(x)`, which reads both forms alike.
pub const PARTITION_COUNT_OR_PERCENT: Rule = Rule {
    rule: "!has(self.partition) || \
           string(self.partition).matches('^([0-9]+|(100|[1-9]?[0-9])%)$')",
    message: "partition must be an integer >= 0 or a percentage from 0% to 100%, e.g. 3 or \"50%\"",
    field_path: ".partition",
};

/// A pod may carry 262,144 bytes of annotations (keys and values, the API
/// server's `TotalAnnotationSizeLimitB`). The operator adds its own: the
/// template's label and annotation keys once more (each quoted, with a
/// comma), and up to 16 KiB for its in-place record and the rest. A
/// template over that would have every pod creation refused, so it is
/// refused here, naming the field. (CEL's `size` counts characters, not
/// bytes: a template of multi-byte text near the limit gets past this rule,
/// and its refused creations are reported as `FailedCreate`.)
pub const TEMPLATE_ANNOTATIONS_FIT_A_POD: Rule = Rule {
    rule: "!has(self.template.metadata) || !has(self.template.metadata.annotations) || \
           self.template.metadata.annotations.map(k, \
             2 * size(k) + size(self.template.metadata.annotations[k]) + 3).sum() + \
           (has(self.template.metadata.labels) ? \
             self.template.metadata.labels.map(k, size(k) + 3).sum() : 0) <= 245760",
    message: "template.metadata.annotations are too large for a pod: a pod may carry 262144 \
              bytes of annotations and the operator adds the template's keys once more and up \
              to 16 KiB of its own; keep each annotation's key twice plus its value, summed, \
              under 245760 bytes (move large data to a ConfigMap)",
    field_path: ".template.metadata.annotations",
};
