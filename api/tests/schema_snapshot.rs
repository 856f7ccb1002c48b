//! The JSON Schema each built-in kind publishes is part of the API: a change to it must
//! be deliberate. Regenerate with `CORRAL_UPDATE_SNAPSHOTS=1 cargo test -p corral-api`.

use std::path::PathBuf;

use corral_api::Registry;

#[test]
fn published_schemas_match_snapshots() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let update = std::env::var_os("CORRAL_UPDATE_SNAPSHOTS").is_some();
    for kind in Registry::builtin().kinds() {
        let path = dir.join(format!("{}.{}.json", kind.plural, kind.group));
        let current = serde_json::to_string_pretty(&kind.schema).unwrap() + "\n";
        if update {
            std::fs::write(&path, &current).unwrap();
            continue;
        }
        let snapshot = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing: run with CORRAL_UPDATE_SNAPSHOTS=1", path.display()));
        assert_eq!(current, snapshot, "schema of {} changed; review and update the snapshot", kind.kind);
    }
}

#[test]
fn schemas_reject_unknown_fields_everywhere() {
    // Every object node of every schema closes its properties, so typos never pass.
    fn check(v: &serde_json::Value, path: &str) {
        if let Some(m) = v.as_object() {
            if m.get("type").and_then(|t| t.as_str()) == Some("object") && m.contains_key("properties") {
                assert_eq!(
                    m.get("additionalProperties"),
                    Some(&serde_json::Value::Bool(false)),
                    "{path} accepts unknown fields"
                );
            }
            for (k, sub) in m {
                check(sub, &format!("{path}.{k}"));
            }
        }
    }
    for kind in Registry::builtin().kinds() {
        check(&kind.schema, &kind.kind);
    }
}
