//! The garbage collector: cascading deletion through `ownerReferences` in the three
//! Kubernetes modes, and the emptying of deleted namespaces.
//!
//! One background task keeps an in-memory index of every object's owners (owner uid →
//! dependents) and of every namespace's contents, built from a list of every served
//! kind and kept current by a store watch of all kinds from the list's revision. Work
//! items name an object; processing one re-reads that object from the store and acts
//! on its current state, so an item may run any number of times (idempotent) and the
//! event that queued it does not matter.
//!
//! - A **dependent** whose owners are all gone is deleted; one whose owners are all
//!   gone or in foreground deletion is deleted (in foreground if it has dependents of
//!   its own); one with a live owner only loses its references to the others.
//! - An **owner** being deleted with the `orphan` finalizer has its reference removed
//!   from every dependent, then loses the finalizer; with `foregroundDeletion`, its
//!   dependents are deleted and it loses the finalizer once no dependent with
//!   `blockOwnerDeletion: true` remains.
//! - A **namespace** being deleted (finalizer `corral.dev/namespace`) is `Terminating`;
//!   every object in it is deleted, then it loses the finalizer.
//!
//! After a restart the index is rebuilt and every object with references or a
//! collector finalizer is queued again, so a cascade interrupted by a crash finishes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral_api::{Registry, Selector};
use corral_runtime::{QueueConfig, WorkQueue};
use corral_store::{
    DeleteOutcome, Error as StoreError, EventType, Key, Storage, StoredObject, UpdateOutcome, WatchEvent, WatchRequest,
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

/// Finalizer of an object whose dependents are deleted before it disappears.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer of an object whose dependents lose their reference to it before it
/// disappears.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Finalizer of a namespace whose objects are deleted before it disappears.
pub const NAMESPACE_FINALIZER: &str = "corral.dev/namespace";

/// How a delete treats the dependents of the deleted object (`propagationPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// The object goes at once; the collector then deletes its dependents.
    #[default]
    Background,
    /// The object stays (with `deletionTimestamp`) until its blocking dependents are
    /// deleted.
    Foreground,
    /// The object goes once its dependents no longer reference it; they survive.
    Orphan,
}

impl Propagation {
    /// Parses the wire name (`Background`, `Foreground`, `Orphan`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            "Orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }

    /// The finalizer through which the collector does this policy's work, if any.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Propagation::Background => None,
            Propagation::Foreground => Some(FOREGROUND_FINALIZER),
            Propagation::Orphan => Some(ORPHAN_FINALIZER),
        }
    }
}

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
}

/// Tuning of the collector.
#[derive(Clone, Debug)]
pub struct GcConfig {
    /// How long an object may wait on finalizers before it is reported as stuck.
    pub stuck_after: Duration,
    /// How often waiting objects are counted, reported, and their work re-queued.
    pub scan_interval: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig { stuck_after: Duration::from_secs(60), scan_interval: Duration::from_secs(10) }
    }
}

