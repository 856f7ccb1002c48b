//! Hollow nodes: a **simulation** of many agents, for scale tests. Each hollow node is
//! registered through the real API, renews its real heartbeat lease, and reports the
//! tasks bound to it `RUNNING` — without starting any process. Everything a hollow node
//! writes says so: the attribute `simulated=true`, the agent version
//! `hollow (simulated)`, and each task's status message. Real agents and hollow nodes
//! can share one cluster; the control plane treats them alike.
//!
//! A hollow task goes through the same writes as a real agent's, in the same order
//! (see `agent/src/tasks/mod.rs`): its status `RUNNING`, then the agent's finalizer;
//! `spec.kill` → `KILLED` (reason `Killed`); deletion → `KILLED` and the finalizer
//! dropped; a task that ended keeps the finalizer, since the server deletes it
//! without waiting. Only the process is missing.
//!
//! # How it keeps up
//! All hollow nodes of a process share **one** watch of tasks (a real cluster has one
//! per agent: that fan-out is the part of the control plane's work a hollow cluster
//! does not reproduce). Tasks wait in one queue per node, and the nodes take turns,
//! so that a task bound to a quiet node does not wait behind another node's
//! thousands; at most [`HollowOptions::realize_concurrency`] nodes work at once,
//! each on up to [`NODE_BATCH`] of its waiting tasks. A node writes its tasks'
//! statuses through one [`StatusReporter`], as an agent does: the statuses of tasks
//! it works on together go in one report. One task is never worked on twice at once (a
//! change seen meanwhile waits, the newest one only), and the echoes of the node's own
//! writes are recognised by revision instead of being worked on again. The watch is
//! read on at once — so that it never falls behind the server's compaction — until
//! [`HollowOptions::max_queued`] tasks wait; only then is it held back. Memory is
//! bounded by that, the concurrency and the watch's lag.
//!
//! # Tasks that end
//! A hollow task runs until it is killed, unless its environment says otherwise:
//! [`EXIT_AFTER_ENV`]` = "SECONDS[:CODE]"` makes the node report it ended that long
//! after it reported it `RUNNING` — `FINISHED` with exit code 0, or `FAILED` with
//! CODE — as an agent reports a process that exited (a job's task, say).
//!
//! # Tasks staged ahead
//! A task with a `startAt` still ahead (a job's run staged before its due time) is
//! held, as an agent holds it, and joins its node's queue at that time: it is then
//! reported `RUNNING` like any other.
//!
//! Heartbeats are paced: each node renews its lease once per interval at its own
//! offset, as unsynchronised agents do, many at once if the server is slow.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use corral_api::ApiObject;
use corral_api::kinds::Lease;
use corral_api::kinds::Node;
use corral_api::kinds::node::{NODE_LEASE_NAMESPACE, NodeSpec, NodeStatus, PortRange, Resources};
use corral_api::kinds::task::{AGENT_FINALIZER, Task, TaskPhase};
use corral_client::{Api, Client, ListParams};
use corral_runtime::watcher::{Seen, watch};
use corral_runtime::{CancellationToken, StatusReporter};
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{Id, JoinSet};

/// Most waiting tasks one node works on in one turn.
pub const NODE_BATCH: usize = 64;

/// The attribute that marks a node as simulated.
pub const SIMULATED: &str = "simulated";
/// The agent version hollow nodes report.
pub const AGENT_VERSION: &str = "hollow (simulated)";
/// What every status a hollow node writes says, besides what happened.
pub const SIMULATED_NOTE: &str = "simulated by a hollow node: no process runs";
/// The environment variable of a task that makes a hollow node end it:
/// `SECONDS[:CODE]` after it was reported running (see the module's doc).
pub const EXIT_AFTER_ENV: &str = "CORRAL_HOLLOW_EXIT_AFTER";
/// Requests a hollow cluster has in flight at once while registering or heartbeating.
const CONCURRENCY: usize = 64;
/// Heartbeats in flight at once, at most.
const HEARTBEATS_IN_FLIGHT: usize = 1024;
/// How often the heartbeat pacer starts the beats that are due.
const BEAT_TICK: Duration = Duration::from_millis(10);
/// Attempts at realizing a task when the server answers with an error that is not a
/// conflict (a conflict means a newer version is on its way through the watch).
const ATTEMPTS: u32 = 5;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct HollowOptions {
    /// How many nodes.
    pub nodes: usize,
    /// Their names: `PREFIX0`, `PREFIX1`, …
    pub prefix: String,
    /// Each node's capacity.
    pub capacity: Resources,
    /// Each node's host ports.
    pub ports: Vec<PortRange>,
    /// How often each node renews its lease.
    pub heartbeat: Duration,
    /// Tasks realized at once, over all the nodes (each takes two writes).
    pub realize_concurrency: usize,
    /// Tasks waiting to be realized, at most; past that the watch of tasks is held
    /// back. Each waiting task is held decoded (1–2 KiB).
    pub max_queued: usize,
    /// Where the realizer reports how it is doing (for a benchmark's progress).
    pub stats: Arc<HollowStats>,
}

