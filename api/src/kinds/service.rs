//! `Service`: a long-running app kept at its number of instances, as Marathon's apps:
//! replaced when its tasks fail or are lost, rolled to a new template without going
//! below its minimum health capacity, placed under constraints.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::task::TaskSpec;
use crate::registry::{ColumnType, PrinterColumn, ScaleSubresource, Subresources};
use crate::resource::{KindSpec, Object};

/// Label on every task of a service: the service's name.
pub const SERVICE_LABEL: &str = "corral.dev/service";
/// Label on every task of a service: the template revision it runs.
pub const REVISION_LABEL: &str = "corral.dev/service-revision";
/// The built-in framework that launches services' tasks.
pub const SERVICES_FRAMEWORK: &str = "services";

/// How many template revisions a service keeps for `corral rollout undo`.
pub const HISTORY_LIMIT: usize = 10;

/// A placement constraint as Marathon writes it: `[field, operator]` or
/// `[field, operator, value]`. `field` is `hostname` or a node attribute.
///
/// Operators: `UNIQUE` (one task per value), `CLUSTER` (all on one value, the given
/// one or the first chosen), `GROUP_BY` (spread evenly over the values, `value`
/// of them if given), `LIKE` / `UNLIKE` (value matches / does not match the regular
/// expression), `MAX_PER` (at most `value` tasks per value), `IS` (equals `value`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct Constraint(pub Vec<String>);

/// The constraint operators.
pub const CONSTRAINT_OPERATORS: &[&str] = &["UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS"];

impl Constraint {
    /// The node attribute (or `hostname`) it looks at.
    pub fn field(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or_default()
    }

    /// The operator.
    pub fn operator(&self) -> &str {
        self.0.get(1).map(String::as_str).unwrap_or_default()
    }

    /// The value, when given.
    pub fn value(&self) -> Option<&str> {
        self.0.get(2).map(String::as_str)
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join(" "))
    }
}

impl JsonSchema for Constraint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Constraint".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "[field, operator] or [field, operator, value]; operator one of UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS",
            "type": "array",
            "minItems": 2,
            "maxItems": 3,
            "prefixItems": [
                {"type": "string", "minLength": 1},
                {"type": "string", "enum": CONSTRAINT_OPERATORS},
                {"type": "string"}
            ],
            "items": {"type": "string"}
        })
    }
}

fn one() -> u32 {
    1
}
fn one_f() -> f64 {
    1.0
}

/// How a new template replaces the old one.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeStrategy {
    /// Fraction of `instances` that must stay healthy during a deployment (0 to 1;
    /// default 1: start new tasks before stopping old ones).
    #[serde(default = "one_f")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub minimum_health_capacity: f64,
    /// Fraction of `instances` that may run on top of them during a deployment (0 to
    /// 1; default 1).
    #[serde(default = "one_f")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub maximum_over_capacity: f64,
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        UpgradeStrategy { minimum_health_capacity: 1.0, maximum_over_capacity: 1.0 }
    }
}

fn default_ready_path() -> String {
    "/".into()
}
fn default_ready_codes() -> Vec<u16> {
    vec![200]
}
fn default_ready_interval() -> u32 {
    5
}
fn default_ready_timeout() -> u32 {
    2
}

/// An HTTP check, run by the services controller, that a new task passes before a
/// deployment counts it ready (Marathon's readiness check).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessCheck {
    /// The task's port to ask.
    pub port_name: String,
    /// Path to GET (default `/`).
    #[serde(default = "default_ready_path")]
    pub path: String,
    /// Status codes meaning ready (default `[200]`).
    #[serde(default = "default_ready_codes")]
    pub http_status_codes_for_ready: Vec<u16>,
    /// Seconds between checks (default 5).
    #[serde(default = "default_ready_interval")]
    pub interval_seconds: u32,
    /// Seconds a check may take (default 2).
    #[serde(default = "default_ready_timeout")]
    pub timeout_seconds: u32,
}

fn default_backoff_seconds() -> f64 {
    1.0
}
fn default_backoff_factor() -> f64 {
    1.15
}
fn default_max_launch_delay() -> f64 {
    300.0
}

