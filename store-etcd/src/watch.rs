//! Watches: one etcd watch per Corral watch, on the smallest key range that holds
//! what it wants (one kind, or one namespace of it), from the revision after the
//! one asked for, with each deletion's previous state. etcd answers a watch from a
//! compacted revision by cancelling it with the compaction revision: that ends the
//! Corral watch with `Gone`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use corral_store::{Error, Event, EventType, Key, ListRequest, Result, WatchEvent, WatchRequest, WatchStream};
use etcd_client::{WatchOptions, WatchRequestSender, WatchResponse, WatchResponseStream};
use futures::StreamExt;
use serde_json::json;

use crate::codec;
use crate::store::{Inner, backend, reaching};

/// Objects listed per step of a watch's initial listing.
const LIST_STEP: usize = 64;

/// Decrements the watcher count however the watch ends.
struct WatcherGuard(Arc<Inner>);

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
    inner: Arc<Inner>,
    req: WatchRequest,
    /// Every event up to this revision has been delivered or did not match.
    last: u64,
    /// The revision of a progress notification not yet confirmed by a later one.
    ///
    /// etcd before 3.4.25 and 3.5.8 (etcd-io/etcd#15220) may send a requested
    /// progress notification ahead of events it has yet to send this watch, so a
    /// notification's revision is trusted only once a later notification arrives:
    /// the events it was ahead of were queued before it, and are sent by then. A
    /// bookmark at an untrusted revision could have a client resume after an event
    /// it never saw.
    unconfirmed: Option<u64>,
    /// Whether progress is to be asked again, to confirm `unconfirmed`.
    confirm: bool,
    listing: Option<Listing>,
    ready: VecDeque<WatchEvent>,
    sender: WatchRequestSender,
    responses: WatchResponseStream,
    progress: tokio::sync::watch::Receiver<u64>,
    /// Whether the store still asks for progress (it is not dropped).
    progress_alive: bool,
    next_bookmark: tokio::time::Instant,
    done: bool,
    /// Resumptions since etcd last answered this watch: bounded, so that a watch
    /// whose every new stream ends at once (the store is closing) ends too.
    resumed: u32,
    _guard: WatcherGuard,
}

/// Resumptions in a row, with no answer between them, after which a watch ends.
const RESUMPTIONS: u32 = 5;

/// The key range a watch reads: as narrow as its filters allow.
fn range(inner: &Inner, req: &WatchRequest) -> Vec<u8> {
    let mut base = inner.prefix.clone();
    if let [one] = req.resources.as_slice() {
        base.extend_from_slice(one.as_bytes());
        base.push(0);
        if let Some(ns) = &req.namespace {
            base.extend_from_slice(ns.as_bytes());
            base.push(0);
        }
    }
    base
}

pub(crate) async fn start(inner: Arc<Inner>, req: WatchRequest) -> Result<WatchStream> {
    let current = inner.current_revision().await?;
    let (last, listing) = match req.from {
        // No revision after the current one exists yet; answering it as an error lets a
        // client re-list, where waiting for it could wait forever.
        Some(from) if from > current => return Err(Error::Ahead { requested: from, current }),
        Some(from) => {
            inner.check_watchable(from).await?;
            (from, None)
        }
        None => (current, Some(Listing { at: current, after: None })),
    };
    // Opened before the listing is read, from the revision after it: nothing written
    // meanwhile is missed, nothing listed comes again.
    let (sender, responses) = open(&inner, &req, last).await?;
    inner.watchers.fetch_add(1, Ordering::Relaxed);
    let cursor = Cursor {
        progress: inner.progress.subscribe(),
        progress_alive: true,
        next_bookmark: tokio::time::Instant::now() + inner.options.bookmark_interval,
        _guard: WatcherGuard(inner.clone()),
        inner,
        req,
        last,
        unconfirmed: None,
        confirm: false,
        listing,
        ready: VecDeque::new(),
        sender,
        responses,
        done: false,
        resumed: 0,
    };
    Ok(futures::stream::unfold(cursor, |mut c| async move { c.next().await.map(|e| (e, c)) }).boxed())
}

