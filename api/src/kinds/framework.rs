//! `Framework` and `Offer`: the two levels of scheduling. The offers controller makes
//! offers of nodes' free resources to registered frameworks, in weighted dominant
//! resource fairness order; a framework places tasks by accepting an offer
//! (`POST /apis/corral.dev/v1/offers/NAME/accept`) or turns it down
//! (`POST …/offers/NAME/decline`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::node::{PortRange, Resources};
use crate::registry::{ColumnType, PrinterColumn, Subresources};
use crate::resource::{KindSpec, Object};

/// The namespace holding one liveness [`crate::kinds::Lease`] per framework, named
/// after it: a framework is connected while it renews its lease.
pub const FRAMEWORK_LEASE_NAMESPACE: &str = "corral-frameworks";

/// The role of resources nobody reserved: every framework may take them.
pub const DEFAULT_ROLE: &str = "*";

fn default_roles() -> Vec<String> {
    vec![DEFAULT_ROLE.to_string()]
}

fn default_weight() -> f64 {
    1.0
}

fn default_failover_timeout() -> u64 {
    // As Marathon: a week, so that a framework upgrade never kills its tasks.
    7 * 24 * 3600
}

fn is_default_roles(r: &[String]) -> bool {
    r.len() == 1 && r[0] == DEFAULT_ROLE
}

/// Desired state of a [`Framework`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FrameworkSpec {
    /// The roles whose resources it takes: `*` (the unreserved pool) and roles that
    /// nodes reserve resources for, or quota names. Each offer is for one of them.
    #[serde(default = "default_roles", skip_serializing_if = "is_default_roles")]
    #[schemars(length(min = 1))]
    pub roles: Vec<String>,
    /// Its share of the cluster relative to other frameworks: weight 3 is entitled to
    /// three times the dominant share of weight 1.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0.0))]
    pub weight: f64,
    /// Nothing to launch: it receives no offers until unset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suppressed: bool,
    /// How long the framework may stay disconnected (its lease in `corral-frameworks`
    /// not renewed) before its tasks are killed. Default: one week.
    #[serde(default = "default_failover_timeout")]
    pub failover_timeout_seconds: u64,
}

impl Default for FrameworkSpec {
    fn default() -> Self {
        FrameworkSpec {
            roles: default_roles(),
            weight: default_weight(),
            suppressed: false,
            failover_timeout_seconds: default_failover_timeout(),
        }
    }
}

/// Whether a framework is heard from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FrameworkPhase {
    /// Registered; its lease not yet seen.
    #[default]
    Pending,
    /// It renews its lease: it receives offers.
    Connected,
    /// Its lease lapsed: no offers; its tasks are killed when the failover timeout runs out.
    Disconnected,
    /// The failover timeout ran out: its tasks were killed.
    TornDown,
}

/// Observed state of a [`Framework`], written by the offers controller.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FrameworkStatus {
    /// `Pending`, `Connected`, `Disconnected` or `TornDown`.
    #[serde(default)]
    pub phase: FrameworkPhase,
    /// Resources its non-terminal tasks hold.
    #[serde(default)]
    pub allocated: Resources,
    /// Resources its outstanding offers hold.
    #[serde(default)]
    pub offered: Resources,
    /// Its dominant share: the largest fraction of any one resource of the cluster
    /// that its tasks hold.
    #[serde(default)]
    pub dominant_share: f64,
    /// Its non-terminal tasks.
    #[serde(default)]
    pub tasks: u64,
    /// Why it is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A scheduler that receives offers and launches tasks on them. Cluster-scoped.
/// Built-in frameworks (`services`) and users' own register the same way; a
/// framework is connected while it renews the Lease `corral-frameworks/NAME`.
pub type Framework = Object<FrameworkSpec, FrameworkStatus>;

impl KindSpec for FrameworkSpec {
    type Status = FrameworkStatus;

    const KIND: &'static str = "Framework";
    const PLURAL: &'static str = "frameworks";
    const SHORT_NAMES: &'static [&'static str] = &["fw"];
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str = "A scheduler taking resource offers for its roles, with a weight for its fair \
         share; connected while it renews its Lease in corral-frameworks.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("STATUS", ".status.phase", ColumnType::String),
            PrinterColumn::new("WEIGHT", ".spec.weight", ColumnType::Number),
            PrinterColumn::new("TASKS", ".status.tasks", ColumnType::Integer),
            PrinterColumn::new("SHARE", ".status.dominantShare", ColumnType::Number),
        ]
    }

    fn subresources() -> Subresources {
        Subresources { status: true, log: false, scale: None }
    }
}

/// An offer: free resources of one node, for one framework and role, until it expires.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferSpec {
    /// The framework it is made to; only it may accept it.
    pub framework: String,
    /// The role whose resources it holds.
    pub role: String,
    /// The node.
    pub node: String,
    /// The node's attributes (`hostname`, `zone`, …), for constraints.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The resources offered.
    pub resources: Resources,
    /// Host ports offered; a task's `hostPort`s must come from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    /// When the offer lapses (RFC 3339, UTC); it is rescinded then.
    pub expires: String,
}

/// Observed state of an [`Offer`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferStatus {
    /// Set by a decline: the framework refuses this node for this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined_for_seconds: Option<u64>,
}

/// Resources of one node offered to one framework. Cluster-scoped, written by the
/// offers controller; accepted or declined through its `accept` and `decline`
/// subresources; deleted when accepted, declined, expired or rescinded.
pub type Offer = Object<OfferSpec, OfferStatus>;

impl KindSpec for OfferSpec {
    type Status = OfferStatus;

    const KIND: &'static str = "Offer";
    const PLURAL: &'static str = "offers";
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str = "Free resources of one node offered to one framework for one role until it \
         expires; accept it (POST offers/NAME/accept) to launch tasks on the node, or decline it.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("FRAMEWORK", ".spec.framework", ColumnType::String),
            PrinterColumn::new("NODE", ".spec.node", ColumnType::String),
            PrinterColumn::new("CPUS", ".spec.resources.cpus", ColumnType::Number),
            PrinterColumn::new("MEM(MiB)", ".spec.resources.mem", ColumnType::Integer),
            PrinterColumn::new("EXPIRES", ".spec.expires", ColumnType::String),
        ]
    }
}

/// What a framework sends to accept an offer: the tasks to launch on its node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferAccept {
    /// The framework accepting; must be the offer's.
    pub framework: String,
    /// The tasks, each with `metadata.namespace`; the server binds them to the
    /// offer's node and stamps framework, role and offer. All are created, or none.
    pub tasks: Vec<crate::kinds::Task>,
}

/// What a framework sends to decline an offer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferDecline {
    /// The framework declining; must be the offer's.
    pub framework: String,
    /// Refuse this node for this many seconds (default 5, as Mesos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_seconds: Option<u64>,
}
