//! Objects as etcd holds them: JSON without `resourceVersion`, which is the key's
//! `mod_revision`.

use std::sync::Arc;

use corral_store::{Error, Key, Result, StoredObject};
use serde_json::Value;

/// The revision given to objects decided before their transaction commits; real
/// etcd revisions start at 1, so it cannot be mistaken for one.
pub(crate) const PENDING: u64 = 0;

/// The object stored at `key` with `value`, as written at `revision`.
pub(crate) fn decode(key: Key, revision: u64, value: &[u8]) -> Result<StoredObject> {
    let mut v: Value = serde_json::from_slice(value).map_err(|e| Error::Corrupt(format!("{key}: {e}")))?;
    set_revision(&mut v, revision).map_err(|e| Error::Corrupt(format!("{key}: {e}")))?;
    StoredObject::from_value(key, revision, &v)
}

/// The bytes to store for `o`: its JSON without `resourceVersion`.
pub(crate) fn encode(o: &StoredObject) -> Result<Vec<u8>> {
    let mut v = o.value()?;
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&v).map_err(|e| Error::Invalid(e.to_string()))
}

/// `o` as written at `revision`, if it was decided before its revision was known;
/// as it is otherwise.
pub(crate) fn stamp(o: Arc<StoredObject>, revision: u64) -> Result<Arc<StoredObject>> {
    if o.revision != PENDING {
        return Ok(o);
    }
    let mut v = o.value()?;
    set_revision(&mut v, revision).map_err(Error::Invalid)?;
    let mut stamped = StoredObject::from_value(o.key.clone(), revision, &v)?;
    // The labels did not change: keep sharing them.
    stamped.labels = o.labels.clone();
    Ok(Arc::new(stamped))
}

fn set_revision(v: &mut Value, revision: u64) -> std::result::Result<(), String> {
    let meta = v
        .as_object_mut()
        .ok_or("an object must be a JSON object")?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()
        .ok_or("metadata must be a JSON object")?;
    meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    Ok(())
}

/// The first key after every key starting with `prefix` (etcd's range end of a prefix).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_bytes_carry_no_revision_and_reading_puts_it_back() {
        let key = Key::namespaced("corral.dev/configmaps", "default", "a");
        let v = json!({"metadata": {"name": "a", "resourceVersion": "0", "labels": {"app": "web"}}, "spec": {}});
        let o = StoredObject::from_value(key.clone(), PENDING, &v).unwrap();
        let bytes = encode(&o).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let back = decode(key, 42, &bytes).unwrap();
        assert_eq!(back.revision, 42);
        assert_eq!(back.value().unwrap()["metadata"]["resourceVersion"], "42");
        assert_eq!(back.labels.get("app").map(String::as_str), Some("web"));
        let stamped = stamp(Arc::new(o), 7).unwrap();
        assert_eq!(
            (stamped.revision, stamped.value().unwrap()["metadata"]["resourceVersion"].clone()),
            (7, json!("7"))
        );
    }

    #[test]
    fn a_prefix_ends_at_the_next_byte_string() {
        assert_eq!(prefix_end(b"/corral/a\0"), b"/corral/a\x01");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
