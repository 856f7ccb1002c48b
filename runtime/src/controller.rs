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
//! - Objects passed to the reconciler are shared with the cache: never mutate them;
//!   clone to change.
//! - Nothing is reconciled before every cache has loaded its first list.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_api::KindInfo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::borrow::Cow;
use tokio::sync::watch;

use crate::client::Client;
use crate::object_ref::ObjectRef;
use crate::queue::{QueueConfig, WorkQueue};
use crate::reflector::{Cache, Change, Reflector, object_ref};

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
pub type Mapper = Arc<dyn Fn(&Value) -> Vec<ObjectRef> + Send + Sync>;

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
    /// `corral_controller_reconcile_duration_seconds` and
    /// `corral_controller_queue_depth`.
    pub fn register(&self, registry: &mut Registry, controller: &str) {
        let sub = registry.sub_registry_with_label((Cow::Borrowed("controller"), Cow::Owned(controller.to_string())));
        sub.register("corral_controller_reconciles", "Reconciles finished", self.reconciles_total.clone());
        sub.register("corral_controller_reconcile_errors", "Reconciles that failed", self.errors_total.clone());
        sub.register("corral_controller_reconcile_duration_seconds", "Time per reconcile", self.duration.clone());
        sub.register("corral_controller_queue_depth", "Keys waiting for a worker", self.queue_depth.clone());
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

/// Builds and runs a controller of one primary kind.
pub struct Controller {
    client: Client,
    primary: Reflector,
    owned: Vec<Reflector>,
    watched: Vec<(Reflector, Mapper)>,
    concurrency: usize,
    queue: Arc<WorkQueue<ObjectRef>>,
    metrics: Arc<ControllerMetrics>,
    status_triggers: bool,
}

impl Controller {
    /// A controller of every object of `kind` (optionally one namespace).
    pub fn new(client: Client, kind: Arc<KindInfo>, namespace: Option<String>) -> Self {
        let primary = Reflector::new(client.clone(), kind, namespace, "");
        Controller {
            client,
            primary,
            owned: Vec::new(),
            watched: Vec::new(),
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

    /// Also reconcile an owner when one of its dependents of `kind` changes (matched
    /// through `metadata.ownerReferences`).
    pub fn owns(mut self, kind: Arc<KindInfo>) -> Self {
        self.owned.push(Reflector::new(self.client.clone(), kind, None, ""));
        self
    }

    /// Also reconcile the primary objects `mapper` names when an object of `kind` changes.
    pub fn watches(mut self, kind: Arc<KindInfo>, mapper: Mapper) -> Self {
        self.watched.push((Reflector::new(self.client.clone(), kind, None, ""), mapper));
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

    /// The cache of primary objects.
    pub fn cache(&self) -> Cache {
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

    /// Runs until `shutdown` completes, then stops taking work, lets reconciles in
    /// flight finish, and returns.
    pub async fn run<C, E, R, RF, P>(
        self,
        reconcile: R,
        error_policy: P,
        ctx: Arc<C>,
        shutdown: impl Future<Output = ()>,
    ) where
        C: Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
        R: Fn(Arc<Value>, Arc<C>) -> RF + Send + Sync + 'static,
        RF: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(&Arc<Value>, &E, &Arc<C>) -> Action + Send + Sync + 'static,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        let primary_kind = self.primary.kind().clone();
        let mut caches = vec![self.primary.cache()];
        let cache = self.primary.cache();
        let mut tasks = Vec::new();

        let q = self.queue.clone();
        let kind = primary_kind.clone();
        let status_triggers = self.status_triggers;
        tasks.push(tokio::spawn(self.primary.run(stop_rx.clone(), move |c: Change| {
            // A controller's own status write must not wake it again.
            if let Change::Applied { object, previous: Some(prev) } = &c
                && !status_triggers
                && only_status_changed(prev, object)
            {
                return;
            }
            if let Some(r) = object_ref(&kind, c.object()) {
                q.add(r);
            }
        })));
        for r in self.owned {
            caches.push(r.cache());
            let q = self.queue.clone();
            let owner_kind = primary_kind.clone();
            tasks.push(tokio::spawn(r.run(stop_rx.clone(), move |c: Change| {
                for owner in owners_of(&owner_kind, c.object()) {
                    q.add(owner);
                }
            })));
        }
        for (r, mapper) in self.watched {
            caches.push(r.cache());
            let q = self.queue.clone();
            tasks.push(tokio::spawn(r.run(stop_rx.clone(), move |c: Change| {
                for target in mapper(c.object()) {
                    q.add(target);
                }
            })));
        }

        let reconcile = Arc::new(reconcile);
        let error_policy = Arc::new(error_policy);
        let workers: Vec<_> = (0..self.concurrency)
            .map(|_| {
                let (queue, cache, caches, reconcile, error_policy, ctx, metrics) = (
                    self.queue.clone(),
                    cache.clone(),
                    caches.clone(),
                    reconcile.clone(),
                    error_policy.clone(),
                    ctx.clone(),
                    self.metrics.clone(),
                );
                tokio::spawn(async move {
                    for c in &caches {
                        c.wait_synced().await;
                    }
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

        shutdown.await;
        // Stop taking work; reconciles in flight run to completion.
        self.queue.shutdown();
        for w in workers {
            let _ = w.await;
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Whether two versions of an object differ only in status (and resourceVersion).
/// Compares in place: this runs for every event of the primary kind.
fn only_status_changed(prev: &Value, now: &Value) -> bool {
    fn same_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
        match (a.as_object(), b.as_object()) {
            (Some(a), Some(b)) => {
                a.iter().filter(|(k, _)| !skip.contains(&k.as_str())).all(|(k, v)| b.get(k) == Some(v))
                    && b.keys().filter(|k| !skip.contains(&k.as_str())).all(|k| a.contains_key(k))
            }
            _ => a == b,
        }
    }
    same_except(prev, now, &["status", "metadata"])
        && match (prev.get("metadata"), now.get("metadata")) {
            (Some(p), Some(n)) => same_except(p, n, &["resourceVersion"]),
            (p, n) => p == n,
        }
}

/// The objects of `owner_kind` that `obj` names as owners.
fn owners_of(owner_kind: &KindInfo, obj: &Value) -> Vec<ObjectRef> {
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
    let Some(Value::Array(refs)) = obj.pointer("/metadata/ownerReferences") else { return Vec::new() };
    refs.iter()
        .filter(|r| {
            r.get("kind").and_then(Value::as_str) == Some(owner_kind.kind.as_str())
                && r.get("apiVersion").and_then(Value::as_str) == Some(owner_kind.api_version().as_str())
        })
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .map(|name| ObjectRef {
            resource: owner_kind.resource(),
            namespace: ns.filter(|_| owner_kind.namespaced).map(str::to_string),
            name: name.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::only_status_changed;

    #[test]
    fn status_only_changes_are_recognised() {
        let base = json!({"kind": "K", "metadata": {"name": "a", "resourceVersion": "1", "generation": 1},
                          "spec": {"x": 1}, "status": {"s": 1}});
        let mut status = base.clone();
        status["status"]["s"] = json!(2);
        status["metadata"]["resourceVersion"] = json!("2");
        assert!(only_status_changed(&base, &status));
        let mut spec = status.clone();
        spec["spec"]["x"] = json!(2);
        assert!(!only_status_changed(&status, &spec));
        let mut label = status.clone();
        label["metadata"]["labels"] = json!({"l": "v"});
        assert!(!only_status_changed(&status, &label), "metadata changes wake the controller");
        let mut deleting = status.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!only_status_changed(&status, &deleting), "a deletion wakes the controller");
    }
}