/// How the hollow nodes' realizer is doing, updated as it works.
#[derive(Debug, Default)]
pub struct HollowStats {
    /// Jobs finished (each realizes, kills or lets go of one task).
    pub jobs_done: AtomicU64,
    /// Tasks waiting for a slot now.
    pub queued: AtomicUsize,
    /// Jobs in flight now.
    pub in_flight: AtomicUsize,
    /// Times the watch of tasks listed (1 at the start; more after it fell behind
    /// the server's compaction).
    pub lists: AtomicU64,
}

impl Default for HollowOptions {
    fn default() -> Self {
        HollowOptions {
            nodes: 100,
            prefix: "hollow-".into(),
            capacity: Resources { cpus: 4.0, mem: 8192, disk: 65536 },
            ports: vec![PortRange { begin: 31000, end: 32000 }],
            heartbeat: Duration::from_secs(10),
            realize_concurrency: 256,
            max_queued: 131_072,
            stats: Arc::default(),
        }
    }
}

/// Registers the hollow nodes, then keeps them alive and realizes their tasks (on
/// paper) until `shutdown` is cancelled.
///
/// # Errors
/// A node could not be registered.
pub async fn run_hollow(client: Client, opts: HollowOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let names: Vec<String> = (0..opts.nodes).map(|i| format!("{}{i}", opts.prefix)).collect();
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    // Registered and a first heartbeat each, so that every node is soon Ready.
    // Owned copies in each future: a spawned future may not borrow from its stream.
    let registered = futures::stream::iter(names.clone())
        .map(|n| {
            let (nodes, leases, opts) = (nodes.clone(), leases.clone(), opts.clone());
            async move {
                register(&nodes, &n, &opts).await?;
                beat(&leases, &n, opts.heartbeat).await;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    registered.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    tracing::info!(nodes = names.len(), "hollow nodes registered (simulated: no process runs on them)");

    let ours: Arc<HashSet<String>> = Arc::new(names.iter().cloned().collect());
    let beats = heartbeats(leases, names, opts.heartbeat, shutdown.clone());
    let realize = realize_tasks(
        Api::all(client),
        ours,
        opts.realize_concurrency.max(1),
        opts.max_queued.max(1),
        opts.stats,
        shutdown,
    );
    tokio::join!(beats, realize);
    Ok(())
}

/// Renews every node's lease once per `interval` until `shutdown`, each node at its
/// own offset in the interval — spread evenly, as agents that are not synchronised
/// would, not in bursts — with up to [`HEARTBEATS_IN_FLIGHT`] at once, so that a slow
/// server delays each beat by its latency only, not by a queue of the others. A node
/// whose last beat is still in flight skips a turn.
async fn heartbeats(leases: Api<Lease>, names: Vec<String>, interval: Duration, shutdown: CancellationToken) {
    if names.is_empty() {
        return;
    }
    let n = names.len();
    let names: Arc<[String]> = names.into();
    let mut tick = tokio::time::interval(BEAT_TICK.max(interval / n as u32));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    // Beats started so far, over all the nodes: node `k % n` is the next.
    let mut next: u64 = 0;
    let mut in_flight: JoinSet<usize> = JoinSet::new();
    let mut beating: HashSet<usize> = HashSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok(i) = done {
                    beating.remove(&i);
                }
                continue;
            }
            _ = shutdown.cancelled() => return,
        }
        let due = (started.elapsed().as_secs_f64() / interval.as_secs_f64() * n as f64) as u64;
        while next < due && in_flight.len() < HEARTBEATS_IN_FLIGHT {
            let i = (next % n as u64) as usize;
            next += 1;
            if !beating.insert(i) {
                continue;
            }
            let (leases, names) = (leases.clone(), names.clone());
            in_flight.spawn(async move {
                beat(&leases, &names[i], interval).await;
                i
            });
        }
    }
}

/// One heartbeat of `node`, as its agent's ([`corral_agent::node::heartbeat`]), tried
/// again at once if it fails: an idle keep-alive connection the server closes just as
/// the beat reuses it is no reason to miss a beat.
async fn beat(leases: &Api<Lease>, node: &str, interval: Duration) {
    for attempt in 1..=3 {
        match corral_agent::node::heartbeat(leases, node, interval).await {
            Ok(()) => return,
            Err(e) if attempt == 3 => tracing::warn!(node, error = %e, "hollow heartbeat failed"),
            Err(e) => tracing::debug!(node, error = %e, "hollow heartbeat failed; trying again"),
        }
    }
}

