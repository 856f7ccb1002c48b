//! Custom kinds: what a [`CustomResourceDefinition`] must satisfy beyond its schema,
//! and the [`KindInfo`] (with the full-object JSON Schema) it makes the server serve.

use serde_json::{Map, Value, json};

use crate::error::FieldError;
use crate::kinds::{
    CustomResourceDefinition, CustomResourceDefinitionSpec, CustomResourceSchema, Namespace, ResourceScope,
};
use crate::names::check_dns_label;
use crate::registry::KindInfo;
use crate::resource::{KindSpec, Object, Resource};

/// Finalizer the server puts on every custom resource definition: its objects are
/// deleted before the definition disappears.
pub const CLEANUP_FINALIZER: &str = "corral.dev/custom-resource-cleanup";

/// Whether `info` is the `CustomResourceDefinition` kind itself.
pub fn is_crd_kind(info: &KindInfo) -> bool {
    info.group == crate::GROUP && info.plural == CustomResourceDefinition::PLURAL
}

/// The name a definition of `spec` must have: `{plural}.{group}`, as in Kubernetes, so
/// that two definitions can never serve the same collection.
pub fn expected_name(spec: &CustomResourceDefinitionSpec) -> String {
    format!("{}.{}", spec.plural, spec.group)
}

/// Checks a DNS subdomain: dot-separated RFC 1123 labels, at most 253 characters.
pub fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err(format!("must be at most 253 characters (has {})", name.len()));
    }
    for label in name.split('.') {
        check_dns_label(label).map_err(|e| format!("{name:?} is not a DNS subdomain: {e}"))?;
    }
    Ok(())
}

impl KindInfo {
    /// The kind a custom resource definition serves. Its schema is the standard
    /// envelope (`apiVersion`, `kind`, `metadata` exactly as built-in kinds have it)
    /// closed with `additionalProperties: false`, with the definition's `spec` and
    /// `status` schemas used as given. The schema is not compiled here: registering
    /// the kind does that.
    pub fn from_crd(crd: &CustomResourceDefinition) -> KindInfo {
        let spec = &crd.spec;
        let any_object = || json!({"type": "object"});
        let mut spec_schema = spec.schema.spec.clone().unwrap_or_else(any_object);
        let mut status_schema = spec.schema.status.clone().unwrap_or_else(any_object);
        for (schema, what) in [(&mut spec_schema, "Desired state."), (&mut status_schema, "Observed state.")] {
            if let Some(m) = schema.as_object_mut() {
                m.entry("description").or_insert_with(|| what.into());
            }
        }
        let mut properties = Map::new();
        properties.insert(
            "apiVersion".into(),
            json!({"type": "string", "description": format!("`{}/{}`.", spec.group, spec.version)}),
        );
        properties.insert("kind".into(), json!({"type": "string", "description": format!("`{}`.", spec.kind)}));
        properties.insert("metadata".into(), metadata_schema());
        properties.insert("spec".into(), spec_schema);
        properties.insert("status".into(), status_schema);
        let description = spec
            .description
            .clone()
            .unwrap_or_else(|| format!("Custom kind defined by CustomResourceDefinition {}.", expected_name(spec)));
        KindInfo {
            group: spec.group.clone(),
            version: spec.version.clone(),
            kind: spec.kind.clone(),
            plural: spec.plural.clone(),
            singular: spec.singular.clone().unwrap_or_else(|| spec.kind.to_ascii_lowercase()),
            short_names: spec.short_names.clone(),
            namespaced: spec.scope == ResourceScope::Namespaced,
            columns: spec.additional_printer_columns.clone(),
            subresources: Default::default(),
            schema: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": spec.kind,
                "description": description,
                "type": "object",
                "properties": properties,
                "required": ["apiVersion", "kind"],
                "additionalProperties": false,
            }),
        }
    }
}

impl<S: KindSpec> Object<S, S::Status> {
    /// The `CustomResourceDefinition` that serves this kind: its names and scope from
    /// the [`KindSpec`] constants, the schemas of `spec` and `status` derived from `S`
    /// and `S::Status` (doc comments become descriptions, `deny_unknown_fields` becomes
    /// `additionalProperties: false`), and its columns. Apply it, or check it in and
    /// test that it stays equal to this.
    pub fn custom_resource_definition() -> CustomResourceDefinition {
        let spec = CustomResourceDefinitionSpec {
            group: S::GROUP.to_string(),
            version: S::VERSION.to_string(),
            kind: S::KIND.to_string(),
            plural: S::PLURAL.to_string(),
            singular: None,
            short_names: S::SHORT_NAMES.iter().map(|s| s.to_string()).collect(),
            scope: if S::NAMESPACED { ResourceScope::Namespaced } else { ResourceScope::Cluster },
            description: Some(S::DESCRIPTION.to_string()),
            schema: CustomResourceSchema {
                spec: Some(part_schema(serde_json::to_value(schemars::schema_for!(S)).unwrap_or_default())),
                status: Some(part_schema(serde_json::to_value(schemars::schema_for!(S::Status)).unwrap_or_default())),
            },
            additional_printer_columns: S::printer_columns(),
        };
        let name = expected_name(&spec);
        CustomResourceDefinition::new(name, spec)
    }
}

