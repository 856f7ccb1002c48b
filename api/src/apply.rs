//! The three-way merge behind apply (`corral apply`, `kubectl apply --server-side`):
//! the manifest each field manager last applied is kept in an annotation, so a field
//! removed from a manager's manifest is removed from the object, while fields set by
//! others (controllers, `patch`, other managers' manifests) stay.

use serde_json::{Map, Value};

/// Annotation holding the manifest last applied by Corral's CLI (or by an apply that
/// names no field manager), as compact JSON.
pub const LAST_APPLIED_ANNOTATION: &str = "corral.dev/last-applied-configuration";

/// The field manager Corral's CLI applies as.
pub const CLI_FIELD_MANAGER: &str = "corral-cli";

/// Other managers' annotations are this, then the manager's name.
const MANAGER_PREFIX: &str = "corral.dev/last-applied.";

/// The annotation holding what `manager` last applied: [`LAST_APPLIED_ANNOTATION`] for
/// the CLI and for no manager; for others, one of their own (`kubectl` applies as
/// `kubectl` and then records its client-side annotation as `kubectl-last-applied`,
/// and neither may undo the other). A name that is not a valid annotation key is
/// lowercased, its other characters made `-`, and cut to fit.
pub fn annotation_for(manager: Option<&str>) -> String {
    match manager {
        None | Some("" | CLI_FIELD_MANAGER) => LAST_APPLIED_ANNOTATION.to_string(),
        Some(m) => {
            let room = 63 - (MANAGER_PREFIX.len() - "corral.dev/".len());
            let name: String = m
                .chars()
                .map(|c| c.to_ascii_lowercase())
                .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
                .take(room)
                .collect();
            let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            format!("{MANAGER_PREFIX}{}", if name.is_empty() { "unnamed" } else { name })
        }
    }
}

/// Whether `key` is one of the annotations apply keeps (not the user's own).
pub fn is_last_applied(key: &str) -> bool {
    key == LAST_APPLIED_ANNOTATION || key.starts_with(MANAGER_PREFIX)
}