/// Creates the node (or takes over one of the same name) and writes its status.
async fn register(nodes: &Api<Node>, name: &str, opts: &HollowOptions) -> anyhow::Result<()> {
    let attributes = BTreeMap::from([("hostname".to_string(), name.to_string()), (SIMULATED.into(), "true".into())]);
    let spec = NodeSpec { attributes, ..Default::default() };
    let node = match nodes.create(&Node::new(name, spec.clone())).await {
        Ok(n) => n,
        Err(e) if e.is_already_exists() => {
            let mut n = nodes.get(name).await?;
            n.spec.attributes = spec.attributes;
            nodes.update(&n).await?
        }
        Err(e) => return Err(e).with_context(|| format!("registering hollow node {name}")),
    };
    let mut with_status = node;
    let phase = with_status.status.as_ref().map(|s| s.phase).unwrap_or_default();
    with_status.status = Some(NodeStatus {
        phase,
        capacity: opts.capacity,
        port_ranges: opts.ports.clone(),
        address: Some("127.0.0.1".into()),
        agent_endpoint: None,
        agent_version: Some(AGENT_VERSION.into()),
        ..with_status.status.clone().unwrap_or_default()
    });
    nodes.update_status(&with_status).await.with_context(|| format!("writing hollow node {name}'s status"))?;
    Ok(())
}

/// What the shared watch hands the realizer.
enum Change {
    /// The watch listed again: what it reports next is the whole present.
    Relisted,
    /// A task of one of our nodes, as it is now.
    Task(Box<Task>),
    /// A task of ours is gone (its uid).
    Gone(String),
}

/// Watches every task and realizes those bound to one of `ours`, at most `limit` at
/// once and at most `max_queued` waiting, until `shutdown` is cancelled.
async fn realize_tasks(
    tasks: Api<Task>,
    ours: Arc<HashSet<String>>,
    limit: usize,
    max_queued: usize,
    stats: Arc<HollowStats>,
    shutdown: CancellationToken,
) {
    // A little slack between the watch and the realizer; the queue is the buffer.
    let (tx, mut rx) = mpsc::channel::<Change>(1024);
    let feed = watch(tasks.clone(), ListParams::default(), shutdown.clone(), None, move |seen| {
        let (tx, ours) = (tx.clone(), ours.clone());
        async move {
            let is_ours = |t: &Task| t.spec.node_name.as_ref().is_some_and(|n| ours.contains(n));
            // A send fails only once the realizer has stopped, at shutdown.
            match seen {
                Seen::Listed { objects, .. } => {
                    let _ = tx.send(Change::Relisted).await;
                    for t in objects.into_iter().filter(is_ours) {
                        let _ = tx.send(Change::Task(Box::new(t))).await;
                    }
                }
                Seen::Applied(t) if is_ours(&t) => {
                    let _ = tx.send(Change::Task(Box::new(t))).await;
                }
                Seen::Deleted(t) if is_ours(&t) => {
                    let _ = tx.send(Change::Gone(t.uid().to_string())).await;
                }
                Seen::Applied(_) | Seen::Deleted(_) | Seen::Bookmark(_) => {}
            }
        }
    });
    let work = async move {
        let mut realizer = Realizer::new(tasks, limit);
        loop {
            stats.queued.store(realizer.queued.len(), Ordering::Relaxed);
            stats.in_flight.store(realizer.running.len(), Ordering::Relaxed);
            let (release_at, holding) = (realizer.next_release(), !realizer.held.is_empty());
            tokio::select! {
                Some(done) = realizer.running.join_next_with_id(), if !realizer.running.is_empty() => {
                    stats.jobs_done.fetch_add(1, Ordering::Relaxed);
                    realizer.finished(done);
                }
                // The watch is read on as long as the queue has room: it is held back
                // only when `max_queued` tasks already wait.
                change = rx.recv(), if realizer.queued.len() < max_queued => match change {
                    Some(c) => {
                        if matches!(c, Change::Relisted) {
                            stats.lists.fetch_add(1, Ordering::Relaxed);
                        }
                        realizer.seen(c)
                    }
                    None => return,
                },
                // Tasks staged ahead whose time has come join their nodes' queues.
                _ = tokio::time::sleep_until(release_at), if holding => {
                    realizer.release(tokio::time::Instant::now());
                }
                _ = shutdown.cancelled() => return,
            }
        }
    };
    tokio::join!(feed, work);
}