/// An etcd watch of what `req` wants, from the revision after `last`.
async fn open(inner: &Inner, req: &WatchRequest, last: u64) -> Result<(WatchRequestSender, WatchResponseStream)> {
    let base = range(inner, req);
    let opts =
        WatchOptions::new().with_range(codec::prefix_end(&base)).with_start_revision(last as i64 + 1).with_prev_key();
    let stream = reaching(true, || {
        let (mut client, base, opts) = (inner.client.watch_client(), base.clone(), opts.clone());
        async move { client.watch(base, Some(opts)).await }
    })
    .await
    .map_err(backend)?;
    Ok(stream.split())
}

impl Cursor {
    /// Opens the etcd watch again from the revision after the last one delivered;
    /// false when no member could take it within the store's attempts (the watch
    /// ends, and its reader resumes from its last revision as after any end).
    async fn reopen(&mut self, why: &str) -> bool {
        if self.resumed >= RESUMPTIONS {
            tracing::warn!(reason = why, "etcd watch interrupted again at once; ending it");
            return false;
        }
        self.resumed += 1;
        tracing::info!(reason = why, from = self.last + 1, "etcd watch interrupted; resuming on another member");
        // A notification of the old stream is confirmed by one of the same stream only.
        self.unconfirmed = None;
        match open(&self.inner, &self.req, self.last).await {
            Ok((sender, responses)) => {
                self.sender = sender;
                self.responses = responses;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot resume the etcd watch");
                false
            }
        }
    }

    async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Some(ev);
            }
            if self.done {
                return None;
            }
            if self.listing.is_some() {
                match self.list_step().await {
                    Ok(()) => continue,
                    Err(Error::Gone { compacted, .. }) => {
                        self.ready.push_back(WatchEvent::Gone { compacted });
                        self.done = true;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watch listing failed");
                        return None;
                    }
                }
            }
            let bookmark = tokio::time::sleep_until(self.next_bookmark);
            let ask = tokio::select! {
                msg = self.responses.message() => match msg {
                    Ok(Some(resp)) => {
                        if let Err(e) = self.absorb(resp) {
                            tracing::warn!(error = %e, "watch failed");
                            return None;
                        }
                        std::mem::take(&mut self.confirm)
                    }
                    // The member serving this watch went away (crashed, restarted,
                    // partitioned): go on from the next revision on another member, so
                    // that no event is missed or repeated and the watcher never knows.
                    Ok(None) => {
                        if !self.reopen("the etcd watch stream ended").await {
                            return None;
                        }
                        false
                    }
                    Err(e) => {
                        if !self.reopen(&e.to_string()).await {
                            return None;
                        }
                        false
                    }
                },
                changed = self.progress.changed(), if self.req.bookmarks && self.progress_alive => {
                    self.progress_alive = changed.is_ok();
                    changed.is_ok()
                }
                _ = bookmark, if self.req.bookmarks => {
                    self.next_bookmark = tokio::time::Instant::now() + self.inner.options.bookmark_interval;
                    true
                }
            };
            // etcd answers a progress request once it has sent this watch every event
            // up to the revision it reports (see `absorb`).
            if ask && let Err(e) = self.sender.request_progress().await {
                tracing::warn!(error = %e, "etcd watch progress request failed");
                return None;
            }
        }
    }

    /// Takes in one answer of etcd's.
    fn absorb(&mut self, resp: WatchResponse) -> Result<()> {
        if resp.canceled() {
            self.done = true;
            if resp.compact_revision() > 0 {
                self.ready.push_back(WatchEvent::Gone { compacted: resp.compact_revision() as u64 });
                return Ok(());
            }
            return Err(Error::Backend(format!("etcd cancelled the watch: {}", resp.cancel_reason())));
        }
        if resp.created() {
            return Ok(());
        }
        self.resumed = 0;
        let header = self.inner.note(resp.header());
        if resp.events().is_empty() {
            // A progress notification: every event of the range up to the header's
            // revision has been sent — once a later notification confirms it (see
            // `unconfirmed`). The first of a pair asks for the second at once, so a
            // request for progress is still answered with a bookmark at the revision
            // it was asked at; the second's own revision waits for the next request.
            let p = progress(self.last, self.unconfirmed, header);
            (self.last, self.unconfirmed, self.confirm) = (p.last, p.unconfirmed, p.confirm);
            if p.bookmark && self.req.bookmarks {
                self.ready.push_back(WatchEvent::Bookmark(self.last));
            }
            return Ok(());
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some(key) = self.inner.decode_key(kv.key()) else { continue };
            let revision = kv.mod_revision() as u64;
            let (event_type, object) = match ev.event_type() {
                etcd_client::EventType::Put => {
                    let t = if kv.version() == 1 { EventType::Added } else { EventType::Modified };
                    (t, codec::decode(key, revision, kv.value())?)
                }
                etcd_client::EventType::Delete => {
                    let object = match ev.prev_kv() {
                        Some(prev) => codec::decode(key, revision, prev.value())?,
                        // etcd keeps the previous state unless it was compacted first:
                        // all that is left to say is which object went.
                        None => {
                            let mut meta = json!({"name": key.name, "resourceVersion": revision.to_string()});
                            if !key.namespace.is_empty() {
                                meta["namespace"] = json!(key.namespace);
                            }
                            corral_store::StoredObject::from_value(key, revision, &json!({ "metadata": meta }))?
                        }
                    };
                    (EventType::Deleted, object)
                }
            };
            self.last = self.last.max(revision);
            if self.req.matches(&object) {
                let event = Event { revision, event_type, object: Arc::new(object) };
                self.ready.push_back(WatchEvent::Event(Arc::new(event)));
            }
        }
        Ok(())
    }

    /// Takes the next objects of the initial listing, as ADDED events.
    async fn list_step(&mut self) -> Result<()> {
        let Some(listing) = self.listing.as_mut() else { return Ok(()) };
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
            limit: Some(LIST_STEP),
            max_bytes: None,
            count_remaining: false,
        };
        let page = self.inner.list_page(&req).await?;
        listing.after = page.next.clone();
        for o in page.items.into_iter().filter(|o| self.req.matches(o)) {
            let ev = Event { revision: o.revision, event_type: EventType::Added, object: o };
            self.ready.push_back(WatchEvent::Event(Arc::new(ev)));
        }
        if page.next.is_none() {
            self.listing = None;
        }
        Ok(())
    }
}

