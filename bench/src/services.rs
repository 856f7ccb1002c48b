//! `corral-bench services`: the scheduling benchmark. Hollow nodes (a simulation: no
//! process runs) join a control plane; S Services of I instances each are applied at
//! once; the bench measures how long the control plane takes to place every task
//! (`spec.nodeName` set, through offers) and to see it `RUNNING`, then how long a small
//! service takes from apply to running while the cluster is busy or just after, and
//! what all that cost the control plane in memory and CPU.
//!
//! # What is measured, and how
//! - Counts come from one watch of the namespace's tasks, never from polling lists; a
//!   time is taken when the event arrives at the bench.
//! - The control plane is one `corral server` process (API server, store and the
//!   built-in controllers, scheduler included). Its memory and CPU are read from
//!   `/proc/PID/status` (VmRSS sampled every 100 ms, and VmHWM) and `/proc/PID/stat`
//!   (utime + stime) — of that process only. The bench starts it (release build beside
//!   this one, a temp data dir, `--no-audit-log`) unless `--server` names a running one
//!   (then `--server-pid` lets it read that process's figures).
//! - The hollow nodes run in this process, on a runtime and threads of their own
//!   (named `hollow`), so that their work does not queue in front of the bench's
//!   watches; their CPU is reported apart. They share one watch of tasks, where a
//!   real cluster has one per agent: that fan-out is not part of the figure.
//! - `--bound` skips the scheduler: the same tasks are created already bound
//!   (round-robin over the nodes). It measures the path from task to `RUNNING` alone —
//!   the API, the store and the hollow nodes — as a baseline for the scheduled run.
//!
//! The run stops by itself: past `--timeout` it prints what it reached and fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use corral_api::kinds::node::{NodePhase, Resources};
use corral_api::kinds::service::{SERVICE_LABEL, ServiceSpec};
use corral_api::kinds::task::{TaskPhase, TaskSpec, TaskSummary};
use corral_api::kinds::{Namespace, NamespaceSpec, Node, Service, Task};
use corral_api::{ApiObject, Resource as _};
use corral_client::{Api, Client, Config, ListParams};
use corral_runtime::CancellationToken;
use corral_runtime::watcher::{Seen, watch};
use futures::StreamExt;

use crate::hollow::{HollowOptions, HollowStats, run_hollow};
use crate::load::percentile_ms;
use crate::procs::{Proc, start_corral_with};

/// The namespace the bench works in.
pub const NAMESPACE: &str = "bench";
/// Label on the tasks `--bound` creates itself (no service owns them): the group,
/// as `corral.dev/service` names the service of a service's task.
pub const GROUP_LABEL: &str = "bench.corral.dev/group";
/// Applies (or task creates, with `--bound`) in flight at once.
const APPLY_CONCURRENCY: usize = 64;
/// Name of the hollow nodes' threads.
const HOLLOW_THREADS: &str = "hollow";
/// How often the control plane's memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How often progress is printed (to stderr).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Which control plane to measure.
#[derive(Clone, Debug)]
pub enum ControlPlane {
    /// Start `corral server` (the build beside this one, or `$CORRAL_BIN`) on a temp
    /// data dir with `--no-audit-log` and these further arguments.
    Start {
        /// Further arguments of `corral server`.
        server_args: Vec<String>,
    },
    /// A running server.
    Running {
        /// Where it is, and the credential.
        config: Config,
        /// Its process, when on this machine: its memory and CPU are reported.
        pid: Option<u32>,
    },
}

/// What `corral-bench services` does.
#[derive(Clone, Debug)]
pub struct ServicesBenchOptions {
    /// Hollow nodes.
    pub nodes: usize,
    /// Their names' prefix.
    pub prefix: String,
    /// Each node's capacity.
    pub node_capacity: Resources,
    /// Seconds between two heartbeats of a node.
    pub heartbeat: Duration,
    /// Services applied at once.
    pub services: usize,
    /// Instances of each.
    pub instances: u32,
    /// Resources of each task.
    pub task_resources: Resources,
    /// Small services applied one after another once the load is applied.
    pub probes: usize,
    /// Instances of each small service.
    pub probe_instances: u32,
    /// Tasks created bound to the nodes instead of services (no scheduler).
    pub bound: bool,
    /// Bound on the whole run.
    pub timeout: Duration,
    /// The control plane.
    pub control_plane: ControlPlane,
}

impl Default for ServicesBenchOptions {
    fn default() -> Self {
        ServicesBenchOptions {
            nodes: 10_000,
            prefix: "hollow-".into(),
            node_capacity: HollowOptions::default().capacity,
            heartbeat: Duration::from_secs(10),
            services: 1000,
            instances: 100,
            task_resources: Resources { cpus: 0.01, mem: 16, disk: 0 },
            probes: 20,
            probe_instances: 3,
            bound: false,
            timeout: Duration::from_secs(300),
            control_plane: ControlPlane::Start { server_args: Vec::new() },
        }
    }
}

