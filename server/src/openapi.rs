//! The OpenAPI v3 documents Kubernetes clients read: `GET /openapi/v3` lists one
//! document per group version, and `GET /openapi/v3/apis/{group}/{version}` is that
//! document — the paths of each kind and its schema, generated from the registry, so
//! custom kinds appear as soon as they are served.
//!
//! kubectl uses them for `explain`, and to learn that the server validates writes
//! itself (the `fieldValidation` parameter on PATCH), so that `apply` and `diff` need no
//! schema of their own. The schemas are the JSON Schemas the server validates with,
//! rewritten into OpenAPI 3.0's dialect (`nullable` rather than a `null` type, `enum`
//! rather than `const`).

use std::hash::{Hash, Hasher};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use corral_api::KindInfo;
use serde_json::{Map, Value, json};

use super::AppState;
use super::body;
use super::error::{ApiError, ApiResult};

/// `GET /openapi/v3`: where each group version's document is.
pub async fn index(State(state): State<AppState>) -> Response {
    let mut paths = Map::new();
    for (group, version) in group_versions(&state) {
        let hash = digest(&document(&state, &group, &version));
        paths.insert(
            format!("apis/{group}/{version}"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{group}/{version}?hash={hash}")}),
        );
    }
    body::json(StatusCode::OK, &json!({ "paths": paths }))
}

/// `GET /openapi/v3/apis/{group}/{version}`: the document of one group version.
pub async fn group_version(
    State(state): State<AppState>,
    Path((group, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    if !group_versions(&state).contains(&(group.clone(), version.clone())) {
        return Err(ApiError::not_found(format!("the server does not serve {group}/{version}")));
    }
    Ok(body::json(StatusCode::OK, &document(&state, &group, &version)))
}

/// Served group versions, in registration order.
fn group_versions(state: &AppState) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for k in state.registry.kinds() {
        let gv = (k.group.clone(), k.version.clone());
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

/// A stable hash of a document, so that clients caching by URL refetch on change.
fn digest(doc: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// The OpenAPI 3.0 document of one group version.
pub(crate) fn document(state: &AppState, group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for k in state.registry.kinds().iter().filter(|k| k.group == group && k.version == version) {
        kind_paths(k, &mut paths);
        let name = schema_name(k, &k.kind);
        let mut schema = to_openapi(&k.schema);
        if let Some(m) = schema.as_object_mut() {
            m.insert("x-kubernetes-group-version-kind".into(), json!([gvk(k, &k.kind)]));
        }
        schemas.insert(name.clone(), schema);
        let list = format!("{}List", k.kind);
        schemas.insert(
            schema_name(k, &list),
            json!({
                "description": format!("A list of {}.", k.kind),
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object", "description": "resourceVersion and continue token of the list."},
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
                },
                "x-kubernetes-group-version-kind": [gvk(k, &list)],
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Corral", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// Kubernetes names schemas by the reversed group: `dev.corral.v1.Task`.
fn schema_name(k: &KindInfo, kind: &str) -> String {
    let reversed: Vec<&str> = k.group.split('.').rev().collect();
    format!("{}.{}.{kind}", reversed.join("."), k.version)
}

fn gvk(k: &KindInfo, kind: &str) -> Value {
    json!({"group": k.group, "version": k.version, "kind": kind})
}

/// The collection and object paths of a kind, namespaced or not, with their operations.
fn kind_paths(k: &KindInfo, paths: &mut Map<String, Value>) {
    let base = format!("/apis/{}/{}", k.group, k.version);
    let scoped = if k.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", k.plural)
    } else {
        format!("{base}/{}", k.plural)
    };
    let one = schema_ref(k, &k.kind);
    let list = schema_ref(k, &format!("{}List", k.kind));
    let path_params = |named: bool| {
        let mut p = Vec::new();
        if k.namespaced {
            p.push(param("namespace", "path", "The object's namespace."));
        }
        if named {
            p.push(param("name", "path", "The object's name."));
        }
        p
    };
    let write_params = [
        param("dryRun", "query", "`All`: validate and answer as if written, writing nothing."),
        param("fieldManager", "query", "Who makes the change."),
        param(
            "fieldValidation",
            "query",
            "Unknown or duplicate fields are always refused, whatever is asked (Strict).",
        ),
    ];
    let op = |action: &str, verb: &str, params: Vec<Value>, response: &Value, body: Option<Vec<&str>>| {
        let mut o = json!({
            "operationId": format!("{verb}{}", k.kind),
            "parameters": params,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": response}}}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk(k, &k.kind),
        });
        if let Some(types) = body {
            let content: Map<String, Value> =
                types.into_iter().map(|t| (t.to_string(), json!({"schema": one.clone()}))).collect();
            o["requestBody"] = json!({"required": true, "content": content});
        }
        o
    };
    let mut collection_get = path_params(false);
    for (name, what) in [
        ("labelSelector", "Only objects whose labels match."),
        ("fieldSelector", "Only objects whose fields match."),
        ("watch", "Stream changes instead of listing."),
        ("resourceVersion", "Watch from after this revision."),
        ("allowWatchBookmarks", "Send BOOKMARK events while watching."),
        ("limit", "Most objects per page."),
        ("continue", "Token of the next page."),
    ] {
        collection_get.push(param(name, "query", what));
    }
    let mut create = path_params(false);
    create.extend(write_params.iter().cloned());
    paths.insert(
        scoped.clone(),
        json!({
            "get": op("list", "list", collection_get, &list, None),
            "post": op("post", "create", create, &one, Some(vec!["application/json", "application/yaml"])),
        }),
    );
    if k.namespaced {
        let all = vec![param("labelSelector", "query", "Only objects whose labels match.")];
        paths.insert(format!("{base}/{}", k.plural), json!({"get": op("list", "listAllNamespaces", all, &list, None)}));
    }
    let mut write = path_params(true);
    write.extend(write_params.iter().cloned());
    let mut patch = write.clone();
    patch.push(param("force", "query", "Take over fields another manager owns (server-side apply)."));
    let mut delete = path_params(true);
    delete.push(param("propagationPolicy", "query", "Foreground, Background or Orphan."));
    delete.push(param("dryRun", "query", "`All`: answer as if deleted, deleting nothing."));
    paths.insert(
        format!("{scoped}/{{name}}"),
        json!({
            "get": op("get", "read", path_params(true), &one, None),
            "put": op("put", "replace", write, &one, Some(vec!["application/json"])),
            "patch": op("patch", "patch", patch, &one, Some(vec![
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ])),
            "delete": op("delete", "delete", delete, &one, None),
        }),
    );
}

fn schema_ref(k: &KindInfo, kind: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", schema_name(k, kind))})
}

fn param(name: &str, place: &str, description: &str) -> Value {
    json!({"name": name, "in": place, "description": description, "required": place == "path",
        "schema": {"type": "string"}, "uniqueItems": true})
}

/// A JSON Schema (2020-12, as schemars writes it, `$ref`s inlined) in OpenAPI 3.0's
/// dialect: `type: [T, "null"]` and `anyOf: [S, {type: null}]` become `nullable`,
/// `const` and `oneOf` of constants become `enum` (the constants' descriptions folded
/// into the parent's), `$schema` goes.
pub(crate) fn to_openapi(schema: &Value) -> Value {
    let Some(m) = schema.as_object() else {
        return match schema {
            Value::Array(items) => Value::Array(items.iter().map(to_openapi).collect()),
            other => other.clone(),
        };
    };
    let mut out = Map::new();
    for (key, value) in m {
        match key.as_str() {
            "$schema" => {}
            "type" => match value.as_array() {
                Some(types) => {
                    let real: Vec<&Value> = types.iter().filter(|t| t.as_str() != Some("null")).collect();
                    if real.len() < types.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    if let [only] = real.as_slice() {
                        out.insert("type".into(), (*only).clone());
                    }
                }
                None => {
                    out.insert(key.clone(), value.clone());
                }
            },
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "properties" => {
                let props: Map<String, Value> =
                    value.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), to_openapi(v))).collect();
                out.insert(key.clone(), Value::Object(props));
            }
            _ => {
                out.insert(key.clone(), to_openapi(value));
            }
        }
    }
    fold_null_alternative(&mut out);
    fold_constants(&mut out);
    Value::Object(out)
}

/// `anyOf: [S, {type: null}]` (an optional struct) as S, nullable.
fn fold_null_alternative(out: &mut Map<String, Value>) {
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(alts)) = out.get(key) else { continue };
        let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
        let real: Vec<Value> = alts.iter().filter(|v| !is_null(v)).cloned().collect();
        if real.len() + 1 != alts.len() || real.len() != 1 {
            continue;
        }
        out.remove(key);
        if let Some(Value::Object(inner)) = real.into_iter().next() {
            for (k, v) in inner {
                // The field's own description says more than the type's.
                out.entry(k).or_insert(v);
            }
        }
        out.insert("nullable".into(), Value::Bool(true));
    }
}

/// `oneOf` of single-value enums (a Rust enum with documented variants) as one enum,
/// each value's description listed in the parent's.
fn fold_constants(out: &mut Map<String, Value>) {
    let Some(Value::Array(alts)) = out.get("oneOf") else { return };
    let mut values = Vec::new();
    let mut lines = Vec::new();
    for alt in alts {
        let Some([value]) = alt.get("enum").and_then(Value::as_array).map(Vec::as_slice) else { return };
        if let Some(d) = alt.get("description").and_then(Value::as_str) {
            lines.push(format!("- `{}`: {d}", value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())));
        }
        values.push(value.clone());
    }
    let ty = alts.first().and_then(|a| a.get("type")).cloned().unwrap_or_else(|| json!("string"));
    out.remove("oneOf");
    out.insert("type".into(), ty);
    out.insert("enum".into(), Value::Array(values));
    if !lines.is_empty() {
        let head = out.get("description").and_then(Value::as_str).map(|d| format!("{d}\n\n")).unwrap_or_default();
        out.insert("description".into(), Value::String(format!("{head}{}", lines.join("\n"))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_become_nullable_and_constants_an_enum() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "name": {"type": ["string", "null"], "description": "A name."},
                "status": {"anyOf": [{"type": "object", "description": "Inner.", "properties": {}}, {"type": "null"}],
                    "description": "Outer."},
                "phase": {"oneOf": [
                    {"const": "RUNNING", "type": "string", "description": "Running."},
                    {"const": "DONE", "type": "string", "description": "Done."},
                ]},
                "kind": {"const": "Task"},
            }
        });
        let out = to_openapi(&schema);
        assert!(out.get("$schema").is_none());
        let p = &out["properties"];
        assert_eq!(p["name"], json!({"type": "string", "nullable": true, "description": "A name."}));
        assert_eq!(p["status"]["type"], "object");
        assert_eq!(p["status"]["nullable"], true);
        assert_eq!(p["status"]["description"], "Outer.");
        assert!(p["status"].get("anyOf").is_none());
        assert_eq!(p["phase"]["enum"], json!(["RUNNING", "DONE"]));
        assert_eq!(p["phase"]["type"], "string");
        assert!(p["phase"]["description"].as_str().unwrap().contains("`DONE`: Done."));
        assert_eq!(p["kind"]["enum"], json!(["Task"]));
    }

    #[test]
    fn no_built_in_schema_keeps_a_json_schema_only_construct() {
        fn check(v: &Value, path: &str) {
            match v {
                Value::Object(m) => {
                    assert!(!m.contains_key("$schema") && !m.contains_key("const"), "{path}");
                    if let Some(t) = m.get("type") {
                        assert!(t.is_string(), "{path}.type is {t}");
                    }
                    for (k, sub) in m {
                        match (k.as_str(), sub.as_object()) {
                            // Properties may be named `type` or `const`: each value is a schema.
                            ("properties", Some(props)) => {
                                props.iter().for_each(|(name, p)| check(p, &format!("{path}.{name}")))
                            }
                            _ => check(sub, &format!("{path}.{k}")),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|i| check(i, path)),
                _ => {}
            }
        }
        for kind in corral_api::Registry::builtin().kinds() {
            check(&to_openapi(&kind.schema), &kind.kind);
        }
    }
}
