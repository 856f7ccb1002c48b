//! [`Storage`] on an embedded sled database.
//!
//! One writer thread owns every mutation: it takes all requests queued at that moment
//! as a batch, decides each against the current state, commits the batch in one sled
//! transaction, flushes once, and only then publishes the new state to readers and
//! watchers and acknowledges the writers. Readers therefore never observe a write that
//! could still be lost, and a crash leaves a prefix of acknowledged batches.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use corral_api::Selector;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

use crate::codec;
use crate::error::{Error, Result};
use crate::event::{Event, WatchRequest, WatchStream};
use crate::key::Key;
use crate::object::StoredObject;
use crate::storage::{DeleteOutcome, ListResult, ObjectHead, Storage, StoreStats, UpdateOutcome};
use crate::writer::{self, Op, Reply, Request};

/// Removes compacted events that are no object's current state: the writer removes
/// superseded events lazily, so a crash can leave some behind.
fn sweep_superseded(data: &sled::Tree, state: &State, compacted: u64) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for kv in data.range(codec::event_key(0)..=codec::event_key(compacted)) {
        let (k, v) = kv?;
        let rev = codec::event_revision(&k)?;
        let (_, key, _) = codec::event_parts(rev, &v)?;
        if state.index.get(&key).is_none_or(|e| e.revision != rev) {
            batch.remove(k);
            n += 1;
        }
    }
    if n > 0 {
        data.apply_batch(batch)?;
        tracing::debug!(events = n, "swept superseded compacted events");
    }
    Ok(())
}

/// Tuning of a [`SledStore`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Revisions of event log kept; older ones are compacted automatically.
    pub compaction_retain: u64,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// Live events buffered per store before a slow watcher falls back to reading the
    /// log from disk.
    pub event_buffer: usize,
    /// Most requests committed in one transaction and flush.
    pub max_batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compaction_retain: 100_000,
            bookmark_interval: Duration::from_secs(10),
            cache_bytes: 64 << 20,
            event_buffer: 4096,
            max_batch: 1024,
        }
    }
}

/// What the in-memory index keeps of an object: enough to filter it and to find its
/// JSON, which stays in sled (in the event of its revision), so memory grows with the
/// number of objects, not their size.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) revision: u64,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) deleting: bool,
}

/// The published state: what readers see, always durable.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) index: BTreeMap<Key, Entry>,
    pub(crate) revision: u64,
}

impl Shared {
    /// The published state of `key`. Call with the state lock held: the writer removes
    /// a superseded event only after publishing its successor, under the write lock.
    pub(crate) fn load(&self, st: &State, key: &Key) -> Result<Option<Arc<StoredObject>>> {
        let Some(entry) = st.index.get(key) else { return Ok(None) };
        let event = self.data.get(codec::event_key(entry.revision))?.ok_or_else(|| {
            Error::Corrupt(format!("{key} is at revision {}, whose event is missing", entry.revision))
        })?;
        let (_, _, json) = codec::event_parts(entry.revision, &event)?;
        Ok(Some(Arc::new(StoredObject {
            key: key.clone(),
            revision: entry.revision,
            labels: entry.labels.clone(),
            json: bytes::Bytes::copy_from_slice(json),
        })))
    }
}