/// Runs the benchmark and prints its table and summary line.
///
/// # Errors
/// The control plane could not be started or reached, a write failed, or the run did
/// not finish within the timeout (after printing what it reached).
pub async fn run_services_bench(opts: ServicesBenchOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let load_tasks = opts.services * opts.instances as usize;
    if load_tasks == 0 || opts.nodes == 0 {
        bail!("nothing to measure: --nodes, --services and --instances must all be at least 1");
    }
    let demand = |per_node: f64| per_node * opts.nodes as f64;
    let tasks_total = (load_tasks + opts.probes * opts.probe_instances as usize) as f64;
    if tasks_total * opts.task_resources.cpus > demand(opts.node_capacity.cpus)
        || tasks_total * opts.task_resources.mem as f64 > demand(opts.node_capacity.mem as f64)
    {
        bail!(
            "{tasks_total} tasks of {} cpus and {} MiB do not fit on {} nodes of {} cpus and {} MiB: lower --cpus/--mem \
             or raise --node-cpus/--node-mem",
            opts.task_resources.cpus,
            opts.task_resources.mem,
            opts.nodes,
            opts.node_capacity.cpus,
            opts.node_capacity.mem
        );
    }

    // The control plane.
    let dir = tempfile::tempdir()?;
    let (proc, config, stats, origin): (Option<Proc>, Config, Option<ProcStats>, String) = match &opts.control_plane {
        ControlPlane::Start { server_args } => {
            let data = dir.path().join("data");
            let args: Vec<String> =
                ["--no-audit-log".to_string()].into_iter().chain(server_args.iter().cloned()).collect();
            let proc = start_corral_with(&data, &args).await?;
            let token = crate::procs::admin_token();
            let config = Config { server: format!("http://{}", proc.addr), token, ca_pem: None, client_identity: None };
            let pid = child_pid_serving(&data).context("finding the started corral server's process")?;
            let origin = format!("corral server {} (pid {pid}, started by the bench)", args.join(" "));
            (Some(proc), config, Some(ProcStats { pid }), origin)
        }
        ControlPlane::Running { config, pid } => {
            let origin = match pid {
                Some(p) => format!("running server (pid {p})"),
                None => "running server (no --server-pid: its memory and CPU are not reported)".into(),
            };
            (None, config.clone(), pid.map(|pid| ProcStats { pid }), origin)
        }
    };
    let client = Client::from_config(&config)?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.create(&Namespace::new(NAMESPACE, NamespaceSpec {})).await {
        Err(e) if !e.is_already_exists() => return Err(e).context("creating the bench namespace"),
        _ => {}
    }

    let run = run_id();
    println!(
        "corral-bench services: {} SIMULATED hollow nodes ({} cpus, {} MiB each), {} {} × {} instances ({} cpus, {} MiB \
         each), then {} small services × {}",
        opts.nodes,
        opts.node_capacity.cpus,
        opts.node_capacity.mem,
        opts.services,
        if opts.bound { "groups of tasks bound directly (--bound: no scheduler)" } else { "services" },
        opts.instances,
        opts.task_resources.cpus,
        opts.task_resources.mem,
        opts.probes,
        opts.probe_instances,
    );
    println!("  control plane: {origin} at {}; namespace {NAMESPACE}, run {run}", config.server);

    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    let sampler = stats.map(|s| Sampler::start(s, stop.clone()));
    let cpu_at_start = stats.and_then(|s| s.cpu());

    // The hollow nodes, on threads of their own and with a client of their own (a
    // connection pool's tasks live on the runtime that opened them).
    let hollow_rt = Background::threads(HOLLOW_THREADS)?;
    let hollow_stats = Arc::new(HollowStats::default());
    let hollow_opts = HollowOptions {
        stats: hollow_stats.clone(),
        nodes: opts.nodes,
        prefix: opts.prefix.clone(),
        capacity: opts.node_capacity,
        heartbeat: opts.heartbeat,
        ..Default::default()
    };
    let mut hollow = hollow_rt.spawn(run_hollow(Client::from_config(&config)?, hollow_opts, stop.child_token()));

    let track = Tracker::new(&opts.prefix, &run, load_tasks);
    spawn_watches(&client, &track, &stop);
    spawn_progress(&track, &hollow_stats, opts.probes, stats, stop.clone());

    let mut report = Report { started: Some(started), load_tasks, ..Default::default() };
    let outcome = async {
        // 1. Every node Ready.
        let what = format!("{} nodes Ready", opts.nodes);
        tokio::select! {
            r = track.wait(&what, deadline, stats, |t| t.nodes_ready.len() >= opts.nodes) => r?,
            r = &mut hollow => {
                r.context("the hollow nodes panicked")??;
                bail!("the hollow nodes stopped");
            }
        }
        report.nodes_ready = Some(started.elapsed());
        track.wait("the watch of tasks to list", deadline, stats, |t| t.listed).await?;

        // 2. The load, all at once.
        report.load_started = Some(Instant::now());
        report.cpu_at_load = stats.and_then(|s| s.cpu());
        report.hollow_cpu_at_load = threads_cpu(HOLLOW_THREADS);
        report.rss_at_load = stats.and_then(|s| s.memory()).map(|m| m.rss);
        apply_load(&client, &opts, &run).await?;
        report.load_applied = Some(Instant::now());

        // 3. Small services one after another while (or after) it is placed.
        let probes = probe(&client, &opts, &run, &track, deadline, stats, &mut report.probes);
        let what = format!("all {load_tasks} tasks RUNNING");
        let load = track.wait(&what, deadline, stats, |t| t.running >= load_tasks);
        let (probes, load) = tokio::join!(probes, load);
        // The load's failure says more than a small service's.
        load?;
        probes?;
        anyhow::Ok(())
    }
    .await;

    report.cpu_at_end = stats.and_then(|s| s.cpu());
    report.cpu_at_start = cpu_at_start;
    report.hollow_cpu_at_end = threads_cpu(HOLLOW_THREADS);
    report.memory_at_end = stats.and_then(|s| s.memory());
    report.peak_rss = sampler.map(|s| s.peak.load(Ordering::Relaxed));
    {
        let t = track.lock();
        report.placed = t.placed;
        report.running = t.running;
        report.ended_early = t.ended_early;
        report.lists = t.lists;
        report.watch_silent = t.last_event.map(|at| at.elapsed()).filter(|d| *d > PROGRESS_EVERY);
        report.all_placed = t.all_placed;
        report.all_running = t.all_running;
        report.nodes_seen_ready = t.nodes_ready.len();
    }
    report.print(&opts);
    stop.cancel();
    // The hollow nodes stop at the cancellation; their threads are let go without
    // waiting on anything still in flight.
    let _ = tokio::time::timeout(Duration::from_secs(5), hollow).await;
    drop(hollow_rt);
    drop(proc);
    if !matches!(opts.control_plane, ControlPlane::Start { .. }) {
        eprintln!(
            "  the services and tasks of run {run} stay in namespace {NAMESPACE} (`corral delete namespace {NAMESPACE}`)"
        );
    }
    outcome
}

