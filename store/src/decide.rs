//! How a write changes an object: the decision logic every backend shares.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::key::Key;
use crate::object::StoredObject;
use crate::storage::{DeleteOutcome, TxnOutcome, UpdateOutcome};

/// One write to decide.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// As [`crate::Storage::create`].
    Create {
        /// Where.
        key: Key,
        /// The object as the client sent it.
        object: Value,
    },
    /// As [`crate::Storage::update`], or [`crate::Storage::update_status`] when
    /// `status_only`.
    Update {
        /// Where.
        key: Key,
        /// The object as the client sent it.
        object: Value,
        /// Fail unless the object is at this revision.
        expected: Option<u64>,
        /// Replace only the status.
        status_only: bool,
    },
    /// As [`crate::Storage::delete`].
    Delete {
        /// Where.
        key: Key,
        /// Fail unless the object is at this revision.
        expected: Option<u64>,
    },
}

impl Write {
    /// The key it writes.
    pub fn key(&self) -> &Key {
        match self {
            Write::Create { key, .. } | Write::Update { key, .. } | Write::Delete { key, .. } => key,
        }
    }
}

impl From<crate::storage::TxnOp> for Write {
    fn from(op: crate::storage::TxnOp) -> Self {
        use crate::storage::TxnOp;
        match op {
            TxnOp::Create { key, object } => Write::Create { key, object },
            TxnOp::Update { key, object, expected } => Write::Update { key, object, expected, status_only: false },
            TxnOp::Delete { key, expected } => Write::Delete { key, expected },
        }
    }
}

/// One decided write: the key's new state and its event.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The key written.
    pub key: Key,
    /// Its new state; `None`: it is gone.
    pub new: Option<Arc<StoredObject>>,
    /// The event the write makes.
    pub event: Arc<Event>,
    /// Whether the new state has `deletionTimestamp` (finalizers pending).
    pub deleting: bool,
}

/// Decides one write against the key's current state, as if it took revision `rev`:
/// what the caller is answered and, unless nothing changes, the change to commit.
/// `now` is the timestamp given to `creationTimestamp` and `deletionTimestamp`.
///
/// Every backend decides through this one function, so that server-owned metadata,
/// generations, status-only writes, no-op updates, finalizers and deletion behave
/// the same whatever holds the data.
///
/// # Errors
/// `AlreadyExists`, `NotFound`, `Conflict` (against `current`'s revision) and
/// `Invalid`, as the [`crate::Storage`] calls document them.
pub fn decide(
    write: Write,
    current: Option<Arc<StoredObject>>,
    rev: u64,
    now: &str,
) -> Result<(TxnOutcome, Option<Change>)> {
    match write {
        Write::Create { key, object } => {
            if current.is_some() {
                return Err(Error::AlreadyExists(key));
            }
            let mut obj = object;
            let meta = meta_mut(&mut obj)?;
            meta.insert("name".into(), Value::String(key.name.clone()));
            if key.namespace.is_empty() {
                meta.remove("namespace");
            } else {
                meta.insert("namespace".into(), Value::String(key.namespace.clone()));
            }
            meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), Value::String(now.to_string()));
            meta.insert("generation".into(), Value::from(1));
            meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
            meta.remove("deletionTimestamp");
            let stored = Arc::new(StoredObject::from_value(key.clone(), rev, &obj)?);
            let change = change(key, Some(stored.clone()), EventType::Added, stored.clone(), rev);
            Ok((TxnOutcome::Created(stored), Some(change)))
        }
        Write::Update { key, object, expected, status_only } => {
            let cur = current.ok_or_else(|| Error::NotFound(key.clone()))?;
            check_expected(&key, expected, &cur)?;
            if status_only {
                // The most frequent write of all (every report of every task): only the
                // status and the revision change, so only they are decoded and encoded;
                // the rest of the object is copied as stored.
                let Some(new) = with_new_status(&cur, &key, status_of(object), rev)? else {
                    return Ok((TxnOutcome::Updated(UpdateOutcome::Unchanged(cur)), None));
                };
                let stored = Arc::new(new.object);
                if new.deleting && !new.finalized {
                    let c = change(key, None, EventType::Deleted, stored.clone(), rev);
                    return Ok((TxnOutcome::Updated(UpdateOutcome::Deleted(stored)), Some(c)));
                }
                let mut c = change(key, Some(stored.clone()), EventType::Modified, stored.clone(), rev);
                c.deleting = new.deleting;
                return Ok((TxnOutcome::Updated(UpdateOutcome::Updated(stored)), Some(c)));
            }
            let old = cur.value()?;
            let mut new = {
                let mut new = with_server_fields(&key, object, &old)?;
                if desired_part(&new) != desired_part(&old) {
                    let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
                    meta_mut(&mut new)?.insert("generation".into(), Value::from(generation + 1));
                }
                if new == old {
                    return Ok((TxnOutcome::Updated(UpdateOutcome::Unchanged(cur)), None));
                }
                new
            };
            meta_mut(&mut new)?.insert("resourceVersion".into(), Value::String(rev.to_string()));
            let stored = Arc::new(StoredObject::from_value(key.clone(), rev, &new)?);
            if is_deleting(&new) && finalizers(&new).is_empty() {
                let c = change(key, None, EventType::Deleted, stored.clone(), rev);
                return Ok((TxnOutcome::Updated(UpdateOutcome::Deleted(stored)), Some(c)));
            }
            let mut c = change(key, Some(stored.clone()), EventType::Modified, stored.clone(), rev);
            c.deleting = is_deleting(&new);
            Ok((TxnOutcome::Updated(UpdateOutcome::Updated(stored)), Some(c)))
        }
        Write::Delete { key, expected } => {
            let cur = current.ok_or_else(|| Error::NotFound(key.clone()))?;
            check_expected(&key, expected, &cur)?;
            let mut obj = cur.value()?;
            if !finalizers(&obj).is_empty() {
                if is_deleting(&obj) {
                    return Ok((TxnOutcome::Deleted(DeleteOutcome::Finalizing(cur)), None));
                }
                let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
                let meta = meta_mut(&mut obj)?;
                meta.insert("deletionTimestamp".into(), Value::String(now.to_string()));
                meta.insert("generation".into(), Value::from(generation + 1));
                meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
                let stored = Arc::new(StoredObject::from_value(key.clone(), rev, &obj)?);
                let mut c = change(key, Some(stored.clone()), EventType::Modified, stored.clone(), rev);
                c.deleting = true;
                return Ok((TxnOutcome::Deleted(DeleteOutcome::Finalizing(stored)), Some(c)));
            }
            meta_mut(&mut obj)?.insert("resourceVersion".into(), Value::String(rev.to_string()));
            let stored = Arc::new(StoredObject::from_value(key.clone(), rev, &obj)?);
            let c = change(key, None, EventType::Deleted, stored.clone(), rev);
            Ok((TxnOutcome::Deleted(DeleteOutcome::Deleted(stored)), Some(c)))
        }
    }
}

