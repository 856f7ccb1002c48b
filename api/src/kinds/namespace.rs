//! `Namespace`: a scope for the names of namespaced objects.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// The label of a namespace naming its task security level: `restricted` (the
/// default, and what any other value means) or [`TASK_SECURITY_PRIVILEGED`]. The server
/// admits tasks by it and agents check it again at launch.
pub const TASK_SECURITY_LABEL: &str = "corral.dev/task-security";
/// The task security level that allows native tasks, uid 0 and `file://` artifacts.
pub const TASK_SECURITY_PRIVILEGED: &str = "privileged";

/// Desired state of a [`Namespace`]; namespaces have none yet.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSpec {}

/// Observed state of a [`Namespace`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceStatus {
    /// `Active` or `Terminating`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A scope for names of namespaced objects. Cluster-scoped; `default` always exists.
pub type Namespace = Object<NamespaceSpec, NamespaceStatus>;

impl KindSpec for NamespaceSpec {
    type Status = NamespaceStatus;

    const KIND: &'static str = "Namespace";
    const PLURAL: &'static str = "namespaces";
    const SHORT_NAMES: &'static [&'static str] = &["ns"];
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str =
        "A scope for the names of namespaced objects. Cluster-scoped; `default` always exists.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![PrinterColumn::new("STATUS", ".status.phase", ColumnType::String)]
    }
}
