//! The agent's task controller: the reconcile loop that turns each `Task` bound to this
//! node into a running container or process, and reports what becomes of it.
//!
//! Per task (keyed by uid, so a re-created task of the same name is a new task):
//! - bound elsewhere: nothing to do;
//! - being deleted: kill it (SIGTERM, SIGKILL after the grace period), clean up, then
//!   drop the agent's finalizer so the deletion completes;
//! - terminal already (e.g. `LOST` while the node was cut off): make sure nothing runs;
//! - `spec.kill`: kill it, and report `KILLED`;
//! - not launched: fetch artifacts (reporting `STAGING`, then `STARTING`), resolve the
//!   image, launch once (the runtime checkpoints before it starts anything, so a
//!   restarted agent never launches twice), report `RUNNING` or `FAILED`, then add the
//!   finalizer;
//! - launched: report the exit when the shim records one (and drop the finalizer),
//!   and health as it changes.
//!
//! Everything reported is derived from current state (checkpoints, the shim's exit
//! record, the object), never from which event arrived, so a reconcile can be retried
//! at any point.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use corral_api::KindInfo;
use corral_api::kinds::task::{AGENT_FINALIZER, Task, TaskHealth, TaskPhase, TaskStatus};
use corral_client::{Api, Client};
use corral_runtime::{Action, EventType, ObjectRef, Recorder, WorkQueue};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::health::{self, CommandRunner, HealthHandle, HealthUpdate};
use crate::image::Images;
use crate::layout::{Layout, TaskDir, check_uid};
use crate::runtime::{ExitInfo, LaunchSpec, Mount, Recovered, Runtime, Started};

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
struct Local {
    key: Option<ObjectRef>,
    started: Option<Started>,
    ended: Option<Ended>,
    kill: Option<KillReason>,
    health: Option<TaskHealth>,
    health_checks: Option<HealthHandle>,
    watching: bool,
    cleaned: bool,
    /// Host ports handed to the task, held until it is cleaned up.
    ports: BTreeMap<String, u16>,
}

