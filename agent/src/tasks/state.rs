//! What the agent knows of each task between reconciles: one phase at a time, changed
//! only by the transitions below, so that what cannot happen cannot be written down
//! either (an ended task still health-checked, a killed one starting checks, a cleaned
//! up one holding ports).
//!
//! ```text
//! Preparing ──started──▶ Running ──kill──▶ Stopping
//!     │                     │                  │
//!     │ end (launch failed) │ end              │ end
//!     ▼                     ▼                  │
//!   Ended ◀─────────────────┴──────────────────┘
//!     │ clean_up
//!     ▼
//! CleanedUp
//! ```
//!
//! A task with a checkpoint may run, whatever the agent saw of its launch: one still
//! `Preparing` then is taken as `Running`, not yet seen started.
//!
//! Only what this agent run learnt lives here. What must survive a restart is on disk:
//! the runtime's checkpoints (launched, started, ended), why the agent killed a task
//! (`kill.json`) and the ports it was given (`ports.json`); [`TaskState::recovered`]
//! and [`TaskState::found_launched`] start again from those.

use std::collections::BTreeMap;

use corral_api::kinds::task::TaskHealth;
use corral_runtime::ObjectRef;

use crate::health::HealthHandle;
use crate::runtime::{ExitInfo, Recovered, Started};

/// Host ports handed to a task, by port name.
pub(super) type Ports = BTreeMap<String, u16>;

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

/// How a task ended.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum End {
    /// It ran and exited (or its supervisor was lost).
    Exited(ExitInfo),
    /// Its launch was interrupted by an agent restart; it never ran.
    Interrupted(String),
    /// The launch itself failed (runc or exec error).
    NotStarted(String),
}

/// What this agent knows of one task.
#[derive(Debug)]
pub(super) struct Local {
    /// The task's object, to wake its reconcile; unknown until its first reconcile
    /// after a restart.
    pub(super) key: Option<ObjectRef>,
    /// Its phase.
    pub(super) state: TaskState,
}

impl Local {
    /// A task in `state`, not reconciled yet.
    pub(super) fn new(state: TaskState) -> Self {
        Local { key: None, state }
    }
}

/// The phase the agent knows a task in.
#[derive(Debug)]
pub(super) enum TaskState {
    /// Accepted and being prepared (sandbox, artifacts, image); nothing runs yet. It
    /// holds its ports already, so that no other task is given them meanwhile.
    Preparing {
        /// The ports handed to it.
        ports: Ports,
    },
    /// Launched, and running as far as the agent knows.
    Running {
        /// What is known of it while it lives.
        live: Live,
        /// Its health checks, once started.
        checks: Option<HealthHandle>,
    },
    /// Signalled to stop; its end is awaited. No health checks run any more.
    Stopping {
        /// What is known of it while it lives.
        live: Live,
        /// Why it is being killed.
        kill: KillReason,
    },
    /// Ended; its runtime leftovers (container, cgroups, image lease) are not cleaned
    /// up yet, and it still holds its ports until they are.
    Ended {
        /// How it ended.
        outcome: Outcome,
        /// The ports handed to it.
        ports: Ports,
    },
    /// Ended and cleaned up: nothing of it runs or is held any more.
    CleanedUp {
        /// How it ended.
        outcome: Outcome,
    },
}

/// What is known of a launched task until its end.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Live {
    /// How it started; `None` for a task the agent found launched (a checkpoint) without
    /// seeing it start, e.g. when re-adopting it failed. Its end tells the rest.
    pub(super) started: Option<Started>,
    /// The ports handed to it.
    pub(super) ports: Ports,
    /// What its health checks last concluded.
    pub(super) health: Option<TaskHealth>,
    /// Whether a background wait for its end runs.
    pub(super) watching: bool,
}

/// How a task ended, and why the agent killed it if it did.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Outcome {
    /// How it ended.
    pub(super) end: End,
    /// Why the agent killed it, as far as this agent run knows (see `kill.json`).
    pub(super) kill: Option<KillReason>,
}

impl TaskState {
    /// A task about to be prepared, holding `ports`.
    pub(super) fn preparing(ports: Ports) -> Self {
        TaskState::Preparing { ports }
    }

    /// A task the runtime has a checkpoint of, that this agent run never saw start.
    pub(super) fn found_launched() -> Self {
        TaskState::Running { live: Live::default(), checks: None }
    }

