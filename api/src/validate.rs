//! Validation of whole objects: the kind's JSON Schema plus the rules a schema cannot
//! express (names are DNS labels, the envelope matches the kind, label syntax).

use serde_json::Value;

use crate::error::FieldError;
use crate::names::{check_dns_label, check_label_value, check_qualified_key};
use crate::registry::KindInfo;

/// Validates `object` as an object of kind `info`, returning every offending field.
pub fn validate_object(
    info: &KindInfo,
    validator: &jsonschema::Validator,
    object: &Value,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for e in validator.iter_errors(object) {
        errors.push(schema_error(&e));
    }
    envelope_errors(info, object, &mut errors);
    if crate::crd::is_crd_kind(info) {
        errors.extend(crate::crd::check(object));
    }
    errors.sort_by(|a, b| a.field.cmp(&b.field));
    errors.dedup();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Validates `part` against `validator` alone (no envelope or naming rules), returning
/// every offending field.
pub fn validate_part(validator: &jsonschema::Validator, part: &Value) -> Result<(), Vec<FieldError>> {
    let mut errors: Vec<FieldError> = validator.iter_errors(part).map(|e| schema_error(&e)).collect();
    errors.sort_by(|a, b| a.field.cmp(&b.field));
    errors.dedup();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn schema_error(e: &jsonschema::ValidationError<'_>) -> FieldError {
    use jsonschema::error::ValidationErrorKind as K;
    let path = pointer_to_path(&e.instance_path().to_string());
    match e.kind() {
        K::AdditionalProperties { unexpected } => {
            let fields: Vec<String> = unexpected.iter().map(|u| join(&path, u)).collect();
            FieldError::new(
                fields.join(", "),
                if unexpected.len() == 1 { "unknown field".to_string() } else { "unknown fields".to_string() },
            )
        }
        K::Required { property } => {
            let name = property.as_str().map(str::to_string).unwrap_or_else(|| property.to_string());
            FieldError::new(join(&path, &name), "required field is missing")
        }
        _ => FieldError::new(path, e.to_string()),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

/// Turns a JSON pointer (`/spec/ports/0/name`) into the dotted form users read
/// (`spec.ports[0].name`).
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn envelope_errors(info: &KindInfo, object: &Value, errors: &mut Vec<FieldError>) {
    let av = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if av != info.api_version() {
        errors.push(FieldError::new(
            "apiVersion",
            format!("must be {:?} for kind {}, got {av:?}", info.api_version(), info.kind),
        ));
    }
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != info.kind {
        errors.push(FieldError::new("kind", format!("must be {:?}, got {kind:?}", info.kind)));
    }
    let meta = object.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
    // A custom resource definition is named `{plural}.{group}`: a DNS subdomain.
    let name_check =
        if crate::crd::is_crd_kind(info) { crate::crd::check_dns_subdomain(name) } else { check_dns_label(name) };
    if let Err(e) = name_check {
        errors.push(FieldError::new("metadata.name", e));
    }
    let ns = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str);
    match (info.namespaced, ns) {
        (true, None) => errors.push(FieldError::new(
            "metadata.namespace",
            format!("{} is namespaced: a namespace is required", info.kind),
        )),
        (true, Some(ns)) => {
            if let Err(e) = check_dns_label(ns) {
                errors.push(FieldError::new("metadata.namespace", e));
            }
        }
        (false, Some(_)) => errors.push(FieldError::new(
            "metadata.namespace",
            format!("{} is cluster-scoped: remove the namespace", info.kind),
        )),
        (false, None) => {}
    }
    if let Some(Value::Object(labels)) = meta.and_then(|m| m.get("labels")) {
        for (k, v) in labels {
            if let Err(e) = check_qualified_key(k) {
                errors.push(FieldError::new(format!("metadata.labels.{k}"), e));
            }
            if let Some(v) = v.as_str()
                && let Err(e) = check_label_value(v)
            {
                errors.push(FieldError::new(format!("metadata.labels.{k}"), e));
            }
        }
    }
    if let Some(Value::Object(ann)) = meta.and_then(|m| m.get("annotations")) {
        for k in ann.keys() {
            if let Err(e) = check_qualified_key(k) {
                errors.push(FieldError::new(format!("metadata.annotations.{k}"), e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Registry;

    fn cm(v: serde_json::Value) -> Vec<String> {
        let reg = Registry::builtin();
        let info = reg.resolve("cm").unwrap();
        match reg.validate(&info, &v) {
            Ok(()) => vec![],
            Err(es) => es.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn valid_configmap_passes() {
        let errs = cm(json!({"apiVersion":"corral.dev/v1","kind":"ConfigMap",
            "metadata":{"name":"a","namespace":"default","labels":{"app":"web"}},"spec":{"data":{"k":"v"}}}));
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn every_offending_field_is_named() {
        let errs = cm(json!({"apiVersion":"corral.dev/v1","kind":"ConfigMap",
            "metadata":{"name":"Bad_Name","namespace":"default","colour":"red"},
            "spec":{"data":{"k":1},"extra":true}}));
        let joined = errs.join("\n");
        assert!(joined.contains("metadata.name"), "{joined}");
        assert!(joined.contains("metadata.colour: unknown field"), "{joined}");
        assert!(joined.contains("spec.extra: unknown field"), "{joined}");
        assert!(joined.contains("spec.data.k"), "{joined}");
    }

    #[test]
    fn scope_is_enforced() {
        let errs = cm(json!({"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{"name":"a"}}));
        assert!(errs.iter().any(|e| e.starts_with("metadata.namespace")), "{errs:?}");
    }

    #[test]
    fn pointer_becomes_dotted_path() {
        assert_eq!(super::pointer_to_path("/spec/ports/0/name"), "spec.ports[0].name");
        assert_eq!(super::pointer_to_path(""), "");
    }
}