fn change(
    key: Key,
    new: Option<Arc<StoredObject>>,
    event_type: EventType,
    object: Arc<StoredObject>,
    revision: u64,
) -> Change {
    Change { key, new, event: Arc::new(Event { revision, event_type, object }), deleting: false }
}

pub(crate) fn check_expected(key: &Key, expected: Option<u64>, cur: &StoredObject) -> Result<()> {
    match expected {
        Some(e) if e != cur.revision => Err(Error::Conflict { key: key.clone(), expected: e, actual: cur.revision }),
        _ => Ok(()),
    }
}

fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>> {
    let o = obj.as_object_mut().ok_or_else(|| Error::Invalid("an object must be a JSON object".into()))?;
    o.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| Error::Invalid("metadata must be a JSON object".into()))
}

/// Everything that states desired state: all but metadata and status.
fn desired_part(v: &Value) -> Vec<(&String, &Value)> {
    v.as_object()
        .map(|m| m.iter().filter(|(k, _)| k.as_str() != "metadata" && k.as_str() != "status").collect())
        .unwrap_or_default()
}

fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

fn finalizers(v: &Value) -> Vec<Value> {
    v.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The status an incoming object carries; none for a null one.
fn status_of(incoming: Value) -> Option<Value> {
    match incoming {
        Value::Object(mut o) => o.remove("status").filter(|s| !s.is_null()),
        _ => None,
    }
}

/// A new state of an object decided by [`with_new_status`].
struct StatusWritten {
    object: StoredObject,
    /// Its deletion is pending.
    deleting: bool,
    /// It has finalizers left.
    finalized: bool,
}

/// `cur` at revision `rev` with `status` in place of its own (none: without one);
/// `None` when it already has that status. Only the top level is split, and only the
/// status and metadata decoded: the rest (a task's spec, most of it) is copied as
/// stored, in the order a whole object is encoded in (its fields sorted).
fn with_new_status(cur: &StoredObject, key: &Key, status: Option<Value>, rev: u64) -> Result<Option<StatusWritten>> {
    use serde_json::value::RawValue;
    let corrupt = |e: serde_json::Error| Error::Corrupt(format!("{key}: {e}"));
    let mut top: std::collections::BTreeMap<String, &RawValue> = serde_json::from_slice(&cur.json).map_err(corrupt)?;
    let old: Option<Value> = match top.get("status") {
        Some(raw) => Some(serde_json::from_str::<Value>(raw.get()).map_err(corrupt)?).filter(|s| !s.is_null()),
        None => None,
    };
    if old == status {
        return Ok(None);
    }
    // Metadata is split at its top level too: only the revision changes, and labels,
    // owners and annotations are copied as stored.
    let mut meta: std::collections::BTreeMap<String, &RawValue> = match top.get("metadata") {
        Some(raw) => {
            serde_json::from_str(raw.get()).map_err(|_| Error::Invalid("metadata must be a JSON object".into()))?
        }
        None => Default::default(),
    };
    let deleting = meta.get("deletionTimestamp").is_some_and(|t| t.get() != "null");
    let finalized = match meta.get("finalizers") {
        Some(raw) => {
            serde_json::from_str::<Value>(raw.get()).map_err(corrupt)?.as_array().is_some_and(|f| !f.is_empty())
        }
        None => false,
    };
    let invalid = |e: serde_json::Error| Error::Invalid(e.to_string());
    let revision = serde_json::value::to_raw_value(&rev.to_string()).map_err(invalid)?;
    meta.insert("resourceVersion".into(), &revision);
    let meta = serde_json::value::to_raw_value(&meta).map_err(invalid)?;
    let status = status.map(|s| serde_json::value::to_raw_value(&s)).transpose().map_err(invalid)?;
    // The new JSON's length, near enough: the buffer is made that big at once, as
    // the newest events are bounded by their length, not by what a doubling buffer
    // would have reserved behind it.
    let old_len = |k: &str| top.get(k).map_or(0, |r| r.get().len());
    let size = cur.json.len() - old_len("metadata") - old_len("status")
        + meta.get().len()
        + status.as_ref().map_or(0, |s| s.get().len() + "\"status\":,".len());
    top.insert("metadata".into(), &meta);
    match &status {
        Some(s) => top.insert("status".into(), s),
        None => top.remove("status"),
    };
    let mut json = Vec::with_capacity(size + 16);
    serde_json::to_writer(&mut json, &top).map_err(invalid)?;
    let object = StoredObject { key: key.clone(), revision: rev, labels: cur.labels.clone(), json: json.into() };
    Ok(Some(StatusWritten { object, deleting, finalized }))
}

/// The incoming object with the fields the server owns taken from the old one: its
/// status (written only through the status path), identity and deletion state.
fn with_server_fields(key: &Key, incoming: Value, old: &Value) -> Result<Value> {
    let mut new = incoming;
    {
        let o = new.as_object_mut().ok_or_else(|| Error::Invalid("an object must be a JSON object".into()))?;
        match old.get("status") {
            Some(s) => o.insert("status".into(), s.clone()),
            None => o.remove("status"),
        };
    }
    let meta = meta_mut(&mut new)?;
    meta.insert("name".into(), Value::String(key.name.clone()));
    if key.namespace.is_empty() {
        meta.remove("namespace");
    } else {
        meta.insert("namespace".into(), Value::String(key.namespace.clone()));
    }
    for f in ["uid", "creationTimestamp", "generation", "deletionTimestamp", "resourceVersion"] {
        match old.pointer(&format!("/metadata/{f}")) {
            Some(v) => meta.insert(f.into(), v.clone()),
            None => meta.remove(f),
        };
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What a status write makes of `object`, against the whole object decoded, the
    /// status put in and the revision set: the same bytes.
    fn same_as_whole(object: Value) -> StatusWritten {
        let key = Key::namespaced("corral.dev/tasks", "ns", "t");
        let cur = StoredObject::from_value(key.clone(), 7, &object).expect("stores");
        let status = json!({"phase": "RUNNING", "message": "a \"quoted\" word"});
        let written = with_new_status(&cur, &key, Some(status.clone()), 8).expect("writes").expect("a change");
        let mut whole = object;
        whole["status"] = status;
        whole["metadata"]["resourceVersion"] = json!("8");
        assert_eq!(written.object.json, serde_json::to_vec(&whole).expect("encodes"));
        assert_eq!(written.object.value().expect("decodes"), whole);
        written
    }

    #[test]
    fn a_status_write_changes_only_the_status_and_the_revision() {
        let meta = json!({
            "name": "t", "namespace": "ns", "uid": "u", "resourceVersion": "7", "generation": 2,
            "labels": {"z": "1", "a": "é\u{1}"}, "annotations": {"note": "{\"not\":\"metadata\"}"},
            "ownerReferences": [{"kind": "Run", "name": "r", "uid": "o"}],
        });
        let w = same_as_whole(json!({"metadata": meta, "spec": {"nodeName": "n"}, "status": {"phase": "STAGED"}}));
        assert!(!w.deleting && !w.finalized);

        let mut m = meta.clone();
        m["finalizers"] = json!(["corral.dev/agent"]);
        m["deletionTimestamp"] = json!("2026-12-07T00:00:00Z");
        let w = same_as_whole(json!({"metadata": m, "spec": {}}));
        assert!(w.deleting && w.finalized, "deleting, with a finalizer left");

        let mut m = meta;
        m["finalizers"] = json!([]);
        m["deletionTimestamp"] = Value::Null;
        let w = same_as_whole(json!({"metadata": m, "spec": {}}));
        assert!(!w.deleting && !w.finalized, "a null deletion and no finalizers");
    }

    #[test]
    fn the_same_status_again_is_no_change() {
        let key = Key::namespaced("corral.dev/tasks", "ns", "t");
        let object = json!({"metadata": {"name": "t"}, "status": {"phase": "RUNNING"}});
        let cur = StoredObject::from_value(key.clone(), 3, &object).expect("stores");
        assert!(with_new_status(&cur, &key, Some(json!({"phase": "RUNNING"})), 4).expect("decides").is_none());
    }
}
