//! Watches: replay from the durable event log, then live events from the writer's
//! broadcast. A watcher that falls behind the broadcast re-reads the log, so a slow
//! consumer costs disk reads, not unbounded memory, and never misses an event.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};

use crate::codec;
use crate::error::{Error, Result};
use crate::event::{Event, EventType, WatchEvent, WatchRequest, WatchStream};
use crate::sled_store::Shared;

/// Events read from the log per blocking call during replay.
const REPLAY_CHUNK: usize = 1024;

/// Decrements the watcher count however the watch ends.
struct WatcherGuard(Arc<Shared>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn start(shared: Arc<Shared>, req: WatchRequest) -> Result<WatchStream> {
    if let Some(from) = req.from {
        let compacted = shared.compacted.load(Ordering::Acquire);
        if from < compacted {
            return Err(Error::Gone { requested: from, compacted });
        }
    }
    // Subscribe and read the revision under the state lock: the writer publishes under
    // the write lock, so `live` holds exactly the events after `revision`.
    let (live, revision, snapshot) = {
        let st = shared.state.read();
        // No revision after the current one exists yet; answering it as Gone lets a
        // client re-list, where waiting for it could wait forever (and `from + 1`
        // could overflow).
        if let Some(from) = req.from
            && from > st.revision
        {
            return Err(Error::Ahead { requested: from, current: st.revision });
        }
        let live = shared.events_tx.subscribe();
        let mut snapshot = Vec::new();
        if req.from.is_none() {
            for (k, e) in &st.index {
                if req.matches_parts(k, &e.labels) {
                    snapshot.extend(shared.load(&st, k)?);
                }
            }
        }
        (live, st.revision, snapshot)
    };
    shared.watchers.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<WatchEvent>(256);
    tokio::spawn(async move {
        let _guard = WatcherGuard(shared.clone());
        let mut closed = shared.closed.subscribe();
        let run = run(shared.clone(), req, live, revision, snapshot, tx);
        tokio::select! {
            _ = run => {}
            _ = closed.wait_for(|c| *c) => {}
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed())
}

async fn run(
    shared: Arc<Shared>,
    req: WatchRequest,
    mut live: broadcast::Receiver<Arc<Event>>,
    revision: u64,
    snapshot: Vec<Arc<crate::object::StoredObject>>,
    tx: mpsc::Sender<WatchEvent>,
) {
    let mut last = match req.from {
        Some(from) => match replay(&shared, &req, from, revision, &tx).await {
            Ok(()) => revision,
            Err(ReplayEnd::Gone(c)) => {
                let _ = tx.send(WatchEvent::Gone { compacted: c }).await;
                return;
            }
            Err(ReplayEnd::Closed) => return,
        },
        None => {
            for o in snapshot {
                let ev = Event { revision: o.revision, event_type: EventType::Added, object: o };
                if tx.send(WatchEvent::Event(Arc::new(ev))).await.is_err() {
                    return;
                }
            }
            revision
        }
    };
    let mut bookmarks = tokio::time::interval(shared.options.bookmark_interval);
    bookmarks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    bookmarks.tick().await;
    loop {
        tokio::select! {
            ev = live.recv() => match ev {
                Ok(ev) => {
                    if ev.revision <= last {
                        continue;
                    }
                    last = ev.revision;
                    if req.matches(&ev.object) && tx.send(WatchEvent::Event(ev)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the live buffer: resubscribe, then fill the gap from the log.
                    let (fresh, now) = {
                        let st = shared.state.read();
                        (shared.events_tx.subscribe(), st.revision)
                    };
                    live = fresh;
                    match replay(&shared, &req, last, now, &tx).await {
                        Ok(()) => last = now,
                        Err(ReplayEnd::Gone(c)) => {
                            let _ = tx.send(WatchEvent::Gone { compacted: c }).await;
                            return;
                        }
                        Err(ReplayEnd::Closed) => return,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = bookmarks.tick(), if req.bookmarks => {
                if tx.send(WatchEvent::Bookmark(last)).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}

enum ReplayEnd {
    Gone(u64),
    Closed,
}

/// Sends the matching events in `(from, to]` from the log. Every revision has an
/// event, so a missing one means compaction overtook us.
async fn replay(
    shared: &Arc<Shared>,
    req: &WatchRequest,
    from: u64,
    to: u64,
    tx: &mpsc::Sender<WatchEvent>,
) -> Result<(), ReplayEnd> {
    let mut next = from + 1;
    while next <= to {
        let s = shared.clone();
        let end = to.min(next + REPLAY_CHUNK as u64 - 1);
        let chunk =
            tokio::task::spawn_blocking(move || read_events(&s, next, end)).await.map_err(|_| ReplayEnd::Closed)?;
        let events = match chunk {
            Ok(evs) => evs,
            Err(e) => {
                tracing::warn!(error = %e, "watch replay failed");
                return Err(ReplayEnd::Closed);
            }
        };
        for ev in events {
            if ev.revision != next {
                return Err(ReplayEnd::Gone(shared.compacted.load(Ordering::Acquire)));
            }
            next += 1;
            if req.matches(&ev.object) && tx.send(WatchEvent::Event(Arc::new(ev))).await.is_err() {
                return Err(ReplayEnd::Closed);
            }
        }
        if next <= end {
            return Err(ReplayEnd::Gone(shared.compacted.load(Ordering::Acquire)));
        }
    }
    Ok(())
}

fn read_events(shared: &Shared, from: u64, to: u64) -> Result<Vec<Event>> {
    shared
        .data
        .range(codec::event_key(from)..=codec::event_key(to))
        .map(|kv| {
            let (k, v) = kv?;
            codec::decode_event(&k, &v)
        })
        .collect()
}