/// A short id told apart from earlier runs against the same server.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{:06x}", (nanos >> 10) & 0xff_ffff)
}

/// The task every instance runs (on paper, on a hollow node).
fn template(opts: &ServicesBenchOptions) -> TaskSpec {
    TaskSpec {
        image: Some("busybox".into()),
        command: vec!["sleep".into(), "infinity".into()],
        resources: opts.task_resources,
        ..Default::default()
    }
}

/// Applies the `services` services (or creates their tasks, bound), at most
/// [`APPLY_CONCURRENCY`] at once.
async fn apply_load(client: &Client, opts: &ServicesBenchOptions, run: &str) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..opts.services)
        .map(|i| {
            let client = client.clone();
            async move { apply_group(&client, opts, &format!("load-{run}-{i}"), opts.instances, i).await }
        })
        .buffer_unordered(APPLY_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// Applies one service `name` of `instances` (or, with `--bound`, creates that many
/// tasks bound round-robin from node `index × instances`).
async fn apply_group(
    client: &Client,
    opts: &ServicesBenchOptions,
    name: &str,
    instances: u32,
    index: usize,
) -> anyhow::Result<()> {
    if !opts.bound {
        let spec = ServiceSpec { instances, template: template(opts), ..Default::default() };
        let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
        services
            .create(&Service::namespaced(NAMESPACE, name, spec))
            .await
            .with_context(|| format!("applying {name}"))?;
        return Ok(());
    }
    let tasks: Api<Task> = Api::namespaced(client.clone(), NAMESPACE);
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(0..instances as usize)
        .map(|k| {
            let tasks = tasks.clone();
            let node = format!("{}{}", opts.prefix, (index * instances as usize + k) % opts.nodes);
            let spec = TaskSpec { node_name: Some(node), ..template(opts) };
            let mut task = Task::namespaced(NAMESPACE, format!("{name}-{k}"), spec);
            task.metadata.labels = BTreeMap::from([(GROUP_LABEL.to_string(), name.to_string())]);
            async move {
                tasks.create(&task).await.with_context(|| format!("creating task {}", task.metadata.name))?;
                Ok(())
            }
        })
        // Within one group, as within the whole load: a bounded number at once.
        .buffer_unordered(APPLY_CONCURRENCY.min(8))
        .collect()
        .await;
    created.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// What one small service measured.
#[derive(Clone, Debug)]
struct Probe {
    /// From just before the apply to each task seen placed.
    placed: Vec<Duration>,
    /// From just before the apply to each task seen RUNNING.
    latencies: Vec<Duration>,
    /// Whether the load was not all RUNNING yet when it was applied.
    while_busy: bool,
}

/// Applies the small services one after another, each once the previous one runs.
async fn probe(
    client: &Client,
    opts: &ServicesBenchOptions,
    run: &str,
    track: &Tracker,
    deadline: Instant,
    stats: Option<ProcStats>,
    probes: &mut Vec<Probe>,
) -> anyhow::Result<()> {
    for j in 0..opts.probes {
        let name = format!("probe-{run}-{j}");
        let while_busy = track.lock().all_running.is_none();
        let applied = Instant::now();
        // Spread over the nodes away from where the bound load began.
        apply_group(client, opts, &name, opts.probe_instances, opts.services + j).await?;
        let want = opts.probe_instances as usize;
        let what = format!("the {want} tasks of small service {name} RUNNING");
        track.wait(&what, deadline, stats, |t| t.probes.get(&name).is_some_and(|r| r.len() >= want)).await?;
        let since = |seen: Option<&Vec<Instant>>| -> Vec<Duration> {
            seen.map(|r| r.iter().map(|at| at.saturating_duration_since(applied)).collect()).unwrap_or_default()
        };
        let (placed, latencies) = {
            let t = track.lock();
            (since(t.probes_placed.get(&name)), since(t.probes.get(&name)))
        };
        probes.push(Probe { placed, latencies, while_busy });
        track.lock().probes_done = probes.len();
    }
    Ok(())
}

/// What the watches have seen.
#[derive(Default)]
struct Track {
    /// Nodes of ours Ready.
    nodes_ready: HashSet<String>,
    /// Whether the tasks' watch has listed (what is created from now on is seen).
    listed: bool,
    /// Times it listed (more than once: it fell behind the server's compaction).
    lists: usize,
    /// When it last brought anything.
    last_event: Option<Instant>,
    /// Load tasks expected.
    target: usize,
    /// What was seen of each task of the run (by uid): bit 0 placed, bit 1 running.
    tasks: HashMap<String, u8>,
    /// Load tasks seen placed, and RUNNING.
    placed: usize,
    running: usize,
    /// Load tasks seen ended (`LOST`, `KILLED`, …) without having run.
    ended_early: usize,
    /// When the last of the load was seen placed, and RUNNING.
    all_placed: Option<Instant>,
    all_running: Option<Instant>,
    /// When each small service's tasks were seen placed, and RUNNING.
    probes_placed: HashMap<String, Vec<Instant>>,
    probes: HashMap<String, Vec<Instant>>,
    /// Small services measured so far.
    probes_done: usize,
}

const PLACED: u8 = 1;
const RUNNING: u8 = 2;
const ENDED_EARLY: u8 = 4;

impl Track {
    fn node(&mut self, node: &Node, prefix: &str) {
        if !node.name().starts_with(prefix) {
            return;
        }
        if node.status.as_ref().is_some_and(|s| s.phase == NodePhase::Ready) {
            self.nodes_ready.insert(node.name().to_string());
        } else {
            self.nodes_ready.remove(node.name());
        }
    }

    fn task(&mut self, task: &TaskSummary, load: &str, probe: &str, now: Instant) {
        let labels = &task.metadata.labels;
        let Some(group) = labels.get(SERVICE_LABEL).or_else(|| labels.get(GROUP_LABEL)) else { return };
        let is_load = group.starts_with(load);
        if !is_load && !group.starts_with(probe) {
            return;
        }
        let seen = self.tasks.entry(task.uid().to_string()).or_default();
        if *seen & PLACED == 0 && task.spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
            *seen |= PLACED;
            if is_load {
                self.placed += 1;
                if self.placed == self.target {
                    self.all_placed = Some(now);
                }
            } else {
                self.probes_placed.entry(group.clone()).or_default().push(now);
            }
        }
        let status = task.status.as_ref();
        // A task seen first after it ended (a re-list) did run if it has a start time.
        let ran = status.is_some_and(|s| s.phase == TaskPhase::Running || s.start_time.is_some());
        if *seen & RUNNING == 0 && ran {
            *seen |= RUNNING;
            if is_load {
                self.running += 1;
                if self.running == self.target {
                    self.all_running = Some(now);
                }
            } else {
                self.probes.entry(group.clone()).or_default().push(now);
            }
        }
        let ended = status.is_some_and(|s| s.phase.is_terminal());
        if is_load && ended && *seen & (RUNNING | ENDED_EARLY) == 0 {
            *seen |= ENDED_EARLY;
            self.ended_early += 1;
        }
    }
}

/// The shared [`Track`] and a signal for each change.
#[derive(Clone)]
struct Tracker {
    inner: Arc<Mutex<Track>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    prefix: Arc<str>,
    load: Arc<str>,
    probe: Arc<str>,
}

impl Tracker {
    fn new(prefix: &str, run: &str, target: usize) -> Self {
        Tracker {
            inner: Arc::new(Mutex::new(Track { target, ..Default::default() })),
            changed: Arc::new(tokio::sync::watch::channel(0).0),
            prefix: prefix.into(),
            load: format!("load-{run}-").into(),
            probe: format!("probe-{run}-").into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Track> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Track)) {
        f(&mut self.lock());
        self.changed.send_modify(|n| *n += 1);
    }

    /// Waits until `done` holds, the deadline passes (an error saying so), or the
    /// control plane's process has died (an error); `what` names what is waited for.
    async fn wait(
        &self,
        what: &str,
        deadline: Instant,
        stats: Option<ProcStats>,
        done: impl Fn(&Track) -> bool,
    ) -> anyhow::Result<()> {
        let mut changes = self.changed.subscribe();
        loop {
            if done(&self.lock()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("timed out waiting for {what}");
            }
            if stats.is_some_and(|s| !s.alive()) {
                bail!("the control plane's process has exited while waiting for {what}");
            }
            let tick = deadline.min(Instant::now() + Duration::from_secs(1));
            let _ = tokio::time::timeout_at(tick.into(), changes.changed()).await;
        }
    }
}

/// One watch of nodes and one of the namespace's tasks, feeding `track`.
fn spawn_watches(client: &Client, track: &Tracker, stop: &CancellationToken) {
    let nodes: Api<Node> = Api::all(client.clone());
    let t = track.clone();
    tokio::spawn(watch(nodes, ListParams::default(), stop.clone(), None, move |seen| {
        let t = t.clone();
        async move {
            match seen {
                Seen::Listed { objects, .. } => t.update(|tr| {
                    tr.nodes_ready.clear();
                    objects.iter().for_each(|n| tr.node(n, &t.prefix));
                }),
                Seen::Applied(n) => t.update(|tr| tr.node(&n, &t.prefix)),
                Seen::Deleted(n) => t.update(|tr| {
                    tr.nodes_ready.remove(n.name());
                }),
                Seen::Bookmark(_) => {}
            }
        }
    }));
    // Every namespace (only the bench's tasks are counted): the watch the hollow nodes
    // use too, not one the server filters by namespace.
    // Summaries: the bench shares the machine with the control plane it measures,
    // and needs no task's template.
    let tasks: Api<TaskSummary> = Api::for_kind(client.clone(), Task::shared_kind_info(), None);
    let t = track.clone();
    tokio::spawn(watch(tasks, ListParams::default(), stop.clone(), None, move |seen| {
        let t = t.clone();
        async move {
            let now = Instant::now();
            match seen {
                Seen::Listed { objects, .. } => t.update(|tr| {
                    tr.listed = true;
                    tr.lists += 1;
                    tr.last_event = Some(now);
                    objects
                        .iter()
                        .filter(|o| o.namespace() == Some(NAMESPACE))
                        .for_each(|o| tr.task(o, &t.load, &t.probe, now));
                }),
                Seen::Applied(o) if o.namespace() == Some(NAMESPACE) => t.update(|tr| {
                    tr.last_event = Some(now);
                    tr.task(&o, &t.load, &t.probe, now)
                }),
                Seen::Applied(_) | Seen::Deleted(_) | Seen::Bookmark(_) => {}
            }
        }
    }));
}

/// Prints progress to stderr every few seconds until `stop`.
fn spawn_progress(
    track: &Tracker,
    hollow: &Arc<HollowStats>,
    probes: usize,
    stats: Option<ProcStats>,
    stop: CancellationToken,
) {
    let (track, hollow) = (track.clone(), hollow.clone());
    let started = Instant::now();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PROGRESS_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            let rss = stats.and_then(|s| s.memory()).map(|m| format!(", control plane RSS {:.0} MiB", mib(m.rss)));
            let lists = hollow.lists.load(Ordering::Relaxed);
            let realizer = format!(
                "; hollow: {} jobs done, {} in flight, {} waiting{}",
                hollow.jobs_done.load(Ordering::Relaxed),
                hollow.in_flight.load(Ordering::Relaxed),
                hollow.queued.load(Ordering::Relaxed),
                if lists > 1 { format!(", watch re-listed {} times", lists - 1) } else { String::new() }
            );
            let t = track.lock();
            let silent = t.last_event.map(|at| at.elapsed()).filter(|d| *d > PROGRESS_EVERY);
            let silent = silent.map(|d| format!("; the bench's watch of tasks silent for {:.0} s", d.as_secs_f64()));
            eprintln!(
                "  [{:>4.0} s] nodes Ready {}, placed {}/{}, RUNNING {}/{}{}, small services {}/{probes}{}{}{}",
                started.elapsed().as_secs_f64(),
                t.nodes_ready.len(),
                t.placed,
                t.target,
                t.running,
                t.target,
                if t.ended_early > 0 { format!(" ({} ended without running)", t.ended_early) } else { String::new() },
                t.probes_done,
                rss.unwrap_or_default(),
                realizer,
                silent.unwrap_or_default()
            );
        }
    });
}

