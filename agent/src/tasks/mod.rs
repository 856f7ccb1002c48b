//! The agent's task controller: the reconcile loop that turns each `Task` bound to this
//! node into a running container or process, and reports what becomes of it.
//!
//! Per task (keyed by uid, so a re-created task of the same name is a new task):
//! - bound elsewhere: nothing to do;
//! - being deleted: kill it (SIGTERM, SIGKILL after the grace period), clean up, then
//!   drop the agent's finalizer so the deletion completes;
//! - terminal already (e.g. `LOST` while the node was cut off): make sure nothing runs
//!   (the finalizer stays: the server deletes a task that ended without waiting for it);
//! - `spec.kill`: kill it, and report `KILLED`;
//! - not launched: fetch artifacts (reporting `STAGING`, then `STARTING`), resolve the
//!   image, launch once (the runtime checkpoints before it starts anything, so a
//!   restarted agent never launches twice), report `RUNNING` or `FAILED`, then add the
//!   finalizer;
//! - launched: report the exit when the shim records one, and health as it changes.
//!
//! Everything reported is derived from current state (checkpoints, the shim's exit
//! record, the object), never from which event arrived, so a reconcile can be retried
//! at any point.

mod checks;
mod launch;
mod ports;
mod report;
mod service_account;
mod state;
mod supervise;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use corral_api::KindInfo;
use corral_api::kinds::task::{Task, TaskPhase};
use corral_client::{Api, Client};
use corral_runtime::{Action, ObjectRef, Recorder, StatusReporter, WorkQueue};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::image::Images;
use crate::layout::{Layout, check_uid};
use crate::runtime::{Recovered, Runtime};

use checks::start_health_checks;
use launch::launch;
use ports::recorded_ports;
use report::{apply_end, drop_finalizer, ensure_finalizer, record_kill, report_end, running_status, write_status};
pub use state::KillReason;
use state::{End, Local, TaskState};
use supervise::{cleanup, read_kill_reason};

