//! The pure steps of a sync: a revision's documents become the objects it wants
//! ([`desired`]); those, the live objects and the inventory become the transaction to
//! send, the inventory to record and the drift to report ([`plan`]); live services
//! and jobs become the revision's health ([`health`]); and the Sync's state becomes
//! what to do next ([`next`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use corral_api::kinds::sync::{
    Drift, InventoryEntry, ObjectHealth, SYNC_LABEL, SyncError, SyncSpec, SyncStatus, WAVE_ANNOTATION,
};
use corral_api::transaction::{Operation, Target};
use corral_client::manifests::{Document, Problem};
use serde_json::{Map, Value};

/// What the server says of a kind: its `apiVersion` and `kind`, and whether it is
/// namespaced. `None` when it serves no such kind.
pub type KindLookup<'a> = &'a dyn Fn(&str, &str) -> Option<bool>;

/// One object a revision wants.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Which object.
    pub entry: InventoryEntry,
    /// The manifest to apply: as written, with the Sync's label and the namespace.
    pub object: Value,
    /// File, relative to the source's root.
    pub file: String,
    /// 1-based document in the file.
    pub document: usize,
}

impl Desired {
    /// A [`SyncError`] about this object.
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> SyncError {
        SyncError {
            file: Some(self.file.clone()),
            document: Some(self.document),
            object: Some(format!("{}/{}", self.entry.kind, self.entry.name)),
            field: field.filter(|f| !f.is_empty()).map(str::to_string),
            message: message.into(),
        }
    }
}

/// `NAMESPACE.NAME`: the value of [`SYNC_LABEL`] on the objects of the Sync.
pub fn label_value(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// A manifest reading problem as a [`SyncError`].
pub fn problem_error(p: &Problem) -> SyncError {
    let (file, document) = match p.place.rsplit_once(": document ") {
        Some((file, rest)) => (file.to_string(), rest.split(',').next().and_then(|d| d.trim().parse().ok())),
        None => (p.place.clone(), None),
    };
    SyncError {
        file: Some(file),
        document,
        object: p.object.clone(),
        field: p.field.clone(),
        message: p.message.clone(),
    }
}

/// Order of kinds in a revision: namespaces, then kinds' definitions, then the rest.
fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        _ => 2,
    }
}

