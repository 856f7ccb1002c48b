//! A node's report of its tasks' statuses, many in one request:
//! `POST /apis/corral.dev/v1/nodes/{node}/taskstatus`.
//!
//! An agent that starts ten tasks in one second has ten statuses to write. Written
//! one request each, the requests cost the control plane more than the writes; a
//! report carries them all, as a Nomad client's allocation updates are batched.
//!
//! Each entry is its own status write, as `PUT …/tasks/{name}/status` would make it:
//! validated against the Task schema's `status`, conditional on its
//! `resourceVersion` when it names one, and refused for a task not bound to the node
//! the path names. Entries do not wait on each other: one refused leaves the others
//! written, and the answer lists each entry's new revision or why it was refused.
//! The report as a whole is refused (and nothing written) only when it cannot be
//! read, holds more than [`MAX_REPORT_ENTRIES`] entries, or the caller may not report
//! for that node.
//!
//! Authorization: RBAC verb `update` on `nodes/taskstatus` (the built-in `node` role
//! has it); a node's own identity may report only for itself.

use serde::{Deserialize, Serialize};

use crate::kinds::task::TaskStatus;

/// The subresource of a Node that takes its tasks' statuses.
pub const SUBRESOURCE: &str = "taskstatus";

/// Most entries in one report.
pub const MAX_REPORT_ENTRIES: usize = 1_000;

/// The path node `node` reports to.
pub fn report_path(node: &str) -> String {
    format!("/apis/{}/nodes/{node}/{SUBRESOURCE}", crate::API_VERSION)
}

/// What a node sends: the new statuses of tasks bound to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskStatusReport {
    /// One entry per task, at most [`MAX_REPORT_ENTRIES`]; a task appears once.
    pub entries: Vec<TaskStatusEntry>,
}

/// One task's new status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskStatusEntry {
    /// The task's namespace.
    pub namespace: String,
    /// The task's name.
    pub name: String,
    /// Write only if the task is still at this revision (as `metadata.resourceVersion`
    /// in a `PUT`); unconditional when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// The status, whole: it replaces the task's.
    pub status: TaskStatus,
}

/// The server's answer: one outcome per entry, in the order sent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskStatusReportResult {
    /// The outcomes.
    pub entries: Vec<TaskStatusOutcome>,
}

/// What became of one entry: written (its new revision) or refused (why).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskStatusOutcome {
    /// The task's namespace.
    pub namespace: String,
    /// The task's name.
    pub name: String,
    /// The task's revision after the write (the same as before when it already had
    /// this status); absent when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Why the entry was refused; absent when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EntryError>,
}

/// Why one entry was refused, as the single request's error would say it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryError {
    /// The HTTP status the single write would have answered: 404, 403, 409, 422…
    pub code: u16,
    /// Machine-readable reason: `NotFound`, `Forbidden`, `Conflict`, `Invalid`…
    pub reason: String,
    /// What is wrong, naming the field where one is at fault.
    pub message: String,
}