/// What a progress notification at `header` does to a watch that has delivered every
/// event up to `last` and holds an `unconfirmed` notification (see
/// [`Cursor::unconfirmed`]).
#[derive(Debug, PartialEq)]
struct Progress {
    last: u64,
    unconfirmed: Option<u64>,
    /// Whether the watch says how far it has read.
    bookmark: bool,
    /// Whether progress is asked again, to confirm `unconfirmed`.
    confirm: bool,
}

fn progress(last: u64, unconfirmed: Option<u64>, header: u64) -> Progress {
    match unconfirmed {
        // Nothing claimed beyond what was delivered.
        _ if header <= last => Progress { last, unconfirmed: None, bookmark: true, confirm: false },
        Some(earlier) => Progress { last: last.max(earlier), unconfirmed: None, bookmark: true, confirm: false },
        None => Progress { last, unconfirmed: Some(header), bookmark: false, confirm: true },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_ahead_of_the_events_is_trusted_only_once_a_later_one_arrives() {
        // Events up to 10 delivered; etcd says 12 while 11 and 12 may still be queued.
        let first = progress(10, None, 12);
        assert_eq!(first, Progress { last: 10, unconfirmed: Some(12), bookmark: false, confirm: true });
        // Event 11 arrives meanwhile; the second notification confirms the first's 12,
        // not its own 15.
        let second = progress(11, first.unconfirmed, 15);
        assert_eq!(second, Progress { last: 12, unconfirmed: None, bookmark: true, confirm: false });
    }

    #[test]
    fn a_notification_at_what_was_delivered_is_a_bookmark_at_once() {
        assert_eq!(progress(12, None, 12), Progress { last: 12, unconfirmed: None, bookmark: true, confirm: false });
        assert_eq!(
            progress(12, Some(11), 12),
            Progress { last: 12, unconfirmed: None, bookmark: true, confirm: false }
        );
    }
}
