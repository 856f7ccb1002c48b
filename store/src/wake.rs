//! Whom a write wakes. A watch of every kind waits on the published revision; a watch
//! of some kinds waits only on those kinds' signals, so that writes of other kinds
//! cost it nothing — a thousand watchers of tasks sleep through a burst of config
//! maps, and the authorizer's watch of tokens and roles through everything else.
//!
//! A watch that sleeps still has to read past the events it skipped when it next
//! wakes. So that those are always in memory (never read back from disk, never
//! compacted away under it), every such watch is also woken each time the store has
//! taken a quarter of its in-memory event buffer, in events or in bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tokio::sync::watch;

/// The signals of every kind some watch waits on, and the sweep.
pub(crate) struct Signals {
    kinds: RwLock<HashMap<String, watch::Sender<u64>>>,
    sweep: watch::Sender<u64>,
    /// Revisions between two sweeps, at most.
    stride: u64,
    /// Bytes of events between two sweeps, at most.
    stride_bytes: u64,
    /// Bytes of events since the last sweep (only the writer adds to it).
    unswept: AtomicU64,
}

impl Signals {
    /// Signals for a store that keeps `event_buffer` events, of at most
    /// `event_buffer_bytes`, in memory.
    pub(crate) fn new(event_buffer: usize, event_buffer_bytes: u64) -> Self {
        Signals {
            kinds: RwLock::new(HashMap::new()),
            sweep: watch::channel(0).0,
            stride: (event_buffer as u64 / 4).max(1),
            stride_bytes: (event_buffer_bytes / 4).max(1),
            unswept: AtomicU64::new(0),
        }
    }

    /// What a watch of `resources` (every kind when empty) waits on. Taken before the
    /// watch reads the revision it starts from, so that no later write slips by.
    pub(crate) fn subscribe(&self, resources: &[String], published: &watch::Sender<u64>) -> Wake {
        if resources.is_empty() {
            return Wake::Every(published.subscribe());
        }
        let mut kinds = self.kinds.write();
        let receivers = resources
            .iter()
            .map(|r| kinds.entry(r.clone()).or_insert_with(|| watch::channel(0).0).subscribe())
            .collect();
        Wake::Kinds { kinds: receivers, sweep: self.sweep.subscribe() }
    }

    /// The signals of the kinds `written`, to be raised once their events are
    /// published ([`Pending::raise`]).
    pub(crate) fn pending<'a>(&self, written: impl Iterator<Item = &'a str>) -> Pending<'_> {
        let kinds = self.kinds.read();
        let mut raise: Vec<watch::Sender<u64>> = Vec::new();
        for kind in written {
            if let Some(tx) = kinds.get(kind)
                && !raise.iter().any(|r| r.same_channel(tx))
            {
                raise.push(tx.clone());
            }
        }
        Pending { signals: self, raise }
    }
}

/// Signals to raise after a batch is published.
pub(crate) struct Pending<'a> {
    signals: &'a Signals,
    raise: Vec<watch::Sender<u64>>,
}

impl Pending<'_> {
    /// Wakes the watches of the kinds written, and every kind's watches when the
    /// batch (revisions `before + 1 ..= now`, of `bytes` bytes of events) crossed a
    /// sweep.
    pub(crate) fn raise(self, before: u64, now: u64, bytes: u64) {
        for tx in &self.raise {
            tx.send_replace(now);
        }
        let s = self.signals;
        let unswept = s.unswept.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if before / s.stride != now / s.stride || unswept >= s.stride_bytes {
            s.unswept.store(0, Ordering::Relaxed);
            s.sweep.send_replace(now);
        }
    }
}

/// What one watch waits on.
pub(crate) enum Wake {
    /// Every published revision.
    Every(watch::Receiver<u64>),
    /// Writes of these kinds, and sweeps.
    Kinds { kinds: Vec<watch::Receiver<u64>>, sweep: watch::Receiver<u64> },
}

impl Wake {
    /// Resolves when something the watch may want was published. The senders live
    /// as long as the store the watch holds, so this never resolves for nothing.
    pub(crate) async fn changed(&mut self) {
        match self {
            Wake::Every(published) => {
                let _ = published.changed().await;
            }
            Wake::Kinds { kinds, sweep } => {
                let any = futures::future::select_all(kinds.iter_mut().map(|k| Box::pin(k.changed())));
                tokio::select! {
                    _ = any => {}
                    _ = sweep.changed() => {}
                }
            }
        }
    }
}
