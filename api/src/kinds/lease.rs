//! `Lease`: held by one replica at a time, for leader election and node heartbeats.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// Desired state of a [`Lease`]: who holds it and until when.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseSpec {
    /// Identity of the current holder; absent when nobody holds the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// How long, after `renewTime`, the holder keeps the lease without renewing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i64>,
    /// When the current holder acquired the lease (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    /// When the current holder last renewed the lease (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// How many times the lease changed holders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i64>,
}

/// Observed state of a [`Lease`]; the spec says everything.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseStatus {}

/// A lease held by one of several replicas at a time, for leader election. Namespaced.
pub type Lease = Object<LeaseSpec, LeaseStatus>;

impl KindSpec for LeaseSpec {
    type Status = LeaseStatus;

    const KIND: &'static str = "Lease";
    const PLURAL: &'static str = "leases";
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str =
        "A lease held by one replica at a time, renewed periodically; used for leader election.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![PrinterColumn::new("HOLDER", ".spec.holderIdentity", ColumnType::String)]
    }
}
