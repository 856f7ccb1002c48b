//! `ConfigMap`: named configuration data.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// Desired state of a [`ConfigMap`]: configuration data for tasks and services.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapSpec {
    /// Configuration entries, each a UTF-8 string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// Observed state of a [`ConfigMap`]; nothing is observed about one yet.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapStatus {}

/// Named configuration data, namespaced.
pub type ConfigMap = Object<ConfigMapSpec, ConfigMapStatus>;

impl KindSpec for ConfigMapSpec {
    type Status = ConfigMapStatus;

    const KIND: &'static str = "ConfigMap";
    const PLURAL: &'static str = "configmaps";
    const SHORT_NAMES: &'static [&'static str] = &["cm"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "Named configuration data (string key/value pairs) for tasks and services.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![PrinterColumn::new("DATA", ".spec.data", ColumnType::Count)]
    }
}
