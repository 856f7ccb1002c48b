//! `corral explain KIND[.field.path]`: documentation from the JSON Schema the server
//! validates against (as served by `/kinds`, `$ref`s inlined).

use std::fmt::Write as _;

use corral_api::KindInfo;
use serde_json::Value;

use super::Ctx;
use super::args::ExplainArgs;

/// Width descriptions are wrapped to.
const WRAP: usize = 80;

pub(crate) async fn run(ctx: &Ctx, args: ExplainArgs) -> anyhow::Result<u8> {
    let (kind_name, path) = match args.path.split_once('.') {
        Some((k, p)) => (k, p.split('.').filter(|s| !s.is_empty()).collect::<Vec<_>>()),
        None => (args.path.as_str(), Vec::new()),
    };
    let kind = ctx.resolve(kind_name).await?;
    out!("{}", explain(&kind, &path)?)?;
    Ok(0)
}

/// The explanation of the field at `path` (empty: the kind itself).
pub(crate) fn explain(kind: &KindInfo, path: &[&str]) -> anyhow::Result<String> {
    let mut cur = &kind.schema;
    for (i, seg) in path.iter().enumerate() {
        let holder = through_arrays(cur);
        match properties(holder).and_then(|p| p.get(*seg)) {
            Some(next) => cur = next,
            None => {
                let parent = if i == 0 { kind.kind.clone() } else { format!("{}.{}", kind.kind, path[..i].join(".")) };
                let fields: Vec<&str> =
                    properties(holder).map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                let has = if fields.is_empty() {
                    format!("{parent} has no sub-fields")
                } else {
                    format!("{parent} has fields: {}", fields.join(", "))
                };
                anyhow::bail!(
                    "field {:?} does not exist in {} ({has}); run `corral explain {}` to see them",
                    path.join("."),
                    kind.kind,
                    parent.to_ascii_lowercase()
                );
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "KIND:     {}", kind.kind);
    let _ = writeln!(out, "VERSION:  {}", kind.api_version());
    if let Some(last) = path.last() {
        let _ = writeln!(out, "\nFIELD:    {last} <{}>", type_name(cur));
        let _ = writeln!(out, "PATH:     {}", path.join("."));
    }
    let _ = writeln!(out, "\nDESCRIPTION:");
    match description(cur) {
        Some(d) => wrap_into(&mut out, d, 4),
        None => {
            let _ = writeln!(out, "    <empty>");
        }
    }
    let holder = through_arrays(cur);
    if let Some(props) = properties(holder).filter(|p| !p.is_empty()) {
        let required: Vec<&str> = unwrap(holder)
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "\nFIELDS:");
        let width = props.keys().map(|k| k.chars().count()).max().unwrap_or(0);
        for (name, schema) in props {
            let req = if required.contains(&name.as_str()) { "  -required-" } else { "" };
            let _ = writeln!(out, "  {name:<width$}   <{}>{req}", type_name(schema));
            match description(schema) {
                Some(d) => wrap_into(&mut out, d, 4),
                None => {
                    let _ = writeln!(out, "    <no description>");
                }
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// The schema itself, or the one non-null alternative of an `Option` (`anyOf` /
/// `oneOf` with `null`, or a single-entry `allOf`).
fn unwrap(schema: &Value) -> &Value {
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let non_null: Vec<&Value> = alts.iter().filter(|a| !is_null_type(a)).collect();
            if let [one] = non_null.as_slice() {
                return unwrap(one);
            }
        }
    }
    schema
}

fn is_null_type(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// Where the sub-fields of a field are: for arrays, those of their items.
fn through_arrays(schema: &Value) -> &Value {
    let mut s = unwrap(schema);
    while primary_type(s) == Some("array") {
        match s.get("items") {
            Some(items) => s = unwrap(items),
            None => break,
        }
    }
    s
}

fn properties(schema: &Value) -> Option<&serde_json::Map<String, Value>> {
    unwrap(schema).get("properties").and_then(Value::as_object)
}

/// `type`, ignoring `null` in a type list.
fn primary_type(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

/// A field's description; on an `Option`, the one next to `anyOf` wins.
fn description(schema: &Value) -> Option<&str> {
    schema
        .get("description")
        .or_else(|| unwrap(schema).get("description"))
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
}

/// kubectl-style type names: `string`, `integer`, `Object`, `[]string`,
/// `map[string]string`.
fn type_name(schema: &Value) -> String {
    let s = unwrap(schema);
    match primary_type(s) {
        Some("object") | None if s.get("properties").is_some() => "Object".to_string(),
        Some("object") => match s.get("additionalProperties") {
            Some(ap) if ap.is_object() => format!("map[string]{}", type_name(ap)),
            _ => "Object".to_string(),
        },
        Some("array") => match s.get("items") {
            Some(items) => format!("[]{}", type_name(items)),
            None => "[]any".to_string(),
        },
        Some(t) => t.to_string(),
        None if s.get("enum").is_some() => "string".to_string(),
        None => "any".to_string(),
    }
}

/// Appends `text` wrapped at [`WRAP`] columns, each line indented by `indent`.
fn wrap_into(out: &mut String, text: &str, indent: usize) {
    let pad = " ".repeat(indent);
    for para in text.split("\n\n") {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && indent + line.len() + 1 + word.len() > WRAP {
                let _ = writeln!(out, "{pad}{line}");
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            let _ = writeln!(out, "{pad}{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> KindInfo {
        corral_api::Registry::builtin().resolve(name).map(|k| (*k).clone()).unwrap()
    }

    #[test]
    fn nested_field_shows_type_and_description() {
        let text = explain(&kind("cm"), &["spec", "data"]).unwrap();
        assert!(text.contains("FIELD:    data <map[string]string>"), "{text}");
        assert!(text.contains("Configuration entries"), "{text}");
    }

    #[test]
    fn object_field_lists_sub_fields() {
        let text = explain(&kind("cm"), &["metadata"]).unwrap();
        assert!(text.contains("FIELDS:"), "{text}");
        assert!(text.contains("  labels              <map[string]string>"), "{text}");
        assert!(text.contains("  ownerReferences     <[]Object>"), "{text}");
        let owner = explain(&kind("cm"), &["metadata", "ownerReferences", "uid"]).unwrap();
        assert!(owner.contains("FIELD:    uid <string>"), "{owner}");
    }

    #[test]
    fn unknown_path_names_the_path() {
        let err = explain(&kind("cm"), &["spec", "nope"]).unwrap_err().to_string();
        assert!(err.contains("\"spec.nope\""), "{err}");
        assert!(err.contains("ConfigMap.spec has fields: data"), "{err}");
    }
}
