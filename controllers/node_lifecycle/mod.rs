//! The node lifecycle controller: judges each node's reachability from its heartbeat
//! `Lease` and marks the tasks of an unreachable node `LOST`.
//!
//! A node is reachable while its agent keeps renewing the lease `corral-system/<node>`.
//! Renewals are judged on this controller's own monotonic clock — by how long it has
//! seen the same lease record — so clock skew between machines cannot make a live node
//! look dead. After the grace period without a renewal the node becomes `Unreachable`
//! and each of its non-terminal tasks becomes `LOST` with reason `NodeUnreachable`;
//! whether to replace them is the owning framework's decision. When the agent renews
//! again the node is `Ready` again (its agent then kills the tasks it finds `LOST`).
//! Deleting a task of an unreachable node completes without waiting for its agent.
//!
//! Wiring: the primary kind is `Node`; a lease renewal or a task change wakes the
//! node it belongs to, and each reconcile asks to be woken again when the node's grace
//! period would run out. [`decide::decide`] makes the plan; the reconcile in this file applies it.

pub mod decide;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use corral_api::Resource;
use corral_api::kinds::Lease;
use corral_api::kinds::node::{NODE_LEASE_NAMESPACE, Node};
use corral_api::kinds::task::{AGENT_FINALIZER, Task, TaskSummary};
use corral_client::{Api, Client, ListParams};
use corral_runtime::{Action, Cache, CancellationToken, Controller, ControllerMetrics, ObjectRef, Reflector, Runnable};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;

use self::decide::{Observed, Step};
use crate::shared_tasks::{BY_NODE, SharedTasks};

/// The controller's name, in logs and metrics.
pub const NAME: &str = "node-lifecycle";

/// Settings of the node lifecycle controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a node may go without renewing its lease before it is unreachable.
    pub grace_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        // As Kubernetes.
        Config { grace_period: Duration::from_secs(40) }
    }
}

/// The node lifecycle controller, for a [`corral_runtime::Manager`].
pub struct NodeLifecycle {
    config: Config,
    metrics: Arc<ControllerMetrics>,
    tasks: Arc<SharedTasks>,
}

impl NodeLifecycle {
    /// The controller with `config`.
    pub fn new(config: Config) -> Self {
        NodeLifecycle { config, metrics: Arc::default(), tasks: Arc::default() }
    }

    /// Shares `tasks` with the other controllers of its set, instead of a copy of
    /// its own.
    pub(crate) fn sharing(mut self, tasks: Arc<SharedTasks>) -> Self {
        self.tasks = tasks;
        self
    }
}

/// What every reconcile shares.
struct Ctx {
    nodes: Api<Node>,
    node_cache: Cache<Node>,
    tasks: Api<Task>,
    leases: Cache<Lease>,
    tasks_by_node: Cache<TaskSummary>,
    lease_resource: String,
    grace: Duration,
    observed: Mutex<HashMap<String, Observed>>,
}

#[async_trait]
impl Runnable for NodeLifecycle {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry, NAME);
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        let leases =
            Reflector::new(Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE), ListParams::default());
        let controller = Controller::new(Api::<Node>::all(client.clone()), ListParams::default());
        // Every task, as much as deciding about its node needs, shared: the full task
        // is read only to write it, when its node is lost. A task's change queues its
        // node.
        let nodes = Node::resource();
        let queue = controller.queue();
        let on_task = {
            let nodes = nodes.clone();
            move |c: corral_runtime::Change<TaskSummary>| {
                if let Some(node) = c.object().spec.node_name.as_deref() {
                    queue.add(ObjectRef::cluster(nodes.clone(), node));
                }
            }
        };
        let (tasks, _subscription) = self.tasks.subscribe(&client, Arc::new(on_task));
        let ctx = Arc::new(Ctx {
            nodes: Api::all(client.clone()),
            node_cache: controller.cache(),
            tasks: Api::all(client.clone()),
            leases: leases.cache(),
            tasks_by_node: tasks,
            lease_resource: Lease::resource(),
            grace: self.config.grace_period,
            // A fresh run observes afresh: every node gets a whole grace period.
            observed: Mutex::new(HashMap::new()),
        });
        let node_of = move |name: &str| vec![ObjectRef::cluster(nodes.clone(), name)];
        controller
            .watches_reflector(leases, move |l: &Lease| node_of(&l.metadata.name))
            .with_metrics(self.metrics.clone())
            .run(reconcile, error_policy, ctx, shutdown)
            .await;
        Ok(())
    }
}