/// The realizer's book-keeping: the tasks being worked on (with the newest version of
/// each seen meanwhile), those waiting for a slot — in one queue per node, the nodes
/// served in turn, as each agent works through its own tasks — and the revisions of
/// its own writes whose echoes are awaited.
struct Realizer {
    tasks: Api<Task>,
    /// Jobs at once, at most.
    limit: usize,
    /// Nodes reporting tasks that ended by themselves ([`EXIT_AFTER_ENV`]) at once,
    /// at most: as many as jobs.
    exits: Arc<Semaphore>,
    /// Jobs: each a node's turn, realizing some of its tasks.
    running: JoinSet<Vec<Option<u64>>>,
    /// Job → the uids of the tasks it works on, in the order of its answer.
    jobs: HashMap<Id, Vec<String>>,
    /// Each node's status reporter, made at its first turn.
    reporters: HashMap<String, StatusReporter>,
    /// Tasks being worked on → the newest version seen since (if any).
    busy: HashMap<String, Option<Box<Task>>>,
    /// Tasks waiting for a slot → their newest version.
    queued: HashMap<String, Box<Task>>,
    /// Each node's waiting tasks (uids), oldest first. A uid no longer in `queued`
    /// (it settled or went meanwhile) is skipped when its turn comes.
    by_node: HashMap<String, VecDeque<String>>,
    /// The nodes with waiting tasks, in the order they are served.
    turns: VecDeque<String>,
    /// Waiting tasks staged ahead (`startAt`), by the time they may start: they are
    /// in `queued` but join their node's queue only then.
    held: BTreeSet<(tokio::time::Instant, String)>,
    /// The same, by uid.
    held_until: HashMap<String, tokio::time::Instant>,
    /// Tasks this realizer wrote → the revision of its last write, until the watch
    /// brings that revision (or a later one): versions up to it are its own past.
    echoes: HashMap<String, u64>,
}

impl Realizer {
    fn new(tasks: Api<Task>, limit: usize) -> Self {
        Realizer {
            tasks,
            limit,
            exits: Arc::new(Semaphore::new(limit.max(1))),
            running: JoinSet::new(),
            jobs: HashMap::new(),
            reporters: HashMap::new(),
            busy: HashMap::new(),
            queued: HashMap::new(),
            by_node: HashMap::new(),
            turns: VecDeque::new(),
            held: BTreeSet::new(),
            held_until: HashMap::new(),
            echoes: HashMap::new(),
        }
    }

    /// Takes in one thing the watch saw.
    fn seen(&mut self, change: Change) {
        match change {
            Change::Relisted => self.echoes.clear(),
            Change::Gone(uid) => {
                self.echoes.remove(&uid);
                self.queued.remove(&uid);
                if let Some(pending) = self.busy.get_mut(&uid) {
                    *pending = None;
                }
            }
            Change::Task(task) => {
                let uid = task.uid().to_string();
                let rv = task.revision();
                if let Some(&mine) = self.echoes.get(&uid) {
                    if rv >= mine {
                        // Our own last write, or someone's after it: the past is over.
                        self.echoes.remove(&uid);
                    }
                    if rv <= mine {
                        return;
                    }
                }
                if let Some(pending) = self.busy.get_mut(&uid) {
                    *pending = Some(task);
                    return;
                }
                self.offer(uid, task);
                self.fill();
            }
        }
    }

    /// Queues `task` (in place of an older version) if it needs anything; forgets it
    /// if it no longer does.
    fn offer(&mut self, uid: String, task: Box<Task>) {
        if !needs_work(&task) {
            self.queued.remove(&uid);
            self.unhold(&uid);
            return;
        }
        let node = task.spec.node_name.clone().unwrap_or_default();
        let start_in = starts_later(&task);
        if let Some(queued) = self.queued.get_mut(&uid) {
            *queued = task;
            // Held, and now to be worked on at once (killed, deleted): it joins its
            // node's queue.
            if start_in.is_none() && self.unhold(&uid) {
                self.line_up(node, uid);
            }
            return;
        }
        self.queued.insert(uid.clone(), task);
        match start_in {
            Some(wait) => {
                let at = tokio::time::Instant::now() + wait;
                self.held.insert((at, uid.clone()));
                self.held_until.insert(uid, at);
            }
            None => self.line_up(node, uid),
        }
    }

    /// Puts a queued task at the end of its node's queue.
    fn line_up(&mut self, node: String, uid: String) {
        let waiting = self.by_node.entry(node.clone()).or_default();
        if waiting.is_empty() {
            self.turns.push_back(node);
        }
        waiting.push_back(uid);
    }

    /// Stops holding `uid`; whether it was held.
    fn unhold(&mut self, uid: &str) -> bool {
        match self.held_until.remove(uid) {
            Some(at) => self.held.remove(&(at, uid.to_string())),
            None => false,
        }
    }

