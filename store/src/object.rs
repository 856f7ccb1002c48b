//! Objects as the store holds them.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::key::Key;

/// An object's labels, shared by every copy the store keeps of them: its revisions
/// in the history and the index mostly carry the same labels, held once.
pub type Labels = Arc<BTreeMap<String, String>>;

/// Most distinct label sets remembered for sharing; past it the set starts afresh
/// (what was shared stays shared).
const INTERNED_MAX: usize = 4096;

/// Label sets met lately, to be shared by every object that carries the same: the
/// instances of one service, the runs of one job, the tasks of one run are labelled
/// alike, and 100,000 tasks each holding a map of their own took about 58 MB of the
/// index (a map's node alone is about 540 bytes, however few labels it holds).
static INTERNED: LazyLock<Mutex<HashSet<Labels>>> = LazyLock::new(Mutex::default);

/// The shared copy of `labels`.
pub(crate) fn intern(labels: BTreeMap<String, String>) -> Labels {
    let mut interned = INTERNED.lock();
    if let Some(held) = interned.get(&labels) {
        return held.clone();
    }
    if interned.len() >= INTERNED_MAX {
        interned.clear();
    }
    let labels = Arc::new(labels);
    interned.insert(labels.clone());
    labels
}

/// An object at one revision: its serialized JSON (ready to send as is) and the
/// metadata the store indexes. Immutable; shared by the cache, lists and watches.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredObject {
    /// Where it lives.
    pub key: Key,
    /// Revision of the write that produced this state (its `resourceVersion`).
    pub revision: u64,
    /// Its labels, for selectors.
    pub labels: Labels,
    /// The whole object as compact JSON.
    pub json: Bytes,
}

impl StoredObject {
    /// The object as a JSON value.
    pub fn value(&self) -> Result<Value> {
        serde_json::from_slice(&self.json).map_err(|e| Error::Corrupt(format!("{}: {e}", self.key)))
    }

    /// Parses labels out of an object.
    pub(crate) fn labels_of(v: &Value) -> Labels {
        intern(
            v.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default(),
        )
    }

    /// The object `v` at `key` and `revision`, serialized; its labels parsed out.
    /// `v` should carry `revision` as its `resourceVersion`.
    ///
    /// # Errors
    /// `Invalid` if `v` does not serialize.
    pub fn from_value(key: Key, revision: u64, v: &Value) -> Result<Self> {
        let json = serde_json::to_vec(v).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(StoredObject { key, revision, labels: Self::labels_of(v), json: Bytes::from(json) })
    }

    pub(crate) fn from_json(key: Key, json: Bytes) -> Result<Self> {
        Self::decode(key, json).map(|(o, _)| o)
    }

    /// Decodes an object and whether it has `deletionTimestamp`.
    pub(crate) fn decode(key: Key, json: Bytes) -> Result<(Self, bool)> {
        // Only two fields are needed; deserializing just those skips the rest of the
        // document without building it, which is most of the cost of a replay.
        #[derive(serde::Deserialize)]
        struct Head {
            metadata: HeadMeta,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct HeadMeta {
            resource_version: Option<String>,
            #[serde(default)]
            labels: BTreeMap<String, String>,
            #[serde(default)]
            deletion_timestamp: Option<String>,
        }
        let head: Head = serde_json::from_slice(&json).map_err(|e| Error::Corrupt(format!("{key}: {e}")))?;
        let revision = head
            .metadata
            .resource_version
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Corrupt(format!("{key}: no resourceVersion")))?;
        let deleting = head.metadata.deletion_timestamp.is_some();
        Ok((StoredObject { labels: intern(head.metadata.labels), key, revision, json }, deleting))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn task(name: &str, labels: Value) -> StoredObject {
        let v = json!({"metadata": {"name": name, "namespace": "ns", "labels": labels}});
        StoredObject::from_value(Key::namespaced("corral.dev/tasks", "ns", name), 1, &v).expect("serializes")
    }

    #[test]
    fn objects_labelled_alike_share_one_label_map() {
        let a = task("web-1", json!({"corral.dev/service": "web", "corral.dev/revision": "3"}));
        let b = task("web-2", json!({"corral.dev/revision": "3", "corral.dev/service": "web"}));
        let c = task("db-1", json!({"corral.dev/service": "db", "corral.dev/revision": "3"}));
        assert!(Arc::ptr_eq(&a.labels, &b.labels));
        assert!(!Arc::ptr_eq(&a.labels, &c.labels));
        assert_eq!(c.labels.get("corral.dev/service").map(String::as_str), Some("db"));
    }

    /// A store that opens decodes every object it holds: they share too.
    #[test]
    fn decoded_objects_share_labels_with_written_ones() {
        let v = json!({"metadata": {"name": "a", "resourceVersion": "7", "labels": {"tier": "decoded-alike"}}});
        let written = StoredObject::from_value(Key::namespaced("corral.dev/tasks", "ns", "a"), 7, &v).expect("ok");
        let read = StoredObject::from_json(written.key.clone(), written.json.clone()).expect("decodes");
        assert_eq!(read.revision, 7);
        assert!(Arc::ptr_eq(&written.labels, &read.labels));
    }
}
