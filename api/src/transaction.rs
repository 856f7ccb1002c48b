//! Multi-object writes the server commits in one store transaction:
//! `POST /transactions` (query `dryRun=All`, `fieldManager=NAME`, `force=true`).
//!
//! Every operation is authorized and validated first, as its single request would be;
//! if any fails, nothing is written and the answer names each failing operation, its
//! object and field. Otherwise every write is committed at once, in the order given
//! (so watchers see them in that order, each with its own revision). An apply or an
//! update that would not change the live object writes nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The path of the endpoint.
pub const TRANSACTIONS_PATH: &str = "/transactions";

/// Most operations in one transaction.
pub const MAX_OPERATIONS: usize = 20_000;

/// What one operation does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Verb {
    /// Server-side apply of `object` as the transaction's field manager (create when
    /// absent).
    Apply,
    /// Create `object`; fails if it exists.
    Create,
    /// Replace `object`; with `metadata.resourceVersion`, only if it is still that.
    Update,
    /// Delete the object `target` names (absent is not an error: `outcome` says so).
    Delete,
}

/// The object a delete names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// `group/version`.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its namespace, for namespaced kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Delete only if its uid is still this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Delete only if it still carries this label (`key=value`): a prune deletes only
    /// what is still marked as its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// What it does.
    pub verb: Verb,
    /// The manifest, for apply, create and update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// The object, for delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

impl Operation {
    /// Apply `object`.
    pub fn apply(object: Value) -> Self {
        Operation { verb: Verb::Apply, object: Some(object), target: None }
    }

    /// Create `object`.
    pub fn create(object: Value) -> Self {
        Operation { verb: Verb::Create, object: Some(object), target: None }
    }

    /// Delete `target`.
    pub fn delete(target: Target) -> Self {
        Operation { verb: Verb::Delete, object: None, target: Some(target) }
    }
}

/// The request body.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Transaction {
    /// The operations, committed in this order.
    pub operations: Vec<Operation>,
}

/// What became of one operation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// It did not exist and was created.
    Created,
    /// It existed and was changed.
    Configured,
    /// It existed and the operation would not change it: nothing was written.
    Unchanged,
    /// It was deleted (or, with finalizers, marked for deletion).
    Deleted,
    /// A delete found nothing to delete (or an object no longer matching its
    /// uid or label, left alone).
    Absent,
}

/// One operation's result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationResult {
    /// What became of it.
    pub outcome: Outcome,
    /// The object as stored after the transaction (as it would be, on a dry run);
    /// none for deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
}

/// The answer of a transaction that was committed (or, on a dry run, would be).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransactionResult {
    /// The store's revision after it (unchanged when nothing was written).
    pub revision: u64,
    /// Objects written.
    pub writes: u64,
    /// One per operation, in order.
    pub results: Vec<OperationResult>,
}

/// The field path a refused transaction's error names for a problem of operation
/// `index`: `operations[I]`, then the object's own dotted path (`operations[2].spec.instances`).
/// Every problem of every operation is one cause of the error's `details.causes`.
pub fn cause_field(index: usize, field: &str) -> String {
    if field.is_empty() { format!("operations[{index}]") } else { format!("operations[{index}].{field}") }
}

/// The operation and the object's field a cause of a refused transaction names:
/// the inverse of [`cause_field`]. `None` when it names no operation.
pub fn split_cause(field: &str) -> Option<(usize, &str)> {
    let rest = field.strip_prefix("operations[")?;
    let (index, rest) = rest.split_once(']')?;
    let index = index.parse().ok()?;
    Some((index, rest.strip_prefix('.').unwrap_or(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_fields_name_the_operation_and_the_field() {
        assert_eq!(cause_field(2, "spec.instances"), "operations[2].spec.instances");
        assert_eq!(split_cause("operations[2].spec.instances"), Some((2, "spec.instances")));
        assert_eq!(split_cause(&cause_field(7, "")), Some((7, "")));
        assert_eq!(split_cause("spec.instances"), None);
    }
}
