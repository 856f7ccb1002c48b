//! Watches. A watch is a cursor, not a task: each event is produced when the consumer
//! asks for the next one — from the newest events kept in memory, or from the log on
//! disk when the watch is further behind — so a client that reads slowly, or not at
//! all, holds its position and at most one small batch, never a growing buffer. A
//! watch that falls behind the retained history ends with `Gone`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;

use crate::codec;
use crate::error::{Error, Result};
use crate::event::{Event, EventType, WatchEvent, WatchRequest, WatchStream};
use crate::key::Key;
use crate::list::ListRequest;
use crate::recent::After;
use crate::sled_store::Shared;

/// Most events taken in one step (from memory, the log, or the initial listing).
const STEP_EVENTS: usize = 16;
/// Most bytes read from disk (or listed) in one step, beyond the first event.
const STEP_BYTES: u64 = 1 << 20;

/// Decrements the watcher count however the watch ends.
struct WatcherGuard(Arc<Shared>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a watch without a starting revision is in listing the objects it starts with.
struct Listing {
    at: u64,
    after: Option<Key>,
}

struct Cursor {
    shared: Arc<Shared>,
    req: WatchRequest,
    /// Every event up to this revision has been delivered or did not match.
    last: u64,
    /// The initial listing, while it lasts.
    listing: Option<Listing>,
    ready: VecDeque<WatchEvent>,
    wake: crate::wake::Wake,
    progress: tokio::sync::watch::Receiver<u64>,
    /// A progress request or the bookmark interval came: bookmark once up to date.
    progress_asked: bool,
    closed: tokio::sync::watch::Receiver<bool>,
    next_bookmark: tokio::time::Instant,
    done: bool,
    _guard: WatcherGuard,
}

pub(crate) fn start(shared: Arc<Shared>, req: WatchRequest) -> Result<WatchStream> {
    let wake = shared.signals.subscribe(&req.resources, &shared.published);
    let current = shared.state.read().revision;
    let compacted = shared.compacted.load(Ordering::Acquire);
    let (last, listing) = match req.from {
        Some(from) if from < compacted => return Err(Error::Gone { requested: from, compacted }),
        // No revision after the current one exists yet; answering it as an error lets
        // a client re-list, where waiting for it could wait forever.
        Some(from) if from > current => return Err(Error::Ahead { requested: from, current }),
        Some(from) => (from, None),
        None => (current, Some(Listing { at: current, after: None })),
    };
    shared.watchers.fetch_add(1, Ordering::Relaxed);
    let cursor = Cursor {
        wake,
        progress: shared.progress.subscribe(),
        progress_asked: false,
        closed: shared.closed.subscribe(),
        next_bookmark: tokio::time::Instant::now() + shared.options.bookmark_interval,
        _guard: WatcherGuard(shared.clone()),
        shared,
        req,
        last,
        listing,
        ready: VecDeque::new(),
        done: false,
    };
    Ok(futures::stream::unfold(cursor, |mut c| async move { c.next().await.map(|e| (e, c)) }).boxed())
}

impl Cursor {
    async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Some(ev);
            }
            if self.done || *self.closed.borrow() {
                return None;
            }
            let step = if self.listing.is_some() { self.list_step().await } else { self.step().await };
            match step {
                Ok(true) => continue,
                Ok(false) => {}
                Err(Error::Gone { compacted, .. }) => {
                    self.ready.push_back(WatchEvent::Gone { compacted });
                    self.done = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch failed");
                    return None;
                }
            }
            if std::mem::take(&mut self.progress_asked) {
                return Some(WatchEvent::Bookmark(self.last));
            }
            // Nothing new: wait for a write, a bookmark, a progress request or the end.
            let bookmark = tokio::time::sleep_until(self.next_bookmark);
            tokio::select! {
                _ = self.wake.changed() => {
                    self.shared.wakeups.fetch_add(1, Ordering::Relaxed);
                }
                _ = self.progress.changed(), if self.req.bookmarks => self.progress_asked = true,
                // Read up to the present first: a watch of some kinds sleeps through
                // other kinds' writes, and the bookmark should carry it past them.
                _ = bookmark, if self.req.bookmarks => {
                    self.next_bookmark = tokio::time::Instant::now() + self.shared.options.bookmark_interval;
                    self.progress_asked = true;
                }
                _ = self.closed.wait_for(|c| *c) => return None,
            }
        }
    }

    /// Takes the next events after `last`; false when there are none yet.
    async fn step(&mut self) -> Result<bool> {
        let after = self.shared.recent.lock().after(self.last, STEP_EVENTS, STEP_BYTES);
        let events = match after {
            After::UpToDate => return Ok(false),
            After::Events(evs) => evs,
            After::InLog => {
                let shared = self.shared.clone();
                let from = self.last + 1;
                tokio::task::spawn_blocking(move || read_log(&shared, from))
                    .await
                    .map_err(|e| Error::Corrupt(format!("log reader failed: {e}")))??
            }
        };
        for ev in events {
            if ev.revision != self.last + 1 {
                // Only compaction makes holes.
                return Err(Error::Gone {
                    requested: self.last,
                    compacted: self.shared.compacted.load(Ordering::Acquire),
                });
            }
            self.last = ev.revision;
            if self.req.matches(&ev.object) {
                self.ready.push_back(WatchEvent::Event(ev));
            }
        }
        Ok(true)
    }

    /// Takes the next objects of the initial listing, as ADDED events.
    async fn list_step(&mut self) -> Result<bool> {
        let Some(listing) = self.listing.as_mut() else { return Ok(true) };
        let req = ListRequest {
            // Several kinds are listed as one (every kind), then filtered.
            resource: match self.req.resources.as_slice() {
                [one] => one.clone(),
                _ => String::new(),
            },
            namespace: self.req.namespace.clone(),
            selector: self.req.selector.clone(),
            at: Some(listing.at),
            after: listing.after.clone(),
            limit: Some(STEP_EVENTS),
            max_bytes: Some(STEP_BYTES),
            count_remaining: false,
        };
        let shared = self.shared.clone();
        let page = tokio::task::spawn_blocking(move || shared.list_page(&req))
            .await
            .map_err(crate::error::list_reader_failed)??;
        listing.after = page.next.clone();
        for o in page.items.into_iter().filter(|o| self.req.matches(o)) {
            let ev = Event { revision: o.revision, event_type: EventType::Added, object: o };
            self.ready.push_back(WatchEvent::Event(Arc::new(ev)));
        }
        if page.next.is_none() {
            self.listing = None;
        }
        Ok(true)
    }
}

/// The events from revision `from` on, as many as one step takes. Every revision has
/// an event, so a missing one means compaction overtook the reader.
fn read_log(shared: &Shared, from: u64) -> Result<Vec<Arc<Event>>> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    for kv in shared.data.range(codec::event_key(from)..=codec::event_key(u64::MAX)) {
        let (k, v) = kv?;
        let ev = match codec::decode_event(&shared.blobs, &k, &v) {
            Ok(ev) => ev,
            // Its file went with a compaction that overtook this read.
            Err(_) if codec::event_revision(&k)? <= shared.compacted.load(Ordering::Acquire) => break,
            Err(e) => return Err(e),
        };
        bytes += ev.object.json.len() as u64;
        out.push(Arc::new(ev));
        if out.len() >= STEP_EVENTS || bytes > STEP_BYTES {
            break;
        }
    }
    if out.first().is_none_or(|e| e.revision != from) {
        let compacted = shared.compacted.load(Ordering::Acquire);
        if from <= compacted {
            return Err(Error::Gone { requested: from - 1, compacted });
        }
        if out.is_empty() {
            return Ok(out);
        }
        return Err(Error::Corrupt(format!("the event of revision {from} is missing")));
    }
    Ok(out)
}