pub(crate) struct Shared {
    pub(crate) db: sled::Db,
    /// Objects, events and store metadata (layout in `codec`).
    pub(crate) data: sled::Tree,
    pub(crate) state: RwLock<State>,
    pub(crate) events_tx: broadcast::Sender<Arc<Event>>,
    pub(crate) compacted: AtomicU64,
    pub(crate) watchers: AtomicU64,
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
        let db = sled::Config::new()
            .path(path.as_ref())
            .cache_capacity(options.cache_bytes)
            // Durability comes from our own flush before every acknowledgement.
            .flush_every_ms(None)
            .open()?;
        let data = db.open_tree("corral")?;
        let revision = data.get(codec::META_REVISION)?.map(|v| codec::decode_u64(&v)).transpose()?.unwrap_or(0);
        let compacted = data.get(codec::META_COMPACTED)?.map(|v| codec::decode_u64(&v)).transpose()?.unwrap_or(0);
        let mut state = State { revision, ..State::default() };
        for kv in data.scan_prefix(codec::OBJECT_PREFIX) {
            let (k, v) = kv?;
            let key = Key::decode(&k[codec::OBJECT_PREFIX.len()..])
                .ok_or_else(|| Error::Corrupt("undecodable object key".into()))?;
            let at = codec::decode_u64(&v)?;
            if at > revision {
                return Err(Error::Corrupt(format!("{key} is at revision {at} beyond the store's {revision}")));
            }
            let event = data
                .get(codec::event_key(at))?
                .ok_or_else(|| Error::Corrupt(format!("{key}: event {at} is missing")))?;
            let (_, _, json) = codec::event_parts(at, &event)?;
            let (obj, deleting) = StoredObject::decode(key.clone(), bytes::Bytes::copy_from_slice(json))?;
            state.index.insert(key, Entry { revision: at, labels: obj.labels, deleting });
        }
        sweep_superseded(&data, &state, compacted)?;
        tracing::info!(path = %path.as_ref().display(), revision, compacted, objects = state.index.len(), "store opened");
        let (events_tx, _) = broadcast::channel(options.event_buffer);
        let (closed, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            db,
            data,
            state: RwLock::new(state),
            events_tx,
            compacted: AtomicU64::new(compacted),
            watchers: AtomicU64::new(0),
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
        match self.submit(Op::Create { key, object }).await? {
            Reply::Object(o) => Ok(o),
            r => Err(unexpected(r)),
        }
    }

    async fn update(&self, key: Key, object: Value, expected: Option<u64>) -> Result<UpdateOutcome> {
        match self.submit(Op::Update { key, object, expected, status_only: false }).await? {
            Reply::Update(u) => Ok(u),
            r => Err(unexpected(r)),
        }
    }

    async fn update_status(&self, key: Key, object: Value, expected: Option<u64>) -> Result<UpdateOutcome> {
        match self.submit(Op::Update { key, object, expected, status_only: true }).await? {
            Reply::Update(u) => Ok(u),
            r => Err(unexpected(r)),
        }
    }

    async fn delete(&self, key: Key, expected: Option<u64>) -> Result<DeleteOutcome> {
        match self.submit(Op::Delete { key, expected }).await? {
            Reply::Delete(d) => Ok(d),
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
        Ok(self.shared.state.read().index.get(key).map(|e| ObjectHead { revision: e.revision, deleting: e.deleting }))
    }

    async fn list(&self, resource: &str, namespace: Option<&str>, selector: &Selector) -> Result<ListResult> {
        let st = self.shared.state.read();
        let start = Key::namespaced(resource, namespace.unwrap_or(""), "");
        let mut items = Vec::new();
        for (k, e) in st
            .index
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(|(k, _)| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
        {
            if selector.matches(&e.labels) {
                items.extend(self.shared.load(&st, k)?);
            }
        }
        Ok(ListResult { items, revision: st.revision })
    }

    async fn watch(&self, request: WatchRequest) -> Result<WatchStream> {
        crate::watch::start(self.shared.clone(), request)
    }

    async fn compact(&self, revision: u64) -> Result<()> {
        match self.submit(Op::Compact { revision }).await? {
            Reply::Done => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    fn stats(&self) -> StoreStats {
        let st = self.shared.state.read();
        StoreStats {
            revision: st.revision,
            compacted: self.shared.compacted.load(Ordering::Relaxed),
            objects: st.index.len() as u64,
            watchers: self.shared.watchers.load(Ordering::Relaxed),
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            writes: self.shared.writes.load(Ordering::Relaxed),
        }
    }
}