/// A runtime shut down without blocking when dropped (dropping one in async code
/// would block, which tokio forbids).
pub(crate) struct Background(Option<tokio::runtime::Runtime>);

impl Background {
    /// A runtime of two worker threads named `name`.
    pub(crate) fn threads(name: &str) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("starting the {name} runtime"))?;
        Ok(Background(Some(rt)))
    }

    pub(crate) fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(rt) => rt.spawn(f),
            None => tokio::spawn(f),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Memory of a process, in bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Memory {
    /// Resident now (VmRSS).
    pub(crate) rss: u64,
    /// Most ever resident (VmHWM).
    hwm: u64,
}

/// Figures of one process, from `/proc`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProcStats {
    pub(crate) pid: u32,
}

impl ProcStats {
    pub(crate) fn memory(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let kb = |key: &str| -> Option<u64> {
            status.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse().ok()
        };
        Some(Memory { rss: kb("VmRSS:")? * 1024, hwm: kb("VmHWM:")? * 1024 })
    }

    pub(crate) fn cpu(&self) -> Option<Duration> {
        stat_cpu(&std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?)
    }

    /// Whether the process is still there (and not a zombie).
    fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
            .unwrap_or(false)
    }
}

/// utime + stime of a `/proc/…/stat` line.
fn stat_cpu(stat: &str) -> Option<Duration> {
    // After the command name (in parentheses, which may hold spaces): state, ppid, …;
    // utime and stime are the 12th and 13th fields from there, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11..13)?.iter().filter_map(|f| f.parse::<u64>().ok()).sum();
    // SAFETY: sysconf(3) reads a configuration value; no memory is involved.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|h| *h > 0).unwrap_or(100);
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// CPU used so far by this process's threads whose name starts with `name`.
fn threads_cpu(name: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let comm = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map(|(c, _)| c).unwrap_or_default();
        if comm.starts_with(name) {
            total += stat_cpu(&stat).unwrap_or_default();
        }
    }
    Some(total)
}

