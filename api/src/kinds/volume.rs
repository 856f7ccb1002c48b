//! `Volume`: a local persistent volume, as Marathon's local volumes and Kubernetes'
//! local PersistentVolumes: disk on one node that outlives the tasks using it.
//!
//! A volume is bound to a node on first use and stays there: every later task that
//! mounts it is placed on that node, and its size is reserved there as disk, so a node
//! whose disk is spoken for takes no more volume-bearing tasks. One task at a time may
//! use it. Deleting a volume in use waits (a finalizer) until no task holds it; the
//! data is then kept (`Retain`, the default) or removed (`Delete`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

/// Finalizer on every volume: deleting it waits until no task uses it and, with
/// `Delete`, until its node's agent has removed the data.
pub const VOLUME_FINALIZER: &str = "corral.dev/volume-protection";

/// Finalizer on volumes with reclaim policy `Delete`: removed by the agent of the
/// volume's node once it has deleted the data (after [`VOLUME_FINALIZER`] is gone,
/// i.e. no task uses the volume any more).
pub const VOLUME_DATA_FINALIZER: &str = "corral.dev/volume-data";

/// Label on volumes a service made from its volume templates: the service's name.
pub const VOLUME_SERVICE_LABEL: &str = "corral.dev/service";

/// What happens to a volume's data once the volume is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReclaimPolicy {
    /// The data stays on the node (under the agent's work dir) for an operator to
    /// recover; a new volume of the same name on the same node finds it again.
    #[default]
    Retain,
    /// The node's agent removes the data.
    Delete,
}

/// Desired state of a [`Volume`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// Size in MiB: reserved as disk on the volume's node and, where the host allows,
    /// enforced (a loop-mounted filesystem image); otherwise measured.
    pub size: u64,
    /// `Retain` (default) or `Delete`.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
    /// The node the volume lives on. Given by hand to pin it, or set when a task
    /// using it is first placed; it never changes afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// A directory of the host instead of one the agent makes: allowed only in
    /// namespaces whose task policy permits host paths, and only under a prefix of
    /// the agent's allow-list. Never removed by the agent, whatever the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
}

/// The life of a volume.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VolumePhase {
    /// Not yet bound to a node.
    #[default]
    Pending,
    /// Bound to its node; no task uses it.
    Bound,
    /// A task uses it.
    InUse,
    /// The agent could not make or mount it (see `message`).
    Failed,
}

/// Observed state of a [`Volume`]: the volumes controller writes `phase` and `task`,
/// the node's agent the rest.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeStatus {
    /// Where the volume is in its life.
    #[serde(default)]
    pub phase: VolumePhase,
    /// The non-terminal task using it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// MiB in use, as last measured by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// How the size is held: `filesystem` (a loop-mounted filesystem image of that
    /// size: writes beyond it fail) or `measured` (usage is only measured and
    /// reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<String>,
    /// Why the volume is `Failed` or waiting, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A local persistent volume, namespaced.
pub type Volume = Object<VolumeSpec, VolumeStatus>;

impl KindSpec for VolumeSpec {
    type Status = VolumeStatus;

    const KIND: &'static str = "Volume";
    const PLURAL: &'static str = "volumes";
    const SHORT_NAMES: &'static [&'static str] = &["vol"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "A local persistent volume: disk on one node, bound on first use, that \
         outlives the tasks mounting it; its size is reserved on its node.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("SIZE", ".spec.size", ColumnType::Integer),
            PrinterColumn::new("USED", ".status.used", ColumnType::Integer),
            PrinterColumn::new("NODE", ".spec.nodeName", ColumnType::String),
            PrinterColumn::new("PHASE", ".status.phase", ColumnType::String),
            PrinterColumn::new("TASK", ".status.task", ColumnType::String),
            PrinterColumn::new("RECLAIM", ".spec.reclaimPolicy", ColumnType::String),
        ]
    }
}
