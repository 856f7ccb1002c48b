//! Bounds on the JSON Schemas of custom kinds, checked before a schema is compiled.
//!
//! Compiling and applying a schema must cost time in proportion to its size. Two
//! things break that: references, which a schema of a few kilobytes can chain or fan
//! out into an expansion without end (20,000 chained `$ref`s overflow the validator's
//! stack; `allOf: [$ref, $ref]` forty levels deep never finishes), and regular
//! expressions, whose compilation grows with their length. So, as Kubernetes does for
//! the structural schemas of its custom resources, references are not supported (a
//! schema is written out in full — the generated ones of typed kinds are); patterns
//! are bounded in length, one by one and together; and schemas in depth.

use serde_json::Value;

/// Deepest nesting of a schema document.
pub const MAX_SCHEMA_DEPTH: usize = 64;

/// Longest `pattern` (or `patternProperties` key), in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// All the patterns of one schema together, in bytes.
pub const MAX_PATTERN_TOTAL_BYTES: usize = 64 * 1024;

/// Keywords that refer to other schemas.
const REFERENCES: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];

/// Keywords whose object values map names (of properties, definitions) to schemas.
const NAME_MAPS: [&str; 5] = ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"];

/// Checks `schema` against the bounds above. The error names the offending place as
/// a dotted path from the schema's root, and says why.
pub fn check(schema: &Value) -> Result<(), (String, String)> {
    let mut patterns = 0usize;
    walk(schema, "", 0, false, &mut patterns)
}

fn walk(v: &Value, path: &str, depth: usize, names: bool, patterns: &mut usize) -> Result<(), (String, String)> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err((path.to_string(), format!("the schema nests more than {MAX_SCHEMA_DEPTH} levels deep")));
    }
    let at = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                let here = at(key);
                if !names {
                    if REFERENCES.contains(&key.as_str()) {
                        return Err((
                            here,
                            "references are not supported in the schema of a custom kind (as in Kubernetes); \
                             write the referenced schema out in place"
                                .to_string(),
                        ));
                    }
                    if key == "pattern"
                        && let Value::String(p) = value
                    {
                        count_pattern(p, &here, patterns)?;
                    }
                    if key == "patternProperties"
                        && let Value::Object(by_pattern) = value
                    {
                        for p in by_pattern.keys() {
                            count_pattern(p, &here, patterns)?;
                        }
                    }
                }
                let value_names = !names && NAME_MAPS.contains(&key.as_str());
                walk(value, &here, depth + 1, value_names, patterns)?;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), depth + 1, false, patterns)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn count_pattern(p: &str, at: &str, total: &mut usize) -> Result<(), (String, String)> {
    if p.len() > MAX_PATTERN_BYTES {
        return Err((
            at.to_string(),
            format!("a pattern is {} bytes; at most {MAX_PATTERN_BYTES} are allowed", p.len()),
        ));
    }
    *total += p.len();
    if *total > MAX_PATTERN_TOTAL_BYTES {
        return Err((
            at.to_string(),
            format!("the schema's patterns take more than {MAX_PATTERN_TOTAL_BYTES} bytes together"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_ordinary_schema_passes_and_a_property_may_be_named_like_a_keyword() {
        let s = json!({"type": "object", "properties": {
            "$ref": {"type": "string", "pattern": "^[a-z]+$"},
            "pattern": {"type": "string"},
            "items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        }, "patternProperties": {"^x-": {"type": "string"}}});
        assert_eq!(check(&s), Ok(()));
    }

    #[test]
    fn references_are_refused_where_they_are() {
        let s = json!({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"$ref": "#/$defs/x"}]}}});
        let (at, why) = check(&s).err().unwrap_or_default();
        assert_eq!(at, "properties.a.allOf[1].$ref");
        assert!(why.contains("references are not supported"), "{why}");
        assert!(check(&json!({"$dynamicRef": "#x"})).is_err());
    }

    #[test]
    fn long_patterns_and_deep_schemas_are_refused() {
        let long = json!({"properties": {"a": {"type": "string", "pattern": "a".repeat(MAX_PATTERN_BYTES + 1)}}});
        assert_eq!(check(&long).err().map(|e| e.0), Some("properties.a.pattern".to_string()));
        let many: serde_json::Map<String, Value> = (0..100)
            .map(|i| (format!("p{i}"), json!({"type": "string", "pattern": "b".repeat(MAX_PATTERN_BYTES)})))
            .collect();
        assert!(check(&json!({"properties": many})).err().is_some_and(|e| e.1.contains("together")));
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "object", "properties": {"x": deep}});
        }
        assert!(check(&deep).err().is_some_and(|e| e.1.contains("levels deep")));
    }
}
