//! The registry of served kinds. Generic over kinds as JSON so that kinds registered at
//! run time (custom resource definitions) are served exactly like built-in ones.

use std::sync::Arc;

use parking_lot::RwLock;
use schemars::JsonSchema;
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
    /// The columns `corral get` shows for the kind, between NAME and AGE (those with
    /// a priority above 0 only with `-o wide`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<PrinterColumn>,
    /// The subresources served besides the object itself.
    #[serde(default)]
    pub subresources: Subresources,
    /// JSON Schema (2020-12) of the whole object, `$ref`s inlined. The server
    /// validates every write against exactly this schema.
    pub schema: Value,
}

/// How a [`PrinterColumn`]'s value is shown.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ColumnType {
    /// The value as text (`<none>` when absent).
    #[default]
    String,
    /// A whole number.
    Integer,
    /// A number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An RFC 3339 time, shown as the time since (`5m`), as kubectl does.
    Date,
    /// The number of entries of the object or array at the path (0 when absent): a
    /// Corral extension.
    Count,
    /// An object reference at the path, shown as `kind/name`: a Corral extension.
    Reference,
}

/// A column of `corral get`, as a custom resource definition's
/// `additionalPrinterColumns` declares them in Kubernetes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrinterColumn {
    /// The column's header, e.g. `Phase` (shown in capitals).
    pub name: String,
    /// Where the value is, as a simple JSONPath: `.status.phase`.
    pub json_path: String,
    /// How the value is shown; `string` by default.
    #[serde(default, rename = "type")]
    pub type_: ColumnType,
    /// What the column shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 0: always shown; above 0: only with `-o wide`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl PrinterColumn {
    /// A column `name` showing the value at `json_path` as `type_`.
    pub fn new(name: &str, json_path: &str, type_: ColumnType) -> Self {
        PrinterColumn { name: name.to_string(), json_path: json_path.to_string(), type_, ..Default::default() }
    }

    /// The column's path as a JSON pointer (`.status.phase` → `/status/phase`), or
    /// `None` if it is not a simple dotted path.
    pub fn pointer(&self) -> Option<String> {
        json_path_pointer(&self.json_path)
    }
}

/// `.a.b[0].c` → `/a/b/0/c`: the JSONPath subset printer columns use (fields and
/// array indexes, no wildcards or filters). `None` when the path is not of that form.
pub fn json_path_pointer(path: &str) -> Option<String> {
    let rest = path.strip_prefix('.')?;
    let mut out = String::with_capacity(path.len());
    for seg in rest.split('.') {
        let (field, mut indexes) = match seg.split_once('[') {
            Some((field, tail)) => (field, Some(tail)),
            None => (seg, None),
        };
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return None;
        }
        out.push('/');
        out.push_str(field);
        // `[0]`, `[0][1]`: each a non-negative index, closed at once.
        while let Some(tail) = indexes {
            let (index, after) = tail.split_once(']')?;
            if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            out.push('/');
            out.push_str(index);
            indexes = match after {
                "" => None,
                more => Some(more.strip_prefix('[')?),
            };
        }
    }
    Some(out)
}

/// What a kind serves besides its objects (`…/{name}/status`, `…/{name}/log`,
/// `…/{name}/scale`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Subresources {
    /// `status`: observed state written on its own path, without bumping `generation`.
    #[serde(default = "yes")]
    pub status: bool,
    /// `log`: the object's output, streamed (tasks).
    #[serde(default)]
    pub log: bool,
    /// `scale`: the object's desired and observed count as an `autoscaling/v1` `Scale`
    /// (`kubectl scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleSubresource>,
}

/// Where a scalable kind keeps its counts, as JSONPaths (`.spec.instances`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSubresource {
    /// The desired count, which a scale writes.
    pub spec_replicas_path: String,
    /// The observed count.
    pub status_replicas_path: String,
}

fn yes() -> bool {
    true
}

impl Default for Subresources {
    fn default() -> Self {
        Subresources { status: true, log: false, scale: None }
    }
}

