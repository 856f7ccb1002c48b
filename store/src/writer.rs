//! The single writer: batches requests, decides them, commits and flushes once per
//! batch (group commit), then publishes and acknowledges.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::codec;
use crate::decide::{Change, Write};
use crate::error::{Error, Result};
use crate::history::{Entry, Revision};
use crate::key::Key;
use crate::object::StoredObject;
use crate::sled_store::Shared;
use crate::storage::{DeleteOutcome, TxnOutcome, UpdateOutcome};

/// A mutation asked of the writer.
#[derive(Debug)]
pub(crate) enum Op {
    /// One create, update or delete.
    Write(Write),
    Compact {
        revision: u64,
    },
    /// All of them, or none: each takes the next revision, and all are committed in
    /// one batch.
    Txn {
        writes: Vec<Write>,
    },
}

/// The writer's answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Object(Arc<StoredObject>),
    Update(UpdateOutcome),
    Delete(DeleteOutcome),
    Done,
    Txn(Vec<Reply>),
}

impl Op {
    /// How many writes it makes at most.
    fn writes(&self) -> usize {
        match self {
            Op::Txn { writes } => writes.len().max(1),
            _ => 1,
        }
    }
}

pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Reply>>,
}

/// How often an idle writer checks whether the log needs compacting.
const IDLE_CHECK: Duration = Duration::from_secs(5);

