//! `Task`: one process or container placed on a node and realized by its agent.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::kinds::node::Resources;
use crate::registry::{ColumnType, PrinterColumn, Subresources};
use crate::resource::{KindSpec, Object};

/// The finalizer an agent puts on each task it accepts, so that deleting the task waits
/// until its processes are gone.
pub const AGENT_FINALIZER: &str = "corral.dev/agent";

/// A named port of a task. Tasks share the host's network; the host port is assigned
/// by the scheduler (or given by hand) and passed to the task as `PORT_<NAME>` and
/// `PORT<index>`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskPort {
    /// Name of the port, an RFC 1123 label, e.g. `http`.
    pub name: String,
    /// Host port the task listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// `tcp` (default) or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A node-local persistent volume mounted into the task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// Name of the volume, an RFC 1123 label; it lives in the agent's work dir and
    /// outlives the task.
    pub volume: String,
    /// Absolute path in the container (or, for native tasks, a path relative to the
    /// sandbox).
    pub mount_path: String,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// An HTTP health check: healthy when `GET` answers 2xx or 3xx in time.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheck {
    /// Name of one of the task's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// A port number, when not given by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Path to request; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A TCP health check: healthy when a connection is accepted in time.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpCheck {
    /// Name of one of the task's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// A port number, when not given by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A health check; exactly one of `command`, `http` and `tcp` is set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// A command run inside the task's container (or sandbox); healthy when it exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// An HTTP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// A TCP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// Seconds after start during which failures are not counted (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<u32>,
    /// Seconds between checks (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
    /// Seconds a check may take before it counts as failed (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Consecutive failures after which the task is killed (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive_failures: Option<u32>,
}

impl HealthCheck {
    /// Grace period, with the default applied.
    pub fn grace_period(&self) -> u32 {
        self.grace_period_seconds.unwrap_or(15)
    }
    /// Interval, with the default applied.
    pub fn interval(&self) -> u32 {
        self.interval_seconds.unwrap_or(10).max(1)
    }
    /// Timeout, with the default applied.
    pub fn timeout(&self) -> u32 {
        self.timeout_seconds.unwrap_or(20).max(1)
    }
    /// Failures tolerated before the kill, with the default applied.
    pub fn max_failures(&self) -> u32 {
        self.max_consecutive_failures.unwrap_or(3).max(1)
    }
}

/// A file fetched into the sandbox before the task starts.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Artifact {
    /// `http://`, `https://` or `file://` URI.
    pub uri: String,
    /// Expected SHA-256 of the content, hex; the task fails if it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// File name in the sandbox; default: the last segment of the URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// Make the file executable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
    /// Unpack a `.tar` / `.tar.gz` / `.tgz` archive into the sandbox instead of keeping it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extract: bool,
}

/// Desired state of a [`Task`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpec {
    /// The node the task is bound to; set by a scheduler or by hand. Unset: not placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Image (as listed by `corral image ls`) to run in a runc container. Absent: the
    /// task is a native process on the host, in its own cgroups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Executable and its first arguments; default: the image's entrypoint and command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Further arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables, on top of the image's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Resources the task may use; `cpus` and `mem` become cgroup limits.
    #[serde(default)]
    pub resources: Resources,
    /// Named host ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<TaskPort>,
    /// Persistent volumes to mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Health checks run by the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// Seconds between SIGTERM and SIGKILL when the task is killed (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace_period_seconds: Option<u32>,
    /// User to run as: a name, `uid` or `uid:gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Working directory: absolute in the container, relative to the sandbox for native tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Files fetched into the sandbox before start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Set to ask the agent to kill the task while keeping its record (`KILLED`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kill: bool,
    /// A service account of the task's namespace, an RFC 1123 label. The task gets a
    /// token of `system:serviceaccount:NAMESPACE:NAME`, bound to the task: it works
    /// only while the task exists, and what it may do is what RoleBindings grant the
    /// service account. Absent: the task holds no credential to the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub service_account: Option<String>,
    /// The framework that launched the task (stamped when it accepts an offer); its
    /// failover timeout applies. Absent: bound by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    /// The role whose resources the task holds (stamped from the offer; default `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The offer the task was launched on (stamped when it is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// Not before this time (RFC 3339): the node holds the task, placed and with its
    /// resources, and starts it then. The jobs framework stages a scheduled run's
    /// task this way ahead of its due time, so that it starts on time however many
    /// runs are due at once. A time past, or none: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
}

