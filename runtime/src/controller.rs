//! The controller loop: reflectors feed a work queue of object references; workers
//! take keys, read the object from the cache and call the reconciler.
//!
//! # Contract for reconcilers
//! - A reconcile works from the object's current state, never from which event woke
//!   it: events are merged, and a restart replays none of them.
//! - One object is never reconciled by two workers at once; different objects are,
//!   up to the configured concurrency.
//! - `Ok(Action::requeue(d))` reconciles again after `d` (sooner if the object
//!   changes); `Ok(Action::await_change())` waits for a change.
//! - `Err(e)`: the error policy is consulted; unless it answers
//!   `Action::await_change()`, the key is retried with per-key exponential backoff,
//!   and no sooner than the policy's `Action::requeue(d)`.
//! - Objects passed to the reconciler are shared with the cache (`Arc<K>`, decoded
//!   once per event): never mutate them; clone to change.
//! - Nothing is reconciled before every cache has loaded its first list.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_api::{ApiObject, KindInfo};
use corral_client::{Api, ListParams, ObjectType};
use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use tokio_util::sync::CancellationToken;

use crate::object_ref::ObjectRef;
use crate::queue::{QueueConfig, WorkQueue};
use crate::reflector::{Cache, Change, Reflector};

/// What to do after a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long (or sooner, on a change).
    Requeue(Duration),
    /// Reconcile again only when something relevant changes.
    AwaitChange,
}

impl Action {
    /// Reconcile again after `d`.
    pub fn requeue(d: Duration) -> Self {
        Action::Requeue(d)
    }

    /// Wait for a change.
    pub fn await_change() -> Self {
        Action::AwaitChange
    }
}

/// Maps an object of a watched kind to the primary objects it concerns.
pub type Mapper<W> = Arc<dyn Fn(&W) -> Vec<ObjectRef> + Send + Sync>;

/// Counters of one controller, for `/metrics` and benchmarks.
#[derive(Debug)]
pub struct ControllerMetrics {
    /// Reconciles finished.
    pub reconciles: AtomicU64,
    /// Reconciles that returned an error.
    pub errors: AtomicU64,
    /// Total reconcile time, in microseconds.
    pub reconcile_micros: AtomicU64,
    reconciles_total: Counter,
    errors_total: Counter,
    watch_events: Counter,
    duration: Histogram,
    queue_depth: Gauge,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            reconciles: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconcile_micros: AtomicU64::new(0),
            reconciles_total: Counter::default(),
            errors_total: Counter::default(),
            watch_events: Counter::default(),
            // 1 ms to ~65 s.
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            queue_depth: Gauge::default(),
        }
    }
}

impl ControllerMetrics {
    /// Registers this controller's metrics in `registry`, labelled
    /// `controller="<name>"`: `corral_controller_reconciles_total`,
    /// `corral_controller_reconcile_errors_total`,
    /// `corral_controller_reconcile_duration_seconds`,
    /// `corral_controller_queue_depth` and `corral_controller_watch_events_total`
    /// (events its watches received: a watch scoped by selectors receives only what
    /// it selects).
    pub fn register(&self, registry: &mut Registry, controller: &str) {
        let sub = registry.sub_registry_with_label((Cow::Borrowed("controller"), Cow::Owned(controller.to_string())));
        sub.register("corral_controller_reconciles", "Reconciles finished", self.reconciles_total.clone());
        sub.register("corral_controller_reconcile_errors", "Reconciles that failed", self.errors_total.clone());
        sub.register("corral_controller_reconcile_duration_seconds", "Time per reconcile", self.duration.clone());
        sub.register("corral_controller_queue_depth", "Keys waiting for a worker", self.queue_depth.clone());
        sub.register(
            "corral_controller_watch_events",
            "Watch events received by the controller's watches",
            self.watch_events.clone(),
        );
    }

    /// Watch events received so far.
    pub fn watch_events(&self) -> u64 {
        self.watch_events.get()
    }

    fn observe(&self, elapsed: Duration, failed: bool) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.reconciles_total.inc();
        self.reconcile_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.duration.observe(elapsed.as_secs_f64());
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.errors_total.inc();
        }
    }
}

/// Starts a secondary reflector feeding `queue`, counting its events, until cancelled.
type RunSecondary =
    Box<dyn FnOnce(Arc<WorkQueue<ObjectRef>>, CancellationToken, Counter) -> BoxFuture<'static, ()> + Send>;

/// A reflector of another kind, type-erased: it feeds the queue through its mapping.
struct Secondary {
    cache_synced: Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>,
    run: RunSecondary,
}

impl Secondary {
    fn new<W: ObjectType>(reflector: Reflector<W>, mapper: Mapper<W>) -> Self {
        let cache = reflector.cache();
        Secondary {
            cache_synced: Box::new(move || {
                let cache = cache.clone();
                Box::pin(async move { cache.wait_synced().await })
            }),
            run: Box::new(move |queue, shutdown, events| {
                Box::pin(reflector.count_events(events).run(shutdown, move |c: Change<W>| {
                    for target in mapper(c.object()) {
                        queue.add(target);
                    }
                }))
            }),
        }
    }
}