    /// A task as the runtime recovered it after a restart; `recorded` gives the ports
    /// recorded at its launch, which a task that still runs holds again.
    pub(super) fn recovered(found: Recovered, recorded: impl FnOnce() -> Ports) -> Self {
        let end = match found {
            Recovered::Running(started) => {
                let live = Live { started: Some(started), ports: recorded(), ..Live::default() };
                return TaskState::Running { live, checks: None };
            }
            Recovered::Exited(info) => End::Exited(info),
            Recovered::Interrupted { reason } => End::Interrupted(reason),
        };
        TaskState::Ended { outcome: Outcome { end, kill: None }, ports: Ports::new() }
    }

    /// The runtime has a checkpoint of the task: from now on it may run, whatever
    /// the agent saw of its launch.
    pub(super) fn checkpointed(&mut self) {
        if let TaskState::Preparing { ports } = self {
            let ports = std::mem::take(ports);
            *self = TaskState::Running { live: Live { ports, ..Live::default() }, checks: None };
        }
    }

    /// The launch succeeded.
    pub(super) fn started(&mut self, started: Started) {
        self.checkpointed();
        if let Some(live) = self.live_mut()
            && live.started.is_none()
        {
            live.started = Some(started);
        }
    }

    /// Records that a background wait for the task's end runs; `false` if one runs
    /// already, or its end is known (nothing to wait for).
    pub(super) fn watch(&mut self) -> bool {
        self.checkpointed();
        match self.live_mut() {
            Some(live) if !live.watching => {
                live.watching = true;
                true
            }
            _ => false,
        }
    }

    /// Moves a running task to stopping, which stops its health checks; `false` (and
    /// nothing changes) if it is being killed already or has ended: the first reason
    /// stands.
    pub(super) fn kill(&mut self, reason: KillReason) -> bool {
        self.checkpointed();
        match self.take() {
            TaskState::Running { live, checks: _ } => {
                *self = TaskState::Stopping { live, kill: reason };
                true
            }
            other => {
                *self = other;
                false
            }
        }
    }

    /// The task ended; its health checks stop, its ports stay held until it is
    /// cleaned up. The first end known stands.
    pub(super) fn ended(&mut self, end: End) {
        *self = match self.take() {
            TaskState::Preparing { ports } => TaskState::Ended { outcome: Outcome { end, kill: None }, ports },
            TaskState::Running { live, checks: _ } => {
                TaskState::Ended { outcome: Outcome { end, kill: None }, ports: live.ports }
            }
            TaskState::Stopping { live, kill } => {
                TaskState::Ended { outcome: Outcome { end, kill: Some(kill) }, ports: live.ports }
            }
            done @ (TaskState::Ended { .. } | TaskState::CleanedUp { .. }) => done,
        };
    }

    /// Moves an ended task to cleaned up, which frees its ports; `true` if the caller
    /// is to clean up now (only once, and never before the end).
    pub(super) fn clean_up(&mut self) -> bool {
        match self.take() {
            TaskState::Ended { outcome, ports: _ } => {
                *self = TaskState::CleanedUp { outcome };
                true
            }
            other => {
                *self = other;
                false
            }
        }
    }

    /// Records what the task's health checks concluded, while it lives.
    pub(super) fn set_health(&mut self, health: TaskHealth) {
        if let Some(live) = self.live_mut() {
            live.health = Some(health);
        }
    }

    /// Whether health checks are to be started: it runs and has none yet.
    pub(super) fn wants_checks(&self) -> bool {
        matches!(self, TaskState::Running { checks: None, .. })
    }

    /// Keeps the task's health checks running, if it still [wants them](Self::wants_checks);
    /// otherwise (it was killed or ended meanwhile) the handle is dropped, which stops
    /// them. `true` if kept.
    pub(super) fn attach_checks(&mut self, handle: HealthHandle) -> bool {
        match self {
            TaskState::Running { checks: slot @ None, .. } => {
                *slot = Some(handle);
                true
            }
            _ => false,
        }
    }

    /// Stops the task's health checks, if they run; it keeps running unchecked.
    pub(super) fn stop_checks(&mut self) {
        if let TaskState::Running { checks, .. } = self {
            *checks = None;
        }
    }

    /// What is known of the task while it lives (running or stopping).
    pub(super) fn live(&self) -> Option<&Live> {
        match self {
            TaskState::Running { live, .. } | TaskState::Stopping { live, .. } => Some(live),
            _ => None,
        }
    }

    /// As [`live`](Self::live), to change.
    pub(super) fn live_mut(&mut self) -> Option<&mut Live> {
        match self {
            TaskState::Running { live, .. } | TaskState::Stopping { live, .. } => Some(live),
            _ => None,
        }
    }