impl TaskSpec {
    /// Kill grace period, with the default applied.
    pub fn kill_grace_period(&self) -> u32 {
        self.kill_grace_period_seconds.unwrap_or(30)
    }

    /// How long from `now` until the task may start ([`TaskSpec::start_at`]); none
    /// when it may start now (no time, one past, or one that does not parse — which
    /// admission refuses).
    pub fn start_in(&self, now: std::time::SystemTime) -> Option<std::time::Duration> {
        let at = chrono::DateTime::parse_from_rfc3339(self.start_at.as_deref()?).ok()?;
        (at.with_timezone(&chrono::Utc) - chrono::DateTime::<chrono::Utc>::from(now))
            .to_std()
            .ok()
            .filter(|d| !d.is_zero())
    }

    /// What is wrong with the spec that needs no node to judge (the schema cannot say
    /// it: it relates fields to each other), each error at its field under `prefix`
    /// (`spec`, `spec.template`): negative cpus, two ports of one name, two ports on
    /// one host port, a health check naming no port or one the task does not have.
    /// What only a node can judge (users, images, volumes) is its agent's business.
    pub fn field_errors(&self, prefix: &str) -> Vec<FieldError> {
        let mut why = Vec::new();
        let cpus = self.resources.cpus;
        if !cpus.is_finite() || cpus < 0.0 {
            why.push(FieldError::new(
                format!("{prefix}.resources.cpus"),
                format!("must be zero or more cores (e.g. 0.5), not {cpus}"),
            ));
        }
        if let Some(at) = &self.start_at
            && chrono::DateTime::parse_from_rfc3339(at).is_err()
        {
            why.push(FieldError::new(
                format!("{prefix}.startAt"),
                format!("{at:?} is not an RFC 3339 time (such as 2026-12-06T18:00:00Z)"),
            ));
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut host_ports: BTreeMap<(u16, &str), usize> = BTreeMap::new();
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(first) = names.insert(&p.name, i) {
                why.push(FieldError::new(
                    format!("{prefix}.ports[{i}].name"),
                    format!("{:?} is already the name of {prefix}.ports[{first}]; give each port its own name", p.name),
                ));
            }
            let protocol = p.protocol.as_deref().unwrap_or("tcp");
            if let Some(host) = p.host_port
                && let Some(first) = host_ports.insert((host, protocol), i)
            {
                why.push(FieldError::new(
                    format!("{prefix}.ports[{i}].hostPort"),
                    format!(
                        "{protocol} port {host} is already taken by {prefix}.ports[{first}]; a host port serves one port"
                    ),
                ));
            }
        }
        for (i, c) in self.health_checks.iter().enumerate() {
            let at = format!("{prefix}.healthChecks[{i}]");
            let kinds = usize::from(c.command.is_some()) + usize::from(c.http.is_some()) + usize::from(c.tcp.is_some());
            if kinds != 1 {
                why.push(FieldError::new(
                    at.clone(),
                    format!("set exactly one of command, http and tcp (has {kinds})"),
                ));
            }
            let targets = [
                ("http", c.http.as_ref().map(|h| (&h.port_name, h.port))),
                ("tcp", c.tcp.as_ref().map(|t| (&t.port_name, t.port))),
            ];
            for (kind, target) in targets {
                let Some((port_name, port)) = target else { continue };
                match (port_name, port) {
                    (Some(n), _) if !names.contains_key(n.as_str()) => {
                        let known: Vec<&str> = self.ports.iter().map(|p| p.name.as_str()).collect();
                        let has = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                        why.push(FieldError::new(
                            format!("{at}.{kind}.portName"),
                            format!("no port is named {n:?} in {prefix}.ports (named: {has})"),
                        ));
                    }
                    (None, None) => why.push(FieldError::new(
                        format!("{at}.{kind}"),
                        "give the port to check: portName (one of the task's ports) or port",
                    )),
                    _ => {}
                }
            }
        }
        why
    }
}

