//! Bounds on what one PATCH may cost: the number of JSON patch operations, the bytes
//! its copies add, and the size of the object a patch produces.
//!
//! A JSON patch of a few dozen `copy` operations, each copying the document into
//! itself, doubles the object at every step: applied in full before any check, 2 KB of
//! request grow into gigabytes. Here what each copy adds is counted before it is
//! applied, so such a patch stops once its copies pass the object limit, having done
//! work proportional to the limit, not to the growth.

use std::io;

use json_patch::PatchOperation;
use serde_json::Value;

use super::MAX_BODY_BYTES;

/// Operations one JSON patch may hold (as Kubernetes allows).
pub(crate) const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The largest object, as serialized JSON, that a write may store: the request body
/// limit, so that every stored object can be read, changed and sent back whole.
pub(crate) const MAX_OBJECT_BYTES: usize = MAX_BODY_BYTES;

/// Why a JSON patch was refused or failed.
#[derive(Debug, PartialEq)]
pub(crate) enum JsonPatchFailure {
    /// More operations than [`MAX_JSON_PATCH_OPERATIONS`].
    TooManyOperations(usize),
    /// Operation `index` copies more than [`MAX_OBJECT_BYTES`] in all.
    TooLarge { index: usize, op: &'static str },
    /// Operation `index` failed (a path that does not exist, a failed `test`...).
    Failed { index: usize, op: &'static str, path: String, reason: String },
}

/// Applies `ops` to `doc` one at a time. `copy` is the one operation that can grow
/// the object beyond what the request carried, so the bytes it copies are counted
/// (as Kubernetes' accumulated copy size), and a patch whose copies together exceed
/// [`MAX_OBJECT_BYTES`] stops at the first copy past it. What `add` and `replace`
/// insert is part of the body, itself bounded; the size of the result is checked
/// exactly before it is written.
pub(crate) fn apply_json_patch(doc: &mut Value, ops: &[PatchOperation]) -> Result<(), JsonPatchFailure> {
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(JsonPatchFailure::TooManyOperations(ops.len()));
    }
    let mut copied = 0usize;
    for (index, op) in ops.iter().enumerate() {
        let name = op_name(op);
        // A missing source fails below, when the operation is applied.
        if let PatchOperation::Copy(c) = op
            && let Some(v) = doc.pointer(c.from.as_str())
        {
            let room = MAX_OBJECT_BYTES - copied;
            match json_size_within(v, room) {
                Some(n) => copied += n,
                None => return Err(JsonPatchFailure::TooLarge { index, op: name }),
            }
        }
        json_patch::patch(doc, std::slice::from_ref(op)).map_err(|e| JsonPatchFailure::Failed {
            index,
            op: name,
            path: e.path.as_str().to_string(),
            reason: e.kind.to_string(),
        })?;
    }
    Ok(())
}

/// The serialized size of `v`, or `None` as soon as it exceeds `limit`: measuring a
/// huge value costs no more than the limit.
pub(crate) fn json_size_within(v: &Value, limit: usize) -> Option<usize> {
    let mut counter = Counter { count: 0, limit };
    serde_json::to_writer(&mut counter, v).ok().map(|()| counter.count)
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// Counts bytes written and fails past `limit`.
struct Counter {
    count: usize,
    limit: usize,
}

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.count += buf.len();
        if self.count > self.limit {
            return Err(io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ops(v: Value) -> Vec<PatchOperation> {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("a JSON patch: {e}"))
    }

    fn doubling(n: usize) -> Vec<PatchOperation> {
        ops(Value::Array(
            (0..n).map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/d{i}")})).collect(),
        ))
    }

    #[test]
    fn a_doubling_patch_stops_at_the_limit_without_growing_past_it() {
        let mut doc = json!({"metadata": {"name": "a"}, "data": {"x": "y".repeat(1000)}});
        let err = apply_json_patch(&mut doc, &doubling(40));
        // 1 KB doubles past 3 MiB at the twelfth copy.
        assert_eq!(err, Err(JsonPatchFailure::TooLarge { index: 11, op: "copy" }));
        assert!(json_size_within(&doc, 2 * MAX_OBJECT_BYTES).is_some(), "the document stayed near the limit");
    }

    #[test]
    fn a_patch_within_bounds_applies_in_order() {
        let mut doc = json!({"data": {"x": "1"}});
        let p = ops(json!([
            {"op": "copy", "from": "/data/x", "path": "/data/y"},
            {"op": "replace", "path": "/data/x", "value": "2"},
            {"op": "move", "from": "/data/y", "path": "/data/z"},
            {"op": "test", "path": "/data/z", "value": "1"},
            {"op": "remove", "path": "/data/x"},
        ]));
        assert_eq!(apply_json_patch(&mut doc, &p), Ok(()));
        assert_eq!(doc, json!({"data": {"z": "1"}}));
    }

    #[test]
    fn a_failing_operation_is_named_by_its_own_index() {
        let mut doc = json!({"data": {}});
        let p = ops(json!([
            {"op": "add", "path": "/data/a", "value": 1},
            {"op": "remove", "path": "/data/missing"},
        ]));
        match apply_json_patch(&mut doc, &p) {
            Err(JsonPatchFailure::Failed { index, op, path, .. }) => {
                assert_eq!((index, op, path.as_str()), (1, "remove", "/data/missing"));
            }
            other => panic!("expected a failed operation, got {other:?}"),
        }
    }

    #[test]
    fn too_many_operations_are_refused_before_any_is_applied() {
        let mut doc = json!({"data": {}});
        let p = ops(Value::Array(
            (0..=MAX_JSON_PATCH_OPERATIONS).map(|_| json!({"op": "add", "path": "/data/a", "value": 1})).collect(),
        ));
        assert_eq!(
            apply_json_patch(&mut doc, &p),
            Err(JsonPatchFailure::TooManyOperations(MAX_JSON_PATCH_OPERATIONS + 1))
        );
        assert_eq!(doc, json!({"data": {}}));
    }

    #[test]
    fn sizes_are_measured_only_up_to_the_limit() {
        let v = json!({"a": "b".repeat(100)});
        assert_eq!(json_size_within(&v, 1000), Some(108));
        assert_eq!(json_size_within(&v, 50), None);
    }
}
