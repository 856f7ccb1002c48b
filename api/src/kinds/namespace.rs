//! `Namespace`: a scope for the names of namespaced objects.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

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