/// The objects `docs` want, in the order they are applied — namespaces, then
/// CustomResourceDefinitions, then by [`WAVE_ANNOTATION`] (lower first), then as
/// written — or every problem found. Objects without a namespace get
/// `default_namespace` when their kind is namespaced. Kinds that a
/// CustomResourceDefinition of the same revision defines count as served.
///
/// # Errors
/// Every manifest without apiVersion, kind or name, of a kind the server does not
/// serve, with a wave that is not an integer, or naming an object another manifest
/// names too; and every problem met reading them.
pub fn desired(
    docs: &[Document],
    problems: &[Problem],
    kinds: KindLookup<'_>,
    sync_label: &str,
    default_namespace: &str,
) -> Result<Vec<Desired>, Vec<SyncError>> {
    let mut errors: Vec<SyncError> = problems.iter().map(problem_error).collect();
    let defined = defined_kinds(docs);
    let mut out: Vec<(u8, i64, usize, Desired)> = Vec::new();
    let mut seen: HashMap<InventoryEntry, (String, usize)> = HashMap::new();
    for (i, doc) in docs.iter().enumerate() {
        let mut problem = |field: Option<&str>, message: String| {
            errors.push(SyncError {
                file: Some(doc.source.clone()),
                document: Some(doc.index),
                object: Some(doc.label()),
                field: field.map(str::to_string),
                message,
            });
        };
        let (Some(api_version), Some(kind)) = (doc.api_version(), doc.kind()) else {
            problem(None, "a manifest needs apiVersion and kind".into());
            continue;
        };
        let Some(name) = doc.name().filter(|n| !n.is_empty()) else {
            problem(Some("metadata.name"), "a manifest needs a name".into());
            continue;
        };
        let namespaced = match kinds(api_version, kind)
            .or_else(|| defined.get(&(api_version.to_string(), kind.to_string())).copied())
        {
            Some(n) => n,
            None => {
                problem(Some("kind"), format!("the server serves no kind {kind} in {api_version}"));
                continue;
            }
        };
        let wave = match doc.value.pointer(&format!("/metadata/annotations/{}", WAVE_ANNOTATION.replace('/', "~1"))) {
            None => 0,
            Some(v) => match v.as_str().and_then(|s| s.trim().parse::<i64>().ok()) {
                Some(w) => w,
                None => {
                    problem(
                        Some(&format!("metadata.annotations.{WAVE_ANNOTATION}")),
                        format!("a sync wave is an integer in a string, not {v}"),
                    );
                    continue;
                }
            },
        };
        let mut object = doc.value.clone();
        let namespace = if namespaced {
            let ns = doc.namespace().filter(|n| !n.is_empty()).unwrap_or(default_namespace).to_string();
            set_path(&mut object, &["metadata", "namespace"], Value::String(ns.clone()));
            Some(ns)
        } else {
            if let Some(Value::Object(meta)) = object.get_mut("metadata") {
                meta.remove("namespace");
            }
            None
        };
        set_path(&mut object, &["metadata", "labels", SYNC_LABEL], Value::String(sync_label.to_string()));
        let entry = InventoryEntry {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace,
            name: name.into(),
        };
        if let Some((file, document)) = seen.get(&entry) {
            problem(None, format!("the same object is in {file}, document {document}: an object has one manifest"));
            continue;
        }
        seen.insert(entry.clone(), (doc.source.clone(), doc.index));
        out.push((rank(kind), wave, i, Desired { entry, object, file: doc.source.clone(), document: doc.index }));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.sort_by_key(|(rank, wave, i, _)| (*rank, *wave, *i));
    Ok(out.into_iter().map(|(.., d)| d).collect())
}

/// Kinds the CustomResourceDefinitions among `docs` define: whether each is namespaced.
fn defined_kinds(docs: &[Document]) -> HashMap<(String, String), bool> {
    let mut out = HashMap::new();
    for doc in docs.iter().filter(|d| d.kind() == Some("CustomResourceDefinition")) {
        let field = |f: &str| doc.value.get("spec").and_then(|s| s.get(f)).and_then(Value::as_str);
        if let (Some(group), Some(version), Some(kind)) = (field("group"), field("version"), field("kind")) {
            out.insert((format!("{group}/{version}"), kind.to_string()), field("scope") != Some("Cluster"));
        }
    }
    out
}

fn set_path(object: &mut Value, path: &[&str], value: Value) {
    let mut at = object;
    for (i, key) in path.iter().enumerate() {
        let Value::Object(map) = at else { return };
        if i + 1 == path.len() {
            map.insert((*key).to_string(), value);
            return;
        }
        at = map.entry((*key).to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
    }
}

/// The dotted paths of the fields of `manifest` whose value `live` does not hold.
/// Maps are compared key by key, everything else whole; numbers by value (`1` and
/// `1.0` are the same).
pub fn drifted_fields(manifest: &Value, live: &Value) -> Vec<String> {
    fn walk(m: &Value, l: Option<&Value>, path: &str, out: &mut Vec<String>) {
        match (m, l) {
            (Value::Object(mm), Some(Value::Object(lm))) => {
                for (k, v) in mm {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(v, lm.get(k), &p, out);
                }
            }
            (_, Some(l)) if same(m, l) => {}
            // A field the manifest leaves empty and the server omits.
            (Value::Null, None) => {}
            _ => out.push(path.to_string()),
        }
    }
    let mut out = Vec::new();
    walk(manifest, Some(live), "", &mut out);
    out
}

/// Equal as JSON, numbers by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// What a sync of one revision does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The transaction: applies in order, then prunes. Empty: nothing to write.
    pub operations: Vec<Operation>,
    /// For each operation, the desired object it applies (`None` for prunes), to
    /// name a refused operation's file and document.
    pub sources: Vec<Option<usize>>,
    /// The inventory once it is applied, sorted.
    pub inventory: Vec<InventoryEntry>,
    /// Synced objects that differ from their manifests.
    pub drift: Vec<Drift>,
    /// Objects of the old inventory the new revision no longer has, deleted when
    /// pruning.
    pub pruned: Vec<InventoryEntry>,
}

/// The plan for `desired` against the live objects (by entry; only those the
/// Sync's label selects, plus any the revision names).
///
/// - A new revision (`changed`) applies every object: the server validates all of
///   them and writes only what changes.
/// - The same revision applies nothing unless objects were changed or deleted by
///   hand: that drift is reported, and applied back with `self_heal`.
/// - With `prune`, objects of `inventory` that `desired` no longer has are deleted,
///   only while they still carry the Sync's label (what someone else took over is
///   left alone).
pub fn plan(
    desired: &[Desired],
    live: &HashMap<InventoryEntry, Value>,
    inventory: &[InventoryEntry],
    changed: bool,
    spec: &SyncSpec,
    sync_label: &str,
) -> Plan {
    let mut plan = Plan::default();
    let wanted: BTreeSet<&InventoryEntry> = desired.iter().map(|d| &d.entry).collect();
    for (i, d) in desired.iter().enumerate() {
        let fields = match live.get(&d.entry) {
            Some(l) => drifted_fields(&d.object, l),
            None => vec!["(deleted)".to_string()],
        };
        let was_synced = inventory.binary_search(&d.entry).is_ok() || inventory.contains(&d.entry);
        if !changed && was_synced && !fields.is_empty() {
            plan.drift.push(Drift { object: d.entry.clone(), fields: fields.clone() });
        }
        let apply = changed || (!fields.is_empty() && (spec.self_heal || !was_synced));
        if apply {
            plan.operations.push(Operation::apply(d.object.clone()));
            plan.sources.push(Some(i));
        }
    }
    let gone: Vec<&InventoryEntry> = inventory.iter().filter(|e| !wanted.contains(e)).collect();
    if spec.prune {
        for e in gone {
            plan.pruned.push(e.clone());
            if !live.contains_key(e) {
                continue;
            }
            plan.operations.push(Operation::delete(Target {
                api_version: e.api_version.clone(),
                kind: e.kind.clone(),
                namespace: e.namespace.clone(),
                name: e.name.clone(),
                uid: None,
                label: Some(format!("{SYNC_LABEL}={sync_label}")),
            }));
            plan.sources.push(None);
        }
        plan.inventory = wanted.into_iter().cloned().collect();
    } else {
        // Without pruning, what a revision dropped stays in the cluster and in the
        // inventory: pruning later still knows it was the Sync's.
        let mut all: BTreeSet<InventoryEntry> = wanted.into_iter().cloned().collect();
        all.extend(gone.into_iter().cloned());
        plan.inventory = all.into_iter().collect();
    }
    plan
}

/// Health of the services and jobs among `live`: a service is Healthy once it runs
/// its instances and its deployment is complete, a job unless its last run failed.
pub fn health(live: &HashMap<InventoryEntry, Value>, inventory: &[InventoryEntry]) -> Vec<ObjectHealth> {
    let mut out = Vec::new();
    for e in inventory {
        let Some(obj) = live.get(e) else { continue };
        let (health, message) = match e.kind.as_str() {
            "Service" => service_health(obj),
            "Job" => match obj.pointer("/status/lastResult").and_then(Value::as_str) {
                Some("Failed") => ("Failed", Some(format!("its last run {} failed", last_run(obj)))),
                _ => ("Healthy", None),
            },
            _ => continue,
        };
        out.push(ObjectHealth { object: e.clone(), health: health.into(), message });
    }
    out
}

fn last_run(job: &Value) -> String {
    job.pointer("/status/lastRun").and_then(Value::as_str).unwrap_or("?").to_string()
}

fn service_health(obj: &Value) -> (&'static str, Option<String>) {
    let n = |p: &str| obj.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    let observed = obj.pointer("/status/observedGeneration").and_then(Value::as_i64);
    if observed.is_none() || observed < generation {
        return ("Progressing", Some("the services controller has not seen this spec yet".into()));
    }
    let want = n("/spec/instances");
    let running = n("/status/running");
    let deploying = obj.pointer("/status/deployment/phase").and_then(Value::as_str) == Some("InProgress");
    if running >= want && !deploying {
        return ("Healthy", None);
    }
    let mut message = format!("{running} of {want} instances running");
    if deploying {
        message.push_str(", a deployment in progress");
    }
    if let Some(w) = obj.pointer("/status/waiting/message").and_then(Value::as_str) {
        message.push_str(&format!("; {w}"));
    }
    ("Progressing", Some(message))
}

/// What the Sync needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Suspended: nothing until `spec.suspend` is false.
    Suspended,
    /// Sync now.
    Sync,
    /// Waiting for health: check again at the time, or when something changes.
    CheckHealth,
    /// Nothing until then.
    WaitUntil(DateTime<Utc>),
}

