//! `Job` and `JobRun`: one-off and scheduled runs of a task, as DC/OS Jobs
//! (Metronome). A job is a run template with its schedules; each run is an object
//! of its own, owned by its job, with every attempt it made.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::service::{Condition, Constraint, Waiting};
use crate::kinds::task::TaskSpec;
use crate::registry::{ColumnType, PrinterColumn, Subresources};
use crate::resource::{KindSpec, Object};

/// Label on every run of a job, and on every task of a run: the job's name.
pub const JOB_LABEL: &str = "corral.dev/job";
/// Label on every task of a run: the run's name.
pub const RUN_LABEL: &str = "corral.dev/job-run";
/// The built-in framework that launches runs' tasks.
pub const JOBS_FRAMEWORK: &str = "jobs";

/// What happens when a run's task fails.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RestartPolicy {
    /// The run fails with its task.
    #[default]
    Never,
    /// A new attempt starts, until `retryLimit` attempts failed or the run's
    /// `activeDeadlineSeconds` passed.
    OnFailure,
}

/// What a scheduled time does while another run of the job is active.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConcurrencyPolicy {
    /// Runs overlap.
    #[default]
    Allow,
    /// The new run is skipped (and a manual run refused) while one is active.
    Forbid,
    /// The active runs are killed and the new one starts.
    Replace,
}

fn yes() -> bool {
    true
}
fn utc() -> String {
    "UTC".into()
}
fn fifteen_minutes() -> u64 {
    900
}

/// One schedule of a job.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// Names the schedule in runs and status (default `default`): lowercase letters,
    /// digits and `-`, as it becomes part of run names when a job has several.
    #[serde(default = "default_schedule_id")]
    #[schemars(length(min = 1, max = 20), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub id: String,
    /// A cron expression: five fields, or six with seconds first
    /// (`*/10 * * * * *`: every ten seconds).
    pub cron: String,
    /// The IANA time zone the expression is read in (default `UTC`). On a
    /// daylight-saving change, a time the clock skips runs once as the clock moves
    /// on, and a time the clock passes twice runs once, the first time.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// How late a run may still start (default 900): a time missed by more, the
    /// control plane being down say, is skipped and counted as missed.
    #[serde(default = "fifteen_minutes")]
    pub starting_deadline_seconds: u64,
    /// What a time does while another run is active (default `ALLOW`).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Whether the schedule starts runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_schedule_id() -> String {
    "default".into()
}

fn three() -> u32 {
    3
}
fn one() -> u32 {
    1
}
fn six() -> u32 {
    6
}

/// How a run is carried out: what the job's runs copy when they start.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunTemplate {
    /// The task each attempt runs (image or command, resources, env, artifacts,
    /// volumes, user). `nodeName`, `kill`, `framework`, `role` and `offer` are the
    /// scheduler's and must be left out.
    pub task: TaskSpec,
    /// Placement constraints, all of which a node must meet (as a service's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// The role whose resources the tasks take (default `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What a failed attempt leads to (default `NEVER`).
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// With `ON_FAILURE`, the attempts a run may make in all (default 6, at most
    /// 1000).
    #[serde(default = "six")]
    #[schemars(range(min = 1, max = 1000))]
    pub retry_limit: u32,
    /// Seconds the whole run may take, from its creation (or its due time, for a run
    /// staged ahead of it), attempts included; past them its task is killed and the
    /// run fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<u64>,
}

/// Desired state of a [`Job`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// What each run does.
    pub run: RunTemplate,
    /// When runs start by themselves; none: only by hand (`corral job run`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    /// Succeeded runs kept (default 3); older ones are deleted.
    #[serde(default = "three")]
    pub successful_runs_history_limit: u32,
    /// Failed or killed runs kept (default 1).
    #[serde(default = "one")]
    pub failed_runs_history_limit: u32,
}