pub(crate) fn run(shared: Arc<Shared>, rx: Receiver<Request>) {
    loop {
        let first = match rx.recv_timeout(IDLE_CHECK) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                auto_compact(&shared);
                if !shared.unlink.lock().is_empty() {
                    match shared.db.flush() {
                        Ok(_) => unlink_compacted(&shared),
                        Err(e) => tracing::warn!(error = %e, "flush failed"),
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        // Bounded in writes, not requests: a transaction of hundreds of writes (an
        // offer's accept) fills a batch as much as hundreds of single writes do, and
        // every request queued behind a batch waits for all of it.
        let mut writes = first.op.writes();
        let mut batch = vec![first];
        while writes < shared.options.max_batch {
            match rx.try_recv() {
                Ok(r) => {
                    writes += r.op.writes();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        process(&shared, batch);
        auto_compact(&shared);
    }
    if let Err(e) = shared.db.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}

fn process(shared: &Shared, batch: Vec<Request>) {
    let now = corral_api::meta::now_timestamp();
    // State of keys as this batch changes them.
    let mut overlay: HashMap<Key, Option<Arc<StoredObject>>> = HashMap::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut replies: Vec<(oneshot::Sender<Result<Reply>>, Result<Reply>)> = Vec::with_capacity(batch.len());
    let mut compactions = Vec::new();
    {
        let st = shared.state.read();
        let mut rev = st.revision;
        for req in batch {
            let write = match req.op {
                Op::Compact { revision } => {
                    compactions.push((revision, req.reply));
                    continue;
                }
                Op::Txn { writes } => {
                    let r = decide_txn(shared, &st, writes, &mut overlay, &mut changes, &mut rev, &now);
                    replies.push((req.reply, r));
                    continue;
                }
                Op::Write(w) => w,
            };
            let current = match overlay.get(write.key()) {
                Some(v) => Ok(v.clone()),
                None => shared.load(&st, write.key()),
            };
            let current = match current {
                Ok(c) => c,
                Err(e) => {
                    replies.push((req.reply, Err(e)));
                    continue;
                }
            };
            match decide(write, current, rev + 1, &now) {
                Ok((reply, change)) => {
                    if let Some(c) = change {
                        rev += 1;
                        overlay.insert(c.key.clone(), c.new.clone());
                        changes.push(c);
                    }
                    replies.push((req.reply, Ok(reply)));
                }
                Err(e) => replies.push((req.reply, Err(e))),
            }
        }
    }

    if !changes.is_empty()
        && let Err(e) = prepare(shared, &changes)
    {
        // Nothing was applied: every write of the batch is refused, the store stays
        // writable and the next batch tries again.
        tracing::warn!(error = %e, "writes refused");
        for (tx, r) in replies {
            let _ = tx.send(match (r, &e) {
                (Ok(_), Error::NoSpace(m)) => Err(Error::NoSpace(m.clone())),
                (Ok(_), other) => Err(Error::Io(other.to_string())),
                (Err(e), _) => Err(e),
            });
        }
        for (revision, tx) in compactions {
            let _ = tx.send(compact(shared, revision).map(|()| Reply::Done));
        }
        return;
    }
    if !changes.is_empty() {
        if let Err(e) = commit(shared, &changes) {
            // The disk state is unknown relative to memory: refuse further writes
            // rather than risk acknowledging something inconsistent.
            tracing::error!(error = %e, "store commit failed; store is now read-only");
            shared.poisoned.store(true, Ordering::Release);
            for (tx, r) in replies {
                let _ = tx.send(match r {
                    Ok(_) => Err(Error::Closed),
                    Err(e) => Err(e),
                });
            }
            for (_, tx) in compactions {
                let _ = tx.send(Err(Error::Closed));
            }
            return;
        }
        let at = Instant::now();
        let mut st = shared.state.write();
        let mut recent = shared.recent.lock();
        let before = st.revision;
        let mut bytes = 0u64;
        let wake = shared.signals.pending(changes.iter().map(|c| c.key.resource.as_str()));
        for c in changes {
            // One lookup: the entry replaced, and the index's copy of the key to share.
            let (key, prev) = match st.index.get_key_value(&c.key) {
                Some((k, e)) => (k.clone(), Some(e.clone())),
                None => (Arc::new(c.key), None),
            };
            match &c.new {
                Some(o) => {
                    let entry = Entry {
                        revision: o.revision,
                        labels: o.labels.clone(),
                        deleting: c.deleting,
                        size: o.json.len() as u64,
                    };
                    st.insert(key.clone(), entry);
                }
                None => st.remove(&key),
            }
            st.revision = c.event.revision;
            st.history.push(Revision {
                revision: c.event.revision,
                key,
                prev,
                deleted: c.new.is_none(),
                bytes: c.event.object.json.len() as u64,
                at,
            });
            bytes += c.event.object.json.len() as u64;
            recent.push(c.event);
        }
        // Published under the state lock, so that a watch that read the state sees
        // every later event, and none before.
        shared.published.send_replace(st.revision);
        wake.raise(before, st.revision, bytes);
    }
    for (tx, r) in replies {
        let _ = tx.send(r);
    }
    for (revision, tx) in compactions {
        let _ = tx.send(compact(shared, revision).map(|()| Reply::Done));
    }
}

/// Decides every mutation of a transaction against the batch's state so far; only if
/// all succeed do their changes join the batch.
fn decide_txn(
    shared: &Shared,
    st: &crate::sled_store::State,
    writes: Vec<Write>,
    overlay: &mut HashMap<Key, Option<Arc<StoredObject>>>,
    changes: &mut Vec<Change>,
    rev: &mut u64,
    now: &str,
) -> Result<Reply> {
    let mut local: HashMap<Key, Option<Arc<StoredObject>>> = HashMap::new();
    let mut mine: Vec<Change> = Vec::new();
    let mut replies = Vec::with_capacity(writes.len());
    let mut at = *rev;
    for write in writes {
        let current = match local.get(write.key()).or_else(|| overlay.get(write.key())) {
            Some(v) => v.clone(),
            None => shared.load(st, write.key())?,
        };
        let (reply, change) = decide(write, current, at + 1, now)?;
        if let Some(c) = change {
            at += 1;
            local.insert(c.key.clone(), c.new.clone());
            mine.push(c);
        }
        replies.push(reply);
    }
    overlay.extend(local);
    changes.extend(mine);
    *rev = at;
    Ok(Reply::Txn(replies))
}

/// What must hold before a batch touches the database: room on the disk (the batch
/// and a reserve, so that sled itself never meets a full disk) and the files of its
/// large objects, durable before the records that point at them.
fn prepare(shared: &Shared, changes: &[Change]) -> Result<()> {
    let bytes: u64 = changes.iter().map(|c| c.event.object.json.len() as u64 + 256).sum();
    let free = free_bytes(&shared.dir);
    let reserve = shared.options.min_free_bytes;
    if free < bytes.saturating_add(reserve) {
        shared.disk_full.store(true, Ordering::Release);
        return Err(Error::NoSpace(format!(
            "{} has {} MiB free and the store keeps {} MiB in reserve; free space on it and retry",
            shared.dir.display(),
            free >> 20,
            reserve >> 20
        )));
    }
    shared.disk_full.store(false, Ordering::Release);
    let mut written = Vec::new();
    for c in changes {
        if c.event.object.json.len() >= crate::blobs::THRESHOLD {
            let r = shared.blobs.write(c.event.revision, &c.event.object.json);
            written.push(c.event.revision);
            if let Err(e) = r {
                for rev in written {
                    shared.blobs.remove(rev);
                }
                if matches!(e, Error::NoSpace(_)) {
                    shared.disk_full.store(true, Ordering::Release);
                }
                return Err(e);
            }
        }
    }
    if !written.is_empty() {
        shared.blobs.sync_dir()?;
    }
    Ok(())
}

/// Bytes free for an unprivileged writer on the filesystem of `dir`.
pub(crate) fn free_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return u64::MAX };
    // SAFETY: statvfs writes only into the struct passed; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return u64::MAX;
    }
    (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
}

fn commit(shared: &Shared, changes: &[Change]) -> Result<()> {
    let mut batch = sled::Batch::default();
    for c in changes {
        let key = codec::object_key(&c.key);
        match &c.new {
            Some(o) => batch.insert(key, &codec::rev_key(o.revision)[..]),
            None => batch.remove(key),
        }
        batch.insert(&codec::event_key(c.event.revision)[..], codec::encode_event(&c.event));
    }
    let last = changes.last().map(|c| c.event.revision).unwrap_or_default();
    batch.insert(codec::META_REVISION, &codec::rev_key(last)[..]);
    // One atomic batch, then one fsync for every write in it: the group commit.
    shared.data.apply_batch(batch)?;
    shared.db.flush()?;
    unlink_compacted(shared);
    if let Err(e) = shared.marker.record(last) {
        tracing::error!(error = %e, "cannot record the acknowledged revision");
    }
    shared.flushes.fetch_add(1, Ordering::Relaxed);
    shared.writes.fetch_add(changes.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Deletes the files of compacted events; call after a flush.
fn unlink_compacted(shared: &Shared) {
    let revs = std::mem::take(&mut *shared.unlink.lock());
    for rev in revs {
        shared.blobs.remove(rev);
    }
}

fn auto_compact(shared: &Shared) {
    let target = {
        let st = shared.state.read();
        st.history.compaction_target(st.revision, shared.options.retention(st.live_bytes), Instant::now())
    };
    if let Some(floor) = target
        && let Err(e) = compact(shared, floor)
    {
        tracing::warn!(error = %e, "automatic compaction failed");
    }
}

/// Raises the compaction floor to `revision` (capped at the current one and at the
/// lowest pinned one) and drops the events that hold no state at or after it.
fn compact(shared: &Shared, revision: u64) -> Result<()> {
    let dead = {
        let mut st = shared.state.write();
        // A pinned revision must stay readable: the floor may reach it, not pass it.
        let pinned = shared.pins.lock().keys().next().copied().unwrap_or(u64::MAX);
        let revision = revision.min(st.revision).min(pinned);
        if revision <= shared.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        // Published before the events disappear, so a reader that finds one missing
        // learns why (Gone) rather than reporting a hole.
        shared.compacted.store(revision, Ordering::Release);
        st.history.compact(revision)
    };
    let floor = shared.compacted.load(Ordering::Acquire);
    let mut batch = sled::Batch::default();
    batch.insert(codec::META_COMPACTED, &codec::rev_key(floor)[..]);
    for rev in &dead {
        batch.remove(&codec::event_key(*rev)[..]);
    }
    // Made durable with the next commit's flush: until then a crash only keeps some
    // events longer, and the floor and removals land together or not at all.
    shared.data.apply_batch(batch)?;
    // Their files go once the removal is durable; a crash before would leave records
    // pointing at nothing.
    shared.unlink.lock().extend(dead.iter().copied());
    tracing::debug!(revision = floor, events = dead.len(), "history compacted");
    Ok(())
}

/// Decides one mutation of the writer's through the shared decision logic.
fn decide(write: Write, current: Option<Arc<StoredObject>>, rev: u64, now: &str) -> Result<(Reply, Option<Change>)> {
    let (outcome, change) = crate::decide::decide(write, current, rev, now)?;
    let reply = match outcome {
        TxnOutcome::Created(o) => Reply::Object(o),
        TxnOutcome::Updated(u) => Reply::Update(u),
        TxnOutcome::Deleted(d) => Reply::Delete(d),
    };
    Ok((reply, change))
}