#[derive(Clone, Debug)]
enum Ended {
    Exited(ExitInfo),
    Interrupted(String),
    /// The launch itself failed (runc or exec error).
    NotStarted(String),
}

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
    /// Agent metrics.
    pub metrics: Arc<crate::metrics::AgentMetrics>,
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
    ) -> Arc<Self> {
        let recorder = Recorder::new(client.clone(), &format!("agent/{node}"));
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
            metrics,
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
            l.health_checks = None;
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
            let mut local = Local::default();
            match r {
                Recovered::Running(started) => {
                    tracing::info!(uid, pid = started.pid, "re-adopted a running task");
                    local.started = Some(started);
                }
                Recovered::Exited(info) => local.ended = Some(Ended::Exited(info)),
                Recovered::Interrupted { reason } => local.ended = Some(Ended::Interrupted(reason)),
            }
            let running = local.ended.is_none();
            if running {
                local.ports = recorded_ports(&self.layout, &uid).unwrap_or_default();
            }
            self.local.lock().insert(uid.clone(), local);
            if running {
                self.watch_exit(&uid);
            }
        }
        self.metrics.running.set(self.running_count() as i64);
    }

    fn running_count(&self) -> usize {
        self.local.lock().values().filter(|l| l.started.is_some() && l.ended.is_none()).count()
    }

    /// Waits for the task's end in the background, then wakes its reconcile.
    fn watch_exit(self: &Arc<Self>, uid: &str) {
        {
            let mut local = self.local.lock();
            let l = local.entry(uid.to_string()).or_default();
            if l.watching {
                return;
            }
            l.watching = true;
        }
        let me = self.clone();
        let uid = uid.to_string();
        tokio::spawn(async move {
            let ended = match me.runtime.wait(&uid).await {
                Ok(info) => Ended::Exited(info),
                // It did run: its end is unknown, not an interrupted launch.
                Err(e) => Ended::Exited(ExitInfo {
                    exit_code: None,
                    signal: None,
                    oom_killed: false,
                    finished_at: corral_api::meta::now_timestamp(),
                    message: Some(format!("the agent lost track of the task: {e}")),
                }),
            };
            tracing::info!(uid, ?ended, "task ended");
            if let Some(l) = me.local.lock().get_mut(&uid) {
                l.ended = Some(ended);
                l.health_checks = None;
            }
            me.metrics.running.set(me.running_count() as i64);
            me.wake(&uid);
        });
    }

    fn kill(&self, uid: &str, reason: KillReason, grace: Duration) {
        if self.is_closed() {
            return;
        }
        {
            let mut local = self.local.lock();
            let l = local.entry(uid.to_string()).or_default();
            if l.kill.is_some() || l.ended.is_some() {
                return;
            }
            l.kill = Some(reason.clone());
            l.health_checks = None;
        }
        tracing::info!(uid, ?reason, grace_s = grace.as_secs(), "killing task");
        // A restarted agent must still know why the task ended.
        if let Ok(bytes) = serde_json::to_vec(&reason)
            && let Err(e) = crate::layout::write_replace(&kill_reason_path(&self.layout, uid), &bytes)
        {
            tracing::warn!(uid, error = %e, "cannot record why the task is killed");
        }
        let runtime = self.runtime.clone();
        let uid = uid.to_string();
        tokio::spawn(async move {
            if let Err(e) = runtime.kill(&uid, grace).await {
                tracing::warn!(uid, error = %e, "cannot kill task");
            }
        });
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
    {
        let mut local = ctx.local.lock();
        if launched || local.contains_key(&uid) {
            local.entry(uid.clone()).or_default().key = key;
        }
    }
    let status = task.status.clone();
    let phase = status.as_ref().map(|s| s.phase);
    let ended = ctx.local.lock().get(&uid).and_then(|l| l.ended.clone());

    if task.metadata.deletion_timestamp.is_some() {
        if launched && ended.is_none() {
            ctx.watch_exit(&uid);
            ctx.kill(&uid, KillReason::Deleted, grace);
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
            if ctx.local.lock().get(&uid).and_then(|l| l.kill.clone()).is_none() {
                tracing::info!(uid, phase = ?p, "a task recorded as ended still runs here; killing it");
            }
            ctx.kill(&uid, KillReason::AlreadyTerminal, grace);
            return Ok(Action::requeue(grace + Duration::from_secs(5)));
        }
        let mut task = task;
        if let Some(end @ Ended::Exited(_)) = &ended {
            // Recorded as ended by someone else (LOST): keep the verdict, add how it
            // really ended here.
            let mut st = status.clone().unwrap_or_default();
            apply_end(&mut st, end, Some(&KillReason::AlreadyTerminal));
            if Some(&st) != status.as_ref() {
                task = write_status(&ctx, &task, st).await?;
            }
        }
        if launched {
            cleanup(&ctx, &uid).await;
        }
        drop_finalizer(&ctx, task).await?;
        return Ok(Action::await_change());
    }

    let known = ctx.local.lock().get(&uid).is_some_and(|l| l.started.is_some() || l.ended.is_some());
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
        return launch(&ctx, task, uid).await;
    }

    if task.spec.kill && ended.is_none() {
        ctx.watch_exit(&uid);
        ctx.kill(&uid, KillReason::Requested, grace);
        return Ok(Action::requeue(grace + Duration::from_secs(5)));
    }

    match ended {
        Some(end) => {
            // After a restart the reason may only be on disk, or only in the spec.
            let kill = ctx
                .local
                .lock()
                .get(&uid)
                .and_then(|l| l.kill.clone())
                .or_else(|| read_kill_reason(&ctx.layout, &uid))
                .or_else(|| task.spec.kill.then_some(KillReason::Requested));
            let mut st = status.unwrap_or_default();
            apply_end(&mut st, &end, kill.as_ref());
            let task = report_end(&ctx, &task, st).await?;
            cleanup(&ctx, &uid).await;
            // Nothing runs any more: deleting the record need not wait for this agent
            // (which may never come back).
            drop_finalizer(&ctx, task).await?;
            Ok(Action::await_change())
        }
        None => {
            // Running (or re-adopted): make sure its exit is watched, deletion waits for
            // the agent, and the status says so.
            ctx.watch_exit(&uid);
            let task = ensure_finalizer(&ctx, task).await?;
            let (started, health) = {
                let local = ctx.local.lock();
                let l = local.get(&uid);
                (l.and_then(|l| l.started.clone()), l.and_then(|l| l.health.clone()))
            };
            let mut st = status.clone().unwrap_or_default();
            if let Some(s) = &started {
                running_status(&mut st, s, &ctx.address);
            }
            if let Some(l) = ctx.local.lock().get_mut(&uid) {
                if l.ports.is_empty() {
                    l.ports = st.ports.clone();
                }
                st.ports = l.ports.clone();
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

/// Maps how a task ended (and why the agent killed it, if it did) to its final status.
fn apply_end(st: &mut TaskStatus, end: &Ended, kill: Option<&KillReason>) {
    match end {
        Ended::NotStarted(message) => {
            st.phase = TaskPhase::Failed;
            st.reason = Some("LaunchFailed".into());
            st.message = Some(message.clone());
            st.finish_time = Some(corral_api::meta::now_timestamp());
        }
        Ended::Interrupted(reason) => {
            st.phase = TaskPhase::Failed;
            st.reason = Some("LaunchInterrupted".into());
            st.message = Some(reason.clone());
            st.finish_time = Some(corral_api::meta::now_timestamp());
        }
        Ended::Exited(info) => {
            st.exit_code = info.exit_code;
            st.signal = info.signal;
            st.finish_time = Some(info.finished_at.clone());
            let (phase, reason, message) = match (kill, info) {
                (Some(KillReason::AlreadyTerminal), _) => {
                    // Keep what was recorded (e.g. LOST); only the exit details are new.
                    (st.phase, st.reason.clone().unwrap_or_default(), st.message.clone().unwrap_or_default())
                }
                (_, i) if i.oom_killed => {
                    (TaskPhase::Failed, "OOMKilled".to_string(), "killed by the kernel: over its memory limit".into())
                }
                (Some(KillReason::HealthCheckFailed(m)), _) => {
                    (TaskPhase::Failed, "HealthCheckFailed".into(), format!("killed after failing health checks: {m}"))
                }
                (Some(KillReason::Deleted), _) => {
                    (TaskPhase::Killed, "Killed".into(), "killed: the task was deleted".into())
                }
                (Some(KillReason::Requested), _) => (TaskPhase::Killed, "Killed".into(), "killed on request".into()),
                (None, i) if i.exit_code == Some(0) => {
                    (TaskPhase::Finished, "Completed".into(), "exited with code 0".into())
                }
                (None, i) if i.exit_code.is_some() => {
                    (TaskPhase::Failed, "Error".into(), format!("exited with code {}", i.exit_code.unwrap_or_default()))
                }
                (None, i) if i.signal.is_some() => {
                    (TaskPhase::Failed, "Signaled".into(), format!("killed by signal {}", i.signal.unwrap_or_default()))
                }
                (None, i) => (
                    TaskPhase::Failed,
                    "ExecutorLost".into(),
                    i.message.clone().unwrap_or_else(|| "the task's supervisor vanished".into()),
                ),
            };
            st.phase = phase;
            st.reason = Some(reason).filter(|r| !r.is_empty());
            st.message = Some(match &info.message {
                Some(m) if !message.contains(m.as_str()) && !m.is_empty() => format!("{message} ({m})"),
                _ => message,
            })
            .filter(|m| !m.is_empty());
        }
    }
}

fn running_status(st: &mut TaskStatus, started: &Started, address: &str) {
    if !st.phase.is_terminal() {
        st.phase = TaskPhase::Running;
    }
    st.start_time = Some(started.started_at.clone());
    st.container_id = started.container_id.clone();
    st.host_ip = Some(address.to_string());
}

async fn launch(ctx: &Arc<TaskContext>, mut task: Task, uid: String) -> Result<Action> {
    let t0 = std::time::Instant::now();
    let ports = assign_ports(ctx, &task, &uid);
    let mut st = task.status.clone().unwrap_or_default();
    st.host_ip = Some(ctx.address.clone());
    st.ports = ports.clone();
    let staging = !task.spec.artifacts.is_empty();
    if staging {
        // Fetching takes a while: say so first.
        task = ensure_finalizer(ctx, task).await?;
        st.phase = TaskPhase::Staging;
        task = write_status(ctx, &task, st.clone()).await?;
    }
    let dir = TaskDir(ctx.layout.task(&uid));
    let spec = match prepare(ctx, &task, &uid, &dir, &ports).await {
        Ok(spec) => spec,
        Err((reason, e)) => {
            // Never launched: nothing to clean up but the ports it was given.
            ctx.local.lock().remove(&uid);
            return fail(ctx, &task, st, reason, &e.to_string()).await;
        }
    };
    if staging {
        // Staged tasks are slow to start anyway; the others go straight to RUNNING.
        st.phase = TaskPhase::Starting;
        task = write_status(ctx, &task, st.clone()).await?;
    }
    // The status write after the start may fail, or the agent die before it: the
    // ports must survive for the next reconcile to report them.
    if let Ok(bytes) = serde_json::to_vec(&ports)
        && let Err(e) = crate::layout::write_replace(&ports_path(&ctx.layout, &uid), &bytes)
    {
        tracing::warn!(uid, error = %e, "cannot record the task's ports");
    }
    if let Some(l) = ctx.local.lock().get_mut(&uid) {
        l.key = Some(ObjectRef::of(&ctx.kind, &task));
    }
    // Nothing is written between accepting the task and starting it: the runtime's
    // durable checkpoint is what prevents a second launch, an object deleted
    // meanwhile is found and killed, and every write on this path (or competing with
    // runc for the CPU) would add to every start. RUNNING is the first word; the
    // finalizer follows it.
    let launched = ctx.runtime.launch(spec).await;
    match launched {
        Ok(started) => {
            ctx.metrics.launched(t0.elapsed());
            tracing::info!(uid, task = %task.metadata.name, pid = started.pid, "task running");
            if let Some(l) = ctx.local.lock().get_mut(&uid) {
                l.started = Some(started.clone());
            }
            ctx.watch_exit(&uid);
            ctx.metrics.running.set(ctx.running_count() as i64);
            // Should this fail, the next reconcile finds the task running and says so.
            running_status(&mut st, &started, &ctx.address);
            let task = write_status(ctx, &task, st).await?;
            let task = ensure_finalizer(ctx, task).await?;
            if !task.spec.health_checks.is_empty() {
                start_health_checks(ctx, &task, &uid);
            }
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        Err(e) => {
            // The checkpoint exists, so this task will never be launched again; a
            // failed launch is final.
            if let Some(l) = ctx.local.lock().get_mut(&uid) {
                l.ended = Some(Ended::NotStarted(e.to_string()));
            }
            cleanup(ctx, &uid).await;
            fail(ctx, &task, st, "LaunchFailed", &e.to_string()).await
        }
    }
}

/// Removes the agent's finalizer, once nothing of the task runs here.
async fn drop_finalizer(ctx: &TaskContext, mut task: Task) -> Result<Task> {
    if !task.metadata.finalizers.iter().any(|f| f == AGENT_FINALIZER) {
        return Ok(task);
    }
    task.metadata.finalizers.retain(|f| f != AGENT_FINALIZER);
    update(ctx, &task).await
}

fn kill_reason_path(layout: &Layout, uid: &str) -> std::path::PathBuf {
    layout.task(uid).join("kill.json")
}

/// Why the agent killed the task, as recorded before the signal went out.
fn read_kill_reason(layout: &Layout, uid: &str) -> Option<KillReason> {
    let bytes = std::fs::read(kill_reason_path(layout, uid)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Adds the agent's finalizer if missing: from then on, deleting the task waits until
/// the agent has stopped it.
async fn ensure_finalizer(ctx: &TaskContext, mut task: Task) -> Result<Task> {
    if task.metadata.finalizers.iter().any(|f| f == AGENT_FINALIZER) || task.metadata.deletion_timestamp.is_some() {
        return Ok(task);
    }
    task.metadata.finalizers.push(AGENT_FINALIZER.into());
    update(ctx, &task).await
}

async fn fail(ctx: &TaskContext, task: &Task, mut st: TaskStatus, reason: &str, message: &str) -> Result<Action> {
    tracing::warn!(task = %task.metadata.name, reason, message, "task failed to start");
    st.phase = TaskPhase::Failed;
    st.reason = Some(reason.into());
    st.message = Some(message.into());
    st.finish_time = Some(corral_api::meta::now_timestamp());
    report_end(ctx, task, st).await?;
    Ok(Action::await_change())
}

/// Writes a task's final status, counts it, and records it as an Event on the task.
async fn report_end(ctx: &TaskContext, task: &Task, st: TaskStatus) -> Result<Task> {
    let (phase, reason) = (st.phase, st.reason.clone().unwrap_or_default());
    let message = st.message.clone().unwrap_or_else(|| format!("{phase:?}"));
    let task = write_status(ctx, task, st).await?;
    ctx.metrics.ended(phase);
    let ev = if phase == TaskPhase::Finished { EventType::Normal } else { EventType::Warning };
    let _ = ctx.recorder.publish(&task, ev, &reason, &message).await;
    Ok(task)
}

/// Host ports of the task's named ports: as given, or (until a scheduler assigns them)
/// the first ports of the node's ranges that no task of this node holds and nothing
/// else has bound. What is handed out is remembered until the task is cleaned up.
fn assign_ports(ctx: &TaskContext, task: &Task, uid: &str) -> BTreeMap<String, u16> {
    let mut local = ctx.local.lock();
    let taken: std::collections::HashSet<u16> =
        local.iter().filter(|(u, _)| u.as_str() != uid).flat_map(|(_, l)| l.ports.values().copied()).collect();
    let mut out = BTreeMap::new();
    let mut candidates = ctx
        .port_ranges
        .iter()
        .flat_map(|r| r.begin..=r.end)
        .filter(|p| !taken.contains(p) && std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok());
    for p in &task.spec.ports {
        let port = match p.host_port {
            Some(port) => Some(port),
            None => candidates.find(|c| !out.values().any(|v| v == c)),
        };
        if let Some(port) = port {
            out.insert(p.name.clone(), port);
        }
    }
    local.entry(uid.to_string()).or_default().ports = out.clone();
    out
}

fn ports_path(layout: &Layout, uid: &str) -> std::path::PathBuf {
    layout.task(uid).join("ports.json")
}

/// The ports a task was started with, as recorded beside it.
fn recorded_ports(layout: &Layout, uid: &str) -> Option<BTreeMap<String, u16>> {
    serde_json::from_slice(&std::fs::read(ports_path(layout, uid)).ok()?).ok()
}

type Prepared = std::result::Result<LaunchSpec, (&'static str, Error)>;

/// Everything before the launch: sandbox, artifacts, image, command, env, user, mounts.
async fn prepare(ctx: &TaskContext, task: &Task, uid: &str, dir: &TaskDir, ports: &BTreeMap<String, u16>) -> Prepared {
    let sandbox = dir.sandbox();
    std::fs::create_dir_all(&sandbox)
        .map_err(|e| ("SandboxFailed", Error::io("cannot create sandbox", &sandbox, e)))?;
    if !task.spec.artifacts.is_empty() {
        crate::artifacts::fetch(&task.spec.artifacts, &sandbox).await.map_err(|e| ("ArtifactFetchFailed", e))?;
    }
    let spec = &task.spec;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut image_id = None;
    let (rootfs, argv, cwd, user) = match &spec.image {
        Some(reference) => {
            let image = ctx.images.resolve(reference).await.map_err(|e| ("ImageNotFound", e))?;
            image_id = Some(image.id.clone());
            for kv in &image.env {
                if let Some((k, v)) = kv.split_once('=') {
                    env.push((k.into(), v.into()));
                }
            }
            let argv: Vec<String> = if !spec.command.is_empty() {
                spec.command.iter().chain(&spec.args).cloned().collect()
            } else if !spec.args.is_empty() {
                image.entrypoint.iter().chain(&spec.args).cloned().collect()
            } else {
                image.entrypoint.iter().chain(&image.cmd).cloned().collect()
            };
            let cwd = spec.working_dir.clone().or(image.working_dir.clone());
            let user = match spec.user.as_ref().or(image.user.as_ref()) {
                Some(u) => Some(crate::users::resolve_in_rootfs(u, &image.rootfs).map_err(|e| ("InvalidSpec", e))?),
                None => None,
            };
            (Some(image.rootfs.clone()), argv, cwd, user)
        }
        None => {
            let argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
            let user = match &spec.user {
                Some(u) => Some(crate::users::resolve_on_host(u).map_err(|e| ("InvalidSpec", e))?),
                None => None,
            };
            (None, argv, spec.working_dir.clone(), user)
        }
    };
    if argv.is_empty() {
        return Err((
            "InvalidSpec",
            Error::Invalid("spec.command: empty, and the image has no entrypoint or cmd to run".into()),
        ));
    }
    let in_container = rootfs.is_some();
    let sandbox_seen = if in_container { "/mnt/sandbox".to_string() } else { sandbox.display().to_string() };
    env.push(("HOST".into(), ctx.address.clone()));
    env.push(("CORRAL_SANDBOX".into(), sandbox_seen));
    env.push(("CORRAL_TASK_ID".into(), uid.to_string()));
    env.push(("CORRAL_TASK_NAME".into(), task.metadata.name.clone()));
    env.push(("CORRAL_TASK_NAMESPACE".into(), task.metadata.namespace.clone().unwrap_or_default()));
    env.push(("CORRAL_NODE_NAME".into(), ctx.node.clone()));
    for (i, p) in spec.ports.iter().enumerate() {
        if let Some(port) = ports.get(&p.name) {
            env.push((format!("PORT{i}"), port.to_string()));
            env.push((format!("PORT_{}", p.name.to_uppercase().replace('-', "_")), port.to_string()));
        }
    }
    if let Some(first) = spec.ports.first().and_then(|p| ports.get(&p.name)) {
        env.push(("PORT".into(), first.to_string()));
    }
    for (k, v) in &spec.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    // As Kubernetes does: `$(PORT_HTTP)` in the command takes the variable's value, so
    // that ports assigned at placement reach programs that take them as arguments.
    let argv: Vec<String> = argv.iter().map(|a| expand(a, &env)).collect();
    if !in_container && !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()));
    }
    let mut mounts = Vec::new();
    for m in &spec.volume_mounts {
        let source = ctx.layout.volume(&m.volume).map_err(|e| ("InvalidSpec", e))?;
        std::fs::create_dir_all(&source)
            .map_err(|e| ("VolumeFailed", Error::io("cannot create volume", &source, e)))?;
        mounts.push(Mount { source, destination: m.mount_path.clone(), read_only: m.read_only });
    }
    // Last, so that no failure above leaves the image held.
    if let (Some(id), Some(_)) = (&image_id, &rootfs) {
        ctx.images.acquire(id, uid).await.map_err(|e| ("ImageUnusable", e))?;
    }
    Ok(LaunchSpec {
        uid: uid.to_string(),
        name: format!("{}/{}", task.metadata.namespace.clone().unwrap_or_default(), task.metadata.name),
        rootfs,
        argv,
        env,
        cwd,
        user,
        cpus: spec.resources.cpus,
        mem_mib: spec.resources.mem,
        mounts,
    })
}

/// Replaces `$(NAME)` by the value of `NAME` in `env`; `$$(` stands for a literal
/// `$(`, and unknown names are left as written.
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$(") {
            out.push_str("$(");
            rest = t;
        } else if let Some((name, after)) = tail.strip_prefix("$(").and_then(|t| t.split_once(')'))
            && let Some((_, v)) = env.iter().rev().find(|(k, _)| k == name)
        {
            out.push_str(v);
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Runs a health check command inside a task.
struct ExecInTask {
    runtime: Arc<Runtime>,
    uid: String,
}

impl CommandRunner for ExecInTask {
    fn run(&self, argv: Vec<String>, timeout: Duration) -> futures::future::BoxFuture<'static, Result<i32>> {
        let (runtime, uid) = (self.runtime.clone(), self.uid.clone());
        Box::pin(async move { runtime.exec(&uid, &argv, timeout).await })
    }
}

fn start_health_checks(ctx: &Arc<TaskContext>, task: &Task, uid: &str) {
    {
        let local = ctx.local.lock();
        if local.get(uid).is_some_and(|l| l.health_checks.is_some() || l.ended.is_some() || l.kill.is_some()) {
            return;
        }
    }
    let ports = ctx.local.lock().get(uid).map(|l| l.ports.clone()).unwrap_or_default();
    let host: IpAddr = ctx.address.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let runner = Arc::new(ExecInTask { runtime: ctx.runtime.clone(), uid: uid.to_string() });
    let weak = Arc::downgrade(ctx);
    let (uid_cb, grace) = (uid.to_string(), Duration::from_secs(task.spec.kill_grace_period().into()));
    let handle = health::spawn(task.spec.health_checks.clone(), ports, host, runner, move |update: HealthUpdate| {
        let Some(ctx) = weak.upgrade() else { return };
        if let Some(l) = ctx.local.lock().get_mut(&uid_cb) {
            l.health = Some(update.health.clone());
        }
        if update.failed {
            let msg = update.health.message.clone().unwrap_or_else(|| "unhealthy".into());
            ctx.kill(&uid_cb, KillReason::HealthCheckFailed(msg), grace);
        }
        ctx.wake(&uid_cb);
    });
    if let Some(l) = ctx.local.lock().get_mut(uid) {
        l.health_checks = Some(handle);
    }
}

async fn cleanup(ctx: &TaskContext, uid: &str) {
    {
        let mut local = ctx.local.lock();
        let l = local.entry(uid.to_string()).or_default();
        if l.cleaned {
            return;
        }
        l.cleaned = true;
        l.health_checks = None;
        l.ports.clear();
    }
    if let Err(e) = ctx.runtime.cleanup(uid).await {
        tracing::warn!(uid, error = %e, "cannot clean up after the task");
    }
    if let Err(e) = ctx.images.release_all(uid).await {
        tracing::warn!(uid, error = %e, "cannot release the task's image lease");
    }
}

async fn update(ctx: &TaskContext, task: &Task) -> Result<Task> {
    Ok(ctx.tasks.update(task).await?)
}

async fn write_status(ctx: &TaskContext, task: &Task, status: TaskStatus) -> Result<Task> {
    let mut t = task.clone();
    t.status = Some(status);
    Ok(ctx.tasks.update_status(&t).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>, oom: bool) -> Ended {
        Ended::Exited(ExitInfo {
            exit_code: code,
            signal,
            oom_killed: oom,
            finished_at: "2026-11-22T00:00:00Z".into(),
            message: None,
        })
    }

    fn end(e: Ended, kill: Option<KillReason>) -> TaskStatus {
        let mut st = TaskStatus { phase: TaskPhase::Running, ..Default::default() };
        apply_end(&mut st, &e, kill.as_ref());
        st
    }

    #[test]
    fn exits_map_to_phases_and_reasons() {
        let ok = end(exit(Some(0), None, false), None);
        assert_eq!((ok.phase, ok.reason.as_deref()), (TaskPhase::Finished, Some("Completed")));
        let bad = end(exit(Some(3), None, false), None);
        assert_eq!((bad.phase, bad.reason.as_deref(), bad.exit_code), (TaskPhase::Failed, Some("Error"), Some(3)));
        let oom = end(exit(None, Some(9), true), None);
        assert_eq!((oom.phase, oom.reason.as_deref()), (TaskPhase::Failed, Some("OOMKilled")));
        let killed = end(exit(None, Some(15), false), Some(KillReason::Deleted));
        assert_eq!((killed.phase, killed.signal), (TaskPhase::Killed, Some(15)));
        let health = end(exit(None, Some(9), false), Some(KillReason::HealthCheckFailed("x".into())));
        assert_eq!((health.phase, health.reason.as_deref()), (TaskPhase::Failed, Some("HealthCheckFailed")));
        let interrupted = end(Ended::Interrupted("restart".into()), None);
        assert_eq!(interrupted.reason.as_deref(), Some("LaunchInterrupted"));
    }

    #[test]
    fn variables_expand_in_commands() {
        let env = vec![("PORT_HTTP".to_string(), "31080".to_string()), ("A".to_string(), "x".to_string())];
        assert_eq!(expand("-p=$(PORT_HTTP)", &env), "-p=31080");
        assert_eq!(expand("$(A)$(A) $$(A) $(NOPE) $5 $", &env), "xx $(A) $(NOPE) $5 $");
    }

    #[test]
    fn a_lost_task_killed_afterwards_stays_lost() {
        let mut st =
            TaskStatus { phase: TaskPhase::Lost, reason: Some("NodeUnreachable".into()), ..Default::default() };
        apply_end(&mut st, &exit(None, Some(15), false), Some(&KillReason::AlreadyTerminal));
        assert_eq!((st.phase, st.reason.as_deref()), (TaskPhase::Lost, Some("NodeUnreachable")));
    }
}
