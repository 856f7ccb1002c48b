//! What the agent knows of each task, between reconciles.

use std::collections::BTreeMap;

use corral_api::kinds::task::TaskHealth;
use corral_runtime::ObjectRef;

use crate::health::HealthHandle;
use crate::runtime::{ExitInfo, Started};

/// Why the agent killed a task; decides the phase it ends in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KillReason {
    /// The task is being deleted.
    Deleted,
    /// `spec.kill` was set.
    Requested,
    /// Its health checks failed too often.
    HealthCheckFailed(String),
    /// Its status is already terminal (e.g. `LOST` while the node was unreachable): it
    /// must not keep running, and its recorded status stays.
    AlreadyTerminal,
}

/// What this agent knows of a task it launched.
#[derive(Default)]
pub(super) struct Local {
    pub(super) key: Option<ObjectRef>,
    pub(super) started: Option<Started>,
    pub(super) ended: Option<Ended>,
    pub(super) kill: Option<KillReason>,
    pub(super) health: Option<TaskHealth>,
    pub(super) health_checks: Option<HealthHandle>,
    pub(super) watching: bool,
    pub(super) cleaned: bool,
    /// Host ports handed to the task, held until it is cleaned up.
    pub(super) ports: BTreeMap<String, u16>,
}

#[derive(Clone, Debug)]
pub(super) enum Ended {
    Exited(ExitInfo),
    Interrupted(String),
    /// The launch itself failed (runc or exec error).
    NotStarted(String),
}