/// A derived schema as a definition's `spec`/`status` schema: references inlined, and
/// the root-only keywords (`$schema`, `title`) dropped, as it sits inside the object's.
fn part_schema(schema: Value) -> Value {
    let mut s = crate::registry::inline_refs(&schema);
    if let Some(m) = s.as_object_mut() {
        m.remove("$schema");
        m.remove("title");
    }
    s
}

/// The schema of `metadata`, taken from a built-in kind so that custom objects carry
/// exactly the metadata built-in ones do.
fn metadata_schema() -> Value {
    static META: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        Namespace::kind_info().schema.pointer("/properties/metadata").cloned().unwrap_or_else(|| json!({}))
    });
    META.clone()
}

/// What a definition must satisfy beyond its schema: names usable in URLs and DNS,
/// `metadata.name` equal to `{plural}.{group}`, schemas that compile. Conflicts with
/// other served kinds are the registry's to check.
pub fn check(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    // A definition that does not even match its schema has already been reported.
    let Ok(crd) = serde_json::from_value::<CustomResourceDefinition>(object.clone()) else {
        return errors;
    };
    let spec = &crd.spec;
    if let Err(e) = check_dns_subdomain(&spec.group) {
        errors.push(FieldError::new("spec.group", e));
    }
    for (field, value) in [("spec.version", &spec.version), ("spec.plural", &spec.plural)] {
        if let Err(e) = check_dns_label(value) {
            errors.push(FieldError::new(field, e));
        }
    }
    if let Some(singular) = &spec.singular
        && let Err(e) = check_dns_label(singular)
    {
        errors.push(FieldError::new("spec.singular", e));
    }
    for (i, short) in spec.short_names.iter().enumerate() {
        if let Err(e) = check_dns_label(short) {
            errors.push(FieldError::new(format!("spec.shortNames[{i}]"), e));
        }
    }
    let kind_ok = spec.kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && spec.kind.chars().all(|c| c.is_ascii_alphanumeric());
    if !kind_ok {
        errors.push(FieldError::new(
            "spec.kind",
            format!("{:?} must be CamelCase: an uppercase letter, then letters and digits", spec.kind),
        ));
    }
    let want = expected_name(spec);
    if crd.metadata.name != want {
        errors.push(FieldError::new(
            "metadata.name",
            format!("must be {want:?} ({{plural}}.{{group}}), got {:?}", crd.metadata.name),
        ));
    }
    for (field, schema) in [("spec.schema.spec", &spec.schema.spec), ("spec.schema.status", &spec.schema.status)] {
        let Some(schema) = schema else { continue };
        // Bounded first: compiling an unbounded schema can take forever.
        if let Err((at, why)) = crate::schema_limits::check(schema) {
            errors.push(FieldError::new(if at.is_empty() { field.to_string() } else { format!("{field}.{at}") }, why));
        } else if let Err(e) = jsonschema::validator_for(schema) {
            errors.push(FieldError::new(field, format!("the JSON Schema does not compile: {e}")));
        }
    }
    for (i, c) in spec.additional_printer_columns.iter().enumerate() {
        if c.name.trim().is_empty() {
            errors.push(FieldError::new(format!("spec.additionalPrinterColumns[{i}].name"), "must not be empty"));
        }
        if c.pointer().is_none() {
            errors.push(FieldError::new(
                format!("spec.additionalPrinterColumns[{i}].jsonPath"),
                format!("{:?} is not a simple JSONPath such as .status.phase or .spec.ports[0].port (fields and indexes only)", c.json_path),
            ));
        }
    }
    // Each part compiling does not guarantee the assembled schema does.
    if errors.is_empty()
        && let Err(e) = jsonschema::validator_for(&KindInfo::from_crd(&crd).schema)
    {
        errors.push(FieldError::new("spec.schema", format!("the JSON Schema does not compile: {e}")));
    }
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn crd(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "corral.dev/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name}, "spec": spec})
    }

    fn widget_spec() -> Value {
        json!({"group": "example.com", "version": "v1", "kind": "Widget", "plural": "widgets",
            "schema": {"spec": {"type": "object", "additionalProperties": false,
                "properties": {"size": {"type": "integer"}}}}})
    }

    #[test]
    fn valid_definition_passes() {
        assert_eq!(check(&crd("widgets.example.com", widget_spec())), vec![]);
    }

    #[test]
    fn name_must_be_plural_dot_group() {
        let errs = check(&crd("widget.example.com", widget_spec()));
        assert!(errs.iter().any(|e| e.field == "metadata.name"), "{errs:?}");
    }

    #[test]
    fn broken_schema_names_the_field() {
        let mut spec = widget_spec();
        spec["schema"]["spec"] = json!({"type": 12});
        let errs = check(&crd("widgets.example.com", spec));
        assert!(errs.iter().any(|e| e.field == "spec.schema.spec"), "{errs:?}");
    }

    #[test]
    fn kind_info_closes_the_envelope_and_defaults_names() {
        let c: CustomResourceDefinition =
            serde_json::from_value(crd("widgets.example.com", widget_spec())).expect("definition");
        let info = KindInfo::from_crd(&c);
        assert_eq!(info.singular, "widget");
        assert!(info.namespaced);
        assert_eq!(info.schema["additionalProperties"], json!(false));
        assert_eq!(info.schema["properties"]["spec"]["properties"]["size"]["type"], "integer");
        assert!(info.schema.pointer("/properties/metadata/properties/name").is_some());
    }
}
