//! The contract between the store and its users (the API server, controllers).

use std::sync::Arc;

use async_trait::async_trait;
use corral_api::Selector;
use serde_json::Value;

use crate::error::Result;
use crate::event::{WatchRequest, WatchStream};
use crate::key::Key;
use crate::list::{ListPage, ListRequest};
use crate::object::StoredObject;

/// Result of an update.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateOutcome {
    /// The object changed; this is its new state.
    Updated(Arc<StoredObject>),
    /// Nothing changed, so nothing was written and no revision was used.
    Unchanged(Arc<StoredObject>),
    /// The update removed the last finalizer of an object being deleted, so it is gone.
    Deleted(Arc<StoredObject>),
}

impl UpdateOutcome {
    /// The object's state after the call.
    pub fn object(&self) -> &Arc<StoredObject> {
        match self {
            UpdateOutcome::Updated(o) | UpdateOutcome::Unchanged(o) | UpdateOutcome::Deleted(o) => o,
        }
    }
}

/// Result of a delete.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteOutcome {
    /// The object is gone; its last state.
    Deleted(Arc<StoredObject>),
    /// Finalizers remain: `deletionTimestamp` is set and the object stays until they
    /// are removed.
    Finalizing(Arc<StoredObject>),
}

/// One write of a [`Storage::transact`].
#[derive(Clone, Debug, PartialEq)]
pub enum TxnOp {
    /// As [`Storage::create`].
    Create {
        /// Where.
        key: Key,
        /// The object.
        object: Value,
    },
    /// As [`Storage::update`].
    Update {
        /// Where.
        key: Key,
        /// The object.
        object: Value,
        /// Fail unless the object is at this revision.
        expected: Option<u64>,
    },
    /// As [`Storage::delete`].
    Delete {
        /// Where.
        key: Key,
        /// Fail unless the object is at this revision.
        expected: Option<u64>,
    },
}

/// The result of one write of a [`Storage::transact`].
#[derive(Clone, Debug, PartialEq)]
pub enum TxnOutcome {
    /// Created: the object as stored.
    Created(Arc<StoredObject>),
    /// Updated.
    Updated(UpdateOutcome),
    /// Deleted.
    Deleted(DeleteOutcome),
}

/// A consistent list: exactly the matching objects at `revision`.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Matching objects, ordered by namespace and name.
    pub items: Vec<Arc<StoredObject>>,
    /// The store revision the list reflects; watch from it to see every later change.
    pub revision: u64,
}

/// What the store knows of an object without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHead {
    /// Revision of its last write.
    pub revision: u64,
    /// Whether it has `deletionTimestamp`: finalizers hold it while it goes away.
    pub deleting: bool,
    /// Its labels.
    pub labels: crate::object::Labels,
}

/// Counters a server exports as metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreStats {
    /// Current revision.
    pub revision: u64,
    /// Events at or below this revision are compacted away.
    pub compacted: u64,
    /// Objects held.
    pub objects: u64,
    /// Open watches.
    pub watchers: u64,
    /// Times a write woke a watch; a watch of some kinds is woken only by writes of
    /// those kinds (and a periodic sweep).
    pub watch_wakeups: u64,
    /// Durable flushes performed.
    pub flushes: u64,
    /// Writes acknowledged (one per revision).
    pub writes: u64,
    /// Bytes of the current objects' JSON.
    pub live_bytes: u64,
    /// Bytes of the retained history (events after the compaction floor).
    pub history_bytes: u64,
    /// Revisions of retained history.
    pub history_revisions: u64,
    /// Bytes of the newest events held in memory for live watches.
    pub recent_bytes: u64,
    /// Bytes the database takes on disk.
    pub db_bytes: u64,
}