/// Builds and runs a controller of one primary kind `K`.
pub struct Controller<K> {
    primary: Reflector<K>,
    kind: Arc<KindInfo>,
    secondaries: Vec<Secondary>,
    concurrency: usize,
    queue: Arc<WorkQueue<ObjectRef>>,
    metrics: Arc<ControllerMetrics>,
    status_triggers: bool,
}

impl<K: ObjectType> Controller<K> {
    /// A controller of the objects `api` reaches that the selectors of `params` match.
    pub fn new(api: Api<K>, params: ListParams) -> Self {
        Self::for_reflector(Reflector::new(api, params))
    }

    /// A controller of the objects of `reflector` (one whose cache, with its indexes,
    /// the caller keeps for reading: see [`Reflector::cache`]).
    pub fn for_reflector(primary: Reflector<K>) -> Self {
        let kind = primary.kind().clone();
        Controller {
            primary,
            kind,
            secondaries: Vec::new(),
            concurrency: 4,
            queue: Arc::new(WorkQueue::new(QueueConfig::default())),
            metrics: Arc::default(),
            status_triggers: false,
        }
    }

    /// Also reconcile a primary object when only its status changed. Off by default,
    /// so that a controller's own status writes do not wake it; turn it on when other
    /// writers' status changes matter (the agent must notice a task marked `LOST` by
    /// the node lifecycle controller). The reconciler must then be cheap when nothing
    /// needs doing, since each of its own status writes comes back once.
    pub fn reconcile_status_changes(mut self) -> Self {
        self.status_triggers = true;
        self
    }

    /// Also reconcile an owner when one of its dependents that `api` reaches changes
    /// (matched through `metadata.ownerReferences`).
    pub fn owns<C: ObjectType>(self, api: Api<C>, params: ListParams) -> Self {
        self.owns_reflector(Reflector::new(api, params))
    }

    /// As [`Controller::owns`], with a reflector whose cache the caller keeps.
    pub fn owns_reflector<C: ObjectType>(mut self, reflector: Reflector<C>) -> Self {
        let owner_kind = self.kind.clone();
        let mapper: Mapper<C> = Arc::new(move |o: &C| owners_of(&owner_kind, o));
        self.secondaries.push(Secondary::new(reflector, mapper));
        self
    }

    /// Also reconcile the primary objects `mapper` names when an object that `api`
    /// reaches changes.
    pub fn watches<W: ObjectType>(
        self,
        api: Api<W>,
        params: ListParams,
        mapper: impl Fn(&W) -> Vec<ObjectRef> + Send + Sync + 'static,
    ) -> Self {
        self.watches_reflector(Reflector::new(api, params), mapper)
    }

    /// As [`Controller::watches`], with a reflector whose cache the caller keeps.
    pub fn watches_reflector<W: ObjectType>(
        mut self,
        reflector: Reflector<W>,
        mapper: impl Fn(&W) -> Vec<ObjectRef> + Send + Sync + 'static,
    ) -> Self {
        self.secondaries.push(Secondary::new(reflector, Arc::new(mapper)));
        self
    }

    /// How many objects are reconciled at once (default 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Queue tuning (backoff, rate limit).
    pub fn queue_config(mut self, config: QueueConfig) -> Self {
        self.queue = Arc::new(WorkQueue::new(config));
        self
    }