/// Judges one node and writes what changed.
async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> corral_client::Result<Action> {
    let name = node.metadata.name.as_str();
    let lease_ref = ObjectRef::namespaced(ctx.lease_resource.clone(), NODE_LEASE_NAMESPACE, name);
    let record = ctx.leases.get(&lease_ref).and_then(|l| l.metadata.resource_version.clone());
    let now = Instant::now();
    let observed = {
        let mut all = ctx.observed.lock();
        let o = Observed::update(all.get(name), record, now);
        all.insert(name.to_string(), o.clone());
        // Forget nodes that are gone, now and then rather than on every reconcile.
        if all.len() > ctx.node_cache.len() + 64 {
            let resource = Node::resource();
            all.retain(|n, _| ctx.node_cache.get(&ObjectRef::cluster(resource.clone(), n)).is_some());
        }
        o
    };
    if !ctx.tasks_by_node.is_synced() {
        // The shared copy of the tasks is still being listed: judging a node without
        // its tasks would miss the ones to mark lost.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // A node heard from in time has nothing to do with its tasks: they are read only
    // for a silent one (a node runs hundreds, and every change of one reconciles it).
    let tasks =
        if decide::silent(&observed, now, ctx.grace) { ctx.tasks_by_node.by_index(BY_NODE, name) } else { Vec::new() };
    let tasks: Vec<&TaskSummary> = tasks.iter().map(|t| &**t).collect();
    let phase = node.status.as_ref().map(|s| s.phase);
    let plan = decide::decide(phase, &observed, now, ctx.grace, &tasks);
    let task_of = |ns: &str, name: &str| {
        tasks.iter().find(|t| t.metadata.name == name && t.metadata.namespace.as_deref() == Some(ns)).copied()
    };
    for step in plan.steps {
        // A conflict or a vanished object means something newer is on its way: the
        // event it brings reconciles the node again.
        let written = match &step {
            Step::SetPhase { phase, message } => {
                tracing::info!(node = name, ?phase, message = message.as_str(), "node phase changes");
                let mut updated = (*node).clone();
                let status = updated.status.get_or_insert_with(Default::default);
                status.phase = *phase;
                status.message = Some(message.clone());
                status.last_transition_time = Some(corral_api::meta::now_timestamp());
                ctx.nodes.update_status(&updated).await.map(drop)
            }
            Step::MarkLost(ns, task) => {
                let Some(t) = task_of(ns, task) else { continue };
                tracing::info!(task = task.as_str(), node = name, "task LOST: its node is unreachable");
                match full_task(&ctx, t).await? {
                    Some(mut updated) => {
                        let status = updated.status.take().unwrap_or_default();
                        updated.status = Some(decide::lost(status, name, corral_api::meta::now_timestamp()));
                        ctx.tasks.update_status(&updated).await.map(drop)
                    }
                    None => Ok(()),
                }
            }
            Step::Release(ns, task) => {
                let Some(t) = task_of(ns, task) else { continue };
                tracing::info!(task = task.as_str(), "releasing a deleted task of an unreachable node");
                match full_task(&ctx, t).await? {
                    Some(mut updated) => {
                        updated.metadata.remove_finalizer(AGENT_FINALIZER);
                        ctx.tasks.update(&updated).await.map(drop)
                    }
                    None => Ok(()),
                }
            }
        };
        match written {
            Ok(()) => {}
            Err(e) if e.is_conflict() || e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(match plan.recheck_in {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// The task the cache summarises, read whole to be written; none if it is gone or
/// already changed since (its next event reconciles the node again).
async fn full_task(ctx: &Ctx, seen: &TaskSummary) -> corral_client::Result<Option<Task>> {
    let api = ctx.tasks.in_namespace(seen.metadata.namespace.as_deref().unwrap_or_default());
    Ok(api
        .get_opt(&seen.metadata.name)
        .await?
        .filter(|t| t.metadata.resource_version == seen.metadata.resource_version))
}

fn error_policy(_node: &Arc<Node>, _e: &corral_client::Error, _ctx: &Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(500))
}
