//! The garbage collector: cascading deletion through `ownerReferences` in the three
//! Kubernetes modes, and the emptying of deleted namespaces.
//!
//! It watches every served kind (new custom kinds as their definitions appear),
//! reading metadata only, and remembers just the objects that take part in collection
//! (see `index.rs`). Work items name an object; processing one reads the object afresh
//! through the API, asks [`decide`] what to do, and does it with writes conditional on
//! the revision it read — so an item may run any number of times (idempotent), and the
//! event that queued it does not matter.
//!
//! - A **dependent** whose owners are all gone is deleted; one whose owners are all
//!   gone or in foreground deletion is deleted (in foreground if it has dependents of
//!   its own); one with a live owner only loses its references to the others. A new
//!   dependent of owners already found present is not read at all: those owners are
//!   trusted until a watch shows them going (as Kubernetes' collector trusts the owners
//!   in its graph), and an owner's deletion queues every dependent it has.
//! - An **owner** being deleted with the `orphan` finalizer has its reference removed
//!   from every dependent, then loses the finalizer; with `foregroundDeletion`, its
//!   dependents are deleted and it loses the finalizer once no dependent with
//!   `blockOwnerDeletion: true` remains.
//! - A **namespace** being deleted (finalizer `corral.dev/namespace`) is `Terminating`;
//!   every object in it is deleted, then it loses the finalizer. Objects left in a
//!   namespace that is gone are deleted too.
//!
//! After a restart every object with references or a collector finalizer is queued
//! again, so a cascade interrupted by a crash finishes. The API server does the part
//! that must be atomic with the delete request: marking the object with
//! `deletionTimestamp` and the finalizer its propagation policy needs.

pub mod decide;
mod index;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use corral_api::delete::{FOREGROUND_FINALIZER, NAMESPACE_FINALIZER, Propagation};
use corral_api::{ApiObject, DynamicObject, KindInfo, OwnerReference, PartialObject};
use corral_client::{Api, Client, DeleteParams, ListParams};
use corral_runtime::watcher::{self, Seen};
use corral_runtime::{CancellationToken, ObjectRef, QueueConfig, Runnable, WorkQueue};
use prometheus_client::collector::Collector as MetricsCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::decide::{Deleting, DependentStep, NamespaceContents, OwnerState, OwnerStep};
use self::index::Index;

/// The controller's name, in logs and metrics.
pub const NAME: &str = "garbage-collector";

const NAMESPACES: &str = "corral.dev/namespaces";
const DEFINITIONS: &str = "corral.dev/customresourcedefinitions";

/// Counters of the collector, exported at `/metrics`.
#[derive(Debug, Default)]
pub struct GcStats {
    /// Objects with `deletionTimestamp` waiting for finalizers to be removed.
    pub waiting: AtomicU64,
    /// Of those, the ones waiting longer than the collector's patience.
    pub stuck: AtomicU64,
    /// Objects the collector deleted (dependents and namespace contents).
    pub deleted: AtomicU64,
    /// Owner references the collector removed (orphaning, dangling references).
    pub references_removed: AtomicU64,
    /// Objects the collector keeps track of: those with owners or being deleted.
    pub tracked: AtomicU64,
}

/// Tuning of the collector.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long an object may wait on finalizers before it is reported as stuck.
    pub stuck_after: Duration,
    /// How often waiting objects are counted, reported, and their work re-queued; and
    /// when the served kinds are looked up again after a failed attempt.
    pub scan_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { stuck_after: Duration::from_secs(60), scan_interval: Duration::from_secs(10) }
    }
}

/// The garbage collector, for a [`corral_runtime::Manager`].
pub struct GarbageCollector {
    config: Config,
    stats: Arc<GcStats>,
}

impl GarbageCollector {
    /// The collector with `config`.
    pub fn new(config: Config) -> Self {
        GarbageCollector { config, stats: Arc::default() }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<GcStats> {
        self.stats.clone()
    }
}

#[async_trait]
impl Runnable for GarbageCollector {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(StatsCollector(self.stats.clone())));
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        let (events, inbox) = mpsc::channel(1024);
        let mut c = Collector::new(client, self.config.clone(), self.stats.clone(), events, shutdown);
        let outcome = c.run(inbox).await;
        for (_, m) in c.monitors.drain() {
            m.cancel();
        }
        outcome
    }
}

