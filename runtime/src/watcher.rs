//! The watcher: list, then watch from the list's revision, resume after a disconnect,
//! list again when the revision is compacted — reporting what it sees, keeping nothing.
//! Every list is read in pages of [`DEFAULT_PAGE_SIZE`] objects (one snapshot, as
//! [`Api::list_all`] guarantees), so no answer is ever as large as the whole kind.
//! [`Reflector`](crate::Reflector) builds its cache on it; a controller that must see
//! every object of many kinds but keep only a few (the garbage collector) uses it
//! directly.

use std::future::Future;
use std::time::Duration;

use corral_client::{Api, DEFAULT_PAGE_SIZE, ListParams, ObjectType, WatchEvent, WatchParams};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// What a watcher reports.
#[derive(Debug)]
pub enum Seen<K> {
    /// A fresh list: exactly the objects there are now (at `revision`); anything
    /// reported before and missing here is gone.
    Listed {
        /// The objects.
        objects: Vec<K>,
        /// The list's revision.
        revision: u64,
    },
    /// Created, changed, or started to match the selectors.
    Applied(K),
    /// Gone, or stopped matching the selectors; its last state.
    Deleted(K),
    /// Every change up to this revision has been reported.
    Bookmark(u64),
}

/// Watches the objects `api` reaches that `params` selects until `shutdown` is
/// cancelled, calling `on_seen` for each thing seen and awaiting what it returns before
/// reading on (so a slow consumer holds the watch back instead of piling events up);
/// `events` (if given) counts the watch events received.
///
/// # Guarantees
/// After each `Listed`, every change is reported once, in revision order, unless the
/// server compacted it away, in which case a new `Listed` says where things stand.
pub async fn watch<K, F, Fut>(
    api: Api<K>,
    params: ListParams,
    shutdown: CancellationToken,
    events: Option<Counter>,
    mut on_seen: F,
) where
    K: ObjectType,
    F: FnMut(Seen<K>) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    let mut from: Option<u64> = None;
    let mut failures: u32 = 0;
    while !shutdown.is_cancelled() {
        let step = async {
            let revision = match from {
                Some(r) => r,
                None => {
                    let list = api.list_all(&params, DEFAULT_PAGE_SIZE).await?;
                    let revision = list.revision();
                    on_seen(Seen::Listed { objects: list.items, revision }).await;
                    revision
                }
            };
            follow(&api, &params, revision, &mut from, events.as_ref(), &mut on_seen).await
        };
        let outcome = tokio::select! {
            r = step => r,
            _ = shutdown.cancelled() => return,
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(Error::Gone) => {
                tracing::info!(resource = %api.kind().resource(), "watch revision compacted; re-listing");
                from = None;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = crate::queue::backoff_delay(Duration::from_millis(50), Duration::from_secs(5), failures);
                let level_debug = matches!(e, Error::StreamEnded) && failures == 1;
                if level_debug {
                    tracing::debug!(resource = %api.kind().resource(), "watch ended; resuming");
                } else {
                    tracing::warn!(resource = %api.kind().resource(), error = %e, ?delay, "watch interrupted; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Watches from `revision`, reporting each change and keeping `from` at the last
/// revision reported. Ends with the reason the watch stopped.
async fn follow<K, F, Fut>(
    api: &Api<K>,
    params: &ListParams,
    revision: u64,
    from: &mut Option<u64>,
    events: Option<&Counter>,
    on_seen: &mut F,
) -> Result<()>
where
    K: ObjectType,
    F: FnMut(Seen<K>) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    *from = Some(revision);
    let watch =
        WatchParams { resource_version: Some(revision.to_string()), bookmarks: true, ..WatchParams::from_list(params) };
    let mut stream = match api.watch(&watch).await {
        Err(e) if e.is_gone() => return Err(Error::Gone),
        other => other?,
    };
    while let Some(ev) = stream.next().await {
        let seen = match ev? {
            WatchEvent::Bookmark { resource_version } => match resource_version.parse() {
                Ok(rv) => {
                    *from = Some(rv);
                    on_seen(Seen::Bookmark(rv)).await;
                    continue;
                }
                Err(_) => continue,
            },
            WatchEvent::Error(status) if status.code == 410 => return Err(Error::Gone),
            WatchEvent::Error(status) => return Err(Error::Client(corral_client::Error::Api(Box::new(status)))),
            WatchEvent::Added(o) | WatchEvent::Modified(o) => Seen::Applied(o),
            WatchEvent::Deleted(o) => Seen::Deleted(o),
        };
        if let Some(c) = events {
            c.inc();
        }
        if let Seen::Applied(o) | Seen::Deleted(o) = &seen {
            *from = Some(o.revision());
        }
        on_seen(seen).await;
    }
    // The server ended the stream (it restarts, say): resume from `from`.
    Err(Error::StreamEnded)
}