/// The pid of this process's child serving `data_dir` (the `corral server` just
/// started: its command line names that fresh directory).
pub(crate) fn child_pid_serving(data_dir: &Path) -> anyhow::Result<u32> {
    let me = std::process::id();
    let dir = data_dir.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid != Some(me) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|arg| arg == dir) {
            return Ok(pid);
        }
    }
    bail!("no child process of this one serves {}", data_dir.display())
}

/// Samples a process's resident memory until `stop`, keeping the peak.
pub(crate) struct Sampler {
    pub(crate) peak: Arc<AtomicU64>,
}

impl Sampler {
    pub(crate) fn start(stats: ProcStats, stop: CancellationToken) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let p = peak.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stop.cancelled() => return,
                }
                if let Some(m) = stats.memory() {
                    p.fetch_max(m.rss, Ordering::Relaxed);
                }
            }
        });
        Sampler { peak }
    }
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What the run reached.
#[derive(Default)]
struct Report {
    started: Option<Instant>,
    load_tasks: usize,
    nodes_ready: Option<Duration>,
    nodes_seen_ready: usize,
    load_started: Option<Instant>,
    load_applied: Option<Instant>,
    placed: usize,
    running: usize,
    ended_early: usize,
    /// Times the bench's watch of tasks listed.
    lists: usize,
    /// How long the bench's watch of tasks had brought nothing at the end, if long.
    watch_silent: Option<Duration>,
    all_placed: Option<Instant>,
    all_running: Option<Instant>,
    probes: Vec<Probe>,
    cpu_at_start: Option<Duration>,
    cpu_at_load: Option<Duration>,
    cpu_at_end: Option<Duration>,
    hollow_cpu_at_load: Option<Duration>,
    hollow_cpu_at_end: Option<Duration>,
    rss_at_load: Option<u64>,
    memory_at_end: Option<Memory>,
    peak_rss: Option<u64>,
}