/// Merges `desired` (the manifest now applied) into `live`, deleting what `last`
/// (the manifest applied before) had and `desired` no longer has; of a map `desired`
/// dropped whole, only what `last` put in it.
///
/// Maps merge key by key; every other value, arrays included, is replaced whole.
/// A field present in `desired` always wins.
pub fn three_way_merge(last: Option<&Value>, desired: &Value, live: &Value) -> Value {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            let empty = Map::new();
            let last_map = last.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = l.clone();
            for (key, last_value) in last_map {
                if !d.contains_key(key) {
                    remove_applied(&mut out, key, last_value);
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

/// Removes from `map` what `last` applied under `key`: a map only its applied keys
/// (and then itself when that leaves it empty), so what others added inside stays.
fn remove_applied(map: &mut Map<String, Value>, key: &str, last: &Value) {
    match (last, map.get_mut(key)) {
        (Value::Object(applied), Some(Value::Object(live))) => {
            for (k, v) in applied {
                remove_applied(live, k, v);
            }
            if live.is_empty() {
                map.remove(key);
            }
        }
        _ => {
            map.remove(key);
        }
    }
}

/// Keeps of `last` only what no manifest in `others` also sets: a field two managers
/// applied stays when one of them drops it.
pub fn owned_only(last: &Value, others: &[(String, Value)]) -> Value {
    let Value::Object(last) = last else { return last.clone() };
    let mut out = Map::new();
    for (key, value) in last {
        let shared: Vec<(String, Value)> =
            others.iter().filter_map(|(k, o)| Some((k.clone(), o.get(key)?.clone()))).collect();
        if shared.is_empty() {
            out.insert(key.clone(), value.clone());
        } else if value.is_object() && shared.iter().all(|(_, v)| v.is_object()) {
            out.insert(key.clone(), owned_only(value, &shared));
        }
    }
    Value::Object(out)
}

/// Prepares a manifest `manager` applies: drops server-owned metadata and `status`,
/// and records the manifest itself in the manager's last-applied annotation.
pub fn prepare_manifest(manifest: &Value, manager: Option<&str>) -> Value {
    let mut m = manifest.clone();
    if let Value::Object(obj) = &mut m {
        obj.remove("status");
        if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
            for f in ["uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp"] {
                meta.remove(f);
            }
            if let Some(Value::Object(ann)) = meta.get_mut("annotations") {
                ann.retain(|k, _| !is_last_applied(k));
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
            ann.insert(annotation_for(manager), Value::String(recorded));
        }
    }
    m
}

/// The manifest `manager` last applied to `live`, if any.
pub fn last_applied(live: &Value, manager: Option<&str>) -> Option<Value> {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(annotation_for(manager)))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
}

/// The manifests every other manager last applied to `live`, by annotation key.
pub fn applied_by_others(live: &Value, manager: Option<&str>) -> Vec<(String, Value)> {
    let own = annotation_for(manager);
    let Some(Value::Object(ann)) = live.pointer("/metadata/annotations") else { return Vec::new() };
    ann.iter()
        .filter(|(k, _)| is_last_applied(k) && **k != own)
        .filter_map(|(k, v)| Some((k.clone(), v.as_str().and_then(|s| serde_json::from_str(s).ok())?)))
        .collect()
}

/// The manager whose annotation is `key` (one of [`is_last_applied`]'s).
pub fn manager_of(key: &str) -> &str {
    key.strip_prefix(MANAGER_PREFIX).unwrap_or(CLI_FIELD_MANAGER)
}

/// A field an apply would set to another value than another manager applied there,
/// as server-side apply reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's annotation key.
    pub annotation: String,
    /// The field, as path segments.
    pub path: Vec<String>,
}

impl Conflict {
    /// The field as `.spec.data.key`.
    pub fn field(&self) -> String {
        self.path.iter().map(|s| format!(".{s}")).collect()
    }
}

/// The fields `desired` sets to other values than another manager applied there and
/// the object still holds (what a manager applied but someone changed since is not
/// its any more). `others` is [`applied_by_others`].
pub fn conflicts(desired: &Value, live: &Value, others: &[(String, Value)]) -> Vec<Conflict> {
    fn walk(
        desired: &Value,
        live: Option<&Value>,
        theirs: &Value,
        annotation: &str,
        path: &mut Vec<String>,
        out: &mut Vec<Conflict>,
    ) {
        match (desired, theirs) {
            (Value::Object(d), Value::Object(t)) => {
                for (key, dv) in d {
                    if let Some(tv) = t.get(key) {
                        path.push(key.clone());
                        walk(dv, live.and_then(|l| l.get(key)), tv, annotation, path, out);
                        path.pop();
                    }
                }
            }
            _ if desired != theirs && live == Some(theirs) => {
                out.push(Conflict { annotation: annotation.to_string(), path: path.clone() })
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (annotation, theirs) in others {
        walk(desired, Some(live), theirs, annotation, &mut Vec::new(), &mut out);
    }
    out
}

/// Takes the conflicting fields away from their managers in `object`'s annotations
/// (an apply with `force`): they are the applying manager's from now on.
pub fn take_over(object: &mut Value, conflicts: &[Conflict]) {
    let Some(Value::Object(ann)) = object.pointer_mut("/metadata/annotations") else { return };
    for c in conflicts {
        let Some(Value::String(text)) = ann.get_mut(&c.annotation) else { continue };
        let Ok(mut applied) = serde_json::from_str::<Value>(text) else { continue };
        if let Some((last, parents)) = c.path.split_last() {
            let pointer: String =
                parents.iter().map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect();
            if let Some(Value::Object(parent)) = applied.pointer_mut(&pointer) {
                parent.remove(last);
            }
        }
        *text = serde_json::to_string(&applied).unwrap_or_default();
    }
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
    fn a_field_another_manager_applied_survives_its_removal() {
        let mine = json!({"metadata": {"annotations": {"a": "1"}}, "spec": {"x": 1, "y": {"z": 2}}});
        let theirs = json!({"metadata": {"annotations": {"b": "2"}}, "spec": {"x": 1}});
        let owned = owned_only(&mine, &[("k".into(), theirs)]);
        assert_eq!(owned, json!({"metadata": {"annotations": {"a": "1"}}, "spec": {"y": {"z": 2}}}));
        let live = json!({"metadata": {"annotations": {"a": "1", "b": "2"}}, "spec": {"x": 1, "y": {"z": 2}}});
        let merged = three_way_merge(Some(&owned), &json!({"metadata": {}}), &live);
        assert_eq!(merged, json!({"metadata": {"annotations": {"b": "2"}}, "spec": {"x": 1}}));
    }

    #[test]
    fn a_field_another_manager_applied_and_still_holds_conflicts_until_taken_over() {
        let theirs = json!({"metadata": {"name": "a"}, "spec": {"data": {"x": "1", "y": "2"}, "size": 3}});
        let key = annotation_for(Some("kubectl"));
        let mut live = json!({"metadata": {"name": "a", "annotations": {&key: theirs.to_string()}},
            "spec": {"data": {"x": "1", "y": "changed by hand"}, "size": 3}});
        let others = applied_by_others(&live, None);
        assert_eq!(manager_of(&others[0].0), "kubectl");
        assert_eq!(manager_of(LAST_APPLIED_ANNOTATION), CLI_FIELD_MANAGER);
        // Same values, fields the other never applied, and a value changed since it
        // applied it: no conflict. A different value it still holds: one.
        let mine = json!({"metadata": {"name": "a"}, "spec": {"data": {"x": "1", "y": "3", "z": "4"}, "size": 5}});
        let found = conflicts(&mine, &live, &others);
        assert_eq!(found.iter().map(Conflict::field).collect::<Vec<_>>(), [".spec.size"]);
        take_over(&mut live, &found);
        let after = applied_by_others(&live, None);
        assert_eq!(after[0].1, json!({"metadata": {"name": "a"}, "spec": {"data": {"x": "1", "y": "2"}}}));
        assert!(conflicts(&mine, &live, &after).is_empty());
    }

    #[test]
    fn each_manager_has_its_own_annotation_and_the_cli_the_plain_one() {
        assert_eq!(annotation_for(None), LAST_APPLIED_ANNOTATION);
        assert_eq!(annotation_for(Some(CLI_FIELD_MANAGER)), LAST_APPLIED_ANNOTATION);
        assert_eq!(annotation_for(Some("kubectl")), "corral.dev/last-applied.kubectl");
        assert_eq!(annotation_for(Some("Flux Controller/v2")), "corral.dev/last-applied.flux-controller-v2");
        let long = annotation_for(Some(&"m".repeat(200)));
        assert_eq!(long.len() - "corral.dev/".len(), 63);
        assert!(is_last_applied(&long) && is_last_applied(LAST_APPLIED_ANNOTATION) && !is_last_applied("a/b"));
        for key in [annotation_for(Some("kubectl")), long, annotation_for(Some("--"))] {
            assert_eq!(crate::names::check_qualified_key(&key), Ok(()), "{key}");
        }
        let m = prepare_manifest(&json!({"kind": "X", "metadata": {"name": "a"}}), Some("kubectl"));
        assert_eq!(last_applied(&m, Some("kubectl")), Some(json!({"kind": "X", "metadata": {"name": "a"}})));
        assert_eq!(last_applied(&m, None), None);
        assert_eq!(applied_by_others(&m, None).len(), 1);
        assert!(applied_by_others(&m, Some("kubectl")).is_empty());
    }

    #[test]
    fn prepared_manifest_records_itself() {
        let m = prepare_manifest(
            &json!({"kind": "X", "metadata": {"name": "a", "resourceVersion": "5"}, "status": {}}),
            None,
        );
        let recorded = last_applied(&m, None).unwrap();
        assert_eq!(recorded, json!({"kind": "X", "metadata": {"name": "a"}}));
        assert!(m.pointer("/metadata/resourceVersion").is_none());
    }
}