    /// How the task ended, once it has.
    pub(super) fn end(&self) -> Option<&End> {
        match self {
            TaskState::Ended { outcome, .. } | TaskState::CleanedUp { outcome } => Some(&outcome.end),
            _ => None,
        }
    }

    /// Why the agent killed the task, if it did (as far as this agent run knows).
    pub(super) fn kill_reason(&self) -> Option<&KillReason> {
        match self {
            TaskState::Stopping { kill, .. } => Some(kill),
            TaskState::Ended { outcome, .. } | TaskState::CleanedUp { outcome } => outcome.kill.as_ref(),
            _ => None,
        }
    }

    /// The host ports the task holds: from its preparation until it is cleaned up.
    pub(super) fn ports(&self) -> Option<&Ports> {
        match self {
            TaskState::Preparing { ports } | TaskState::Ended { ports, .. } => Some(ports),
            TaskState::Running { live, .. } | TaskState::Stopping { live, .. } => Some(&live.ports),
            TaskState::CleanedUp { .. } => None,
        }
    }

    /// Whether the task is known to run: seen started, and not ended.
    pub(super) fn is_running(&self) -> bool {
        self.live().is_some_and(|l| l.started.is_some())
    }

    /// Whether this agent run saw the task start or end: it must never be launched again.
    pub(super) fn has_run(&self) -> bool {
        self.is_running() || self.end().is_some()
    }

    /// Moves the state out, leaving a placeholder (that costs no allocation) for the
    /// caller to overwrite.
    fn take(&mut self) -> TaskState {
        std::mem::replace(self, TaskState::Preparing { ports: Ports::new() })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::health::CommandRunner;

    struct NoCommands;

    impl CommandRunner for NoCommands {
        fn run(&self, _: Vec<String>, _: Duration) -> futures::future::BoxFuture<'static, crate::Result<i32>> {
            Box::pin(async { Ok(0) })
        }
    }

    /// A handle that runs nothing (no checks), so that no runtime is needed.
    fn handle() -> HealthHandle {
        crate::health::spawn(Vec::new(), Ports::new(), [127, 0, 0, 1].into(), Arc::new(NoCommands), |_| {})
    }

    fn ports(p: u16) -> Ports {
        Ports::from([("http".to_string(), p)])
    }

    fn started() -> Started {
        Started { pid: 42, container_id: None, started_at: "2026-11-22T00:00:00Z".into() }
    }

    fn exit_info() -> ExitInfo {
        ExitInfo {
            exit_code: Some(0),
            signal: None,
            oom_killed: false,
            finished_at: "2026-11-22T00:00:01Z".into(),
            message: None,
        }
    }

    fn exited() -> End {
        End::Exited(exit_info())
    }

    fn preparing() -> TaskState {
        TaskState::preparing(ports(31000))
    }

    fn running() -> TaskState {
        let mut s = preparing();
        s.started(started());
        s
    }

    fn checked() -> TaskState {
        let mut s = running();
        assert!(s.attach_checks(handle()));
        s
    }

    fn stopping() -> TaskState {
        let mut s = checked();
        assert!(s.kill(KillReason::Requested));
        s
    }

    fn ended() -> TaskState {
        let mut s = stopping();
        s.ended(exited());
        s
    }

    fn cleaned_up() -> TaskState {
        let mut s = ended();
        assert!(s.clean_up());
        s
    }

    /// The phase and what it holds, in a line a table can compare.
    fn summary(s: &TaskState) -> String {
        let phase = match s {
            TaskState::Preparing { .. } => "preparing",
            TaskState::Running { checks: Some(_), .. } => "running checked",
            TaskState::Running { checks: None, .. } => "running",
            TaskState::Stopping { .. } => "stopping",
            TaskState::Ended { .. } => "ended",
            TaskState::CleanedUp { .. } => "cleaned up",
        };
        let mut out = phase.to_string();
        if let Some(l) = s.live() {
            out += if l.started.is_some() { " started" } else { " unstarted" };
            if l.watching {
                out += " watched";
            }
        }
        if let Some(k) = s.kill_reason() {
            out += &format!(" kill={k:?}");
        }
        match s.end() {
            Some(End::Exited(_)) => out += " end=exited",
            Some(End::NotStarted(_)) => out += " end=not-started",
            Some(End::Interrupted(_)) => out += " end=interrupted",
            None => {}
        }
        // The ports held, or `-` for none.
        match s.ports() {
            Some(p) => out += &format!(" {:?}", p.values().collect::<Vec<_>>()),
            None => out += " -",
        }
        out
    }