/// Where a task is in its life. The last four are terminal.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskPhase {
    /// Accepted by the agent; fetching artifacts and preparing the root filesystem.
    #[default]
    Staging,
    /// The container or process is being started.
    Starting,
    /// Running.
    Running,
    /// Exited with status 0.
    Finished,
    /// Exited otherwise, was killed by the kernel (OOM) or could not start.
    Failed,
    /// Killed on request (deletion or `spec.kill`).
    Killed,
    /// Its node became unreachable; whether to replace it is the owner's decision.
    Lost,
}

impl TaskPhase {
    /// Whether the task has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskPhase::Finished | TaskPhase::Failed | TaskPhase::Killed | TaskPhase::Lost)
    }
}

/// The result of a task's health checks.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskHealth {
    /// Whether the last check passed.
    pub healthy: bool,
    /// Failures in a row so far.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// When the last check finished (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<String>,
    /// What the last failing check said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Observed state of a [`Task`], written by its agent (and by the node lifecycle
/// controller for `LOST`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskStatus {
    /// Phase of the task.
    #[serde(default)]
    pub phase: TaskPhase,
    /// Exit code, when the task exited on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended the task, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// CamelCase reason a program can match: `OOMKilled`, `HealthCheckFailed`,
    /// `NodeUnreachable`, `Error`, `Completed`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the task started running (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the task ended (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    /// Health check results; absent when the task has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<TaskHealth>,
    /// Address of the host the task runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// Host port of each named port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
    /// The runc container id, for containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// One process or container, bound to a node by `spec.nodeName` and realized by that
/// node's agent. Namespaced. Tasks are never restarted in place: a framework that wants
/// another run creates another task.
pub type Task = Object<TaskSpec, TaskStatus>;

impl KindSpec for TaskSpec {
    type Status = TaskStatus;