impl Report {
    fn since_load(&self, at: Option<Instant>) -> Option<Duration> {
        Some(at?.saturating_duration_since(self.load_started?))
    }

    fn print(&self, opts: &ServicesBenchOptions) {
        let secs = |d: Option<Duration>| d.map_or("—".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
        let row = |what: &str, value: String| println!("  {what:<44} {value}");
        let n = self.load_tasks;
        println!();
        row("figure", "value".into());
        row(
            "hollow nodes Ready",
            match self.nodes_ready {
                Some(d) => format!("{} in {}", opts.nodes, secs(Some(d))),
                None => format!("{}/{} (not all)", self.nodes_seen_ready, opts.nodes),
            },
        );
        let applied = self.since_load(self.load_applied);
        let groups = if opts.bound { "task groups created" } else { "services applied" };
        row(
            &format!("{groups} ({APPLY_CONCURRENCY} at once)"),
            applied.map_or("—".into(), |d| {
                format!("{} in {} ({:.0}/s)", opts.services, secs(Some(d)), opts.services as f64 / d.as_secs_f64())
            }),
        );
        let placed_at = self.since_load(self.all_placed);
        let placed_what =
            if opts.bound { "tasks bound (created with spec.nodeName)" } else { "tasks placed (spec.nodeName set)" };
        row(placed_what, format!("{}/{n} in {}", self.placed, secs(placed_at)));
        let per_sec = placed_at.map(|d| n as f64 / d.as_secs_f64().max(1e-9));
        row(
            if opts.bound { "tasks bound/s (no scheduler)" } else { "placements/s" },
            per_sec.map_or("—".into(), |r| format!("{r:.0}")),
        );
        let running_at = self.since_load(self.all_running);
        row("tasks RUNNING (on hollow nodes)", format!("{}/{n} in {}", self.running, secs(running_at)));
        if self.ended_early > 0 {
            row("tasks ended without running (LOST, KILLED…)", self.ended_early.to_string());
        }
        if let Some(d) = self.watch_silent {
            row(
                "the bench's watch of tasks",
                format!(
                    "silent for the last {:.0} s (cut off, or re-listing: see the warnings): the counts above may lag \
                     the cluster; a longer history helps (--server-arg=--compaction-retain=1000000)",
                    d.as_secs_f64()
                ),
            );
        }
        if self.lists > 1 {
            row(
                "the bench's watch of tasks re-listed",
                format!("{} times (it fell behind the server's compaction: counts lagged meanwhile)", self.lists - 1),
            );
        }
        row(
            "tasks RUNNING/s",
            running_at.map_or("—".into(), |d| format!("{:.0}", n as f64 / d.as_secs_f64().max(1e-9))),
        );
        let sorted = |busy: Option<bool>, of: fn(&Probe) -> &Vec<Duration>| -> Vec<u64> {
            let mut v: Vec<u64> = self
                .probes
                .iter()
                .filter(|p| busy.is_none_or(|b| p.while_busy == b))
                .flat_map(|p| of(p).iter().map(|d| d.as_micros() as u64))
                .collect();
            v.sort_unstable();
            v
        };
        let running_of: fn(&Probe) -> &Vec<Duration> = |p| &p.latencies;
        let placed_of: fn(&Probe) -> &Vec<Duration> = |p| &p.placed;
        let lat = sorted(None, running_of);
        let (p50, p99) = (percentile_ms(&lat, 0.50), percentile_ms(&lat, 0.99));
        let spread = |l: &[u64]| {
            format!(
                "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                percentile_ms(l, 0.5),
                percentile_ms(l, 0.99),
                percentile_ms(l, 1.0)
            )
        };
        let n_probes = self.probes.len();
        let what = format!("small service ({}) apply → task placed", opts.probe_instances);
        let placed = sorted(None, placed_of);
        row(&what, if placed.is_empty() { "—".into() } else { format!("{} ({n_probes} services)", spread(&placed)) });
        let what = format!("small service ({}) apply → task RUNNING", opts.probe_instances);
        row(&what, if lat.is_empty() { "—".into() } else { format!("{} ({} tasks)", spread(&lat), lat.len()) });
        for (busy, what) in [(true, "  of those applied while the load ran"), (false, "  of those applied after")] {
            let l = sorted(Some(busy), running_of);
            if !l.is_empty() {
                let services = self.probes.iter().filter(|p| p.while_busy == busy).count();
                let placed = sorted(Some(busy), placed_of);
                row(
                    what,
                    format!(
                        "RUNNING p50 {:.1} ms max {:.1} ms; placed p50 {:.1} ms max {:.1} ms ({services} services)",
                        percentile_ms(&l, 0.5),
                        percentile_ms(&l, 1.0),
                        percentile_ms(&placed, 0.5),
                        percentile_ms(&placed, 1.0)
                    ),
                );
            }
        }
        let peak = self.peak_rss.filter(|p| *p > 0);
        row(
            "control plane peak RSS",
            match (peak, self.memory_at_end) {
                (Some(p), Some(m)) => format!(
                    "{:.1} MiB sampled (VmHWM {:.1} MiB; {:.1} MiB before the load)",
                    mib(p),
                    mib(m.hwm),
                    mib(self.rss_at_load.unwrap_or_default())
                ),
                _ => "— (process not known)".into(),
            },
        );
        let wall = self.started.map(|s| s.elapsed()).unwrap_or_default();
        let cpu = self.cpu_at_end.zip(self.cpu_at_start).map(|(e, s)| e.saturating_sub(s));
        let load_cpu = self.cpu_at_end.zip(self.cpu_at_load).map(|(e, s)| e.saturating_sub(s));
        row(
            "control plane CPU (utime+stime)",
            match (cpu, load_cpu) {
                (Some(c), Some(l)) => format!(
                    "{:.2} s over the run ({:.2} cores over {:.1} s); {:.2} s from the load on",
                    c.as_secs_f64(),
                    c.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                    wall.as_secs_f64(),
                    l.as_secs_f64()
                ),
                (Some(c), None) => format!("{:.2} s over the run", c.as_secs_f64()),
                _ => "— (process not known)".into(),
            },
        );
        let hollow = self.hollow_cpu_at_end.zip(self.hollow_cpu_at_load).map(|(e, s)| e.saturating_sub(s));
        row(
            "hollow nodes' CPU from the load on (bench)",
            match hollow {
                Some(h) if self.running > 0 => format!(
                    "{:.2} s ({:.0} µs per task RUNNING, heartbeats included)",
                    h.as_secs_f64(),
                    h.as_secs_f64() * 1e6 / self.running as f64
                ),
                Some(h) => format!("{:.2} s", h.as_secs_f64()),
                None => "—".into(),
            },
        );
        let f = |d: Option<Duration>| d.map_or("NA".to_string(), |d| format!("{:.3}", d.as_secs_f64()));
        println!(
            "summary: mode={} nodes={} services={} instances={} tasks={n} placed={} running={} placed_all_s={} \
             placements_per_s={} running_all_s={} probe_placed_p99_ms={} probe_p50_ms={} probe_p99_ms={} \
             cp_peak_rss_mib={} cp_cpu_s={} result={}",
            if opts.bound { "bound" } else { "services" },
            opts.nodes,
            opts.services,
            opts.instances,
            self.placed,
            self.running,
            f(placed_at),
            per_sec.map_or("NA".into(), |r| format!("{r:.0}")),
            f(running_at),
            if placed.is_empty() { "NA".into() } else { format!("{:.1}", percentile_ms(&placed, 0.99)) },
            if lat.is_empty() { "NA".into() } else { format!("{p50:.1}") },
            if lat.is_empty() { "NA".into() } else { format!("{p99:.1}") },
            peak.map_or("NA".into(), |p| format!("{:.1}", mib(p))),
            cpu.map_or("NA".into(), |c| format!("{:.2}", c.as_secs_f64())),
            if self.all_running.is_some() && self.probes.len() == opts.probes { "ok" } else { "incomplete" },
        );
    }
}

/// The configuration for `--server URL`: the configuration file's credential (from
/// `kubeconfig`, else the CLI's default file if there is one), with `server` and, if
/// given, `token` in its place.
///
/// # Errors
/// The configuration file named could not be read.
pub fn server_config(server: &str, kubeconfig: Option<&Path>, token: Option<String>) -> anyhow::Result<Config> {
    let path: Option<PathBuf> = match kubeconfig {
        Some(p) => Some(p.to_path_buf()),
        None => corral_client::credentials::default_config_path().filter(|p| p.exists()),
    };
    let base = match path {
        Some(p) => Config::from_kubeconfig(&p).with_context(|| format!("reading {}", p.display()))?,
        None => Config { server: server.to_string(), token: None, ca_pem: None, client_identity: None },
    };
    Ok(Config { server: server.to_string(), token: token.or(base.token), ..base })
}

#[cfg(test)]
mod tests {
    use corral_api::kinds::task::{TaskSummarySpec, TaskSummaryStatus};