/// A versioned, watchable object store.
///
/// # Guarantees
/// - Every successful create, update or delete takes the next global revision; the
///   object and its event are written atomically, and the call returns only once
///   they are durable.
/// - `update`/`delete` with `expected = Some(rv)` fail with `Conflict` unless the
///   object's current revision is `rv`.
/// - `list` is a consistent snapshot at its `revision`; a watch from that revision
///   yields every later matching change exactly once, in revision order.
/// - `generation` increases only when the desired state (anything outside metadata
///   and status) changes; `update_status` changes only `status`.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Creates the object at `key`; server-owned metadata (uid, resourceVersion,
    /// generation, creationTimestamp) is set here.
    async fn create(&self, key: Key, object: Value) -> Result<Arc<StoredObject>>;

    /// Replaces the object's desired state and metadata; its status is kept.
    async fn update(&self, key: Key, object: Value, expected: Option<u64>) -> Result<UpdateOutcome>;

    /// Replaces only the object's status.
    async fn update_status(&self, key: Key, object: Value, expected: Option<u64>) -> Result<UpdateOutcome>;

    /// Deletes the object, or marks it for deletion while finalizers remain.
    async fn delete(&self, key: Key, expected: Option<u64>) -> Result<DeleteOutcome>;

    /// Applies every write of `ops` or none: each takes the next revision, in order,
    /// and all become durable and visible to watches together. A write sees those
    /// before it (create then update of one key works).
    ///
    /// # Errors
    /// The first write's error that fails (`Conflict`, `NotFound`, `AlreadyExists`…);
    /// nothing was written then.
    async fn transact(&self, ops: Vec<TxnOp>) -> Result<Vec<TxnOutcome>>;

    /// The object at `key`, if any.
    async fn get(&self, key: &Key) -> Result<Option<Arc<StoredObject>>>;

    /// Whether an object exists at `key`; cheaper than [`Storage::get`] where the
    /// object itself is not needed.
    async fn exists(&self, key: &Key) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// What is known of the object at `key` without reading it: its revision and
    /// whether its deletion is pending. Cheaper than [`Storage::get`].
    async fn head(&self, key: &Key) -> Result<Option<ObjectHead>> {
        let Some(o) = self.get(key).await? else { return Ok(None) };
        let deleting = o.value()?.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
        Ok(Some(ObjectHead { revision: o.revision, deleting, labels: o.labels.clone() }))
    }

    /// Objects of `resource` (in `namespace`, if given) whose labels match.
    async fn list(&self, resource: &str, namespace: Option<&str>, selector: &Selector) -> Result<ListResult>;

    /// A page of a list: at most `limit` matching objects after `after`, consistent
    /// at revision `at` (that of the list's first page) however many writes happened
    /// since, as long as it is not compacted.
    ///
    /// # Errors
    /// `Gone` when `at` is compacted, `Ahead` when it is beyond the store.
    async fn list_page(&self, req: &ListRequest) -> Result<ListPage> {
        let all = self.list(&req.resource, req.namespace.as_deref(), &req.selector).await?;
        if req.at.is_some_and(|at| at != all.revision) {
            return Err(crate::Error::Gone { requested: req.at.unwrap_or_default(), compacted: all.revision });
        }
        let mut items: Vec<_> =
            all.items.into_iter().filter(|o| req.after.as_ref().is_none_or(|a| o.key > *a)).collect();
        let limit = req.limit.unwrap_or(usize::MAX).max(1);
        let remaining = items.len().saturating_sub(limit) as u64;
        items.truncate(limit);
        let next = if remaining > 0 { items.last().map(|o| o.key.clone()) } else { None };
        Ok(ListPage { items, revision: all.revision, next, remaining })
    }

    /// Streams changes; fails with `Gone` if `from` is compacted.
    async fn watch(&self, request: WatchRequest) -> Result<WatchStream>;

    /// Asks every watch with bookmarks to send one as soon as it has read every event
    /// published before this call (as etcd's progress request), so that a consumer
    /// filtering few kinds learns how far it has got without waiting for the periodic
    /// bookmark.
    ///
    /// # Guarantees
    /// A write acknowledged before this call is at or below the revision of the
    /// bookmark (or event) each such watch yields next.
    fn request_progress(&self);

    /// Drops events at or below `revision` from the log, stopping short of any
    /// revision held by a [`RevisionPin`].
    async fn compact(&self, revision: u64) -> Result<()>;

    /// Holds the state at `revision` readable (by [`Storage::list_page`] with
    /// `at = revision`) for as long as the returned pin lives: compaction, automatic
    /// or asked for, stops short of it. What a backup or a long paged read takes so
    /// that it cannot be cut short by writes going on. History grows meanwhile, so
    /// pins are for reads that make progress.
    ///
    /// The default holds nothing: for stores whose `list_page` reads only the
    /// current revision.
    ///
    /// # Errors
    /// `Gone` when `revision` is already compacted, `Ahead` when it is beyond the
    /// store.
    fn pin(&self, revision: u64) -> Result<RevisionPin> {
        let _ = revision;
        Ok(RevisionPin::default())
    }

    /// Current counters.
    fn stats(&self) -> StoreStats;

    /// Whether the store can take writes; the reason when it cannot (disk full,
    /// failed). Served as `/healthz`.
    fn health(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// A revision held from compaction; released when dropped (see [`Storage::pin`]).
#[derive(Default)]
pub struct RevisionPin {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl RevisionPin {
    /// A pin that runs `release` when dropped.
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        RevisionPin { release: Some(Box::new(release)) }
    }
}

impl std::fmt::Debug for RevisionPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionPin").finish_non_exhaustive()
    }
}

impl Drop for RevisionPin {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}
