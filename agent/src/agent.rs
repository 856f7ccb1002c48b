//! Running an agent: register the node, re-adopt what the previous run left running,
//! serve the agent API, heartbeat, and run the task controller until shutdown.
//!
//! Stopping the agent leaves its tasks running: their shims supervise them, and the
//! next agent on this work dir re-adopts them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds::Lease;
use corral_api::kinds::node::{NODE_LEASE_NAMESPACE, PortRange, Resources};
use corral_api::kinds::task::Task;
use corral_api::kinds::volume::Volume;
use corral_client::{Api, Client, ListParams};
use corral_runtime::{CancellationToken, Controller};
use corral_telemetry::SharedRegistry;

use crate::error::{Error, Result};
use crate::image::Images;
use crate::layout::Layout;
use crate::metrics::AgentMetrics;
use crate::node::{self, NodeInfo};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::tasks::{self, TaskContext};

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The Node's name.
    pub name: String,
    /// The work dir.
    pub work_dir: PathBuf,
    /// Custom attributes (hostname is always added).
    pub attributes: BTreeMap<String, String>,
    /// Resources offered; `None`: detected from the host.
    pub resources: Option<Resources>,
    /// Host ports offered.
    pub ports: Vec<PortRange>,
    /// Static reservations per role.
    pub reservations: BTreeMap<String, Resources>,
    /// Address of the agent API.
    pub listen: SocketAddr,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Bytes per log file before rotation.
    pub log_max_bytes: u64,
    /// Rotated log files kept per stream.
    pub log_max_files: usize,
    /// How long an ended task's sandbox and logs stay after its end.
    pub sandbox_retention: Duration,
    /// Bytes the directories of ended tasks may take together; the oldest go first.
    pub sandbox_disk_cap: u64,
    /// The runc executable.
    pub runc: PathBuf,
    /// The executable run as each task's shim (the `corral` binary).
    pub shim_exe: PathBuf,
    /// Task reconciles at once.
    pub concurrency: usize,
    /// What artifacts tasks may fetch.
    pub artifacts: crate::artifacts::ArtifactPolicy,
    /// PEM of the authority the API's certificate chains to, handed to tasks with a
    /// service account (`ca.crt`); `None` over plain HTTP or a publicly trusted one.
    pub server_ca: Option<Vec<u8>>,
    /// How local persistent volumes are kept: images or not, allowed host paths.
    pub volumes: crate::volumes::VolumeConfig,
    /// The cluster DNS: container tasks get a resolv.conf naming it, with their
    /// namespace's search domains. A resolv.conf cannot name a port, so an address
    /// whose port is not 53 is ignored, with a warning.
    pub cluster_dns: Option<std::net::SocketAddr>,
}