    type Event = fn(&mut TaskState) -> Option<bool>;

    /// A name, the state before, the event, what it returns, the state after.
    type Case = (&'static str, fn() -> TaskState, Event, Option<bool>, &'static str);

    #[test]
    fn transitions_move_between_phases_and_refuse_the_impossible() {
        let started_: Event = |s| {
            s.started(started());
            None
        };
        let watch: Event = |s| Some(s.watch());
        let kill: Event = |s| Some(s.kill(KillReason::Deleted));
        let end: Event = |s| {
            s.ended(exited());
            None
        };
        let launch_failed: Event = |s| {
            s.ended(End::NotStarted("runc failed".into()));
            None
        };
        let clean_up: Event = |s| Some(s.clean_up());
        let attach: Event = |s| Some(s.attach_checks(handle()));
        let stop_checks: Event = |s| {
            s.stop_checks();
            None
        };
        let cases: Vec<Case> = vec![
            // From preparing.
            ("launch", preparing, started_, None, "running started [31000]"),
            ("launch fails", preparing, launch_failed, None, "ended end=not-started [31000]"),
            ("watched means launched", preparing, watch, Some(true), "running unstarted watched [31000]"),
            ("a kill means launched", preparing, kill, Some(true), "stopping unstarted kill=Deleted [31000]"),
            ("no checks before the start", preparing, attach, Some(false), "preparing [31000]"),
            ("nothing to clean before the end", preparing, clean_up, Some(false), "preparing [31000]"),
            // From running.
            ("watch once", running, watch, Some(true), "running started watched [31000]"),
            ("checks start once", running, attach, Some(true), "running checked started [31000]"),
            ("no second checks", checked, attach, Some(false), "running checked started [31000]"),
            ("stop checks", checked, stop_checks, None, "running started [31000]"),
            ("kill stops checks", checked, kill, Some(true), "stopping started kill=Deleted [31000]"),
            ("end stops checks", checked, end, None, "ended end=exited [31000]"),
            ("not cleaned while running", running, clean_up, Some(false), "running started [31000]"),
            ("a second start changes nothing", running, started_, None, "running started [31000]"),
            // From stopping.
            ("the first kill reason stands", stopping, kill, Some(false), "stopping started kill=Requested [31000]"),
            ("no checks while stopping", stopping, attach, Some(false), "stopping started kill=Requested [31000]"),
            ("the end keeps the reason", stopping, end, None, "ended kill=Requested end=exited [31000]"),
            // From ended.
            ("ended is not killed", ended, kill, Some(false), "ended kill=Requested end=exited [31000]"),
            ("ended is not watched", ended, watch, Some(false), "ended kill=Requested end=exited [31000]"),
            ("no checks once ended", ended, attach, Some(false), "ended kill=Requested end=exited [31000]"),
            ("the first end stands", ended, launch_failed, None, "ended kill=Requested end=exited [31000]"),
            ("clean up frees the ports", ended, clean_up, Some(true), "cleaned up kill=Requested end=exited -"),
            // From cleaned up.
            ("clean up once", cleaned_up, clean_up, Some(false), "cleaned up kill=Requested end=exited -"),
            ("cleaned up is not killed", cleaned_up, kill, Some(false), "cleaned up kill=Requested end=exited -"),
            ("no checks once cleaned", cleaned_up, attach, Some(false), "cleaned up kill=Requested end=exited -"),
        ];
        for (name, from, event, returns, want) in cases {
            let mut s = from();
            assert_eq!(event(&mut s), returns, "{name}: returned");
            assert_eq!(summary(&s), want, "{name}");
        }
    }

    #[test]
    fn restarts_start_from_what_is_on_disk() {
        let cases = vec![
            ("running", Recovered::Running(started()), "running started [31000]"),
            ("exited", Recovered::Exited(exit_info()), "ended end=exited []"),
            ("interrupted", Recovered::Interrupted { reason: "restart".into() }, "ended end=interrupted []"),
        ];
        for (name, found, want) in cases {
            assert_eq!(summary(&TaskState::recovered(found, || ports(31000))), want, "{name}");
        }
        assert_eq!(summary(&TaskState::found_launched()), "running unstarted []");
    }

    #[test]
    fn only_tasks_seen_running_or_ended_count_as_run() {
        assert!(!preparing().has_run());
        assert!(!TaskState::found_launched().has_run());
        assert!(running().has_run() && running().is_running());
        assert!(stopping().is_running());
        assert!(ended().has_run() && !ended().is_running());
        assert!(cleaned_up().has_run());
    }
}
