//! The three-way merge behind `corral apply`, as kubectl does it client-side: the last
//! applied manifest is kept in an annotation, so a field removed from the manifest is
//! removed from the object while fields set by others (controllers, `patch`) stay.

use serde_json::{Map, Value};

/// Annotation holding the manifest last applied, as compact JSON.
pub const LAST_APPLIED_ANNOTATION: &str = "corral.dev/last-applied-configuration";

/// Merges `desired` (the manifest now applied) into `live`, deleting what `last`
/// (the manifest applied before) had and `desired` no longer has.
///
/// Maps merge key by key; every other value, arrays included, is replaced whole.
/// A field present in `desired` always wins.
pub fn three_way_merge(last: Option<&Value>, desired: &Value, live: &Value) -> Value {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            let empty = Map::new();
            let last_map = last.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = l.clone();
            for key in last_map.keys() {
                if !d.contains_key(key) {
                    out.remove(key);
                }
            }
            for (key, dv) in d {
                let merged = match l.get(key) {
                    Some(lv) => three_way_merge(last_map.get(key), dv, lv),
                    None => dv.clone(),
                };
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        _ => desired.clone(),
    }
}

/// Prepares a manifest for applying: drops server-owned metadata and `status`, and
/// records the manifest itself in the last-applied annotation.
pub fn prepare_manifest(manifest: &Value) -> Value {
    let mut m = manifest.clone();
    if let Value::Object(obj) = &mut m {
        obj.remove("status");
        if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
            for f in ["uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp"] {
                meta.remove(f);
            }
            if let Some(Value::Object(ann)) = meta.get_mut("annotations") {
                ann.remove(LAST_APPLIED_ANNOTATION);
                if ann.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    let recorded = serde_json::to_string(&m).unwrap_or_default();
    if let Some(meta) =
        m.as_object_mut().and_then(|o| o.entry("metadata").or_insert_with(|| Value::Object(Map::new())).as_object_mut())
    {
        let ann = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(ann) = ann {
            ann.insert(LAST_APPLIED_ANNOTATION.to_string(), Value::String(recorded));
        }
    }
    m
}

/// The manifest last applied to `live`, if any.
pub fn last_applied(live: &Value) -> Option<Value> {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn removed_manifest_field_is_removed_from_object() {
        let last = json!({"spec": {"data": {"a": "1", "b": "2"}}});
        let desired = json!({"spec": {"data": {"a": "1"}}});
        let live = json!({"spec": {"data": {"a": "1", "b": "2"}}, "status": {"x": 1}});
        let merged = three_way_merge(Some(&last), &desired, &live);
        assert_eq!(merged, json!({"spec": {"data": {"a": "1"}}, "status": {"x": 1}}));
    }

    #[test]
    fn fields_set_by_others_survive() {
        let last = json!({"spec": {"data": {"a": "1"}}});
        let desired = json!({"spec": {"data": {"a": "2"}}});
        let live = json!({"spec": {"data": {"a": "1", "added-by-patch": "x"}}});
        let merged = three_way_merge(Some(&last), &desired, &live);
        assert_eq!(merged, json!({"spec": {"data": {"a": "2", "added-by-patch": "x"}}}));
    }

    #[test]
    fn arrays_are_replaced_whole() {
        let merged = three_way_merge(None, &json!({"l": [1]}), &json!({"l": [1, 2]}));
        assert_eq!(merged, json!({"l": [1]}));
    }

    #[test]
    fn prepared_manifest_records_itself() {
        let m =
            prepare_manifest(&json!({"kind": "X", "metadata": {"name": "a", "resourceVersion": "5"}, "status": {}}));
        let recorded = last_applied(&m).unwrap();
        assert_eq!(recorded, json!({"kind": "X", "metadata": {"name": "a"}}));
        assert!(m.pointer("/metadata/resourceVersion").is_none());
    }
}