/// A started agent.
pub struct RunningAgent {
    /// Where the agent API listens.
    pub endpoint: String,
    ctx: Arc<TaskContext>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningAgent {
    /// Stops the agent (its tasks keep running) and waits for its loops to end.
    pub async fn shutdown(mut self) {
        self.ctx.close();
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

/// Starts an agent in the background.
///
/// # Errors
/// Fails if the work dir, runtime or image store cannot be set up, the agent API cannot
/// bind, or the node cannot be registered.
pub async fn start(client: Client, cfg: AgentConfig) -> Result<RunningAgent> {
    let layout = Layout::new(&cfg.work_dir)?;
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            layout: layout.clone(),
            runc: cfg.runc.clone(),
            shim_exe: cfg.shim_exe.clone(),
            log_max_bytes: cfg.log_max_bytes,
            log_max_files: cfg.log_max_files,
        })?
        .with_cluster_dns(crate::runtime::resolv::nameserver(cfg.cluster_dns)),
    );
    let images = Images::open(layout.images()).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::io("cannot listen on", cfg.listen.to_string(), e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("cannot read bound address", cfg.listen.to_string(), e))?;
    let endpoint = format!("http://{addr}");
    let address = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };

    let mut attributes = cfg.attributes.clone();
    attributes.entry("hostname".into()).or_insert_with(node::hostname);
    let info = NodeInfo {
        name: cfg.name.clone(),
        attributes,
        capacity: cfg.resources.unwrap_or_else(|| node::detect_resources(layout.root())),
        ports: cfg.ports.clone(),
        reservations: cfg.reservations.clone(),
        address: address.clone(),
        agent_endpoint: endpoint.clone(),
    };
    node::register(&client, &info).await?;

    let metrics = Arc::new(AgentMetrics::default());
    let registry = SharedRegistry::new();
    registry.register(|r| metrics.register(r));
    let stop = CancellationToken::new();
    let mut handles = Vec::new();
    // Beating (the first beat at once) before taking stock: recovery may wait for
    // shims that are still starting their tasks, and the node must not be judged
    // unreachable meanwhile.
    handles.push(tokio::spawn(heartbeats(client.clone(), cfg.clone(), metrics.clone(), stop.clone())));

    let volumes = crate::volumes::Volumes::new(cfg.name.clone(), client.clone(), layout.clone(), &cfg.volumes);
    let ctx = TaskContext::new(
        cfg.name.clone(),
        address,
        client.clone(),
        runtime.clone(),
        images,
        layout.clone(),
        metrics.clone(),
        cfg.ports.clone(),
        cfg.artifacts.clone(),
        cfg.server_ca.clone(),
        volumes.clone(),
    );
    let recovered = runtime.recover().await?;
    tracing::info!(node = %cfg.name, recovered = recovered.len(), "recovered tasks from the work dir");
    ctx.adopt(recovered);

    // This node's tasks only: the server filters, so an agent hears nothing of the
    // rest of the cluster.
    let mine = ListParams::default().fields(&format!("spec.nodeName={}", cfg.name));
    let controller = Controller::new(Api::<Task>::all(client.clone()), mine)
        .concurrency(cfg.concurrency.max(1))
        // Others write task status too: the node lifecycle controller's LOST must
        // reach the agent at once, to stop a task that was given up.
        .reconcile_status_changes();
    registry.register(|r| controller.metrics().register(r, "agent_tasks"));
    ctx.set_queue(controller.queue());
    let cache = controller.cache();

    // This node's volumes: made (or mounted again after a restart) as soon as seen,
    // measured, and released once deleted.
    let volume_controller = Controller::new(
        Api::<Volume>::all(client.clone()),
        ListParams::default().fields(&format!("spec.nodeName={}", cfg.name)),
    )
    .concurrency(2);
    registry.register(|r| volume_controller.metrics().register(r, "agent_volumes"));
    volumes.set_queue(volume_controller.queue());
    handles.push(tokio::spawn(crate::volumes::sweep(volumes.clone(), volume_controller.cache(), stop.clone())));
    let shutdown = stop.clone();
    handles.push(tokio::spawn(async move {
        volume_controller.run(crate::volumes::reconcile, crate::volumes::error_policy, volumes, shutdown).await;
    }));

    let router = crate::http::router(crate::http::AgentHttp { layout: layout.clone(), registry });
    let shutdown = stop.clone().cancelled_owned();
    handles.push(tokio::spawn(async move {
        if let Err(e) = crate::http::serve(listener, router, shutdown).await {
            tracing::error!(error = %e, "agent API stopped");
        }
    }));
    handles.push(tokio::spawn(collect_sandboxes(
        ctx.clone(),
        cache,
        cfg.sandbox_retention,
        cfg.sandbox_disk_cap,
        stop.clone(),
    )));
    let shutdown = stop.clone();
    let ctx_run = ctx.clone();
    handles.push(tokio::spawn(async move {
        controller.run(tasks::reconcile, tasks::error_policy, ctx_run, shutdown).await;
    }));
    tracing::info!(node = %cfg.name, %endpoint, work_dir = %layout.root().display(), "agent running");
    Ok(RunningAgent { endpoint, ctx, stop, tasks: handles })
}

/// Runs an agent until `shutdown` completes.
///
/// # Errors
/// As [`start`].
pub async fn run(client: Client, cfg: AgentConfig, shutdown: CancellationToken) -> Result<()> {
    let agent = start(client, cfg).await?;
    shutdown.cancelled().await;
    tracing::info!("agent stopping; its tasks keep running");
    agent.shutdown().await;
    Ok(())
}

async fn heartbeats(client: Client, cfg: AgentConfig, metrics: Arc<AgentMetrics>, stop: CancellationToken) {
    let leases = Api::<Lease>::namespaced(client, NODE_LEASE_NAMESPACE);
    let mut tick = tokio::time::interval(cfg.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = node::heartbeat(&leases, &cfg.name, cfg.heartbeat_interval).await {
            metrics.heartbeat_failures.inc();
            tracing::warn!(error = %e, "heartbeat failed; will retry");
        }
    }
}