    /// When the next held task may start (far ahead when none is held).
    fn next_release(&self) -> tokio::time::Instant {
        self.held.first().map_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600), |(at, _)| *at)
    }

    /// Lines up the held tasks whose time has come by `now`, then starts work.
    fn release(&mut self, now: tokio::time::Instant) {
        while let Some((at, uid)) = self.held.first().cloned()
            && at <= now
        {
            self.held.remove(&(at, uid.clone()));
            self.held_until.remove(&uid);
            if let Some(node) = self.queued.get(&uid).map(|t| t.spec.node_name.clone().unwrap_or_default()) {
                self.line_up(node, uid);
            }
        }
        self.fill();
    }

    /// Starts nodes' turns while slots are free, one node after another: each takes
    /// up to [`NODE_BATCH`] of its waiting tasks and works on them together.
    fn fill(&mut self) {
        while self.running.len() < self.limit
            && let Some(node) = self.turns.pop_front()
        {
            let Some(waiting) = self.by_node.get_mut(&node) else { continue };
            let mut batch = Vec::new();
            while batch.len() < NODE_BATCH
                && let Some(uid) = waiting.pop_front()
            {
                if let Some(task) = self.queued.remove(&uid) {
                    batch.push((uid, task));
                }
            }
            if waiting.is_empty() {
                self.by_node.remove(&node);
            } else {
                self.turns.push_back(node.clone());
            }
            if batch.is_empty() {
                continue;
            }
            let reporter = self
                .reporters
                .entry(node)
                .or_insert_with_key(|node| StatusReporter::new(self.tasks.client().clone(), node.clone()))
                .clone();
            let (uids, batch): (Vec<String>, Vec<Box<Task>>) = batch.into_iter().unzip();
            let (tasks, exits) = (self.tasks.clone(), self.exits.clone());
            let job = self.running.spawn(async move {
                let work = batch.into_iter().map(|task| realize(&tasks, &reporter, task));
                let (written, ends): (Vec<_>, Vec<_>) = futures::future::join_all(work).await.into_iter().unzip();
                let ends: Vec<Ending> = ends.into_iter().flatten().collect();
                if !ends.is_empty() {
                    // One timer for the node's batch, not one task each: ten thousand
                    // runs started in one second otherwise cost ten thousand spawns.
                    tokio::spawn(end_later(tasks, reporter, ends, exits));
                }
                written
            });
            for uid in &uids {
                self.busy.insert(uid.clone(), None);
            }
            self.jobs.insert(job.id(), uids);
        }
    }

    /// A job ended, having last written revision `written[i]` of its `i`th task (if
    /// it wrote anything).
    fn finished(&mut self, done: Result<(Id, Vec<Option<u64>>), tokio::task::JoinError>) {
        let (id, written) = match done {
            Ok((id, written)) => (id, written),
            Err(e) => {
                tracing::warn!(error = %e, "a hollow task job failed");
                (e.id(), Vec::new())
            }
        };
        for (i, uid) in self.jobs.remove(&id).unwrap_or_default().into_iter().enumerate() {
            let written = written.get(i).copied().flatten();
            let pending = self.busy.remove(&uid).flatten();
            match (written, pending) {
                (Some(w), Some(p)) if p.revision() > w => self.offer(uid, p),
                // The echo of our last write arrived while we worked: nothing to await.
                (Some(w), Some(p)) if p.revision() == w => {}
                (Some(w), _) => {
                    self.echoes.insert(uid, w);
                }
                (None, Some(p)) => self.offer(uid, p),
                (None, None) => {}
            }
        }
        self.fill();
    }
}

/// How long `task` is held before it starts: one not yet running, neither killed nor
/// deleted, whose `startAt` is ahead.
fn starts_later(task: &Task) -> Option<Duration> {
    let phase = task.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if phase == TaskPhase::Running
        || phase.is_terminal()
        || task.spec.kill
        || task.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    task.spec.start_in(SystemTime::now())
}

/// Whether a hollow node has anything to write for `task` (bound to it).
fn needs_work(task: &Task) -> bool {
    let taken = task.metadata.finalizers.iter().any(|f| f == AGENT_FINALIZER);
    let phase = task.status.as_ref().map(|s| s.phase).unwrap_or_default();
    let deleting = task.metadata.deletion_timestamp.is_some();
    if deleting {
        // Let go of it; a kill is first reported.
        taken
    } else if phase.is_terminal() || task.spec.kill {
        // Report a kill; an ended task is kept (the server deletes it without
        // waiting for the finalizer).
        !phase.is_terminal()
    } else {
        phase != TaskPhase::Running || !taken
    }
}

/// A task reported running that ends by itself ([`EXIT_AFTER_ENV`]): when, how, and
/// the task as written last.
struct Ending {
    after: Duration,
    code: i32,
    task: Box<Task>,
}