impl Subresources {
    /// Names of the served subresources, as discovery lists them (`status`, `log`,
    /// `scale`).
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.status {
            out.push("status");
        }
        if self.log {
            out.push("log");
        }
        if self.scale.is_some() {
            out.push("scale");
        }
        out
    }
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
    /// The schema of `status` alone, compiled when first needed (see
    /// [`Registry::validate_status`]); `None` when the kind has no status.
    status_validator: std::sync::OnceLock<Option<Arc<jsonschema::Validator>>>,
    /// Name of the custom resource definition serving the kind; `None` for kinds
    /// registered directly (built-in ones).
    crd: Option<String>,
}

/// Kinds the server serves, with compiled validators. Cheap to share; registration at
/// run time is visible to every holder at once.
#[derive(Default)]
pub struct Registry {
    entries: RwLock<Vec<Arc<Entry>>>,
    /// Store revision the custom kinds reflect; older snapshots are ignored so that
    /// concurrent synchronisations never move the registry back in time.
    custom_revision: RwLock<u64>,
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
        let mut entries = self.entries.write();
        Self::insert(&mut entries, info, None)
    }

    fn insert(entries: &mut Vec<Arc<Entry>>, info: KindInfo, crd: Option<String>) -> Result<Arc<KindInfo>> {
        // A definition stored before these bounds existed must not hang or crash the
        // compilation below (at every start): it is not served.
        crate::schema_limits::check(&info.schema)
            .map_err(|(at, why)| Error::BadSchema { kind: info.kind.clone(), message: format!("{at}: {why}") })?;
        let validator = jsonschema::validator_for(&info.schema)
            .map_err(|e| Error::BadSchema { kind: info.kind.clone(), message: e.to_string() })?;
        if entries
            .iter()
            .any(|e| e.info.group == info.group && (e.info.plural == info.plural || e.info.kind == info.kind))
        {
            return Err(Error::DuplicateKind(format!("{}.{}", info.plural, info.group)));
        }
        let info = Arc::new(info);
        let validator = Arc::new(validator);
        entries.push(Arc::new(Entry { info: info.clone(), validator, status_validator: Default::default(), crd }));
        Ok(info)
    }

    /// Makes the custom kinds exactly `kinds` (definition name, kind), as read from
    /// the store at `revision`, in one step: no request sees a kind missing while it
    /// is replaced. Unchanged kinds are kept as they are. A snapshot older than one
    /// already applied changes nothing and returns `None`; otherwise each definition
    /// gets whether its kind is served, or why not (a conflict with a kind served
    /// before it, or a schema that does not compile).
    pub fn sync_custom(&self, revision: u64, kinds: Vec<(String, KindInfo)>) -> Option<Vec<(String, Result<()>)>> {
        let mut custom_revision = self.custom_revision.write();
        if revision < *custom_revision {
            return None;
        }
        *custom_revision = revision;
        let mut entries = self.entries.write();
        entries.retain(|e| match &e.crd {
            None => true,
            Some(name) => kinds.iter().any(|(n, k)| n == name && *e.info == *k),
        });
        let mut outcome = Vec::with_capacity(kinds.len());
        for (name, info) in kinds {
            let served = entries.iter().any(|e| e.crd.as_deref() == Some(name.as_str()));
            let result = if served { Ok(()) } else { Self::insert(&mut entries, info, Some(name.clone())).map(|_| ()) };
            outcome.push((name, result));
        }
        Some(outcome)
    }

    /// Stops serving the kind of definition `crd`, which the store removed at
    /// `revision`; returns whether it was served. Nothing changes if a newer snapshot
    /// was applied: it already reflects the removal (and perhaps a re-creation).
    pub fn remove_custom(&self, crd: &str, revision: u64) -> bool {
        let mut custom_revision = self.custom_revision.write();
        if revision < *custom_revision {
            return false;
        }
        *custom_revision = revision;
        let mut entries = self.entries.write();
        let before = entries.len();
        entries.retain(|e| e.crd.as_deref() != Some(crd));
        entries.len() != before
    }

    /// The kind served for the custom resource definition named `crd`.
    pub fn custom_kind(&self, crd: &str) -> Option<Arc<KindInfo>> {
        self.entries.read().iter().find(|e| e.crd.as_deref() == Some(crd)).map(|e| e.info.clone())
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
        crate::validate::validate_object(info, &validator, object)?;
        if crate::crd::is_crd_kind(info) {
            let conflicts = self.crd_conflicts(object);
            if !conflicts.is_empty() {
                return Err(conflicts);
            }
        }
        Ok(())
    }

    /// Validates `status` as the status of an object of kind `info`, against the
    /// `status` part of the kind's schema: what a status write needs, without the
    /// rest of the object. Offending fields are named from the object's root
    /// (`status.phase`).
    pub fn validate_status(&self, info: &KindInfo, status: &Value) -> Result<(), Vec<FieldError>> {
        let entry =
            self.entries.read().iter().find(|e| e.info.group == info.group && e.info.plural == info.plural).cloned();
        let Some(entry) = entry else {
            return Err(vec![FieldError::new("kind", format!("kind {} is not served", info.kind))]);
        };
        let validator = entry.status_validator.get_or_init(|| status_schema(&entry.info.schema));
        let Some(validator) = validator else {
            return Err(vec![FieldError::new("status", format!("kind {} has no status", info.kind))]);
        };
        crate::validate::validate_part(validator, status).map_err(|errors| {
            let at_status = |field: String| if field.is_empty() { "status".into() } else { format!("status.{field}") };
            errors.into_iter().map(|e| FieldError::new(at_status(e.field), e.message)).collect()
        })
    }

    /// Where a custom resource definition collides with a kind served for something
    /// else: the same kind or plural in its group, or a short name another kind
    /// answers to (the CLI resolves short names without a group).
    fn crd_conflicts(&self, object: &Value) -> Vec<FieldError> {
        let Ok(crd) = serde_json::from_value::<crate::kinds::CustomResourceDefinition>(object.clone()) else {
            return Vec::new();
        };
        let info = KindInfo::from_crd(&crd);
        let name = crd.metadata.name.as_str();
        let mut errors = Vec::new();
        // The built-in group is the system's own: a kind defined there would pass for
        // one of its built-in kinds, to users and to authorization alike.
        if info.group == crate::GROUP {
            errors.push(FieldError::new(
                "spec.group",
                format!("{} is the group of the built-in kinds; define custom kinds in a group of your own (e.g. example.com)", crate::GROUP),
            ));
        }
        // Objects are stored by group and plural alone, with their scope and
        // apiVersion: changing either would strand them (there is no conversion).
        if let Some(served) = self.custom_kind(name) {
            if served.namespaced != info.namespaced {
                errors.push(FieldError::new(
                    "spec.scope",
                    "cannot change while the kind is served; delete the definition (and its objects) first",
                ));
            }
            if served.version != info.version {
                errors.push(FieldError::new(
                    "spec.version",
                    format!(
                        "cannot change from {:?} while the kind is served; delete the definition (and its objects) first",
                        served.version
                    ),
                ));
            }
        }
        for e in self.entries.read().iter().filter(|e| e.crd.as_deref() != Some(name)) {
            let other = &e.info;
            let served = format!("{}.{}", other.plural, other.group);
            if other.group == info.group && other.plural == info.plural {
                errors.push(FieldError::new("spec.plural", format!("{served} is already served")));
            }
            if other.group == info.group && other.kind == info.kind {
                errors.push(FieldError::new(
                    "spec.kind",
                    format!("kind {} is already served in {} (by {served})", info.kind, info.group),
                ));
            }
            for (i, short) in info.short_names.iter().enumerate() {
                let taken = *short == other.plural
                    || *short == other.singular
                    || other.short_names.iter().any(|s| s.eq_ignore_ascii_case(short));
                if taken {
                    errors.push(FieldError::new(
                        format!("spec.shortNames[{i}]"),
                        format!("{short:?} already designates {served}"),
                    ));
                }
            }
        }
        errors
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
    bound_integers(&mut out);
    out
}

