//! [`Storage`] on an embedded sled database.
//!
//! One writer thread owns every mutation: it takes all requests queued at that moment
//! as a batch, decides each against the current state, commits the batch in one sled
//! transaction, flushes once, and only then publishes the new state to readers and
//! watchers and acknowledges the writers. Readers therefore never observe a write that
//! could still be lost, and a crash leaves a prefix of acknowledged batches.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use corral_api::Selector;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::blobs::Blobs;
use crate::codec;
use crate::decide::Write;
use crate::error::{Error, Result};
use crate::event::{WatchRequest, WatchStream};
use crate::history::{Entry, History};
use crate::key::Key;
use crate::list::{ListPage, ListRequest};
use crate::load::{self, Loaded};
use crate::marker::{self, Mark, Marker};
use crate::object::StoredObject;
use crate::recent::Recent;
use crate::storage::{
    DeleteOutcome, ListResult, ObjectHead, RevisionPin, Storage, StoreStats, TxnOp, TxnOutcome, UpdateOutcome,
};
use crate::writer::{self, Op, Reply, Request};

/// Tuning of a [`SledStore`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Most revisions of history kept; older ones are compacted automatically.
    pub compaction_retain: u64,
    /// Oldest history kept: revisions older than this are compacted (as etcd's
    /// periodic auto-compaction).
    pub history_max_age: Duration,
    /// Most bytes of history kept; `None`: four times the live data, at least
    /// 256 MiB, so the data directory tracks the data rather than the write rate,
    /// while one burst of writes over the whole data (a scheduler launching and
    /// starting every task) does not compact what lagging watches still need —
    /// past it they re-list, and a re-list under load costs far more than the
    /// history.
    pub history_max_bytes: Option<u64>,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// Newest events kept in memory for live watches; a watch further behind reads
    /// the log from disk.
    pub event_buffer: usize,
    /// Most bytes of those newest events.
    pub event_buffer_bytes: u64,
    /// Most writes committed in one transaction and flush (a request of more is
    /// committed alone).
    pub max_batch: usize,
    /// Space kept free on the store's disk: writes that would leave less are refused
    /// (`NoSpace`) and resume once space is freed.
    pub min_free_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compaction_retain: 1_000_000,
            history_max_age: Duration::from_secs(3600),
            history_max_bytes: None,
            bookmark_interval: Duration::from_secs(10),
            cache_bytes: 64 << 20,
            // A scheduler's accept writes hundreds of tasks at once: watches that lag a
            // few such bursts behind must still read from memory, not decode the log
            // from disk each (which made them lag further).
            event_buffer: 65_536,
            event_buffer_bytes: 64 << 20,
            max_batch: 1024,
            min_free_bytes: 64 << 20,
        }
    }
}

impl Options {
    pub(crate) fn retention(&self, live_bytes: u64) -> crate::history::Retention {
        crate::history::Retention {
            revisions: self.compaction_retain,
            age: self.history_max_age,
            bytes: self.history_max_bytes.unwrap_or(live_bytes.saturating_mul(4).max(256 << 20)),
        }
    }
}

/// The published state: what readers see, always durable.
#[derive(Default)]
pub(crate) struct State {
    /// Each key is held once, shared with the history's revisions of it.
    pub(crate) index: crate::index::Index,
    pub(crate) revision: u64,
    /// Revisions after the compaction floor.
    pub(crate) history: History,
    /// Bytes of the current objects.
    pub(crate) live_bytes: u64,
}

impl State {
    pub(crate) fn insert(&mut self, key: Arc<Key>, entry: Entry) {
        self.live_bytes += entry.size;
        if let Some(old) = self.index.insert(key, entry) {
            self.live_bytes -= old.size;
        }
    }

    pub(crate) fn remove(&mut self, key: &Key) {
        if let Some(old) = self.index.remove(key) {
            self.live_bytes -= old.size;
        }
    }
}

impl Shared {
    /// The published state of `key`. Call with the state lock held: the writer removes
    /// a superseded event only after publishing its successor, under the write lock.
    pub(crate) fn load(&self, st: &State, key: &Key) -> Result<Option<Arc<StoredObject>>> {
        let Some(entry) = st.index.get(key) else { return Ok(None) };
        // An object written lately is still among the newest events, in memory: the
        // objects read most (being placed, started, accepted) are read there. A read
        // of sled waits while the writer applies a batch, and blocks its thread.
        if let Some(o) = self.recent.lock().object_at(entry.revision).filter(|o| o.key == *key) {
            return Ok(Some(o));
        }
        self.read_object(key.clone(), entry.revision, entry.labels.clone()).map(|o| Some(Arc::new(o)))
    }

