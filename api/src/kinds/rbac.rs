//! Role-based access control, as Kubernetes RBAC: `Role` / `ClusterRole` list what may
//! be done (verbs × resources × names, and non-resource URLs), `RoleBinding` /
//! `ClusterRoleBinding` grant a role to users, groups and service accounts.
//!
//! Everything is denied unless a binding grants it. A `RoleBinding` grants its role
//! only inside its own namespace, even when it names a `ClusterRole`; a
//! `ClusterRoleBinding` grants it everywhere, cluster-scoped kinds and non-resource
//! URLs included.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// One permission: every combination of its verbs with its resources (and names).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, or `*` for all.
    pub verbs: Vec<String>,
    /// API groups of the resources (`corral.dev`, a custom kind's group); absent or
    /// `*` for every group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Plural resource names (`tasks`), subresources as `tasks/status` or
    /// `tasks/log`, `*` for all resources, `*/status` for every status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Limits the rule to these object names; empty for every name. Lists, watches
    /// and creates have no single name and are never granted by a rule with names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Paths outside `/apis` (`/metrics`, `/admin/*`); a trailing `*` matches any
    /// rest. Only meaningful in a `ClusterRole` granted by a `ClusterRoleBinding`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

/// What kind of role a binding grants.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRef {
    /// `Role` (in the binding's namespace) or `ClusterRole`.
    pub kind: String,
    /// The role's name.
    pub name: String,
}

/// Who a binding grants its role to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// The user's, group's or service account's name.
    pub name: String,
    /// A service account's namespace; the binding's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Permissions inside one namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    /// What the role allows.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// Permissions anywhere (or, bound by a `RoleBinding`, inside one namespace).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRoleSpec {
    /// What the role allows.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// A role granted inside the binding's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBindingSpec {
    /// The role granted: a `Role` of this namespace or a `ClusterRole`.
    pub role_ref: RoleRef,
    /// Who it is granted to.
    #[serde(default)]
    pub subjects: Vec<Subject>,
}

/// A cluster role granted everywhere.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRoleBindingSpec {
    /// The role granted: always a `ClusterRole`.
    pub role_ref: RoleRef,
    /// Who it is granted to.
    #[serde(default)]
    pub subjects: Vec<Subject>,
}

/// RBAC objects have no observed state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RbacStatus {}

/// Permissions inside one namespace. Namespaced.
pub type Role = Object<RoleSpec, RbacStatus>;
/// Permissions usable anywhere. Cluster-scoped.
pub type ClusterRole = Object<ClusterRoleSpec, RbacStatus>;
/// Grants a role inside one namespace. Namespaced.
pub type RoleBinding = Object<RoleBindingSpec, RbacStatus>;
/// Grants a cluster role everywhere. Cluster-scoped.
pub type ClusterRoleBinding = Object<ClusterRoleBindingSpec, RbacStatus>;

fn binding_columns() -> Vec<PrinterColumn> {
    vec![
        PrinterColumn::new("ROLE-KIND", ".spec.roleRef.kind", ColumnType::String),
        PrinterColumn::new("ROLE", ".spec.roleRef.name", ColumnType::String),
    ]
}

impl KindSpec for RoleSpec {
    type Status = RbacStatus;

    const KIND: &'static str = "Role";
    const PLURAL: &'static str = "roles";
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str =
        "Permissions (verbs on resources) inside one namespace, granted by a RoleBinding.";
}

impl KindSpec for ClusterRoleSpec {
    type Status = RbacStatus;

    const KIND: &'static str = "ClusterRole";
    const PLURAL: &'static str = "clusterroles";
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str = "Permissions (verbs on resources, non-resource URLs) granted by a \
        ClusterRoleBinding everywhere or by a RoleBinding inside its namespace.";
}

impl KindSpec for RoleBindingSpec {
    type Status = RbacStatus;

    const KIND: &'static str = "RoleBinding";
    const PLURAL: &'static str = "rolebindings";
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "Grants a Role or ClusterRole to users, groups and service accounts inside \
        the binding's namespace.";

    fn printer_columns() -> Vec<PrinterColumn> {
        binding_columns()
    }
}

impl KindSpec for ClusterRoleBindingSpec {
    type Status = RbacStatus;

    const KIND: &'static str = "ClusterRoleBinding";
    const PLURAL: &'static str = "clusterrolebindings";
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str = "Grants a ClusterRole to users, groups and service accounts everywhere.";

    fn printer_columns() -> Vec<PrinterColumn> {
        binding_columns()
    }
}
