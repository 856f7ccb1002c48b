//! The volumes controller: keeps each `Volume`'s `status.phase` and `status.task`
//! (`Pending` while unbound, `Bound` when bound and free, `InUse` with the task's
//! name while a task that has not ended holds it) and releases a volume being
//! deleted — removes its protection finalizer — once no such task holds it (with
//! `reclaimPolicy: Delete`, the node's agent then removes the data and its own
//! finalizer).
//!
//! Which task holds a volume is the server's record: the claim annotation it writes
//! on the volume in the transaction that puts the task on a node. The controller
//! reads that task's state from the shared task cache, and reads it afresh before
//! releasing a volume whose task the cache does not know (yet).
//!
//! Wiring: the primary kind is `Volume`; a task's change queues the volumes its
//! namespace has claimed for it. [`decide::decide`] makes the steps; the reconcile
//! in this file applies them. It needs: get/list/watch volumes and tasks, update
//! volumes and volumes/status (the ClusterRole `system:controller:volumes`).

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use corral_api::Resource;
use corral_api::kinds::task::{Task, TaskSummary};
use corral_api::kinds::volume::{VOLUME_FINALIZER, Volume, VolumeStatus};
use corral_client::{Api, Client, ListParams};
use corral_runtime::{Action, Cache, CancellationToken, Controller, ControllerMetrics, ObjectRef, Reflector, Runnable};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use self::decide::{Holder, Observed, Step};
use crate::shared_tasks::SharedTasks;

/// The controller's name, in logs and metrics.
pub const NAME: &str = "volumes";

/// The user it acts as where it is given an identity of its own (see
/// [`crate::OWN_IDENTITIES`]); bound to the ClusterRole of the same name.
pub const USER: &str = "system:controller:volumes";

/// Annotation on a volume naming the task that last claimed it (written by the
/// server, in the transaction that puts the task on its node).
pub const CLAIM_ANNOTATION: &str = "corral.dev/claimed-by";

/// Index of volumes by the task claiming them.
const BY_CLAIM: &str = "claim";

/// The volumes controller, for a [`corral_runtime::Manager`].
#[derive(Default)]
pub struct Volumes {
    // What an operator asks of it: volumes released (their protection finalizer removed).
    released: Counter,
    metrics: Arc<ControllerMetrics>,
    tasks: Arc<SharedTasks>,
}

impl Volumes {
    /// The controller.
    pub fn new() -> Self {
        Volumes::default()
    }

    /// Shares `tasks` with the other controllers of its set, instead of a copy of
    /// its own.
    pub(crate) fn sharing(mut self, tasks: Arc<SharedTasks>) -> Self {
        self.tasks = tasks;
        self
    }
}

struct Ctx {
    client: Client,
    released: Counter,
    tasks: Cache<TaskSummary>,
    task_resource: String,
}

#[async_trait]
impl Runnable for Volumes {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "corral_volumes_released",
            "Deleted volumes released (protection finalizer removed) once no task held them",
            self.released.clone(),
        );
        self.metrics.register(registry, NAME);
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        // Volumes indexed by the task claiming them (`namespace/task`).
        let reflector = Reflector::new(Api::<Volume>::all(client.clone()), ListParams::default()).index(
            BY_CLAIM,
            Arc::new(|v: &Volume| {
                let ns = v.metadata.namespace.as_deref().unwrap_or_default();
                v.metadata.annotations.get(CLAIM_ANNOTATION).map(|t| format!("{ns}/{t}")).into_iter().collect()
            }),
        );
        let controller =
            Controller::for_reflector(reflector).reconcile_status_changes().with_metrics(self.metrics.clone());
        let volumes = controller.cache();
        let queue = controller.queue();
        let resource = Volume::resource();
        // A task's change queues the volumes claimed for it.
        let on_task = move |c: corral_runtime::Change<TaskSummary>| {
            let t = c.object();
            let ns = t.metadata.namespace.as_deref().unwrap_or_default();
            for v in volumes.by_index(BY_CLAIM, &format!("{ns}/{}", t.metadata.name)) {
                queue.add(ObjectRef::namespaced(resource.clone(), ns, &v.metadata.name));
            }
        };
        let (tasks, _subscription) = self.tasks.subscribe(&client, Arc::new(on_task));
        let ctx = Arc::new(Ctx { client, released: self.released.clone(), tasks, task_resource: Task::resource() });
        controller.run(reconcile, error_policy, ctx, shutdown).await;
        Ok(())
    }
}

/// Judges one volume and writes what changed.
async fn reconcile(volume: Arc<Volume>, ctx: Arc<Ctx>) -> corral_client::Result<Action> {
    if !ctx.tasks.is_synced() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let m = &volume.metadata;
    let ns = m.namespace.as_deref().unwrap_or_default();
    let claimed_by = m.annotations.get(CLAIM_ANNOTATION).map(String::as_str);
    let holder = match claimed_by {
        None => Holder::None,
        Some(t) => match ctx.tasks.get(&ObjectRef::namespaced(ctx.task_resource.clone(), ns, t)) {
            None => Holder::Missing,
            Some(t) if t.status.as_ref().is_some_and(|s| s.phase.is_terminal()) => Holder::Ended,
            Some(_) => Holder::Live,
        },
    };
    let status = volume.status.clone().unwrap_or_default();
    let observed = Observed {
        bound: volume.spec.node_name.as_deref().is_some_and(|n| !n.is_empty()),
        deleting: m.deletion_timestamp.is_some(),
        protected: m.finalizers.iter().any(|f| f == VOLUME_FINALIZER),
        phase: volume.status.as_ref().map(|s| s.phase),
        task: status.task.as_deref(),
        claimed_by,
    };
    let api: Api<Volume> = Api::namespaced(ctx.client.clone(), ns);
    for step in decide::decide(&observed, holder) {
        let written = match step {
            Step::SetStatus { phase, task } => {
                tracing::debug!(volume = %m.name, namespace = ns, ?phase, ?task, "volume status");
                let mut updated = (*volume).clone();
                updated.status = Some(VolumeStatus { phase, task, ..status.clone() });
                api.update_status(&updated).await.map(drop)
            }
            Step::Release { task } => {
                if let Some(t) = task {
                    let live = Api::<Task>::namespaced(ctx.client.clone(), ns).get_opt(&t).await?;
                    if live.is_some_and(|t| !t.status.as_ref().is_some_and(|s| s.phase.is_terminal())) {
                        // The cache had not seen it yet: its event brings the volume back.
                        continue;
                    }
                }
                // The latest volume, with the status just written.
                let Some(mut latest) = api.get_opt(&m.name).await? else { continue };
                if latest.metadata.remove_finalizer(VOLUME_FINALIZER) {
                    tracing::info!(volume = %m.name, namespace = ns, "volume released: no task holds it");
                    let written = api.update(&latest).await.map(drop);
                    if written.is_ok() {
                        ctx.released.inc();
                    }
                    written
                } else {
                    Ok(())
                }
            }
        };
        match written {
            Ok(()) => {}
            // Something newer is on its way: its event reconciles the volume again.
            Err(e) if e.is_conflict() || e.is_not_found() => return Ok(Action::await_change()),
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}

fn error_policy(_v: &Arc<Volume>, _e: &corral_client::Error, _ctx: &Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(500))
}