/// What a schedule did last and does next.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleStatus {
    /// The schedule's id.
    pub id: String,
    /// The last time it was due and acted on (RFC 3339, UTC): a run started, or the
    /// time skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// The next time it is due (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    /// Times missed by more than the starting deadline, in all.
    #[serde(default)]
    pub missed: u64,
    /// Times skipped because a run was active under `FORBID`, in all.
    #[serde(default)]
    pub skipped: u64,
    /// Why the schedule starts nothing (a bad expression or time zone), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Observed state of a [`Job`], written by the jobs controller.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Each schedule's last and next time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleStatus>,
    /// The earliest next time of all schedules (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<String>,
    /// The runs not yet ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// The latest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// Its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<RunPhase>,
    /// `Scheduled` (every schedule valid), as Kubernetes writes conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A job: a run template and the schedules that start its runs.
pub type Job = Object<JobSpec, JobStatus>;

impl KindSpec for JobSpec {
    type Status = JobStatus;

    const KIND: &'static str = "Job";
    const PLURAL: &'static str = "jobs";
    const SHORT_NAMES: &'static [&'static str] = &["job"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "A one-off or scheduled job as in DC/OS Jobs: a run template, cron \
         schedules in a time zone with a starting deadline and a concurrency policy, and history limits.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("SCHEDULE", ".spec.schedules[0].cron", ColumnType::String),
            PrinterColumn::new("LAST RUN", ".status.lastRun", ColumnType::String),
            PrinterColumn::new("RESULT", ".status.lastResult", ColumnType::String),
            PrinterColumn::new("NEXT RUN", ".status.nextRunTime", ColumnType::String),
        ]
    }

    fn subresources() -> Subresources {
        Subresources { status: true, log: false, scale: None }
    }
}

/// Where a run is in its life.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunPhase {
    /// Waiting for a place (or for its next attempt).
    #[default]
    Pending,
    /// An attempt's task is placed or running.
    Running,
    /// An attempt ended well.
    Succeeded,
    /// Out of attempts or past its deadline, or refused by `FORBID`.
    Failed,
    /// Killed: by hand, or replaced under `REPLACE`.
    Killed,
}

impl RunPhase {
    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunPhase::Succeeded | RunPhase::Failed | RunPhase::Killed)
    }
}

/// What started a run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    /// The schedule's id; none: started by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The time it was due (RFC 3339, UTC), for a scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<String>,
}

/// Desired state of a [`JobRun`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRunSpec {
    /// The job it is a run of, in the same namespace.
    pub job: String,
    /// What started it.
    #[serde(default)]
    pub trigger: Trigger,
    /// The job's run template when the run was made (filled in by the jobs
    /// controller when left out): a later change of the job does not change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunTemplate>,
    /// Asks for the run to be killed (`corral job kill`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kill: bool,
}

/// One attempt of a run: one task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attempt {
    /// The task.
    pub task: String,
    /// The node it was placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When it started running (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it ended (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    /// Its exit code, if its process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The task's phase when it ended, or why it ended otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Observed state of a [`JobRun`], written by the jobs controller.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRunStatus {
    /// Where the run is.
    #[serde(default)]
    pub phase: RunPhase,
    /// Every attempt, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// When its first attempt started running (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it ended (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    /// Why it is not placed, while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Why it ended, or why it started late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One run of a job.
pub type JobRun = Object<JobRunSpec, JobRunStatus>;

impl KindSpec for JobRunSpec {
    type Status = JobRunStatus;

    const KIND: &'static str = "JobRun";
    const PLURAL: &'static str = "jobruns";
    const SHORT_NAMES: &'static [&'static str] = &["run"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "One run of a job: what started it, each attempt (task, node, start, end, \
         exit code) and its phase.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("JOB", ".spec.job", ColumnType::String),
            PrinterColumn::new("PHASE", ".status.phase", ColumnType::String),
            PrinterColumn::new("STARTED", ".status.startTime", ColumnType::String),
            PrinterColumn::new("FINISHED", ".status.finishTime", ColumnType::String),
        ]
    }

    fn subresources() -> Subresources {
        Subresources { status: true, log: false, scale: None }
    }
}