    /// The state of `key` held by the event of `revision`, from the database or its
    /// own file.
    pub(crate) fn read_object(&self, key: Key, revision: u64, labels: crate::object::Labels) -> Result<StoredObject> {
        let event = self
            .data
            .get(codec::event_key(revision))?
            .ok_or_else(|| Error::Corrupt(format!("{key} is at revision {revision}, whose event is missing")))?;
        let (_, _, body) = codec::event_parts(revision, &event)?;
        let json = codec::json(&self.blobs, revision, body)?;
        Ok(StoredObject { key, revision, labels, json })
    }
}

pub(crate) struct Shared {
    pub(crate) db: sled::Db,
    /// Objects, events and store metadata (layout in `codec`).
    pub(crate) data: sled::Tree,
    pub(crate) state: RwLock<State>,
    /// The store's directory.
    pub(crate) dir: std::path::PathBuf,
    /// Whether the last batch was refused for want of space.
    pub(crate) disk_full: AtomicBool,
    /// Files of large objects.
    pub(crate) blobs: Blobs,
    /// Revisions whose files go after the next flush.
    pub(crate) unlink: Mutex<Vec<u64>>,
    /// Revisions held from compaction, and by how many pins (see `Storage::pin`).
    /// Taken under the state's read lock, read under its write lock by compaction.
    pub(crate) pins: Mutex<BTreeMap<u64, usize>>,
    /// The record of the newest acknowledged revision, beside the database.
    pub(crate) marker: Marker,
    /// The newest events, for live watches.
    pub(crate) recent: Mutex<Recent>,
    /// The newest published revision; watches wait on it.
    pub(crate) published: tokio::sync::watch::Sender<u64>,
    /// What wakes watches of some kinds only.
    pub(crate) signals: crate::wake::Signals,
    /// Bumped by each progress request; watches with bookmarks answer it.
    pub(crate) progress: tokio::sync::watch::Sender<u64>,
    pub(crate) compacted: AtomicU64,
    pub(crate) watchers: AtomicU64,
    /// Times a watch was woken by a write.
    pub(crate) wakeups: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) poisoned: AtomicBool,
    pub(crate) closed: tokio::sync::watch::Sender<bool>,
    pub(crate) options: Options,
}