/// The metadata the collector reads; lenient, as stored objects were validated on
/// the way in.
#[derive(Deserialize, Default)]
struct Head {
    #[serde(default)]
    metadata: HeadMeta,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HeadMeta {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    owner_references: Vec<Ref>,
    #[serde(default)]
    finalizers: Vec<String>,
    #[serde(default)]
    deletion_timestamp: Option<String>,
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Ref {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    block_owner_deletion: Option<bool>,
}

fn head(o: &StoredObject) -> HeadMeta {
    match serde_json::from_slice::<Head>(&o.json) {
        Ok(h) => h.metadata,
        Err(e) => {
            tracing::warn!(key = %o.key, error = %e, "garbage collector cannot read metadata");
            HeadMeta::default()
        }
    }
}

/// What the index keeps of one object.
#[derive(Debug)]
struct Node {
    uid: String,
    revision: u64,
    owners: Vec<Ref>,
    finalizers: Vec<String>,
    deleting: bool,
    /// When the collector first saw the object waiting on finalizers.
    waiting_since: Option<Instant>,
    warned: bool,
}

impl Node {
    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

const NAMESPACES: &str = "corral.dev/namespaces";

fn namespace_key(name: &str) -> Key {
    Key::cluster(NAMESPACES, name)
}

/// Owner → dependents and namespace → contents, from the store's events.
#[derive(Default)]
struct Index {
    nodes: HashMap<Key, Node>,
    by_uid: HashMap<String, Key>,
    dependents: HashMap<String, BTreeSet<Key>>,
    by_namespace: HashMap<String, BTreeSet<Key>>,
}

impl Index {
    fn unlink(&mut self, key: &Key, node: &Node) {
        if self.by_uid.get(&node.uid) == Some(key) {
            self.by_uid.remove(&node.uid);
        }
        for r in &node.owners {
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
        }
        if !key.namespace.is_empty()
            && let Some(set) = self.by_namespace.get_mut(&key.namespace)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_namespace.remove(&key.namespace);
            }
        }
    }

    /// Records the object's state at `o.revision` unless a newer one is known;
    /// returns the state it replaced, or `None` if the event was stale.
    fn upsert(&mut self, o: &StoredObject) -> Option<Option<Node>> {
        if self.nodes.get(&o.key).is_some_and(|n| n.revision >= o.revision) {
            return None;
        }
        let m = head(o);
        let deleting = m.deletion_timestamp.is_some();
        let old = self.nodes.remove(&o.key);
        if let Some(old) = &old {
            self.unlink(&o.key, old);
        }
        let waiting_since =
            if deleting { old.as_ref().and_then(|n| n.waiting_since).or(Some(Instant::now())) } else { None };
        let warned = deleting && old.as_ref().is_some_and(|n| n.warned);
        let node = Node {
            uid: m.uid,
            revision: o.revision,
            owners: m.owner_references,
            finalizers: m.finalizers,
            deleting,
            waiting_since,
            warned,
        };
        self.by_uid.insert(node.uid.clone(), o.key.clone());
        for r in &node.owners {
            self.dependents.entry(r.uid.clone()).or_default().insert(o.key.clone());
        }
        if !o.key.namespace.is_empty() {
            self.by_namespace.entry(o.key.namespace.clone()).or_default().insert(o.key.clone());
        }
        self.nodes.insert(o.key.clone(), node);
        Some(old)
    }

    /// Forgets the object deleted at `revision`; returns its last known state.
    fn remove(&mut self, key: &Key, revision: u64) -> Option<Node> {
        if self.nodes.get(key).is_none_or(|n| n.revision >= revision) {
            return None;
        }
        let node = self.nodes.remove(key)?;
        self.unlink(key, &node);
        Some(node)
    }
}

/// A unit of work: look at this object as an owner or as a dependent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    /// Check its owners: collect it, or drop references to owners that are gone.
    Dependent(Key),
    /// It is (or was) an owner or namespace being deleted: do the policy's work.
    Owner(Key),
}

/// The collector's work queue: the controller runtime's, so merging, backoff (50 ms
/// to 5 s) and "one item at a time" behave as in every other controller. No rate
/// limit: the collector is the server's own.
fn work_queue() -> WorkQueue<Work> {
    WorkQueue::new(QueueConfig {
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(5),
        qps: f64::MAX,
        burst: u32::MAX,
    })
}

/// Everything the collector task owns.
struct Collector {
    store: Arc<dyn Storage>,
    registry: Arc<Registry>,
    stats: Arc<GcStats>,
    config: GcConfig,
    index: Index,
    queue: WorkQueue<Work>,
}

/// Starts the collector; it runs until `closed` resolves.
pub(crate) fn spawn(
    store: Arc<dyn Storage>,
    registry: Arc<Registry>,
    stats: Arc<GcStats>,
    config: GcConfig,
    closed: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut c = Collector { store, registry, stats, config, index: Index::default(), queue: work_queue() };
    tokio::spawn(async move {
        tokio::select! {
            _ = c.run() => {}
            _ = closed => {}
        }
        tracing::debug!("garbage collector stopped");
    })
}

type StoreResult<T> = Result<T, StoreError>;