    use super::*;

    fn task(uid: &str, service: &str, node: Option<&str>, phase: Option<TaskPhase>) -> TaskSummary {
        let mut t = TaskSummary {
            spec: TaskSummarySpec { node_name: node.map(str::to_string), ..Default::default() },
            status: phase.map(|phase| TaskSummaryStatus { phase, ..Default::default() }),
            ..Default::default()
        };
        t.metadata.name = uid.into();
        t.metadata.namespace = Some(NAMESPACE.into());
        t.metadata.uid = Some(uid.into());
        t.metadata.labels.insert(SERVICE_LABEL.into(), service.into());
        t
    }

    #[test]
    fn each_task_is_counted_once_placed_and_once_running() {
        let mut tr = Track { target: 2, ..Default::default() };
        let now = Instant::now();
        let (load, probe) = ("load-r-", "probe-r-");
        tr.task(&task("a", "load-r-0", None, None), load, probe, now);
        assert_eq!((tr.placed, tr.running), (0, 0));
        tr.task(&task("a", "load-r-0", Some("n0"), None), load, probe, now);
        tr.task(&task("a", "load-r-0", Some("n0"), Some(TaskPhase::Running)), load, probe, now);
        tr.task(&task("a", "load-r-0", Some("n0"), Some(TaskPhase::Running)), load, probe, now);
        assert_eq!((tr.placed, tr.running, tr.all_running), (1, 1, None));
        tr.task(&task("b", "load-r-1", Some("n1"), Some(TaskPhase::Running)), load, probe, now);
        assert_eq!((tr.placed, tr.running), (2, 2));
        assert!(tr.all_placed.is_some() && tr.all_running.is_some());
        // Other runs' tasks and the small services' are not the load.
        tr.task(&task("c", "load-q-0", Some("n1"), Some(TaskPhase::Running)), load, probe, now);
        tr.task(&task("d", "probe-r-0", Some("n1"), Some(TaskPhase::Running)), load, probe, now);
        assert_eq!((tr.placed, tr.running), (2, 2));
        assert_eq!(tr.probes.get("probe-r-0").map(Vec::len), Some(1));
        // One that ends without running (its node lost) is counted apart, once.
        tr.task(&task("e", "load-r-2", Some("n2"), Some(TaskPhase::Lost)), load, probe, now);
        tr.task(&task("e", "load-r-2", Some("n2"), Some(TaskPhase::Lost)), load, probe, now);
        assert_eq!((tr.running, tr.ended_early), (2, 1));
    }

    #[test]
    fn cpu_is_read_past_a_command_name_with_spaces() {
        // SAFETY: sysconf(3) reads a configuration value; no memory is involved.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
        let stat = format!("42 (corral server) S 1 42 42 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 4 0", hz * 2, hz);
        assert_eq!(stat_cpu(&stat), Some(Duration::from_secs(3)));
    }
}
