//! The `Tenant` kind as a Rust type. Its definition, `crd.yaml`, is generated from it
//! (`cargo run --example tenant-controller -- crd > examples/tenant-controller/crd.yaml`)
//! and a test keeps the two equal.

use std::collections::BTreeMap;

use corral_api::{ColumnType, KindSpec, Object, PrinterColumn};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a Tenant.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSpec {
    /// Who is responsible for the tenant (a team or an e-mail address).
    pub owner: String,
    /// Key/value settings published to the tenant's namespace as the ConfigMap tenant-settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

/// Observed state of a Tenant.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantStatus {
    /// Pending or Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The namespace provisioned for the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The generation of the spec the status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl KindSpec for TenantSpec {
    type Status = TenantStatus;
    const GROUP: &'static str = "example.corral.dev";
    const KIND: &'static str = "Tenant";
    const PLURAL: &'static str = "tenants";
    const SHORT_NAMES: &'static [&'static str] = &["tn"];
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str =
        "A team on the cluster. The tenant controller gives it a namespace and a settings ConfigMap.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("Owner", ".spec.owner", ColumnType::String),
            PrinterColumn::new("Phase", ".status.phase", ColumnType::String),
            PrinterColumn::new("Namespace", ".status.namespace", ColumnType::String),
        ]
    }
}

/// A team on the cluster: cluster-scoped, served by the definition in `crd.yaml`.
pub type Tenant = Object<TenantSpec, TenantStatus>;