/// Realizes `task`, retrying errors other than conflicts (a newer version comes
/// through the watch) and absence (nothing left to do). Returns the revision of the
/// last write made, if any, and how the task ends by itself if it does.
async fn realize(tasks: &Api<Task>, reporter: &StatusReporter, task: Box<Task>) -> (Option<u64>, Option<Ending>) {
    let namespace = task.metadata.namespace.clone().unwrap_or_default();
    let name = task.metadata.name.clone();
    let mut written = None;
    let mut ending = None;
    let mut task = Some(task);
    for attempt in 1..=ATTEMPTS {
        // The futures of the client's calls are large and most tasks need one write:
        // they are boxed where awaited, so that a node's batch of tasks stays small.
        let read = match task.take() {
            Some(t) => Ok(t),
            None => Box::pin(tasks.in_namespace(&namespace).get(&name)).await.map(Box::new),
        };
        let result = match read {
            Ok(t) => realize_once(tasks, reporter, t, &mut written, &mut ending).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return (written, ending),
            Err(e) if e.is_conflict() || e.is_not_found() => return (written, ending),
            Err(e) if attempt == ATTEMPTS => {
                tracing::warn!(task = %name, namespace, error = %e, "hollow node gave up on a task; its next change retries");
            }
            Err(e) => {
                tracing::debug!(task = %name, error = %e, "hollow task update failed; retrying");
                tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
            }
        }
    }
    (written, ending)
}

/// Does on paper what an agent does, from the task's present state: reports it
/// running and takes it (finalizer); on `spec.kill` reports it killed; on deletion
/// reports it killed and lets it go. One that ended keeps the finalizer, as with an
/// agent: deleting it does not wait. Records in `written` the revision of each write
/// made, and in `ending` how a task reported running ends by itself.
async fn realize_once(
    tasks: &Api<Task>,
    reporter: &StatusReporter,
    mut task: Box<Task>,
    written: &mut Option<u64>,
    ending: &mut Option<Ending>,
) -> corral_client::Result<()> {
    let taken = task.metadata.finalizers.iter().any(|f| f == AGENT_FINALIZER);
    let phase = task.status.as_ref().map(|s| s.phase).unwrap_or_default();
    let deleting = task.metadata.deletion_timestamp.is_some();
    if deleting || phase.is_terminal() || task.spec.kill {
        if !phase.is_terminal() && (taken || !deleting) {
            let what = if deleting {
                "killed: the task was deleted"
            } else if phase == TaskPhase::Running {
                // Not the finalizer: a task bound to a registered node carries it
                // from its creation.
                "killed on request"
            } else {
                "killed before it started"
            };
            let st = task.status.get_or_insert_default();
            st.phase = TaskPhase::Killed;
            st.reason = Some("Killed".into());
            st.message = Some(format!("{what} ({SIMULATED_NOTE})"));
            st.finish_time = Some(corral_api::meta::now_timestamp());
            *task = Box::pin(reporter.write_task(*task)).await?;
            *written = Some(task.revision());
        }
        if taken && deleting {
            task.metadata.finalizers.retain(|f| f != AGENT_FINALIZER);
            *task = Box::pin(tasks.update(&task)).await?;
            *written = Some(task.revision());
        }
        return Ok(());
    }
    // As an agent after a launch: RUNNING first, then the finalizer.
    if phase != TaskPhase::Running {
        let st = task.status.get_or_insert_default();
        st.phase = TaskPhase::Running;
        st.start_time = Some(corral_api::meta::now_timestamp());
        st.host_ip = Some("127.0.0.1".into());
        st.message = Some(SIMULATED_NOTE.into());
        *task = Box::pin(reporter.write_task(*task)).await?;
        *written = Some(task.revision());
        // Known from now on, whatever becomes of the finalizer's write below.
        if let Some((after, code)) = exit_after(&task) {
            *ending = Some(Ending { after, code, task: task.clone() });
        }
    }
    if !taken {
        task.metadata.finalizers.push(AGENT_FINALIZER.into());
        *task = Box::pin(tasks.update(&task)).await?;
        *written = Some(task.revision());
    }
    Ok(())
}

/// When and how `task` ends by itself, from its [`EXIT_AFTER_ENV`].
fn exit_after(task: &Task) -> Option<(Duration, i32)> {
    let value = task.spec.env.get(EXIT_AFTER_ENV)?;
    let (secs, code) = match value.split_once(':') {
        Some((secs, code)) => (secs, code.trim().parse().ok()?),
        None => (value.as_str(), 0),
    };
    let secs: f64 = secs.trim().parse().ok().filter(|s: &f64| s.is_finite() && *s >= 0.0)?;
    Some((Duration::from_secs_f64(secs), code))
}