    const KIND: &'static str = "Task";
    const PLURAL: &'static str = "tasks";
    const SHORT_NAMES: &'static [&'static str] = &["tk"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "One container (runc, from an imported image) or native process, bound to a node \
         by spec.nodeName and run by that node's agent; status reports its phase, exit and health.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("STATUS", ".status.phase", ColumnType::String),
            PrinterColumn::new("NODE", ".spec.nodeName", ColumnType::String),
            PrinterColumn::new("IMAGE", ".spec.image", ColumnType::String),
            PrinterColumn::new("EXIT", ".status.exitCode", ColumnType::Integer),
            PrinterColumn::new("REASON", ".status.reason", ColumnType::String),
        ]
    }

    fn subresources() -> Subresources {
        Subresources { status: true, log: true, scale: None }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Registry;

    fn errors(spec: serde_json::Value) -> Vec<String> {
        let reg = Registry::builtin();
        let info = reg.resolve("tasks").unwrap();
        let task = json!({"apiVersion": "corral.dev/v1", "kind": "Task",
            "metadata": {"name": "t", "namespace": "default"}, "spec": spec});
        match reg.validate(&info, &task) {
            Ok(()) => vec![],
            Err(es) => es.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn field_errors_name_what_a_node_need_not_judge() {
        let spec: super::TaskSpec = serde_json::from_value(json!({
            "resources": {"cpus": -1.0},
            "ports": [{"name": "http", "hostPort": 8080}, {"name": "http", "hostPort": 8080},
                      {"name": "dns", "hostPort": 8080, "protocol": "udp"}],
            "healthChecks": [{"http": {"portName": "admin"}}, {"tcp": {"portName": "http"}}],
        }))
        .unwrap();
        let fields: Vec<String> = spec.field_errors("spec").into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "spec.resources.cpus",
                "spec.ports[1].name",
                "spec.ports[1].hostPort",
                "spec.healthChecks[0].http.portName",
            ]
        );
        assert!(super::TaskSpec::default().field_errors("spec").is_empty());
    }

    #[test]
    fn a_service_account_must_be_a_dns_label() {
        assert!(errors(json!({"serviceAccount": "reader-1"})).is_empty());
        assert!(errors(json!({})).is_empty(), "no service account is fine");
        for bad in ["Reader", "reader_1", "-reader", "", "system:serviceaccount:x:y"] {
            let errs = errors(json!({"serviceAccount": bad}));
            assert!(errs.iter().any(|e| e.starts_with("spec.serviceAccount")), "{bad:?}: {errs:?}");
        }
        let errs = errors(json!({"serviceAccount": "a".repeat(64)}));
        assert!(errs.iter().any(|e| e.starts_with("spec.serviceAccount")), "{errs:?}");
    }

    #[test]
    fn start_at_must_be_an_rfc3339_time_and_says_how_long_to_wait() {
        // Admission judges it (`field_errors`), as the other fields the schema cannot.
        let errors = |t: &str| {
            let spec = super::TaskSpec { start_at: Some(t.into()), ..Default::default() };
            spec.field_errors("spec").into_iter().map(|e| e.field).collect::<Vec<_>>()
        };
        assert!(errors("2026-12-06T18:00:00Z").is_empty());
        for bad in ["tomorrow", "2026-12-06 18:00", "18:00:00Z"] {
            assert_eq!(errors(bad), ["spec.startAt"], "{bad:?}");
        }
        let now = std::time::SystemTime::from(chrono::DateTime::parse_from_rfc3339("2026-12-06T18:00:00Z").unwrap());
        let at = |t: Option<&str>| super::TaskSpec { start_at: t.map(str::to_string), ..Default::default() };
        assert_eq!(at(Some("2026-12-06T18:00:05Z")).start_in(now), Some(std::time::Duration::from_secs(5)));
        assert_eq!(at(Some("2026-12-06T19:00:05+01:00")).start_in(now), Some(std::time::Duration::from_secs(5)));
        for now_or_past in [None, Some("2026-12-06T18:00:00Z"), Some("2026-12-06T17:00:00Z"), Some("bad")] {
            assert_eq!(at(now_or_past).start_in(now), None, "{now_or_past:?}");
        }
    }
}

/// A task read for what schedulers and node health look at — where it runs, what it
/// holds, whether it is alive and healthy — while the rest of the document (image,
/// command, env, artifacts, volumes, health checks' definitions) is skipped in
/// decoding, never built. What the offers, services and node-lifecycle controllers
/// keep for every task of the cluster: a fraction of a [`Task`]'s memory and
/// decoding.
///
/// Read it with an `Api` made for the tasks kind
/// (`Api::<TaskSummary>::for_kind(client, Task::shared_kind_info(), None)`).
/// Never write one back whole: the fields it skipped would be lost. Change a task
/// with a patch, or read the full [`Task`] first.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummary {
    /// `group/version` of the kind.
    #[serde(default)]
    pub api_version: String,
    /// The kind's name.
    #[serde(default)]
    pub kind: String,
    /// Object metadata, without its annotations and owner references: nothing that
    /// reads summaries acts on them, and a service's every task carries one.
    #[serde(default, deserialize_with = "summary_meta")]
    pub metadata: crate::meta::ObjectMeta,
    /// Where it is bound and what it holds.
    #[serde(default)]
    pub spec: TaskSummarySpec,
    /// Where it is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskSummaryStatus>,
}

crate::meta::impl_api_object!(TaskSummary);

