//! The registry of served kinds. Generic over kinds as JSON so that kinds registered at
//! run time (custom resource definitions) are served exactly like built-in ones.

use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, FieldError, Result};

/// Everything the server and clients need to know about one kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KindInfo {
    /// API group, e.g. `corral.dev`.
    pub group: String,
    /// Version within the group, e.g. `v1`.
    pub version: String,
    /// Kind name, e.g. `ConfigMap`.
    pub kind: String,
    /// Lowercase plural used in URLs.
    pub plural: String,
    /// Lowercase singular.
    pub singular: String,
    /// Short aliases.
    #[serde(default)]
    pub short_names: Vec<String>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// JSON Schema (2020-12) of the whole object, `$ref`s inlined. The server
    /// validates every write against exactly this schema.
    pub schema: Value,
}

impl KindInfo {
    /// `group/version`, the `apiVersion` of objects of this kind.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The store's name for the kind's collection: `group/plural`.
    pub fn resource(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// Whether `name` designates this kind: plural, singular, short name or kind,
    /// case-insensitively, optionally qualified by the group (`configmaps.corral.dev`).
    pub fn matches_name(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let (base, group) = match name.split_once('.') {
            Some((b, g)) => (b.to_string(), Some(g.to_string())),
            None => (name.clone(), None),
        };
        if group.as_deref().is_some_and(|g| g != self.group) {
            return false;
        }
        base == self.plural
            || base == self.singular
            || base == self.kind.to_ascii_lowercase()
            || self.short_names.iter().any(|s| s.eq_ignore_ascii_case(&base))
    }
}

struct Entry {
    info: Arc<KindInfo>,
    validator: Arc<jsonschema::Validator>,
}

/// Kinds the server serves, with compiled validators. Cheap to share; registration at
/// run time is visible to every holder at once.
#[derive(Default)]
pub struct Registry {
    entries: RwLock<Vec<Arc<Entry>>>,
}

impl Registry {
    /// A registry holding the built-in kinds.
    pub fn builtin() -> Self {
        let reg = Registry::default();
        for k in crate::kinds::builtin_kinds() {
            // Built-in schemas are derived from our own types; failing here is a bug.
            reg.register(k).expect("built-in kinds register");
        }
        reg
    }

    /// Adds a kind. Fails if its kind or plural is taken within its group, or its
    /// schema does not compile.
    pub fn register(&self, info: KindInfo) -> Result<Arc<KindInfo>> {
        let validator = jsonschema::validator_for(&info.schema)
            .map_err(|e| Error::BadSchema { kind: info.kind.clone(), message: e.to_string() })?;
        let mut entries = self.entries.write();
        if entries
            .iter()
            .any(|e| e.info.group == info.group && (e.info.plural == info.plural || e.info.kind == info.kind))
        {
            return Err(Error::DuplicateKind(format!("{}.{}", info.plural, info.group)));
        }
        let info = Arc::new(info);
        entries.push(Arc::new(Entry { info: info.clone(), validator: Arc::new(validator) }));
        Ok(info)
    }

    /// Removes a kind by group and plural; returns whether it was there.
    pub fn unregister(&self, group: &str, plural: &str) -> bool {
        let mut entries = self.entries.write();
        let before = entries.len();
        entries.retain(|e| !(e.info.group == group && e.info.plural == plural));
        entries.len() != before
    }

    /// All kinds, in registration order.
    pub fn kinds(&self) -> Vec<Arc<KindInfo>> {
        self.entries.read().iter().map(|e| e.info.clone()).collect()
    }

    /// The kind served at `/apis/{group}/{version}/{plural}`.
    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<Arc<KindInfo>> {
        self.find(|i| i.group == group && i.version == version && i.plural == plural)
    }

    /// The kind of an object with this `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<KindInfo>> {
        self.find(|i| i.api_version() == api_version && i.kind == kind)
    }

    /// The kind a user means by `name` (plural, singular, short name or kind).
    pub fn resolve(&self, name: &str) -> Option<Arc<KindInfo>> {
        self.find(|i| i.matches_name(name))
    }

    fn find(&self, pred: impl Fn(&KindInfo) -> bool) -> Option<Arc<KindInfo>> {
        self.entries.read().iter().find(|e| pred(&e.info)).map(|e| e.info.clone())
    }

    /// Validates a whole object against its kind's schema and naming rules. Every
    /// offending field is reported, not just the first.
    pub fn validate(&self, info: &KindInfo, object: &Value) -> Result<(), Vec<FieldError>> {
        let validator = self
            .entries
            .read()
            .iter()
            .find(|e| e.info.group == info.group && e.info.plural == info.plural)
            .map(|e| e.validator.clone());
        let Some(validator) = validator else {
            return Err(vec![FieldError::new("kind", format!("kind {} is not served", info.kind))]);
        };
        crate::validate::validate_object(info, &validator, object)
    }
}

/// Replaces every local `$ref` into `$defs` by the definition itself, so that clients
/// (`corral explain`) can walk the schema without a resolver. Recursive definitions
/// are cut off after a few levels.
pub fn inline_refs(schema: &Value) -> Value {
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    let mut out = inline(schema, &defs, 0);
    if let Value::Object(m) = &mut out {
        m.remove("$defs");
    }
    out
}

fn inline(v: &Value, defs: &Value, depth: usize) -> Value {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                if depth < 8
                    && let Some(def) = defs.get(name)
                {
                    let mut resolved = inline(def, defs, depth + 1);
                    // Keep sibling keywords such as `description` next to the ref.
                    if let Value::Object(rm) = &mut resolved {
                        for (k, sv) in m {
                            if k != "$ref" {
                                rm.insert(k.clone(), inline(sv, defs, depth + 1));
                            }
                        }
                    }
                    return resolved;
                }
                return Value::Object(Default::default());
            }
            Value::Object(m.iter().map(|(k, v)| (k.clone(), inline(v, defs, depth))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| inline(v, defs, depth)).collect()),
        other => other.clone(),
    }
}