/// How long to wait before launching again after a task failed: `backoffSeconds`,
/// times `backoffFactor` for each failure in a row, at most `maxLaunchDelaySeconds`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    /// First delay (default 1 s).
    #[serde(default = "default_backoff_seconds")]
    #[schemars(range(min = 0.0))]
    pub backoff_seconds: f64,
    /// Growth per failure (default 1.15).
    #[serde(default = "default_backoff_factor")]
    #[schemars(range(min = 1.0))]
    pub backoff_factor: f64,
    /// Largest delay (default 300 s).
    #[serde(default = "default_max_launch_delay")]
    #[schemars(range(min = 0.0))]
    pub max_launch_delay_seconds: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            backoff_seconds: default_backoff_seconds(),
            backoff_factor: default_backoff_factor(),
            max_launch_delay_seconds: default_max_launch_delay(),
        }
    }
}

/// Which tasks go first when a service scales down.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KillSelection {
    /// The most recently started (default, as Marathon).
    #[default]
    YoungestFirst,
    /// The longest running.
    OldestFirst,
}

/// What happens to tasks of an unreachable node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnreachableStrategy {
    /// Seconds a task may be unreachable (`LOST`) before a replacement is launched
    /// (default 0: at once).
    #[serde(default)]
    pub inactive_after_seconds: u64,
    /// Seconds after which an unreachable task is forgotten (deleted), even if its
    /// node comes back (default 0: at once). At least `inactiveAfterSeconds`.
    #[serde(default)]
    pub expunge_after_seconds: u64,
}

/// Desired state of a [`Service`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// How many tasks to keep running (default 1).
    #[serde(default = "one")]
    pub instances: u32,
    /// The task each instance runs. `nodeName`, `kill`, `framework`, `role` and
    /// `offer` are the scheduler's and must be left out; ports without `hostPort`
    /// get one from the offer.
    pub template: TaskSpec,
    /// Labels put on every task, besides `corral.dev/service` and
    /// `corral.dev/service-revision`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub task_labels: BTreeMap<String, String>,
    /// The role whose resources the tasks take (default `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Placement constraints, all of which a node must meet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// How a new template rolls out.
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
    /// A check a new task passes before it counts as ready in a deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_check: Option<ReadinessCheck>,
    /// Delay between launches after failures.
    #[serde(default)]
    pub backoff: Backoff,
    /// Which tasks go first when scaling down.
    #[serde(default)]
    pub kill_selection: KillSelection,
    /// What happens to tasks of an unreachable node.
    #[serde(default)]
    pub unreachable_strategy: UnreachableStrategy,
    /// Changing it rolls every task to a new revision of the same template, as
    /// `corral restart service/NAME` does (it writes the current time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// Local persistent volumes, one of each template per instance: instance `i`
    /// mounts the volume `SERVICE-TEMPLATE-i` (made by the services framework before
    /// the instance is first placed) and is always placed on that volume's node, so a
    /// replacement finds the data its predecessor left. Instances with volumes roll
    /// out kill-then-start (a volume takes one task at a time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeTemplate>,
}

/// Label on a service's tasks: the index of the instance it runs (`0`, `1`, …),
/// kept by its replacements; set for services with volume templates.
pub const INSTANCE_LABEL: &str = "corral.dev/instance";

/// A per-instance volume of a service (see [`ServiceSpec::volumes`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeTemplate {
    /// The template's name, an RFC 1123 label: instance `i`'s volume is
    /// `SERVICE-NAME-i`.
    pub name: String,
    /// Where each task mounts it.
    pub mount_path: String,
    /// Size in MiB of each instance's volume.
    pub size: u64,
    /// `Retain` (default: the volumes and their data outlive the service) or
    /// `Delete` (the volumes are owned by the service and go with it, data too).
    #[serde(default)]
    pub reclaim_policy: crate::kinds::volume::ReclaimPolicy,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// The name of instance `index`'s volume of template `template` of service `service`.
pub fn instance_volume_name(service: &str, template: &str, index: u32) -> String {
    format!("{service}-{template}-{index}")
}

/// Where a deployment is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeploymentPhase {
    /// Old tasks are being replaced by new ones.
    #[default]
    InProgress,
    /// Every task runs the deployment's template.
    Complete,
    /// A newer template replaced it before it completed.
    Superseded,
}

/// A rolling deployment of one template revision.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    /// The template revision being rolled out.
    pub revision: u64,
    /// `InProgress`, `Complete` or `Superseded`.
    pub phase: DeploymentPhase,
    /// Tasks of the new revision that are healthy (and ready).
    pub updated: u32,
    /// Tasks of older revisions still running.
    pub old: u32,
    /// How many instances the deployment aims at.
    pub target: u32,
    /// When it started (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// What it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One thing that turned down offers for a service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Refusal {
    /// The constraint or resource, e.g. `hostname UNIQUE` or `insufficient mem`.
    pub reason: String,
    /// Offers it turned down in the last round.
    pub offers: u32,
    /// Distinct nodes of those offers.
    pub nodes: u32,
}