/// Decodes the metadata a [`TaskSummary`] keeps: all but annotations and owner
/// references, which are skipped without being built.
fn summary_meta<'de, D: serde::Deserializer<'de>>(d: D) -> Result<crate::meta::ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kept {
        #[serde(default)]
        name: String,
        #[serde(default)]
        namespace: Option<String>,
        #[serde(default)]
        uid: Option<String>,
        #[serde(default)]
        resource_version: Option<String>,
        #[serde(default)]
        generation: Option<i64>,
        #[serde(default)]
        creation_timestamp: Option<String>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default)]
        finalizers: Vec<String>,
        #[serde(default)]
        deletion_timestamp: Option<String>,
    }
    let k = Kept::deserialize(d)?;
    Ok(crate::meta::ObjectMeta {
        name: k.name,
        namespace: k.namespace,
        uid: k.uid,
        resource_version: k.resource_version,
        generation: k.generation,
        creation_timestamp: k.creation_timestamp,
        labels: k.labels,
        finalizers: k.finalizers,
        deletion_timestamp: k.deletion_timestamp,
        ..Default::default()
    })
}

/// The part of a [`TaskSpec`] a [`TaskSummary`] keeps.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummarySpec {
    /// The node it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The framework that launched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    /// The role its resources were taken for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What it holds.
    #[serde(default)]
    pub resources: Resources,
    /// Its ports, with the host ports it holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<TaskPort>,
    /// Asked to die.
    #[serde(default)]
    pub kill: bool,
    /// Its health checks, counted only (never written back).
    #[serde(default, skip_serializing)]
    pub health_checks: Vec<serde::de::IgnoredAny>,
}

/// The part of a [`TaskStatus`] a [`TaskSummary`] keeps.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummaryStatus {
    /// Where it is in its life.
    #[serde(default)]
    pub phase: TaskPhase,
    /// Exit code, when it exited on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// CamelCase reason it ended (`Error`, `OOMKilled`, …): short, kept for the
    /// frameworks that report how an attempt went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    /// Its health checks' verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<TaskHealth>,
    /// The address of its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// Host port of each named port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    #[test]
    fn a_summary_reads_a_full_task_and_keeps_placement_and_phase() {
        let mut t = Task::namespaced(
            "ns",
            "t",
            TaskSpec {
                node_name: Some("n1".into()),
                framework: Some("services".into()),
                image: Some("busybox".into()),
                command: vec!["sleep".into(), "9".into()],
                resources: Resources { cpus: 0.5, mem: 64, disk: 0 },
                kill: true,
                ..Default::default()
            },
        );
        t.status =
            Some(TaskStatus { phase: TaskPhase::Running, host_ip: Some("10.0.0.1".into()), ..Default::default() });
        t.metadata.labels.insert("corral.dev/service".into(), "web".into());
        t.metadata.finalizers.push(AGENT_FINALIZER.into());
        t.metadata.uid = Some("u1".into());
        t.metadata.resource_version = Some("7".into());
        t.metadata.deletion_timestamp = Some("2026-12-01T00:00:00Z".into());
        let kept = t.metadata.clone();
        // Neither annotations nor owner references are kept.
        t.metadata.annotations.insert("note".into(), "x".into());
        t.metadata.owner_references.push(crate::meta::OwnerReference {
            api_version: "corral.dev/v1".into(),
            kind: "Service".into(),
            name: "web".into(),
            uid: "s1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        });
        let s: TaskSummary = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(s.metadata, kept);
        assert_eq!(s.spec.node_name.as_deref(), Some("n1"));
        assert_eq!(s.spec.framework.as_deref(), Some("services"));
        assert_eq!(s.spec.resources, t.spec.resources);
        assert!(s.spec.kill);
        let st = s.status.unwrap_or_default();
        assert_eq!((st.phase, st.host_ip.as_deref()), (TaskPhase::Running, Some("10.0.0.1")));
    }
}