impl Collector {
    async fn run(&mut self) {
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            match self.session().await {
                // The watch ended: the store is closing.
                Ok(()) => return,
                Err(e) => {
                    // A session that ran a while was healthy: start backing off afresh.
                    if started.elapsed() > Duration::from_secs(60) {
                        failures = 0;
                    }
                    failures = failures.saturating_add(1);
                    let delay = Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)));
                    tracing::warn!(error = %e, ?delay, "garbage collector restarts its watch");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One list-then-watch session; returns `Ok` when the watch ends normally and an
    /// error when the collector must re-list (compaction overtook it, or the store
    /// failed).
    async fn session(&mut self) -> StoreResult<()> {
        self.index = Index::default();
        self.queue = work_queue();
        // Every kind is listed at its own revision: the watch starts at the oldest, and
        // the index ignores replayed events older than what it holds. The index is
        // complete once the watch has passed the newest list.
        let mut from = u64::MAX;
        let mut synced_at = 0;
        for info in self.registry.kinds() {
            let list = self.store.list(&info.resource(), None, &Selector::everything()).await?;
            from = from.min(list.revision);
            synced_at = synced_at.max(list.revision);
            for o in &list.items {
                self.index.upsert(o);
            }
        }
        if from == u64::MAX {
            from = self.store.stats().revision;
        }
        let mut stream =
            self.store.watch(WatchRequest { resource: None, from: Some(from), ..Default::default() }).await?;
        let mut seen = from;
        let mut synced = seen >= synced_at;
        if synced {
            self.queue_everything();
        }
        let mut scan = tokio::time::interval(self.config.scan_interval);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                ev = stream.next() => match ev {
                    None => return Ok(()),
                    Some(WatchEvent::Gone { compacted }) => {
                        return Err(StoreError::Gone { requested: seen, compacted });
                    }
                    Some(WatchEvent::Bookmark(_)) => {}
                    Some(WatchEvent::Event(ev)) => {
                        seen = ev.revision;
                        self.apply(ev.event_type, &ev.object, ev.revision);
                        if !synced && seen >= synced_at {
                            synced = true;
                            self.queue_everything();
                        }
                    }
                },
                w = self.queue.next(), if synced => match w {
                    Some(w) => self.process(w).await,
                    None => return Ok(()),
                },
                _ = scan.tick() => self.scan(Instant::now()),
            }
        }
    }

    /// Updates the index with one event and queues the work it may unblock.
    fn apply(&mut self, event_type: EventType, o: &StoredObject, revision: u64) {
        let key = o.key.clone();
        let (old, new_present) = match event_type {
            EventType::Deleted => match self.index.remove(&key, revision) {
                Some(old) => (Some(old), false),
                None => return,
            },
            EventType::Added | EventType::Modified => match self.index.upsert(o) {
                Some(old) => (old, true),
                None => return,
            },
        };
        // Owners named before or after the change may be waiting on this dependent.
        let mut owners: Vec<String> =
            old.as_ref().map(|n| n.owners.iter().map(|r| r.uid.clone()).collect()).unwrap_or_default();
        if new_present {
            if let Some(n) = self.index.nodes.get(&key) {
                owners.extend(n.owners.iter().map(|r| r.uid.clone()));
                if !n.owners.is_empty() {
                    self.queue.add(Work::Dependent(key.clone()));
                }
                if n.deleting {
                    self.queue.add(Work::Owner(key.clone()));
                }
            }
        } else if let Some(old) = &old {
            // The object is gone: its dependents may now be garbage.
            for d in self.index.dependents.get(&old.uid).into_iter().flatten() {
                self.queue.add(Work::Dependent(d.clone()));
            }
            if key.resource == NAMESPACES {
                self.queue.add(Work::Owner(key.clone()));
            }
        }
        for uid in owners {
            if let Some(owner) = self.index.by_uid.get(&uid)
                && self.index.nodes.get(owner).is_some_and(|n| n.deleting)
            {
                self.queue.add(Work::Owner(owner.clone()));
            }
        }
        // A namespace being deleted waits on its objects; one already gone must not
        // keep any (an object created while it went away is deleted).
        if !key.namespace.is_empty() {
            let ns = namespace_key(&key.namespace);
            if self.index.nodes.get(&ns).is_none_or(|n| n.deleting) {
                self.queue.add(Work::Owner(ns));
            }
        }
    }

    /// Queues every object that may have work: after the index is (re)built, this
    /// finishes whatever an earlier run of the collector left undone.
    fn queue_everything(&mut self) {
        let mut work = Vec::new();
        for (key, n) in &self.index.nodes {
            if !n.owners.is_empty() {
                work.push(Work::Dependent(key.clone()));
            }
            if n.deleting {
                work.push(Work::Owner(key.clone()));
            }
        }
        for ns in self.index.by_namespace.keys() {
            let key = namespace_key(ns);
            if !self.index.nodes.contains_key(&key) {
                work.push(Work::Owner(key));
            }
        }
        for w in work {
            self.queue.add(w);
        }
    }

    /// Counts objects waiting on finalizers, warns about those waiting too long, and
    /// re-queues collector work on them in case an earlier attempt gave up.
    fn scan(&mut self, now: Instant) {
        let (mut waiting, mut stuck) = (0, 0);
        let mut requeue = Vec::new();
        for (key, n) in self.index.nodes.iter_mut() {
            if !n.deleting {
                continue;
            }
            waiting += 1;
            requeue.push(key.clone());
            let since = *n.waiting_since.get_or_insert(now);
            if now.duration_since(since) >= self.config.stuck_after {
                stuck += 1;
                if !n.warned {
                    n.warned = true;
                    tracing::warn!(
                        object = %key,
                        finalizers = ?n.finalizers,
                        waited = ?now.duration_since(since),
                        "object is waiting on finalizers; if the controller that owns one is gone, remove it by hand"
                    );
                }
            }
        }
        self.stats.waiting.store(waiting, Ordering::Relaxed);
        self.stats.stuck.store(stuck, Ordering::Relaxed);
        for k in requeue {
            self.queue.add(Work::Owner(k));
        }
    }

    async fn process(&mut self, w: Work) {
        let result = match &w {
            Work::Dependent(key) => self.dependent(key).await,
            Work::Owner(key) => self.owner(key).await,
        };
        match result {
            Ok(()) => {
                self.queue.forget(&w);
                self.queue.done(&w);
            }
            // Someone wrote first or the object went: look again at the new state.
            Err(StoreError::Conflict { .. }) => {
                self.queue.retry(&w);
            }
            Err(StoreError::Closed) => self.queue.done(&w),
            Err(e) => {
                tracing::warn!(work = ?w, error = %e, "garbage collection failed; will retry");
                self.queue.retry(&w);
            }
        }
    }

    /// The store key of the owner `r` names, for a dependent at `dependent`; `None`
    /// when its kind is not served.
    fn owner_key(&self, dependent: &Key, r: &Ref) -> Option<Key> {
        let info = self.registry.by_kind(&r.api_version, &r.kind)?;
        Some(if info.namespaced {
            Key::namespaced(info.resource(), dependent.namespace.clone(), r.name.clone())
        } else {
            Key::cluster(info.resource(), r.name.clone())
        })
    }

    /// How an owner reference stands right now.
    async fn classify(&self, dependent: &Key, r: &Ref) -> StoreResult<OwnerState> {
        if let Some(k) = self.index.by_uid.get(&r.uid)
            && let Some(n) = self.index.nodes.get(k)
        {
            return Ok(owner_state(n.deleting, n.has_finalizer(FOREGROUND_FINALIZER)));
        }
        // Not in the index: confirm with the store before treating it as gone, as
        // the index may lag behind a fresh owner. An owner of a kind no longer served
        // cannot be looked up; the complete index is the best knowledge there is.
        let Some(key) = self.owner_key(dependent, r) else { return Ok(OwnerState::Absent) };
        match self.store.get(&key).await? {
            Some(o) => {
                let m = head(&o);
                if m.uid != r.uid {
                    return Ok(OwnerState::Absent);
                }
                Ok(owner_state(m.deletion_timestamp.is_some(), m.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER)))
            }
            None => Ok(OwnerState::Absent),
        }
    }

    async fn dependent(&mut self, key: &Key) -> StoreResult<()> {
        let Some(live) = self.store.get(key).await? else { return Ok(()) };
        let m = head(&live);
        if m.deletion_timestamp.is_some() || m.owner_references.is_empty() {
            return Ok(());
        }
        let mut solid = false;
        let mut waiting = false;
        let mut drop_refs = HashSet::new();
        for r in &m.owner_references {
            match self.classify(key, r).await? {
                OwnerState::Solid => solid = true,
                OwnerState::Waiting => {
                    waiting = true;
                    drop_refs.insert(r.uid.clone());
                }
                OwnerState::Absent => {
                    drop_refs.insert(r.uid.clone());
                }
            }
        }
        if solid {
            // A live owner keeps it; references to owners that are gone or waiting
            // for their dependents are dropped so those owners are not held up.
            if !drop_refs.is_empty() {
                self.remove_references(key, &live, &drop_refs).await?;
            }
            return Ok(());
        }
        let has_dependents = self.index.dependents.get(&m.uid).is_some_and(|s| !s.is_empty());
        let add: &[&str] = if waiting && has_dependents { &[FOREGROUND_FINALIZER] } else { &[] };
        tracing::debug!(object = %key, foreground = !add.is_empty(), "collecting dependent whose owners are gone");
        match mark_for_deletion(self.store.as_ref(), key, Some(live.revision), add).await {
            Ok(_) => {
                self.stats.deleted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes references to `uids` from the object `live` (at its revision).
    async fn remove_references(&self, key: &Key, live: &StoredObject, uids: &HashSet<String>) -> StoreResult<()> {
        let mut v = live.value()?;
        let Some(refs) = v.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        let before = refs.len();
        refs.retain(|r| r.get("uid").and_then(Value::as_str).is_none_or(|u| !uids.contains(u)));
        let removed = before - refs.len();
        if removed == 0 {
            return Ok(());
        }
        if refs.is_empty()
            && let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("ownerReferences");
        }
        match self.store.update(key.clone(), v, Some(live.revision)).await {
            Ok(_) => {
                self.stats.references_removed.fetch_add(removed as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn owner(&mut self, key: &Key) -> StoreResult<()> {
        let Some(live) = self.store.get(key).await? else {
            if key.resource == NAMESPACES {
                // A namespace that is gone must be empty (objects created in it while
                // it was going away end up here).
                self.delete_namespace_contents(&key.name).await?;
            }
            return Ok(());
        };
        let m = head(&live);
        if m.deletion_timestamp.is_none() {
            return Ok(());
        }
        let has = |f: &str| m.finalizers.iter().any(|x| x == f);
        if has(ORPHAN_FINALIZER) {
            let deps: Vec<Key> = self.index.dependents.get(&m.uid).into_iter().flatten().cloned().collect();
            let uids = HashSet::from([m.uid.clone()]);
            for d in deps {
                if let Some(dl) = self.store.get(&d).await? {
                    self.remove_references(&d, &dl, &uids).await?;
                }
            }
            tracing::debug!(object = %key, "dependents orphaned");
            return remove_finalizer(self.store.as_ref(), key, &live, ORPHAN_FINALIZER).await;
        }
        if has(FOREGROUND_FINALIZER) {
            let deps: Vec<Key> = self.index.dependents.get(&m.uid).into_iter().flatten().cloned().collect();
            let mut blocking = 0;
            for d in deps {
                let Some(n) = self.index.nodes.get(&d) else { continue };
                if n.owners.iter().any(|r| r.uid == m.uid && r.block_owner_deletion == Some(true)) {
                    blocking += 1;
                }
                if !n.deleting {
                    self.queue.add(Work::Dependent(d.clone()));
                }
            }
            if blocking == 0 {
                tracing::debug!(object = %key, "no blocking dependents remain; foreground deletion completes");
                return remove_finalizer(self.store.as_ref(), key, &live, FOREGROUND_FINALIZER).await;
            }
            // Dependents' events queue this owner again as they go.
            return Ok(());
        }
        if key.resource == NAMESPACES && has(NAMESPACE_FINALIZER) {
            let live = self.mark_terminating(key, live).await?;
            if self.delete_namespace_contents(&key.name).await? == 0 {
                tracing::debug!(namespace = %key.name, "namespace is empty; it goes");
                return remove_finalizer(self.store.as_ref(), key, &live, NAMESPACE_FINALIZER).await;
            }
        }
        Ok(())
    }

    /// Sets a deleted namespace's phase to `Terminating` if a crash kept the API
    /// server from doing so.
    async fn mark_terminating(&self, key: &Key, live: Arc<StoredObject>) -> StoreResult<Arc<StoredObject>> {
        let mut v = live.value()?;
        if v.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
            return Ok(live);
        }
        set_terminating(&mut v);
        Ok(self.store.update_status(key.clone(), v, Some(live.revision)).await?.object().clone())
    }

    /// Deletes every object in namespace `ns` not already being deleted; returns how
    /// many objects remain in it.
    async fn delete_namespace_contents(&mut self, ns: &str) -> StoreResult<usize> {
        let keys: Vec<Key> = self.index.by_namespace.get(ns).into_iter().flatten().cloned().collect();
        for k in &keys {
            if self.index.nodes.get(k).is_some_and(|n| n.deleting) {
                continue;
            }
            match self.store.delete(k.clone(), None).await {
                Ok(_) => {
                    self.stats.deleted.fetch_add(1, Ordering::Relaxed);
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(keys.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Being deleted in foreground: waits for its dependents.
    Waiting,
    /// Gone, or replaced by another object of the same name.
    Absent,
}

fn owner_state(deleting: bool, foreground: bool) -> OwnerState {
    if deleting && foreground { OwnerState::Waiting } else { OwnerState::Solid }
}

/// Sets `status.phase` of a namespace to `Terminating`.
pub(crate) fn set_terminating(v: &mut Value) {
    if let Some(map) = v.as_object_mut() {
        let status = map.entry("status").or_insert_with(|| Value::Object(Default::default()));
        if let Some(s) = status.as_object_mut() {
            s.insert("phase".into(), Value::String("Terminating".into()));
        }
    }
}

/// Removes finalizer `f` from `live`; the store deletes the object if it was the last.
async fn remove_finalizer(store: &dyn Storage, key: &Key, live: &StoredObject, f: &str) -> StoreResult<()> {
    let mut v = live.value()?;
    let Some(list) = v.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) else { return Ok(()) };
    list.retain(|x| x.as_str() != Some(f));
    match store.update(key.clone(), v, Some(live.revision)).await {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the object at `key` after adding the finalizers `add` (those that are
/// missing), so that it stays, marked with `deletionTimestamp`, until they are
/// removed. An object already being deleted is left as it is. With `expected`, the
/// object must still be at that revision.
///
/// # Errors
/// `NotFound`, `Conflict` (when `expected` no longer holds, or after repeated
/// concurrent writes), or a store failure.
pub(crate) async fn mark_for_deletion(
    store: &dyn Storage,
    key: &Key,
    expected: Option<u64>,
    add: &[&str],
) -> StoreResult<DeleteOutcome> {
    const ATTEMPTS: usize = 8;
    let mut expected = expected;
    let mut last_conflict = None;
    for _ in 0..ATTEMPTS {
        let live = store.get(key).await?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
        if let Some(e) = expected.filter(|e| *e != live.revision) {
            return Err(StoreError::Conflict { key: key.clone(), expected: e, actual: live.revision });
        }
        let mut v = live.value()?;
        let deleting = v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
        let current: Vec<String> = v
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let missing: Vec<&str> = add.iter().copied().filter(|f| !current.iter().any(|c| c == f)).collect();
        let at = if deleting || missing.is_empty() {
            live.revision
        } else {
            let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
                return Err(StoreError::Invalid(format!("{key}: metadata is not an object")));
            };
            let list = meta.entry("finalizers").or_insert_with(|| Value::Array(Vec::new()));
            if let Some(a) = list.as_array_mut() {
                a.extend(missing.iter().map(|f| Value::String((*f).to_string())));
            }
            match store.update(key.clone(), v, Some(live.revision)).await {
                Ok(UpdateOutcome::Updated(o) | UpdateOutcome::Unchanged(o)) => o.revision,
                Ok(UpdateOutcome::Deleted(o)) => return Ok(DeleteOutcome::Deleted(o)),
                Err(e @ StoreError::Conflict { .. }) => {
                    last_conflict = Some(e);
                    expected = None;
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        match store.delete(key.clone(), Some(at)).await {
            Err(e @ StoreError::Conflict { .. }) => {
                // Someone wrote in between; the finalizers we added may still be there,
                // which the next attempt sees.
                last_conflict = Some(e);
                expected = None;
            }
            other => return other,
        }
    }
    Err(last_conflict.unwrap_or(StoreError::Closed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: Key, rev: u64, meta: Value) -> StoredObject {
        let mut m = meta;
        m["resourceVersion"] = Value::String(rev.to_string());
        let v = serde_json::json!({"metadata": m});
        StoredObject {
            key,
            revision: rev,
            labels: Default::default(),
            json: serde_json::to_vec(&v).unwrap_or_default().into(),
        }
    }

    #[test]
    fn propagation_parses_wire_names_only() {
        assert_eq!(Propagation::parse("Foreground"), Some(Propagation::Foreground));
        assert_eq!(Propagation::parse("orphan"), None);
        assert_eq!(Propagation::Orphan.finalizer(), Some(ORPHAN_FINALIZER));
        assert_eq!(Propagation::default().finalizer(), None);
    }

    #[test]
    fn index_tracks_owners_and_ignores_stale_events() {
        let mut idx = Index::default();
        let a = Key::namespaced("corral.dev/configmaps", "ns", "a");
        let b = Key::namespaced("corral.dev/configmaps", "ns", "b");
        idx.upsert(&obj(a.clone(), 2, serde_json::json!({"uid": "ua"})));
        let refs = serde_json::json!([{"apiVersion":"corral.dev/v1","kind":"ConfigMap","name":"a","uid":"ua"}]);
        idx.upsert(&obj(b.clone(), 3, serde_json::json!({"uid": "ub", "ownerReferences": refs})));
        assert_eq!(idx.dependents.get("ua").map(|s| s.len()), Some(1));
        // A replayed older state changes nothing.
        assert!(idx.upsert(&obj(b.clone(), 1, serde_json::json!({"uid": "ub"}))).is_none());
        assert_eq!(idx.dependents.get("ua").map(|s| s.len()), Some(1));
        assert!(idx.remove(&b, 3).is_none(), "a delete must be newer than the state held");
        assert!(idx.remove(&b, 4).is_some());
        assert!(!idx.dependents.contains_key("ua"));
        assert_eq!(idx.by_namespace.get("ns").map(|s| s.len()), Some(1));
    }

    #[tokio::test]
    async fn objects_waiting_too_long_on_finalizers_are_counted_and_reported() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let store = corral_store::SledStore::open(dir.path(), Default::default()).unwrap_or_else(|e| panic!("{e}"));
        let mut c = Collector {
            store: Arc::new(store),
            registry: Arc::new(Registry::builtin()),
            stats: Arc::default(),
            config: GcConfig::default(),
            index: Index::default(),
            queue: work_queue(),
        };
        let k = Key::namespaced("corral.dev/configmaps", "default", "held");
        let meta = serde_json::json!({"uid": "u", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["x"]});
        c.index.upsert(&obj(k.clone(), 2, meta));
        c.index.upsert(&obj(
            Key::namespaced("corral.dev/configmaps", "default", "fine"),
            3,
            serde_json::json!({"uid": "v"}),
        ));
        let start = Instant::now();
        c.scan(start);
        assert_eq!(c.stats.waiting.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats.stuck.load(Ordering::Relaxed), 0);
        assert_eq!(c.queue.next().await, Some(Work::Owner(k.clone())), "waiting objects get another look");
        c.scan(start + c.config.stuck_after);
        assert_eq!(c.stats.stuck.load(Ordering::Relaxed), 1);
        assert!(c.index.nodes.get(&k).is_some_and(|n| n.warned), "a stuck object is logged once");
    }
}