/// A unit of work: look at this object as a dependent, or as an object being deleted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    /// Check its owners: collect it, or drop references to owners that are gone.
    Dependent(ObjectRef),
    /// It is (or was) an owner or namespace being deleted: do its finalizers' work.
    Deleting(ObjectRef),
}

/// The collector's queue: merging, backoff (50 ms to 5 s) and "one item at a time" as
/// in every controller; no rate limit.
fn work_queue() -> WorkQueue<Work> {
    WorkQueue::new(QueueConfig {
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(5),
        qps: f64::MAX,
        burst: u32::MAX,
    })
}

fn namespace_ref(name: &str) -> ObjectRef {
    ObjectRef::cluster(NAMESPACES, name)
}

/// Everything one run of the collector owns.
struct Collector {
    client: Client,
    config: Config,
    stats: Arc<GcStats>,
    index: Index,
    queue: WorkQueue<Work>,
    /// Served kinds by `group/plural`.
    kinds: HashMap<String, Arc<KindInfo>>,
    /// One watch per served kind, stopped through its token.
    monitors: HashMap<String, CancellationToken>,
    events: mpsc::Sender<(String, Seen<PartialObject>)>,
    /// Kinds whose first list has not arrived yet.
    unlisted: HashSet<String>,
    /// Namespaces objects were listed in during the first lists.
    seen_namespaces: HashSet<String>,
    /// Every kind has been listed once: work may start.
    synced: bool,
    /// Definitions changed since the served kinds were last looked up.
    kinds_stale: bool,
    /// Owners (uids) a check found present, until a watch shows them going: a new
    /// dependent of only these needs no check, as an owner's deletion queues every
    /// dependent it has by then (100,000 tasks of 1,000 services were otherwise
    /// 200,000 reads). Forgotten whenever a list may have missed a deletion.
    alive: HashSet<String>,
    shutdown: CancellationToken,
}

type ClientResult<T> = Result<T, corral_client::Error>;

impl Collector {
    /// A collector that has seen nothing yet; watch events reach it through `events`.
    fn new(
        client: Client,
        config: Config,
        stats: Arc<GcStats>,
        events: mpsc::Sender<(String, Seen<PartialObject>)>,
        shutdown: CancellationToken,
    ) -> Self {
        Collector {
            client,
            config,
            stats,
            index: Index::default(),
            queue: work_queue(),
            kinds: HashMap::new(),
            monitors: HashMap::new(),
            events,
            unlisted: HashSet::new(),
            alive: HashSet::new(),
            seen_namespaces: HashSet::new(),
            synced: false,
            kinds_stale: false,
            shutdown,
        }
    }