/// Why some instances are not placed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Waiting {
    /// Instances waiting for a place.
    pub instances: u32,
    /// Offers looked at in the last round.
    pub offers_examined: u32,
    /// What turned them down, most offers first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
    /// When the next launch may happen, if a backoff delays it (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_until: Option<String>,
    /// Summary for a person.
    pub message: String,
}

/// A condition of a service, as Kubernetes writes them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// `Available` (at least minimumHealthCapacity healthy), `Progressing` (a
    /// deployment runs), `Placed` (every instance has a node).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    /// CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Detail for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// A template revision kept for `corral rollout history` and `undo`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRevision {
    /// Its number; the first template is 1.
    pub revision: u64,
    /// The template.
    pub template: TaskSpec,
    /// The service's `restartedAt` when it was deployed: a restart is a new
    /// revision of the same template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// When it was first deployed (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// Observed state of a [`Service`], written by the services controller.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Desired instances.
    #[serde(default)]
    pub instances: u32,
    /// Tasks placed and not yet running.
    #[serde(default)]
    pub staged: u32,
    /// Tasks running.
    #[serde(default)]
    pub running: u32,
    /// Running tasks whose health checks pass (all running tasks, if it has none).
    #[serde(default)]
    pub healthy: u32,
    /// The template revision now deployed or being deployed.
    #[serde(default)]
    pub revision: u64,
    /// The latest deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    /// Why instances are not placed, while some are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Failed launches in a row (drives the backoff).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    /// When the last failure counted in `consecutiveFailures` happened (RFC 3339,
    /// UTC): the backoff runs from it, and only a task started since it resets the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<String>,
    /// `Available`, `Progressing`, `Placed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last template revisions, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<TemplateRevision>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A long-running app: `instances` tasks from a template, replaced when they fail or
/// are lost, rolled to a new template without dropping below the minimum health
/// capacity. Namespaced; launched by the built-in `services` framework.
pub type Service = Object<ServiceSpec, ServiceStatus>;

impl KindSpec for ServiceSpec {
    type Status = ServiceStatus;

    const KIND: &'static str = "Service";
    const PLURAL: &'static str = "services";
    const SHORT_NAMES: &'static [&'static str] = &["svc"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "A long-running app as in Marathon: instances of a task template kept running, \
         replaced with backoff, placed under constraints, rolled out without dropping below minimumHealthCapacity.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("INSTANCES", ".spec.instances", ColumnType::Integer),
            PrinterColumn::new("RUNNING", ".status.running", ColumnType::Integer),
            PrinterColumn::new("HEALTHY", ".status.healthy", ColumnType::Integer),
            PrinterColumn::new("DEPLOYMENT", ".status.deployment.phase", ColumnType::String),
        ]
    }

    fn subresources() -> Subresources {
        let scale = ScaleSubresource {
            spec_replicas_path: ".spec.instances".into(),
            status_replicas_path: ".status.running".into(),
        };
        Subresources { status: true, log: false, scale: Some(scale) }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Registry;

    fn errors(spec: serde_json::Value) -> Vec<String> {
        let reg = Registry::builtin();
        let info = reg.resolve("services").expect("built in");
        let svc = json!({"apiVersion": "corral.dev/v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
        match reg.validate(&info, &svc) {
            Ok(()) => vec![],
            Err(es) => es.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn constraints_are_marathon_triples_with_a_known_operator() {
        let ok = errors(json!({"template": {}, "constraints": [["hostname", "UNIQUE"], ["zone", "GROUP_BY", "3"]]}));
        assert!(ok.is_empty(), "{ok:?}");
        for bad in [json!([["hostname", "UNIQU"]]), json!([["hostname"]]), json!([["a", "IS", "b", "c"]])] {
            let errs = errors(json!({"template": {}, "constraints": bad}));
            assert!(errs.iter().any(|e| e.starts_with("spec.constraints[0]")), "{bad}: {errs:?}");
        }
    }

    #[test]
    fn upgrade_capacities_are_fractions() {
        let errs = errors(json!({"template": {}, "upgradeStrategy": {"minimumHealthCapacity": 1.5}}));
        assert!(errs.iter().any(|e| e.contains("minimumHealthCapacity")), "{errs:?}");
    }
}