/// Reports each of one node's `ends` ended, `after` its time from now: those due
/// together at once, with one of the `slots` shared by the nodes (thousands of tasks
/// started in one second end in one second: their reports go out as many nodes at
/// once as the realizer's, not all at once).
async fn end_later(tasks: Api<Task>, reporter: StatusReporter, mut ends: Vec<Ending>, slots: Arc<Semaphore>) {
    let base = tokio::time::Instant::now();
    ends.sort_by_key(|e| e.after);
    let mut ends = ends.into_iter().peekable();
    while let Some(first) = ends.next() {
        let after = first.after;
        let mut due = vec![first];
        while let Some(e) = ends.next_if(|e| e.after == after) {
            due.push(e);
        }
        tokio::time::sleep_until(base + after).await;
        let Ok(_slot) = slots.acquire().await else { return };
        let work = due.into_iter().map(|e| {
            let tasks = tasks.in_namespace(e.task.metadata.namespace.as_deref().unwrap_or_default());
            let reporter = &reporter;
            async move { exit(&tasks, reporter, *e.task, e.code).await }
        });
        futures::future::join_all(work).await;
    }
}

/// Reports task `name` ended with exit `code`, as an agent whose process exited —
/// unless it is no longer running (killed, or gone, meanwhile). The realizer then
/// lets go of it, as of any task that ended.
async fn exit(tasks: &Api<Task>, reporter: &StatusReporter, known: Task, code: i32) {
    let name = known.metadata.name.clone();
    // The version it wrote last, as an agent knows its task from its cache; a
    // conflict (someone wrote since) reads it again.
    let mut known = Some(known);
    for attempt in 1..=ATTEMPTS {
        let read = match known.take() {
            Some(t) => Ok(t),
            None => Box::pin(tasks.get(&name)).await,
        };
        let mut task = match read {
            Ok(t) => t,
            Err(e) if e.is_not_found() => return,
            Err(e) => {
                tracing::debug!(task = %name, error = %e, "reading a hollow task to end it failed; retrying");
                tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
                continue;
            }
        };
        let phase = task.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if phase != TaskPhase::Running || task.spec.kill || task.metadata.deletion_timestamp.is_some() {
            return;
        }
        let st = task.status.get_or_insert_default();
        st.phase = if code == 0 { TaskPhase::Finished } else { TaskPhase::Failed };
        st.exit_code = Some(code);
        st.reason = Some(if code == 0 { "Finished" } else { "Failed" }.into());
        st.message = Some(format!("exited with code {code} ({SIMULATED_NOTE})"));
        st.finish_time = Some(corral_api::meta::now_timestamp());
        match Box::pin(reporter.write_task(task)).await {
            Ok(_) => return,
            Err(e) if e.is_not_found() => return,
            // A conflict: read it again and judge anew.
            Err(e) if e.is_conflict() => {}
            Err(e) => {
                tracing::debug!(task = %name, error = %e, "ending a hollow task failed; retrying");
                tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
            }
        }
    }
    tracing::warn!(task = %name, "hollow node gave up ending a task");
}

#[cfg(test)]
mod tests {
    use corral_api::kinds::task::{TaskSpec, TaskStatus};

    use super::*;

    fn task(phase: Option<TaskPhase>, taken: bool, kill: bool, deleting: bool) -> Task {
        let mut t = Task::namespaced(
            "default",
            "t",
            TaskSpec { node_name: Some("hollow-0".into()), kill, ..Default::default() },
        );
        t.status = phase.map(|phase| TaskStatus { phase, ..Default::default() });
        if taken {
            t.metadata.finalizers.push(AGENT_FINALIZER.into());
        }
        if deleting {
            t.metadata.deletion_timestamp = Some(corral_api::meta::now_timestamp());
        }
        t
    }

    #[test]
    fn a_task_ends_by_itself_only_when_its_environment_says_when() {
        let with = |v: &str| {
            let mut t = task(Some(TaskPhase::Running), true, false, false);
            t.spec.env.insert(EXIT_AFTER_ENV.into(), v.into());
            exit_after(&t)
        };
        assert_eq!(exit_after(&task(Some(TaskPhase::Running), true, false, false)), None);
        assert_eq!(with("2"), Some((Duration::from_secs(2), 0)));
        assert_eq!(with("0.5:3"), Some((Duration::from_millis(500), 3)));
        assert_eq!(with("-1"), None);
        assert_eq!(with("soon"), None);
        assert_eq!(with("1:x"), None);
    }

