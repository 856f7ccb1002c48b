//! The built-in kinds served by every Corral server.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::resource::{Object, Resource};

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

impl Resource for Namespace {
    const KIND: &'static str = "Namespace";
    const PLURAL: &'static str = "namespaces";
    const SHORT_NAMES: &'static [&'static str] = &["ns"];
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str =
        "A scope for the names of namespaced objects. Cluster-scoped; `default` always exists.";
}

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

impl Resource for ConfigMap {
    const KIND: &'static str = "ConfigMap";
    const PLURAL: &'static str = "configmaps";
    const SHORT_NAMES: &'static [&'static str] = &["cm"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "Named configuration data (string key/value pairs) for tasks and services.";
}

/// The kinds every server serves, in discovery order.
pub fn builtin_kinds() -> Vec<crate::KindInfo> {
    vec![Namespace::kind_info(), ConfigMap::kind_info()]
}
