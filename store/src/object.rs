//! Objects as the store holds them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::key::Key;

/// An object's labels, shared by every copy the store keeps of them: its revisions
/// in the history and the index mostly carry the same labels, held once.
pub type Labels = Arc<BTreeMap<String, String>>;

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
        Arc::new(
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

    /// As [`StoredObject::from_value`], for a new state of `prev`: labels that did
    /// not change stay the ones `prev` holds.
    pub(crate) fn from_value_after(prev: &StoredObject, key: Key, revision: u64, v: &Value) -> Result<Self> {
        let mut o = Self::from_value(key, revision, v)?;
        if o.labels == prev.labels {
            o.labels = prev.labels.clone();
        }
        Ok(o)
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
        Ok((StoredObject { labels: Arc::new(head.metadata.labels), key, revision, json }, deleting))
    }
}
