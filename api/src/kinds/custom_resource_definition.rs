//! `CustomResourceDefinition`: a custom kind served like a built-in one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// Whether objects of a custom kind live in a namespace or are cluster-scoped.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResourceScope {
    /// Objects live in a namespace.
    #[default]
    Namespaced,
    /// Objects are cluster-scoped.
    Cluster,
}

/// The JSON Schemas of a custom kind's `spec` and `status`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResourceSchema {
    /// JSON Schema (2020-12) of the objects' `spec`, used as given: write
    /// `additionalProperties: false` on object nodes to reject unknown fields. Absent:
    /// any object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// JSON Schema (2020-12) of the objects' `status`. Absent: any object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// Desired state of a [`CustomResourceDefinition`]: the kind to serve.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResourceDefinitionSpec {
    /// API group of the kind, a DNS subdomain such as `example.com`.
    pub group: String,
    /// Version within the group, e.g. `v1`.
    pub version: String,
    /// Kind name in CamelCase, e.g. `Widget`.
    pub kind: String,
    /// Lowercase plural used in URLs, e.g. `widgets`.
    pub plural: String,
    /// Lowercase singular; defaults to the kind in lowercase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub singular: Option<String>,
    /// Short aliases accepted by the CLI, e.g. `wd`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short_names: Vec<String>,
    /// `Namespaced` (the default) or `Cluster`.
    #[serde(default)]
    pub scope: ResourceScope,
    /// What the kind is for; shown by `corral explain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schemas of the objects' `spec` and `status`.
    #[serde(default)]
    pub schema: CustomResourceSchema,
    /// Columns `corral get` shows for the kind, between NAME and AGE, as in Kubernetes:
    /// `{name, jsonPath: .spec.x, type, description, priority}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_printer_columns: Vec<PrinterColumn>,
}

/// Observed state of a [`CustomResourceDefinition`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResourceDefinitionStatus {
    /// Whether the kind is served.
    #[serde(default)]
    pub accepted: bool,
    /// Why the kind is not served, or what is happening to it (e.g. terminating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A custom kind, served at `/apis/{group}/{version}/...` as soon as it is created.
/// Cluster-scoped; its name must be `{plural}.{group}`.
pub type CustomResourceDefinition = Object<CustomResourceDefinitionSpec, CustomResourceDefinitionStatus>;

impl KindSpec for CustomResourceDefinitionSpec {
    type Status = CustomResourceDefinitionStatus;

    const KIND: &'static str = "CustomResourceDefinition";
    const PLURAL: &'static str = "customresourcedefinitions";
    const SHORT_NAMES: &'static [&'static str] = &["crd", "crds"];
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str = "A custom kind served by the API like a built-in one, validated against its JSON \
         Schema. Cluster-scoped; named `{plural}.{group}`. Deleting it deletes every object of the kind.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("KIND", ".spec.kind", ColumnType::String),
            PrinterColumn::new("SCOPE", ".spec.scope", ColumnType::String),
            PrinterColumn::new("ACCEPTED", ".status.accepted", ColumnType::Boolean),
        ]
    }
}