    async fn run(&mut self, mut inbox: mpsc::Receiver<(String, Seen<PartialObject>)>) -> corral_runtime::Result<()> {
        self.refresh_kinds().await?;
        let mut scan = tokio::time::interval(self.config.scan_interval);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                ev = inbox.recv() => match ev {
                    Some((resource, seen)) => {
                        self.seen(&resource, seen).await;
                        self.stats.tracked.store(self.index.entries.len() as u64, Ordering::Relaxed);
                    }
                    None => return Ok(()),
                },
                w = self.queue.next(), if self.synced => match w {
                    Some(w) => self.process(w).await,
                    None => return Ok(()),
                },
                _ = scan.tick() => {
                    self.scan(Instant::now());
                    self.refresh_kinds_if_stale().await;
                }
            }
        }
    }

    /// Looks the served kinds up again after a change of definitions; a failure is
    /// retried at the next scan.
    async fn refresh_kinds_if_stale(&mut self) {
        if !self.kinds_stale {
            return;
        }
        match self.refresh_kinds().await {
            Ok(()) => self.kinds_stale = false,
            Err(e) => tracing::warn!(error = %e, "garbage collector cannot read the served kinds; will retry"),
        }
    }

    /// Watches every served kind, and stops watching kinds no longer served.
    async fn refresh_kinds(&mut self) -> ClientResult<()> {
        let kinds = self.client.kinds().await?;
        // Objects of a kind no longer served are gone without a deletion seen.
        self.alive.clear();
        let served: HashSet<String> = kinds.iter().map(|k| k.resource()).collect();
        for (resource, token) in self.monitors.iter() {
            if !served.contains(resource) {
                tracing::debug!(resource, "kind no longer served: garbage collector stops watching it");
                token.cancel();
            }
        }
        self.monitors.retain(|r, _| served.contains(r));
        self.kinds.retain(|r, _| served.contains(r));
        self.unlisted.retain(|r| served.contains(r));
        for kind in kinds {
            let resource = kind.resource();
            self.kinds.insert(resource.clone(), kind.clone());
            if self.monitors.contains_key(&resource) {
                continue;
            }
            let token = self.shutdown.child_token();
            let api = Api::<PartialObject>::for_kind(self.client.clone(), kind, None);
            let events = self.events.clone();
            let r = resource.clone();
            tokio::spawn(watcher::watch(api, ListParams::default(), token.clone(), None, move |seen| {
                let events = events.clone();
                let r = r.clone();
                async move {
                    let _ = events.send((r, seen)).await;
                }
            }));
            self.monitors.insert(resource.clone(), token);
            if !self.synced {
                self.unlisted.insert(resource);
            }
        }
        Ok(())
    }

    /// Takes in one thing a watch saw, and queues the work it may unblock.
    async fn seen(&mut self, resource: &str, seen: Seen<PartialObject>) {
        let Some(kind) = self.kinds.get(resource).cloned() else { return };
        match seen {
            Seen::Listed { objects, .. } => {
                self.alive.clear();
                let mut keep = HashSet::new();
                for o in &objects {
                    let r = ObjectRef::of(&kind, o);
                    keep.insert(r.clone());
                    if !self.synced
                        && let Some(ns) = o.namespace()
                    {
                        self.seen_namespaces.insert(ns.to_string());
                    }
                    self.applied(&kind, r, o);
                }
                // What went while nobody watched: its dependents may be garbage now.
                for (r, e) in self.index.retain_listed(resource, &keep) {
                    self.gone(&kind, &r, &e.uid, &e.owners);
                }
                if resource == NAMESPACES {
                    let listed: HashSet<&str> = objects.iter().map(|o| o.name()).collect();
                    self.index.namespaces.retain(|n, _| listed.contains(n.as_str()));
                }
                if self.synced {
                    // A re-list (the watch fell behind compaction): look at every
                    // dependent again rather than trust what may have been missed.
                    self.queue_everything();
                } else if self.unlisted.remove(resource) && self.unlisted.is_empty() {
                    self.synced = true;
                    tracing::debug!(kinds = self.kinds.len(), "garbage collector has listed every kind");
                    self.queue_everything();
                }
            }
            Seen::Applied(o) => {
                let r = ObjectRef::of(&kind, &o);
                self.applied(&kind, r, &o);
            }
            Seen::Deleted(o) => {
                let r = ObjectRef::of(&kind, &o);
                self.alive.remove(o.uid());
                self.index.remove(&r, o.revision());
                self.gone(&kind, &r, o.uid(), &o.metadata.owner_references);
            }
            Seen::Bookmark(_) => return,
        }
        if resource == DEFINITIONS {
            // A custom kind may appear or go: watch what is served now.
            self.kinds_stale = true;
            self.refresh_kinds_if_stale().await;
        }
    }

    /// An object was created or changed.
    fn applied(&mut self, kind: &KindInfo, r: ObjectRef, o: &PartialObject) {
        if r.resource == NAMESPACES {
            self.index.namespaces.insert(o.name().to_string(), o.metadata.is_deleting());
        }
        if o.metadata.is_deleting() {
            self.alive.remove(o.uid());
        }
        let Some(old) = self.index.upsert(&r, o) else { return };
        let owners_changed = old.as_ref().map(|e| &*e.owners) != Some(o.metadata.owner_references.as_slice());
        let owners_present = o.metadata.owner_references.iter().all(|w| self.alive.contains(&w.uid));
        if !o.metadata.owner_references.is_empty() && owners_changed && !owners_present {
            self.queue.add(Work::Dependent(r.clone()));
        }
        if o.metadata.is_deleting() {
            self.queue.add(Work::Deleting(r.clone()));
        }
        // Owners named before or after the change may be waiting on this dependent.
        let before = old.iter().flat_map(|e| e.owners.iter());
        self.wake_waiting_owners(before.chain(o.metadata.owner_references.iter()));
        self.check_namespace(kind, o.namespace());
    }

    /// An object is gone (at `r`, with `uid`, owned by `owners`).
    fn gone(&mut self, kind: &KindInfo, r: &ObjectRef, uid: &str, owners: &[OwnerReference]) {
        // Its dependents may now be garbage.
        for d in self.index.dependents_of(uid) {
            self.queue.add(Work::Dependent(d));
        }
        if r.resource == NAMESPACES {
            self.index.namespaces.remove(&r.name);
            self.queue.add(Work::Deleting(r.clone()));
        }
        self.wake_waiting_owners(owners.iter());
        self.check_namespace(kind, r.namespace.as_deref());
    }

    fn wake_waiting_owners<'a>(&mut self, owners: impl Iterator<Item = &'a OwnerReference>) {
        let waiting: Vec<ObjectRef> = owners
            .filter_map(|o| self.index.by_uid(&o.uid))
            .filter(|(_, e)| e.deleting)
            .map(|(r, _)| r.clone())
            .collect();
        for r in waiting {
            self.queue.add(Work::Deleting(r));
        }
    }

    /// A namespace being deleted waits on its objects; one already gone must keep none
    /// (an object created while it went away is deleted).
    fn check_namespace(&mut self, kind: &KindInfo, ns: Option<&str>) {
        let Some(ns) = ns.filter(|_| kind.namespaced) else { return };
        let listed = !self.unlisted.contains(NAMESPACES) && self.monitors.contains_key(NAMESPACES);
        if listed && self.index.namespaces.get(ns).is_none_or(|deleting| *deleting) {
            self.queue.add(Work::Deleting(namespace_ref(ns)));
        }
    }

    /// Queues every object that may have work: after the first lists, this finishes
    /// whatever an earlier run of the collector left undone.
    fn queue_everything(&mut self) {
        let mut work = Vec::new();
        for (r, e) in &self.index.entries {
            if !e.owners.is_empty() {
                work.push(Work::Dependent((**r).clone()));
            }
            if e.deleting {
                work.push(Work::Deleting((**r).clone()));
            }
        }
        for ns in self.seen_namespaces.drain() {
            if !self.index.namespaces.contains_key(&ns) {
                work.push(Work::Deleting(namespace_ref(&ns)));
            }
        }
        for w in work {
            self.queue.add(w);
        }
    }

    /// Counts objects waiting on finalizers, warns about those waiting too long, and
    /// re-queues their work in case an earlier attempt gave up.
    fn scan(&mut self, now: Instant) {
        let (mut waiting, mut stuck) = (0, 0);
        let mut requeue = Vec::new();
        for (r, e) in self.index.entries.iter_mut() {
            if !e.deleting {
                continue;
            }
            waiting += 1;
            requeue.push((**r).clone());
            let since = *e.waiting_since.get_or_insert(now);
            if now.duration_since(since) >= self.config.stuck_after {
                stuck += 1;
                if !e.warned {
                    e.warned = true;
                    tracing::warn!(
                        object = %r,
                        finalizers = ?e.finalizers,
                        waited = ?now.duration_since(since),
                        "object is waiting on finalizers; if the controller that owns one is gone, remove it by hand"
                    );
                }
            }
        }
        self.stats.waiting.store(waiting, Ordering::Relaxed);
        self.stats.stuck.store(stuck, Ordering::Relaxed);
        if self.synced {
            for r in requeue {
                self.queue.add(Work::Deleting(r));
            }
        }
    }

    async fn process(&mut self, w: Work) {
        let result = match &w {
            Work::Dependent(r) => self.dependent(r).await,
            Work::Deleting(r) => self.deleting(r).await,
        };
        match result {
            Ok(()) => {
                self.queue.forget(&w);
                self.queue.done(&w);
            }
            // Someone wrote first: look again at the new state.
            Err(e) if e.is_conflict() => {
                self.queue.retry(&w);
            }
            Err(e) => {
                tracing::warn!(work = ?w, error = %e, "garbage collection failed; will retry");
                self.queue.retry(&w);
            }
        }
    }

    fn api(&self, r: &ObjectRef) -> Option<Api<DynamicObject>> {
        let kind = self.kinds.get(&r.resource)?.clone();
        Some(Api::for_kind(self.client.clone(), kind, r.namespace.as_deref()))
    }

    /// The object at `r`, read afresh; `None` if it is gone or its kind is not served.
    async fn live(&self, r: &ObjectRef) -> ClientResult<Option<DynamicObject>> {
        match self.api(r) {
            Some(api) => api.get_opt(&r.name).await,
            None => Ok(None),
        }
    }

    /// The kind an owner reference names.
    fn owner_kind(&self, o: &OwnerReference) -> Option<Arc<KindInfo>> {
        self.kinds.values().find(|k| k.api_version() == o.api_version && k.kind == o.kind).cloned()
    }

    /// How an owner reference of the dependent at `dependent` stands right now.
    async fn classify(&self, dependent: &ObjectRef, o: &OwnerReference) -> ClientResult<OwnerState> {
        if let Some((_, e)) = self.index.by_uid(&o.uid) {
            return Ok(OwnerState::of(e.deleting, e.has_finalizer(FOREGROUND_FINALIZER)));
        }
        // Not in the index: ask the server. An owner of a kind no longer served
        // cannot be looked up, and counts as gone.
        let Some(kind) = self.owner_kind(o) else { return Ok(OwnerState::Absent) };
        let ns = dependent.namespace.as_deref().filter(|_| kind.namespaced);
        let api = Api::<PartialObject>::for_kind(self.client.clone(), kind, ns);
        Ok(match api.get_opt(&o.name).await? {
            Some(owner) if owner.uid() == o.uid => {
                OwnerState::of(owner.metadata.is_deleting(), owner.metadata.has_finalizer(FOREGROUND_FINALIZER))
            }
            _ => OwnerState::Absent,
        })
    }

    async fn dependent(&mut self, r: &ObjectRef) -> ClientResult<()> {
        let Some(live) = self.live(r).await? else { return Ok(()) };
        if live.metadata.is_deleting() || live.metadata.owner_references.is_empty() {
            return Ok(());
        }
        let mut owners = Vec::new();
        for o in &live.metadata.owner_references {
            let state = self.classify(r, o).await?;
            if state == OwnerState::Solid {
                self.alive.insert(o.uid.clone());
            }
            owners.push((o.uid.clone(), state));
        }
        let has_dependents = !self.index.dependents_of(live.uid()).is_empty();
        match decide::dependent(&owners, has_dependents) {
            DependentStep::Keep { drop_references } => {
                if !drop_references.is_empty() {
                    self.remove_references(r, live, &drop_references.into_iter().collect()).await?;
                }
                Ok(())
            }
            DependentStep::Delete { foreground } => {
                tracing::debug!(object = %r, foreground, "collecting a dependent whose owners are gone");
                let propagation = if foreground { Propagation::Foreground } else { Propagation::Background };
                let params = DeleteParams { propagation: Some(propagation), ..Default::default() }
                    .if_unchanged(live.revision(), Some(live.uid()));
                self.delete(r, &params).await
            }
        }
    }

    /// Deletes the object at `r`; one already gone is fine.
    async fn delete(&self, r: &ObjectRef, params: &DeleteParams) -> ClientResult<()> {
        let Some(api) = self.api(r) else { return Ok(()) };
        match api.delete(&r.name, params).await {
            Ok(_) => {
                self.stats.deleted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes references to `uids` from `live` (conditional on its revision).
    async fn remove_references(
        &self,
        r: &ObjectRef,
        mut live: DynamicObject,
        uids: &HashSet<String>,
    ) -> ClientResult<()> {
        let before = live.metadata.owner_references.len();
        live.metadata.owner_references.retain(|o| !uids.contains(&o.uid));
        let removed = before - live.metadata.owner_references.len();
        if removed == 0 {
            return Ok(());
        }
        let Some(api) = self.api(r) else { return Ok(()) };
        match api.update(&live).await {
            Ok(_) => {
                self.stats.references_removed.fetch_add(removed as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn deleting(&mut self, r: &ObjectRef) -> ClientResult<()> {
        let Some(mut live) = self.live(r).await? else {
            if r.resource == NAMESPACES {
                // A namespace that is gone must be empty (objects created in it while
                // it was going away end up here).
                self.delete_namespace_contents(&r.name).await?;
            }
            return Ok(());
        };
        if !live.metadata.is_deleting() {
            return Ok(());
        }
        let uid = live.uid().to_string();
        let namespace = if r.resource == NAMESPACES && live.metadata.has_finalizer(NAMESPACE_FINALIZER) {
            let terminating =
                live.rest.get("status").and_then(|s| s.get("phase")).and_then(Value::as_str) == Some("Terminating");
            Some(NamespaceContents { terminating, objects: self.namespace_contents(&r.name).await?.len() })
        } else {
            None
        };
        let facts = Deleting {
            finalizers: live.metadata.finalizers.clone(),
            namespace,
            blocking_dependents: self.index.blocking(&uid),
        };
        for step in decide::deleting(&facts) {
            match step {
                OwnerStep::OrphanDependents => {
                    let uids = HashSet::from([uid.clone()]);
                    for d in self.index.dependents_of(&uid) {
                        if let Some(dl) = self.live(&d).await? {
                            self.remove_references(&d, dl, &uids).await?;
                        }
                    }
                    tracing::debug!(object = %r, "dependents orphaned");
                }
                OwnerStep::CollectDependents => {
                    for d in self.index.dependents_of(&uid) {
                        if self.index.entries.get(&d).is_some_and(|e| !e.deleting) {
                            self.queue.add(Work::Dependent(d));
                        }
                    }
                }
                OwnerStep::MarkTerminating => {
                    if let Some(status) =
                        live.rest.entry("status").or_insert_with(|| Value::Object(Default::default())).as_object_mut()
                    {
                        status.insert("phase".into(), Value::String("Terminating".into()));
                    }
                    let Some(api) = self.api(r) else { return Ok(()) };
                    live = api.update_status(&live).await?;
                }
                OwnerStep::DeleteNamespaceContents => self.delete_namespace_contents(&r.name).await?,
                OwnerStep::RemoveFinalizer(f) => {
                    tracing::debug!(object = %r, finalizer = f, "work done: the finalizer goes");
                    live.metadata.remove_finalizer(f);
                    let Some(api) = self.api(r) else { return Ok(()) };
                    match api.update(&live).await {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// Every object in namespace `ns`, of every namespaced kind, with whether it is
    /// being deleted.
    async fn namespace_contents(&self, ns: &str) -> ClientResult<Vec<(ObjectRef, bool)>> {
        let mut out = Vec::new();
        for kind in self.kinds.values().filter(|k| k.namespaced) {
            let api = Api::<PartialObject>::for_kind(self.client.clone(), kind.clone(), Some(ns));
            for o in api.list_all(&ListParams::default(), corral_client::DEFAULT_PAGE_SIZE).await?.items {
                out.push((ObjectRef::of(kind, &o), o.metadata.is_deleting()));
            }
        }
        Ok(out)
    }

    /// Deletes every object in namespace `ns` not already being deleted.
    async fn delete_namespace_contents(&self, ns: &str) -> ClientResult<()> {
        for (r, deleting) in self.namespace_contents(ns).await? {
            if !deleting {
                self.delete(&r, &DeleteParams::default()).await?;
            }
        }
        Ok(())
    }
}

/// Reads the collector's counters at scrape time.
#[derive(Debug)]
struct StatsCollector(Arc<GcStats>);

impl MetricsCollector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let gauges = [
            (
                "corral_gc_objects_waiting_on_finalizers",
                "Objects with deletionTimestamp that finalizers keep from going.",
                s.waiting.load(Ordering::Relaxed),
            ),
            (
                "corral_gc_objects_stuck_on_finalizers",
                "Objects waiting on finalizers for longer than a minute (each is logged).",
                s.stuck.load(Ordering::Relaxed),
            ),
            (
                "corral_gc_tracked_objects",
                "Objects the garbage collector keeps in memory: those with owners or being deleted.",
                s.tracked.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let counters = [
            ("corral_gc_deleted", "Objects deleted by the garbage collector.", s.deleted.load(Ordering::Relaxed)),
            (
                "corral_gc_owner_references_removed",
                "Owner references removed by the garbage collector (orphaning, dangling owners).",
                s.references_removed.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::index::tests::{key, obj};
    use super::*;

    #[tokio::test]
    async fn objects_waiting_too_long_on_finalizers_are_counted_and_reported() {
        // The scan reads only the index: the client is never called.
        let client = Client::http("http://127.0.0.1:9").expect("a client");
        let (events, _inbox) = mpsc::channel(1);
        let mut c = Collector::new(client, Config::default(), Arc::default(), events, CancellationToken::new());
        c.synced = true;
        let k = key("held");
        let meta = json!({"uid": "u", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["x"]});
        c.index.upsert(&k, &obj("held", 2, meta));
        let fine = key("fine");
        c.index.upsert(&fine, &obj("fine", 3, json!({"uid": "v"})));
        let start = Instant::now();
        c.scan(start);
        assert_eq!(c.stats.waiting.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats.stuck.load(Ordering::Relaxed), 0);
        assert_eq!(c.queue.next().await, Some(Work::Deleting(k.clone())), "waiting objects get another look");
        c.scan(start + c.config.stuck_after);
        assert_eq!(c.stats.stuck.load(Ordering::Relaxed), 1);
        assert!(c.index.entries.get(&k).is_some_and(|e| e.warned), "a stuck object is logged once");
    }
}
