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
use crate::storage::{DeleteOutcome, ListResult, Storage, StoreStats, UpdateOutcome};
use crate::writer::{self, Op, Reply, Request};

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
            event_buffer: 16 * 1024,
            max_batch: 1024,
        }
    }
}

/// Objects and their current revision, as last made durable.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) objects: BTreeMap<Key, Arc<StoredObject>>,
    pub(crate) revision: u64,
}

pub(crate) struct Shared {
    pub(crate) db: sled::Db,
    pub(crate) objects: sled::Tree,
    pub(crate) events: sled::Tree,
    pub(crate) meta: sled::Tree,
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
        let objects = db.open_tree("objects")?;
        let events = db.open_tree("events")?;
        let meta = db.open_tree("meta")?;
        let revision = meta.get(codec::META_REVISION)?.map(|v| codec::decode_u64(&v)).transpose()?.unwrap_or(0);
        let compacted = meta.get(codec::META_COMPACTED)?.map(|v| codec::decode_u64(&v)).transpose()?.unwrap_or(0);
        let mut state = State { objects: BTreeMap::new(), revision };
        for kv in objects.iter() {
            let (k, v) = kv?;
            let key = Key::decode(&k).ok_or_else(|| Error::Corrupt("undecodable object key".into()))?;
            let obj = StoredObject::from_json(key.clone(), bytes::Bytes::copy_from_slice(&v))?;
            if obj.revision > revision {
                return Err(Error::Corrupt(format!(
                    "{key} is at revision {} beyond the store's {revision}",
                    obj.revision
                )));
            }
            state.objects.insert(key, Arc::new(obj));
        }
        tracing::info!(path = %path.as_ref().display(), revision, compacted, objects = state.objects.len(), "store opened");
        let (events_tx, _) = broadcast::channel(options.event_buffer);
        let (closed, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            db,
            objects,
            events,
            meta,
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
        Ok(self.shared.state.read().objects.get(key).cloned())
    }

    async fn list(&self, resource: &str, namespace: Option<&str>, selector: &Selector) -> Result<ListResult> {
        let st = self.shared.state.read();
        let start = Key::namespaced(resource, namespace.unwrap_or(""), "");
        let items = st
            .objects
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(|(k, _)| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
            .filter(|(_, o)| selector.matches(&o.labels))
            .map(|(_, o)| o.clone())
            .collect();
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
            objects: st.objects.len() as u64,
            watchers: self.shared.watchers.load(Ordering::Relaxed),
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            writes: self.shared.writes.load(Ordering::Relaxed),
        }
    }
}