/// Largest integer a JSON number carries exactly (2^53 − 1): the bound of 64-bit
/// fields, as a value beyond it could not be told from its neighbours.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Gives every integer whose format names a Rust width the range of that width
/// (schemars bounds only 8- and 16-bit ones): the server then refuses, with a 422
/// naming the field, a value the typed decoders of agents and controllers could not
/// read — before, such a task was stored and then never got a status.
fn bound_integers(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let range = match m.get("format").and_then(Value::as_str) {
                Some("uint32") => Some((0, i64::from(u32::MAX))),
                Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
                Some("uint64") => Some((0, MAX_SAFE_INTEGER)),
                Some("int64") => Some((-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)),
                _ => None,
            };
            if let Some((min, max)) = range {
                m.entry("minimum").or_insert(min.into());
                m.entry("maximum").or_insert(max.into());
            }
            m.values_mut().for_each(bound_integers);
        }
        Value::Array(a) => a.iter_mut().for_each(bound_integers),
        _ => {}
    }
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

/// The kind's schema cut down to its `status` property, with the definitions it
/// refers to; `None` when the schema has no `status` or the cut does not compile.
/// A status that may be null is taken as the status it is otherwise (a status write
/// names one), so that a wrong field is named rather than the whole status refused
/// as matching neither.
fn status_schema(schema: &Value) -> Option<Arc<jsonschema::Validator>> {
    let mut status = schema.pointer("/properties/status")?.clone();
    if let Some(any) = status.get("anyOf").and_then(Value::as_array) {
        let not_null: Vec<&Value> = any.iter().filter(|s| s.get("type") != Some(&Value::from("null"))).collect();
        if let [only] = not_null[..] {
            status = only.clone();
        }
    }
    // The status's schema at the root, with the definitions it may refer to.
    let mut cut = serde_json::Map::new();
    for defs in ["$defs", "definitions"] {
        if let Some(d) = schema.get(defs) {
            cut.insert(defs.into(), d.clone());
        }
    }
    cut.insert("allOf".into(), Value::Array(vec![status]));
    jsonschema::validator_for(&Value::Object(cut)).ok().map(Arc::new)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::CustomResourceDefinition;

    #[test]
    fn a_status_alone_is_validated_against_the_kinds_schema_naming_each_field() {
        let reg = Registry::builtin();
        let tasks = reg.by_plural(crate::GROUP, crate::VERSION, "tasks").unwrap();
        assert_eq!(reg.validate_status(&tasks, &json!({"phase": "RUNNING", "exitCode": 0})), Ok(()));
        let errors = reg.validate_status(&tasks, &json!({"phase": "SPRINTING", "bogus": 1})).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["status.bogus", "status.phase"], "{errors:?}");
    }

    #[test]
    fn printer_column_paths_take_fields_and_array_indexes() {
        assert_eq!(json_path_pointer(".status.phase").as_deref(), Some("/status/phase"));
        assert_eq!(json_path_pointer(".spec.schedules[0].cron").as_deref(), Some("/spec/schedules/0/cron"));
        assert_eq!(json_path_pointer(".a[1][2]").as_deref(), Some("/a/1/2"));
        for bad in ["status", ".a..b", ".a[", ".a[]", ".a[x]", ".a[-1]", ".a[0]b", "[0]", ".a[*]", ".a[?(@.x)]"] {
            assert_eq!(json_path_pointer(bad), None, "{bad}");
        }
    }

    fn widget(short: &str) -> (String, KindInfo) {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "corral.dev/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "version": "v1", "kind": "Widget", "plural": "widgets",
                "shortNames": [short]}
        }))
        .expect("definition");
        ("widgets.example.com".to_string(), KindInfo::from_crd(&crd))
    }

    #[test]
    fn custom_kinds_follow_the_newest_snapshot_only() {
        let reg = Registry::builtin();
        assert!(reg.sync_custom(5, vec![widget("wd")]).is_some_and(|o| o[0].1.is_ok()));
        assert_eq!(reg.resolve("wd").map(|k| k.plural.clone()).as_deref(), Some("widgets"));
        assert!(reg.sync_custom(4, vec![]).is_none(), "an older snapshot changes nothing");
        assert!(reg.custom_kind("widgets.example.com").is_some());
        assert!(reg.sync_custom(6, vec![widget("wg")]).is_some());
        assert!(reg.resolve("wd").is_none() && reg.resolve("wg").is_some(), "changed kinds are replaced");
        assert!(reg.remove_custom("widgets.example.com", 8));
        assert!(reg.sync_custom(7, vec![widget("wg")]).is_none(), "a removal is not undone by an older list");
        assert!(reg.by_plural("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn a_custom_kind_cannot_take_a_served_one() {
        let reg = Registry::builtin();
        let (name, mut info) = widget("wd");
        info.group = crate::GROUP.into();
        info.plural = "configmaps".into();
        let outcome = reg.sync_custom(1, vec![(name, info)]).expect("newest snapshot");
        assert!(matches!(outcome[0].1, Err(Error::DuplicateKind(_))));
        assert!(reg.resolve("cm").is_some_and(|k| k.kind == "ConfigMap"));
    }
}