/// Everything the task controller's reconciles share.
pub struct TaskContext {
    /// This node's name.
    pub node: String,
    /// Address tasks are reached at (status.hostIp).
    pub address: String,
    /// The tasks, through the API.
    pub tasks: Api<Task>,
    /// The `tasks` kind.
    pub kind: Arc<KindInfo>,
    /// The container runtime.
    pub runtime: Arc<Runtime>,
    /// The image store.
    pub images: Images,
    /// The work dir.
    pub layout: Layout,
    /// Records Events on tasks.
    pub recorder: Recorder,
    /// Writes the tasks' statuses, many in one report.
    pub reporter: StatusReporter,
    /// Agent metrics.
    pub metrics: Arc<crate::metrics::AgentMetrics>,
    /// What artifacts may be fetched.
    pub artifacts: crate::artifacts::ArtifactPolicy,
    /// The authority the API's certificate chains to, for tasks' `ca.crt`.
    pub server_ca: Option<Vec<u8>>,
    /// The node's persistent volumes.
    pub volumes: Arc<crate::volumes::Volumes>,
    local: Mutex<HashMap<String, Local>>,
    /// Host ports offered by this node.
    port_ranges: Vec<corral_api::kinds::node::PortRange>,
    queue: OnceLock<Arc<WorkQueue<ObjectRef>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl TaskContext {
    /// A context for the task controller of `node`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: String,
        address: String,
        client: Client,
        runtime: Arc<Runtime>,
        images: Images,
        layout: Layout,
        metrics: Arc<crate::metrics::AgentMetrics>,
        port_ranges: Vec<corral_api::kinds::node::PortRange>,
        artifacts: crate::artifacts::ArtifactPolicy,
        server_ca: Option<Vec<u8>>,
        volumes: Arc<crate::volumes::Volumes>,
    ) -> Arc<Self> {
        let recorder = Recorder::new(client.clone(), &format!("agent/{node}"));
        let reporter = StatusReporter::new(client.clone(), node.clone());
        let tasks = Api::<Task>::all(client);
        Arc::new(TaskContext {
            node,
            address,
            kind: tasks.kind().clone(),
            tasks,
            runtime,
            images,
            layout,
            recorder,
            reporter,
            metrics,
            artifacts,
            server_ca,
            volumes,
            local: Mutex::new(HashMap::new()),
            port_ranges,
            queue: OnceLock::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Stops all background work on tasks (health checks, kills): the agent is going
    /// away and its tasks must run on untouched until the next agent adopts them.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for l in self.local.lock().values_mut() {
            l.state.stop_checks();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Hands the controller's queue over, so that exits and health changes can wake
    /// the task's reconcile.
    pub fn set_queue(&self, queue: Arc<WorkQueue<ObjectRef>>) {
        let _ = self.queue.set(queue);
    }

    fn wake(&self, uid: &str) {
        let key = self.local.lock().get(uid).and_then(|l| l.key.clone());
        if let (Some(q), Some(key)) = (self.queue.get(), key) {
            q.add(key);
        }
    }

    /// Takes in what the runtime recovered after a restart: running tasks are watched
    /// again (never restarted), ended ones are reported by their next reconcile.
    pub fn adopt(self: &Arc<Self>, recovered: Vec<(String, Recovered)>) {
        for (uid, r) in recovered {
            if let Recovered::Running(started) = &r {
                tracing::info!(uid, pid = started.pid, "re-adopted a running task");
            }
            let state = TaskState::recovered(r, || recorded_ports(&self.layout, &uid).unwrap_or_default());
            let running = state.live().is_some();
            self.local.lock().insert(uid.clone(), Local::new(state));
            if running {
                self.watch_exit(&uid);
            }
        }
        self.metrics.running.set(self.running_count() as i64);
    }

    fn running_count(&self) -> usize {
        self.local.lock().values().filter(|l| l.state.is_running()).count()
    }
}

/// The reconcile function of the agent's task controller.
pub async fn reconcile(task: Arc<Task>, ctx: Arc<TaskContext>) -> Result<Action> {
    // The agent's watch selects its node's tasks; one bound elsewhere (it moved) is
    // not its business.
    if task.spec.node_name.as_deref() != Some(ctx.node.as_str()) {
        return Ok(Action::await_change());
    }
    let key = Some(ObjectRef::of(&ctx.kind, &*task));
    let task: Task = (*task).clone();
    let uid = check_uid(task.metadata.uid.as_deref().unwrap_or_default())?.to_string();
    let grace = Duration::from_secs(task.spec.kill_grace_period().into());
    let launched = ctx.runtime.launched(&uid);
    let ended = {
        let mut local = ctx.local.lock();
        if launched {
            local.entry(uid.clone()).or_insert_with(|| Local::new(TaskState::found_launched())).state.checkpointed();
        }
        local.get_mut(&uid).and_then(|l| {
            l.key = key;
            l.state.end().cloned()
        })
    };
    let status = task.status.clone();
    let phase = status.as_ref().map(|s| s.phase);

    if task.metadata.deletion_timestamp.is_some() {
        if launched && ended.is_none() {
            ctx.watch_exit(&uid);
            if ctx.kill(&uid, KillReason::Deleted, grace) {
                record_kill(&ctx, &task, "the task was deleted", grace).await;
            }
            return Ok(Action::requeue(grace + Duration::from_secs(5)));
        }
        if launched {
            cleanup(&ctx, &uid).await;
        }
        ctx.local.lock().remove(&uid);
        drop_finalizer(&ctx, task).await?;
        return Ok(Action::await_change());
    }

    if let Some(p) = phase.filter(|p| p.is_terminal()) {
        if launched && ended.is_none() {
            ctx.watch_exit(&uid);
            if ctx.local.lock().get(&uid).and_then(|l| l.state.kill_reason().cloned()).is_none() {
                tracing::info!(uid, phase = ?p, "a task recorded as ended still runs here; killing it");
            }
            ctx.kill(&uid, KillReason::AlreadyTerminal, grace);
            return Ok(Action::requeue(grace + Duration::from_secs(5)));
        }
        if let Some(end @ End::Exited(_)) = &ended {
            // Recorded as ended by someone else (LOST): keep the verdict, add how it
            // really ended here.
            let mut st = status.clone().unwrap_or_default();
            apply_end(&mut st, end, Some(&KillReason::AlreadyTerminal));
            if Some(&st) != status.as_ref() {
                write_status(&ctx, &task, st).await?;
            }
        }
        if launched {
            cleanup(&ctx, &uid).await;
        }
        // The finalizer stays: deleting a task that ended does not wait for it.
        return Ok(Action::await_change());
    }

    let known = ctx.local.lock().get(&uid).is_some_and(|l| l.state.has_run());
    if !launched && known {
        // Its checkpoint vanished while this agent knows it ran: never launch again.
        return Err(Error::Runtime(format!("task {uid} ran here but its checkpoint is gone; not launching it again")));
    }
    if !launched {
        if task.spec.kill {
            let mut st = status.unwrap_or_default();
            st.phase = TaskPhase::Killed;
            st.reason = Some("Killed".into());
            st.message = Some("killed before it started".into());
            st.finish_time = Some(corral_api::meta::now_timestamp());
            write_status(&ctx, &task, st).await?;
            return Ok(Action::await_change());
        }
        // Staged ahead of its time (a scheduled job run): held, its resources taken,
        // until then. Nothing is written meanwhile; a kill or a deletion still wakes it.
        if let Some(wait) = task.spec.start_in(std::time::SystemTime::now()) {
            tracing::debug!(uid, task = %task.metadata.name, wait_ms = wait.as_millis() as u64, "task staged; starts later");
            return Ok(Action::requeue(wait));
        }
        return launch(&ctx, task, uid).await;
    }

    if task.spec.kill && ended.is_none() {
        ctx.watch_exit(&uid);
        if ctx.kill(&uid, KillReason::Requested, grace) {
            record_kill(&ctx, &task, "spec.kill is set", grace).await;
        }
        return Ok(Action::requeue(grace + Duration::from_secs(5)));
    }

    match ended {
        Some(end) => {
            // After a restart the reason may only be on disk, or only in the spec.
            let kill = ctx
                .local
                .lock()
                .get(&uid)
                .and_then(|l| l.state.kill_reason().cloned())
                .or_else(|| read_kill_reason(&ctx.layout, &uid))
                .or_else(|| task.spec.kill.then_some(KillReason::Requested));
            let mut st = status.unwrap_or_default();
            apply_end(&mut st, &end, kill.as_ref());
            let task = report_end(&ctx, &task, st).await?;
            cleanup(&ctx, &uid).await;
            // What the task left on its volumes is measured now, not at the next round.
            let ns = task.metadata.namespace.as_deref().unwrap_or("default");
            for m in &task.spec.volume_mounts {
                ctx.volumes.touch(ns, &m.volume);
            }
            // Nothing runs any more, and the status says so: the server deletes an
            // ended task without waiting for this agent's finalizer, so letting go of
            // it here would be one more write per task for nothing.
            Ok(Action::await_change())
        }
        None => {
            // Running (or re-adopted): make sure its exit is watched, deletion waits for
            // the agent, and the status says so.
            ctx.watch_exit(&uid);
            let task = ensure_finalizer(&ctx, task).await?;
            let (started, health) = {
                let local = ctx.local.lock();
                let live = local.get(&uid).and_then(|l| l.state.live());
                (live.and_then(|l| l.started.clone()), live.and_then(|l| l.health.clone()))
            };
            let mut st = status.clone().unwrap_or_default();
            if let Some(s) = &started {
                running_status(&mut st, s, &ctx.address);
            }
            if let Some(live) = ctx.local.lock().get_mut(&uid).and_then(|l| l.state.live_mut()) {
                // Re-adopted without a record of its ports: the status has them.
                if live.ports.is_empty() {
                    live.ports = st.ports.clone();
                }
                st.ports = live.ports.clone();
            }
            if health.is_some() {
                st.health = health;
            }
            if Some(&st) != status.as_ref() {
                write_status(&ctx, &task, st).await?;
            }
            if started.is_some() && !task.spec.health_checks.is_empty() {
                start_health_checks(&ctx, &task, &uid);
            }
            // A periodic look as a safety net; changes wake the task at once.
            Ok(Action::requeue(Duration::from_secs(60)))
        }
    }
}

/// Backs off on errors; conflicts just re-read.
pub fn error_policy(_task: &Arc<Task>, err: &Error, _ctx: &Arc<TaskContext>) -> Action {
    match err {
        Error::Api(e) if e.is_conflict() => Action::requeue(Duration::from_millis(50)),
        _ => {
            tracing::warn!(error = %err, "task reconcile failed; retrying");
            Action::requeue(Duration::from_millis(500))
        }
    }
}
