//! `Node`: a machine running a Corral agent, its capacity, attributes and reachability.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// The namespace holding one heartbeat [`crate::kinds::Lease`] per node, named after it.
pub const NODE_LEASE_NAMESPACE: &str = "corral-system";

/// Scalar resources, in the units Mesos and Marathon use: cpus as a fraction of cores,
/// memory and disk in MiB.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// CPU shares in cores, e.g. `0.5`.
    #[serde(default)]
    pub cpus: f64,
    /// Memory in MiB.
    #[serde(default)]
    pub mem: u64,
    /// Disk in MiB.
    #[serde(default)]
    pub disk: u64,
}

/// An inclusive range of host ports.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRange {
    /// First port of the range.
    pub begin: u16,
    /// Last port of the range, inclusive.
    pub end: u16,
}

/// Desired state of a [`Node`], registered by its agent from its command line.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Attributes matched by placement constraints: `hostname`, `zone`, `region` and any
    /// custom ones given with `--attributes`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Resources statically reserved for a role (`--reservations 'cpus(ads):2;mem(ads):512'`),
    /// offered only to frameworks of that role.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reservations: BTreeMap<String, Resources>,
    /// When true, no new task is placed on the node; running tasks are left alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
}

/// Whether a node's agent is heard from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodePhase {
    /// Registered, heartbeat not yet judged.
    #[default]
    Pending,
    /// The agent renews its lease.
    Ready,
    /// The agent's lease was not renewed within the grace period; its tasks are `LOST`.
    Unreachable,
}

/// Observed state of a [`Node`], written by its agent and by the node lifecycle controller.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    /// `Pending`, `Ready` or `Unreachable`.
    #[serde(default)]
    pub phase: NodePhase,
    /// Total resources of the node (detected from the host unless overridden).
    #[serde(default)]
    pub capacity: Resources,
    /// Host ports tasks may be given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_ranges: Vec<PortRange>,
    /// Address at which the node's tasks are reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Base URL of the agent's own API (logs), e.g. `http://127.0.0.1:5051`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_endpoint: Option<String>,
    /// Version of the agent binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Why the node is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the phase last changed (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// A machine running a Corral agent. Cluster-scoped, named by the agent's `--name`.
pub type Node = Object<NodeSpec, NodeStatus>;

impl KindSpec for NodeSpec {
    type Status = NodeStatus;

    const KIND: &'static str = "Node";
    const PLURAL: &'static str = "nodes";
    const SHORT_NAMES: &'static [&'static str] = &["no"];
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str = "A machine running a Corral agent: its capacity, attributes, reservations and \
         whether it is reachable. Registered by the agent; its heartbeat is a Lease in `corral-system`.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("STATUS", ".status.phase", ColumnType::String),
            PrinterColumn::new("CPUS", ".status.capacity.cpus", ColumnType::Number),
            PrinterColumn::new("MEM(MiB)", ".status.capacity.mem", ColumnType::Integer),
            PrinterColumn::new("ADDRESS", ".status.address", ColumnType::String),
        ]
    }
}