/// The sled-backed store. Cheap to share behind an `Arc`; [`SledStore::close`] stops
/// it and releases the database.
pub struct SledStore {
    shared: Arc<Shared>,
    requests: Mutex<Option<std::sync::mpsc::Sender<Request>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SledStore {
    /// Opens (or creates) the store in directory `path` and loads its objects.
    ///
    /// # Errors
    /// Fails if sled cannot open the directory (e.g. another process holds it) or the
    /// data does not decode.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = path.as_ref();
        if dir.join(crate::snapshot::RESTORING_FILE).exists() {
            return Err(Error::Corrupt(format!(
                "a snapshot restore into {} did not finish: its database holds part of the snapshot; \
                 restore again into a new directory",
                dir.display()
            )));
        }
        let found = marker::read(dir)?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes)
            // Durability comes from our own flush before every acknowledgement.
            .flush_every_ms(None);
        let open_once = |config: sled::Config| -> Result<sled::Db> {
            // Some damage makes sled panic rather than fail; it is still damage to report.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()))
                .map_err(|p| {
                    let why = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Error::Corrupt(format!("the database in {} cannot be read: {why}", dir.display()))
                })?
                .map_err(Error::from)
        };
        // A store of this process closed just before (a restart in place) may still be
        // releasing sled's file lock from one of sled's own threads: wait for it a
        // little, a bounded number of times. Another process holding the directory
        // keeps it, and the last attempt's error says so.
        let mut attempts = 0;
        let db = loop {
            match open_once(config.clone()) {
                Err(Error::Sled(sled::Error::Io(e))) if attempts < LOCK_ATTEMPTS && e.to_string().contains("lock") => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other?,
            }
        };
        let data = db.open_tree("corral")?;
        let blobs = Blobs::open(dir)?;
        let Loaded { state, compacted, leftovers, external } = load::load(&data, &blobs)?;
        if !leftovers.is_empty() {
            let mut batch = sled::Batch::default();
            for rev in &leftovers {
                batch.remove(&codec::event_key(*rev)[..]);
            }
            data.apply_batch(batch)?;
            db.flush()?;
            tracing::debug!(events = leftovers.len(), "removed events left by an unfinished compaction");
        }
        // Files of writes never acknowledged, or of events compacted before a crash.
        for rev in blobs.revisions()? {
            if !external.contains(&rev) {
                blobs.remove(rev);
            }
        }
        let revision = state.revision;
        let db_cluster = data.get(codec::META_CLUSTER)?.map(|v| <[u8; 16]>::try_from(&v[..]));
        let db_cluster = match db_cluster {
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => return Err(Error::Corrupt("the cluster identity is malformed".into())),
            None => None,
        };
        let cluster = db_cluster.or(found.map(|m| m.cluster)).unwrap_or_else(|| *uuid::Uuid::new_v4().as_bytes());
        marker::check(dir, found, cluster, revision)?;
        if db_cluster.is_none() {
            data.insert(codec::META_CLUSTER, &cluster[..])?;
            db.flush()?;
        }
        let marker = Marker::create(dir, Mark { cluster, revision })?;
        tracing::info!(
            cluster = %uuid::Uuid::from_bytes(cluster),
            path = %path.as_ref().display(),
            revision,
            compacted,
            objects = state.index.len(),
            live_bytes = state.live_bytes,
            history_bytes = state.history.bytes(),
            "store opened"
        );
        let recent = Recent::new(revision, options.event_buffer, options.event_buffer_bytes);
        let (published, _) = tokio::sync::watch::channel(revision);
        let (closed, _) = tokio::sync::watch::channel(false);
        let (progress, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            db,
            data,
            state: RwLock::new(state),
            marker,
            dir: dir.to_path_buf(),
            disk_full: AtomicBool::new(false),
            blobs,
            unlink: Mutex::new(Vec::new()),
            pins: Mutex::new(BTreeMap::new()),
            recent: Mutex::new(recent),
            published,
            signals: crate::wake::Signals::new(options.event_buffer, options.event_buffer_bytes),
            progress,
            compacted: AtomicU64::new(compacted),
            watchers: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            closed,
            options,
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("corral-store-writer".into())
            .spawn(move || writer::run(writer_shared, rx))
            .map_err(|e| Error::Corrupt(format!("cannot start writer thread: {e}")))?;
        Ok(SledStore { shared, requests: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)) })
    }

    /// Stops accepting writes, lets queued ones finish, ends every watch and waits
    /// for the writer to flush and exit. The database is released once the last
    /// handle to the store is dropped.
    pub fn close(&self) {
        self.requests.lock().take();
        let _ = self.shared.closed.send(true);
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }

    /// Closes the store and waits until every watch has ended, so that the database
    /// is released when this returns and the directory can be opened again.
    pub async fn shutdown(self) {
        self.close();
        // Watch tasks notice `closed` on their next poll; bounded so a wedged task
        // cannot hang shutdown forever.
        for _ in 0..10_000 {
            if Arc::strong_count(&self.shared) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Current revision.
    pub fn revision(&self) -> u64 {
        self.shared.state.read().revision
    }

    async fn submit(&self, op: Op) -> Result<Reply> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let (reply, rx) = oneshot::channel();
        {
            let guard = self.requests.lock();
            let tx = guard.as_ref().ok_or(Error::Closed)?;
            tx.send(Request { op, reply }).map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }
}

/// Tries at opening a directory whose sled lock is still held (10 ms apart).
const LOCK_ATTEMPTS: u32 = 100;

impl Drop for SledStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn unexpected(r: Reply) -> Error {
    Error::Corrupt(format!("writer answered with an unexpected reply {r:?}"))
}

#[async_trait]
impl Storage for SledStore {
    async fn create(&self, key: Key, object: Value) -> Result<Arc<StoredObject>> {
        match self.submit(Op::Write(Write::Create { key, object })).await? {
            Reply::Object(o) => Ok(o),
            r => Err(unexpected(r)),
        }
    }

    async fn update(&self, key: Key, object: Value, expected: Option<u64>) -> Result<UpdateOutcome> {
        match self.submit(Op::Write(Write::Update { key, object, expected, status_only: false })).await? {
            Reply::Update(u) => Ok(u),
            r => Err(unexpected(r)),
        }
    }

    async fn update_status(&self, key: Key, object: Value, expected: Option<u64>) -> Result<UpdateOutcome> {
        match self.submit(Op::Write(Write::Update { key, object, expected, status_only: true })).await? {
            Reply::Update(u) => Ok(u),
            r => Err(unexpected(r)),
        }
    }

    async fn delete(&self, key: Key, expected: Option<u64>) -> Result<DeleteOutcome> {
        match self.submit(Op::Write(Write::Delete { key, expected })).await? {
            Reply::Delete(d) => Ok(d),
            r => Err(unexpected(r)),
        }
    }

    async fn transact(&self, ops: Vec<TxnOp>) -> Result<Vec<TxnOutcome>> {
        let writes = ops.into_iter().map(Write::from).collect();
        match self.submit(Op::Txn { writes }).await? {
            Reply::Txn(replies) => replies
                .into_iter()
                .map(|r| match r {
                    Reply::Object(o) => Ok(TxnOutcome::Created(o)),
                    Reply::Update(u) => Ok(TxnOutcome::Updated(u)),
                    Reply::Delete(d) => Ok(TxnOutcome::Deleted(d)),
                    r => Err(unexpected(r)),
                })
                .collect(),
            r => Err(unexpected(r)),
        }
    }

    async fn get(&self, key: &Key) -> Result<Option<Arc<StoredObject>>> {
        let st = self.shared.state.read();
        self.shared.load(&st, key)
    }

    async fn exists(&self, key: &Key) -> Result<bool> {
        Ok(self.shared.state.read().index.contains_key(key))
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectHead>> {
        Ok(self.shared.state.read().index.get(key).map(|e| ObjectHead {
            revision: e.revision,
            deleting: e.deleting,
            labels: e.labels.clone(),
        }))
    }

    async fn list(&self, resource: &str, namespace: Option<&str>, selector: &Selector) -> Result<ListResult> {
        let page = self.shared.list_page(&ListRequest::new(resource, namespace, selector))?;
        Ok(ListResult { items: page.items, revision: page.revision })
    }

    async fn list_page(&self, req: &ListRequest) -> Result<ListPage> {
        // Reads up to a megabyte of objects, from files too: off the async workers.
        let (shared, req) = (self.shared.clone(), req.clone());
        tokio::task::spawn_blocking(move || shared.list_page(&req)).await.map_err(crate::error::list_reader_failed)?
    }

    async fn watch(&self, request: WatchRequest) -> Result<WatchStream> {
        crate::watch::start(self.shared.clone(), request)
    }

    fn request_progress(&self) {
        self.shared.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn compact(&self, revision: u64) -> Result<()> {
        match self.submit(Op::Compact { revision }).await? {
            Reply::Done => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    fn pin(&self, revision: u64) -> Result<RevisionPin> {
        {
            // Under the read lock, so that a compaction (under the write lock) either
            // finished before, and is seen here, or starts after and sees the pin.
            let st = self.shared.state.read();
            if revision > st.revision {
                return Err(Error::Ahead { requested: revision, current: st.revision });
            }
            let compacted = self.shared.compacted.load(Ordering::Acquire);
            if revision < compacted {
                return Err(Error::Gone { requested: revision, compacted });
            }
            *self.shared.pins.lock().entry(revision).or_default() += 1;
        }
        let shared = self.shared.clone();
        Ok(RevisionPin::new(move || {
            let mut pins = shared.pins.lock();
            if let Some(n) = pins.get_mut(&revision) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(&revision);
                }
            }
        }))
    }

    fn health(&self) -> std::result::Result<(), String> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err("the store failed to write and is read-only until restarted; see the log".into());
        }
        if self.shared.disk_full.load(Ordering::Acquire) {
            let free = writer::free_bytes(&self.shared.dir);
            if free < self.shared.options.min_free_bytes {
                return Err(format!(
                    "the disk of {} is full: {} MiB free, {} MiB kept in reserve; writes are refused until space is freed",
                    self.shared.dir.display(),
                    free >> 20,
                    self.shared.options.min_free_bytes >> 20
                ));
            }
        }
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        let st = self.shared.state.read();
        StoreStats {
            revision: st.revision,
            compacted: self.shared.compacted.load(Ordering::Relaxed),
            objects: st.index.len() as u64,
            watchers: self.shared.watchers.load(Ordering::Relaxed),
            watch_wakeups: self.shared.wakeups.load(Ordering::Relaxed),
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            writes: self.shared.writes.load(Ordering::Relaxed),
            live_bytes: st.live_bytes,
            history_bytes: st.history.bytes(),
            history_revisions: st.history.len() as u64,
            recent_bytes: self.shared.recent.lock().bytes(),
            db_bytes: self.shared.db.size_on_disk().unwrap_or(0) + self.shared.blobs.bytes(),
        }
    }
}