/// Garbage-collects task directories, as Mesos does with sandboxes:
/// - a task running without an object (deleted while the agent was down, or removed
///   by force) is killed — nobody wants it any more;
/// - an ended task's directory (sandbox and logs) goes `retention` after its end,
///   whether or not its object remains (once its end is reported);
/// - while ended tasks' directories together exceed `disk_cap` bytes, the oldest go
///   first, retention or not.
///
/// Each round scans the disk on the blocking pool (thousands of files in big
/// sandboxes), decides by [`plan_collection`], then acts.
async fn collect_sandboxes(
    ctx: Arc<TaskContext>,
    cache: corral_runtime::Cache<Task>,
    retention: Duration,
    disk_cap: u64,
    stop: CancellationToken,
) {
    tokio::select! {
        _ = cache.wait_synced() => {}
        _ = stop.cancelled() => return,
    }
    let mut tick = tokio::time::interval(Duration::from_secs(10).min(retention.max(Duration::from_secs(1))));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let (tasks_dir, cache, runtime) = (ctx.layout.tasks(), cache.clone(), ctx.runtime.clone());
        let found = match crate::blocking::run("scanning task directories", move || {
            Ok(scan_task_dirs(&tasks_dir, &cache, &runtime))
        })
        .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot scan task directories; will retry");
                continue;
            }
        };
        for step in plan_collection(found, retention, disk_cap) {
            match step {
                Collect::Kill { uid } => {
                    tracing::info!(uid, "killing a task whose object is gone");
                    let _ = ctx.runtime.kill(&uid, Duration::from_secs(10)).await;
                }
                Collect::RemovePrepared { uid } => remove_task_dir(&ctx, &uid).await,
                Collect::RemoveEnded { uid, age, size, over_cap } => {
                    tracing::info!(uid, age_s = age.as_secs(), size, over_cap, "collecting an ended task's sandbox");
                    remove_task_dir(&ctx, &uid).await;
                }
            }
        }
    }
}

/// A task directory the collector may act on, as [`scan_task_dirs`] found it.
#[derive(Clone, Debug, PartialEq)]
enum Found {
    /// No end recorded, and no object any more.
    Orphan {
        /// The task's uid.
        uid: String,
        /// Whether it was launched (else only prepared).
        launched: bool,
        /// Time since its directory last changed.
        age: Duration,
    },
    /// Ended, and its end reported (the object's phase is terminal, or the object is gone).
    Ended {
        /// The task's uid.
        uid: String,
        /// Time since its end.
        age: Duration,
        /// Bytes its directory holds.
        size: u64,
    },
}

/// What the collector does to one task directory.
#[derive(Clone, Debug, PartialEq)]
enum Collect {
    /// Kill the task: it runs, and nobody wants it any more.
    Kill { uid: String },
    /// Remove the directory of a task prepared but never launched, whose object is gone.
    RemovePrepared { uid: String },
    /// Remove an ended task's directory: past its retention, or to get under the cap.
    RemoveEnded { uid: String, age: Duration, size: u64, over_cap: bool },
}

/// Looks at every task directory, on the blocking pool.
fn scan_task_dirs(
    tasks_dir: &std::path::Path,
    cache: &corral_runtime::Cache<Task>,
    runtime: &crate::runtime::Runtime,
) -> Vec<Found> {
    // The directories first, the objects after: a directory is only made by a
    // reconcile of an object already cached, so every listed directory's object,
    // if it exists, is in the snapshot below.
    let Ok(entries) = std::fs::read_dir(tasks_dir) else { return Vec::new() };
    let entries: Vec<_> = entries.flatten().collect();
    // uid → whether its recorded phase is terminal.
    let objects: std::collections::HashMap<String, bool> = cache
        .list()
        .iter()
        .filter_map(|o| {
            let uid = o.metadata.uid.clone()?;
            Some((uid, o.status.as_ref().is_some_and(|s| s.phase.is_terminal())))
        })
        .collect();
    let mut found = Vec::new();
    for entry in entries {
        let Some(uid) = entry.file_name().to_str().map(str::to_string) else { continue };
        if crate::layout::check_uid(&uid).is_err() {
            continue;
        }
        let dir = crate::layout::TaskDir(entry.path());
        let object = objects.get(&uid).copied();
        if !dir.exit().exists() {
            if object.is_none() {
                let launched = runtime.launched(&uid);
                found.push(Found::Orphan { uid, launched, age: age(&entry.path()) });
            }
            continue;
        }
        // An end not yet reported stays until it is.
        if object == Some(false) {
            continue;
        }
        found.push(Found::Ended { age: age(&dir.exit()), size: dir_size(&entry.path()), uid });
    }
    found
}