    #[test]
    fn needs_work_only_until_the_task_is_settled() {
        use TaskPhase::*;
        // (phase, finalizer, spec.kill, deleting) → work to do
        let table = [
            (None, false, false, false, true),
            (Some(Staging), false, false, false, true),
            (Some(Running), false, false, false, true),
            (Some(Running), true, false, false, false),
            (Some(Running), true, true, false, true),
            (Some(Staging), false, true, false, true),
            // Ended: kept as it is, finalizer and all (its deletion does not wait).
            (Some(Killed), true, true, false, false),
            (Some(Killed), false, true, false, false),
            (Some(Lost), true, false, false, false),
            (Some(Finished), true, false, false, false),
            // Deleted: let go of, ended or not.
            (Some(Running), true, false, true, true),
            (Some(Finished), true, false, true, true),
            (Some(Running), false, false, true, false),
            (Some(Killed), false, false, true, false),
        ];
        for (phase, taken, kill, deleting, want) in table {
            assert_eq!(needs_work(&task(phase, taken, kill, deleting)), want, "{phase:?} {taken} {kill} {deleting}");
        }
    }

    fn seen_at(rv: u64) -> Change {
        let mut t = task(Some(TaskPhase::Running), true, false, false);
        t.metadata.uid = Some("u".into());
        t.metadata.resource_version = Some(rv.to_string());
        Change::Task(Box::new(t))
    }

    #[tokio::test]
    async fn own_echoes_are_skipped_and_forgotten_once_seen() {
        let client = Client::http("http://127.0.0.1:9").expect("a URL");
        let mut r = Realizer::new(Api::all(client), 1);
        r.echoes.insert("u".into(), 10);
        r.seen(seen_at(9));
        assert_eq!(r.echoes.get("u"), Some(&10), "an older version is our past");
        r.seen(seen_at(10));
        assert!(r.echoes.is_empty(), "the echo of the last write ends the wait");
        r.echoes.insert("u".into(), 10);
        r.seen(Change::Relisted);
        assert!(r.echoes.is_empty(), "a new list is the present");
        assert!(r.running.is_empty(), "a settled task starts no work");
    }

    #[tokio::test]
    async fn waiting_tasks_are_served_one_node_after_another() {
        let client = Client::http("http://127.0.0.1:9").expect("a URL");
        let mut r = Realizer::new(Api::all(client), 1);
        for (uid, node) in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")] {
            let mut t = task(Some(TaskPhase::Staging), false, false, false);
            t.metadata.uid = Some(uid.into());
            t.spec.node_name = Some(node.into());
            r.seen(Change::Task(Box::new(t)));
        }
        assert_eq!(r.running.len(), 1);
        assert!(r.busy.contains_key("a1"));
        assert_eq!(r.turns, ["a", "b"], "the nodes take turns in the order their tasks came");
        // A newer version of a waiting task takes its place; one that needs nothing
        // any more leaves the queue.
        let mut settled = task(Some(TaskPhase::Running), true, false, false);
        settled.metadata.uid = Some("a2".into());
        settled.spec.node_name = Some("a".into());
        r.seen(Change::Task(Box::new(settled)));
        assert!(!r.queued.contains_key("a2"));
        assert_eq!(r.queued.len(), 2, "a3 and b1 wait");
        // Each node's turn serves one task: node a's next, then node b's first.
        r.limit = 3;
        r.fill();
        assert_eq!(r.busy.len(), 3, "{:?}", r.busy.keys());
        assert!(r.busy.contains_key("a3") && r.busy.contains_key("b1"));
        assert!(r.turns.is_empty() && r.queued.is_empty());
    }

    #[tokio::test]
    async fn a_task_staged_ahead_is_held_until_its_time_unless_killed_meanwhile() {
        let client = Client::http("http://127.0.0.1:9").expect("a URL");
        let mut r = Realizer::new(Api::all(client), 4);
        let staged = |uid: &str, secs: i64| {
            let mut t = task(None, false, false, false);
            t.metadata.uid = Some(uid.into());
            let at = chrono::Utc::now() + chrono::Duration::seconds(secs);
            t.spec.start_at = Some(at.to_rfc3339());
            t
        };
        r.seen(Change::Task(Box::new(staged("soon", 5))));
        r.seen(Change::Task(Box::new(staged("later", 60))));
        r.seen(Change::Task(Box::new(staged("now", -5))));
        assert_eq!(r.busy.keys().collect::<Vec<_>>(), ["now"], "a time past starts at once");
        assert_eq!(r.held.len(), 2);
        // Killed while held: worked on at once (reported killed before it started).
        let mut killed = staged("later", 60);
        killed.spec.kill = true;
        r.seen(Change::Task(Box::new(killed)));
        assert!(r.busy.contains_key("later") && r.held.len() == 1);
        r.release(tokio::time::Instant::now());
        assert!(!r.busy.contains_key("soon"), "its time has not come");
        r.release(tokio::time::Instant::now() + Duration::from_secs(6));
        assert!(r.busy.contains_key("soon") && r.held.is_empty() && r.held_until.is_empty());
    }
}