/// When the Sync is due: now when its spec changed since the last sync, a sync was
/// requested, or the interval passed since the last; health is checked while its
/// wait lasts.
pub fn next(
    spec: &SyncSpec,
    status: &SyncStatus,
    generation: i64,
    requested: Option<&str>,
    last_sync: Option<DateTime<Utc>>,
    waiting_health: bool,
    now: DateTime<Utc>,
) -> Next {
    if spec.suspend {
        return Next::Suspended;
    }
    if status.observed_generation != Some(generation)
        || requested.is_some_and(|r| status.last_handled_request.as_deref() != Some(r))
    {
        return Next::Sync;
    }
    let Some(due) = interval_due(spec, last_sync) else { return Next::Sync };
    if due <= now {
        return Next::Sync;
    }
    if waiting_health {
        return Next::CheckHealth;
    }
    Next::WaitUntil(due)
}

/// When the interval since `last_sync` ends (none before a first sync). The round
/// loop also sleeps until then after a sync: a sync that changed nothing writes no
/// status, so no watch event would wake it.
pub fn interval_due(spec: &SyncSpec, last_sync: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    last_sync.map(|last| last + chrono::Duration::seconds(spec.interval() as i64))
}

/// Which objects of the desired set and the inventory the sync must see live, by
/// `(apiVersion, kind)`.
pub fn kinds_to_read(desired: &[Desired], inventory: &[InventoryEntry]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for e in desired.iter().map(|d| &d.entry).chain(inventory) {
        *out.entry((e.api_version.clone(), e.kind.clone())).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests;