/// Decides what to collect of what [`scan_task_dirs`] found; see [`collect_sandboxes`].
fn plan_collection(found: Vec<Found>, retention: Duration, disk_cap: u64) -> Vec<Collect> {
    let mut steps = Vec::new();
    let mut ended = Vec::new();
    for f in found {
        match f {
            Found::Orphan { uid, launched: true, .. } => steps.push(Collect::Kill { uid }),
            Found::Orphan { uid, launched: false, age } if age >= retention => {
                steps.push(Collect::RemovePrepared { uid });
            }
            Found::Orphan { .. } => {}
            Found::Ended { uid, age, size } => ended.push((age, uid, size)),
        }
    }
    ended.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut total: u64 = ended.iter().map(|(_, _, size)| size).sum();
    for (age, uid, size) in ended {
        if age < retention && total <= disk_cap {
            break;
        }
        steps.push(Collect::RemoveEnded { uid, age, size, over_cap: total > disk_cap });
        total = total.saturating_sub(size);
    }
    steps
}

fn age(path: &std::path::Path) -> Duration {
    std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).unwrap_or_default()
}

/// Bytes under `path`, without following symlinks (a task may have planted any).
fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

async fn remove_task_dir(ctx: &TaskContext, uid: &str) {
    let _ = ctx.runtime.cleanup(uid).await;
    if let Err(e) = ctx.runtime.remove(uid).await {
        tracing::warn!(uid, error = %e, "cannot remove a task directory");
        return;
    }
    // Its image lease, if it still held one.
    if let Err(e) = ctx.images.release_all(uid).await {
        tracing::warn!(uid, error = %e, "cannot release the task's image lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn orphan(uid: &str, launched: bool, age: Duration) -> Found {
        Found::Orphan { uid: uid.into(), launched, age }
    }

    fn ended(uid: &str, age: Duration, size: u64) -> Found {
        Found::Ended { uid: uid.into(), age, size }
    }

    fn uids(steps: &[Collect]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Collect::Kill { uid } => format!("kill {uid}"),
                Collect::RemovePrepared { uid } => format!("remove {uid}"),
                Collect::RemoveEnded { uid, over_cap, .. } => {
                    format!("collect {uid}{}", if *over_cap { " (over cap)" } else { "" })
                }
            })
            .collect()
    }

    #[test]
    fn collection_follows_retention_then_the_disk_cap_oldest_first() {
        let cases: Vec<(&str, Vec<Found>, u64, Vec<&str>)> = vec![
            ("nothing found, nothing done", vec![], 100, vec![]),
            ("a running orphan is killed at once", vec![orphan("a", true, Duration::ZERO)], 100, vec!["kill a"]),
            ("a prepared orphan waits out the retention", vec![orphan("a", false, HOUR / 2)], 100, vec![]),
            ("then goes", vec![orphan("a", false, 2 * HOUR)], 100, vec!["remove a"]),
            ("ended within retention and the cap stays", vec![ended("a", HOUR / 2, 10)], 100, vec![]),
            ("ended past retention goes", vec![ended("a", 2 * HOUR, 10)], 100, vec!["collect a"]),
            (
                "over the cap, the oldest go until under it",
                vec![ended("new", Duration::ZERO, 60), ended("old", HOUR / 2, 60), ended("mid", HOUR / 4, 60)],
                100,
                vec!["collect old (over cap)", "collect mid (over cap)"],
            ),
            (
                "under the cap, the expired go and the young stay",
                vec![ended("young", Duration::ZERO, 60), ended("expired", 3 * HOUR, 1)],
                100,
                vec!["collect expired"],
            ),
            (
                "over the cap, the expired count towards it",
                vec![ended("young", Duration::ZERO, 60), ended("expired", 3 * HOUR, 1)],
                50,
                vec!["collect expired (over cap)", "collect young (over cap)"],
            ),
            (
                "orphans before ended ones",
                vec![ended("e", 2 * HOUR, 1), orphan("o", true, Duration::ZERO)],
                100,
                vec!["kill o", "collect e"],
            ),
        ];
        for (name, found, cap, want) in cases {
            assert_eq!(uids(&plan_collection(found, HOUR, cap)), want, "{name}");
        }
    }
}