    /// Records into `metrics` (e.g. ones registered once by a manager that may run
    /// this controller again) instead of fresh ones.
    pub fn with_metrics(mut self, metrics: Arc<ControllerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The cache of primary objects.
    pub fn cache(&self) -> Cache<K> {
        self.primary.cache()
    }

    /// The work queue (its depth is a health signal: keys waiting for a worker).
    pub fn queue(&self) -> Arc<WorkQueue<ObjectRef>> {
        self.queue.clone()
    }

    /// This controller's counters.
    pub fn metrics(&self) -> Arc<ControllerMetrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` is cancelled, then stops taking work, lets reconciles in
    /// flight finish, and returns.
    pub async fn run<C, E, R, RF, P>(self, reconcile: R, error_policy: P, ctx: Arc<C>, shutdown: CancellationToken)
    where
        C: Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
        R: Fn(Arc<K>, Arc<C>) -> RF + Send + Sync + 'static,
        RF: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(&Arc<K>, &E, &Arc<C>) -> Action + Send + Sync + 'static,
    {
        // Reflectors stop after the workers, so that reconciles in flight still see
        // their caches.
        let watching = CancellationToken::new();
        let cache = self.primary.cache();
        let mut synced: Vec<BoxFuture<'static, ()>> = Vec::new();
        let mut tasks = Vec::new();

        let q = self.queue.clone();
        let kind = self.kind.clone();
        let status_triggers = self.status_triggers;
        let primary = self.primary.count_events(self.metrics.watch_events.clone());
        tasks.push(tokio::spawn(primary.run(watching.clone(), move |c: Change<K>| {
            // A controller's own status write must not wake it again.
            if let Change::Applied { object, previous: Some(prev) } = &c
                && !status_triggers
                && only_status_changed(&**prev, &**object)
            {
                return;
            }
            q.add(ObjectRef::of(&kind, &**c.object()));
        })));
        for s in self.secondaries {
            synced.push((s.cache_synced)());
            tasks.push(tokio::spawn((s.run)(self.queue.clone(), watching.clone(), self.metrics.watch_events.clone())));
        }
        let primary_cache = cache.clone();
        let all_synced = async move {
            primary_cache.wait_synced().await;
            futures::future::join_all(synced).await;
        }
        .boxed()
        .shared();

        let reconcile = Arc::new(reconcile);
        let error_policy = Arc::new(error_policy);
        let workers: Vec<_> = (0..self.concurrency)
            .map(|_| {
                let (queue, cache, reconcile, error_policy, ctx, metrics, synced) = (
                    self.queue.clone(),
                    cache.clone(),
                    reconcile.clone(),
                    error_policy.clone(),
                    ctx.clone(),
                    self.metrics.clone(),
                    all_synced.clone(),
                );
                tokio::spawn(async move {
                    synced.await;
                    while let Some(key) = queue.next().await {
                        metrics.queue_depth.set(queue.len() as i64);
                        let Some(obj) = cache.get(&key) else {
                            // Gone: nothing left to reconcile (cleanup runs while
                            // finalizers hold the object).
                            queue.forget(&key);
                            queue.done(&key);
                            continue;
                        };
                        let started = Instant::now();
                        let result = reconcile(obj.clone(), ctx.clone()).await;
                        metrics.observe(started.elapsed(), result.is_err());
                        match result {
                            Ok(action) => {
                                queue.forget(&key);
                                queue.done(&key);
                                if let Action::Requeue(d) = action {
                                    queue.add_after(key, d);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(object = %key, error = %e, "reconcile failed");
                                match error_policy(&obj, &e, &ctx) {
                                    Action::AwaitChange => {
                                        queue.forget(&key);
                                        queue.done(&key);
                                    }
                                    Action::Requeue(floor) => {
                                        queue.retry_at_least(&key, floor);
                                    }
                                }
                            }
                        }
                    }
                })
            })
            .collect();

        shutdown.cancelled().await;
        // Stop taking work; reconciles in flight run to completion.
        self.queue.shutdown();
        for w in workers {
            let _ = w.await;
        }
        watching.cancel();
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Whether two versions of an object differ only in status: the same metadata but for
/// `resourceVersion`, hence the same `generation`, hence the same desired state (the
/// store bumps `generation` whenever anything outside metadata and status changes).
fn only_status_changed<K: ApiObject>(prev: &K, now: &K) -> bool {
    let (a, b) = (prev.meta(), now.meta());
    a.generation == b.generation
        && a.name == b.name
        && a.namespace == b.namespace
        && a.uid == b.uid
        && a.labels == b.labels
        && a.annotations == b.annotations
        && a.owner_references == b.owner_references
        && a.finalizers == b.finalizers
        && a.deletion_timestamp == b.deletion_timestamp
        && a.creation_timestamp == b.creation_timestamp
}

/// The objects of `owner_kind` that `obj` names as owners.
fn owners_of(owner_kind: &KindInfo, obj: &impl ApiObject) -> Vec<ObjectRef> {
    let ns = obj.namespace();
    let api_version = owner_kind.api_version();
    obj.meta()
        .owner_references
        .iter()
        .filter(|r| r.kind == owner_kind.kind && r.api_version == api_version)
        .map(|r| ObjectRef {
            resource: owner_kind.resource(),
            namespace: ns.filter(|_| owner_kind.namespaced).map(str::to_string),
            name: r.name.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use corral_api::DynamicObject;
    use serde_json::json;

    use super::only_status_changed;

    fn obj(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).expect("object")
    }

    #[test]
    fn status_only_changes_are_recognised() {
        let base = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "a", "resourceVersion": "1", "generation": 1},
                          "spec": {"x": 1}, "status": {"s": 1}});
        let mut status = base.clone();
        status["status"]["s"] = json!(2);
        status["metadata"]["resourceVersion"] = json!("2");
        assert!(only_status_changed(&obj(base), &obj(status.clone())));
        let mut spec = status.clone();
        spec["spec"]["x"] = json!(2);
        spec["metadata"]["generation"] = json!(2);
        assert!(!only_status_changed(&obj(status.clone()), &obj(spec)));
        let mut label = status.clone();
        label["metadata"]["labels"] = json!({"l": "v"});
        assert!(!only_status_changed(&obj(status.clone()), &obj(label)), "metadata changes wake the controller");
        let mut deleting = status.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!only_status_changed(&obj(status), &obj(deleting)), "a deletion wakes the controller");
    }
}
