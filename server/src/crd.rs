//! Custom resource definitions take effect at once, without a restart.
//!
//! One idempotent step, [`sync`], makes the registry's custom kinds match the
//! definitions in the store: it registers new and changed kinds, drops removed ones,
//! writes each definition's `status.accepted`, puts the cleanup finalizer on live
//! definitions and, for definitions being deleted, deletes every object of the kind
//! before releasing the finalizer. It runs
//! - at startup, before the server listens, so stored definitions are served at once;
//! - after every successful write to a definition, before the write is answered, so
//!   a client that created a definition can use its kind with the next request;
//! - from a background task watching definitions, which catches writes that bypass
//!   the API and retries deletions still waiting for objects' own finalizers.
//!
//! Concurrent runs are safe: the registry ignores snapshots older than one it has
//! applied, and every write is conditional on the revision it was computed from (a
//! conflict means a newer run will do it).
//!
//! Conflicting or uncompilable definitions are rejected when written (422, by the
//! registry's validation); one that conflicts anyway (two written concurrently) is
//! stored but not served, and its status says why.

use std::time::Duration;

use corral_api::crd::CLEANUP_FINALIZER;
use corral_api::kinds::CustomResourceDefinition;
use corral_api::{KindInfo, Registry, Resource, Selector};
use corral_store::{
    DeleteOutcome, Error as StoreError, EventType, Key, Storage, UpdateOutcome, WatchEvent, WatchRequest,
};
use futures::StreamExt;
use serde_json::{Value, json};

use super::AppState;

/// How many objects of a deleted kind are deleted concurrently.
const CLEANUP_CONCURRENCY: usize = 16;

/// Times a write to a definition re-runs [`sync`] while racing with other runs.
const MAX_SYNC_ATTEMPTS: usize = 8;

/// How often a deletion waiting for objects' finalizers, or a failed sync, is retried.
const RETRY: Duration = Duration::from_secs(1);

/// The store collection of definitions.
fn crd_resource() -> String {
    format!("{}/{}", corral_api::GROUP, CustomResourceDefinition::PLURAL)
}

/// Serves the stored definitions, then keeps watching them in the background until
/// the server closes.
///
/// # Errors
/// Fails if the definitions cannot be read from the store.
pub(super) async fn start(state: &AppState) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    let first = sync(state.store.as_ref(), &state.registry).await?;
    let state = state.clone();
    Ok(tokio::spawn(async move {
        let closed = state.closed();
        tokio::select! {
            _ = closed => {}
            _ = watch_loop(&state, first) => {}
        }
    }))
}

/// Runs after a successful write to a definition, before it is answered. It repeats
/// while it races with the background task, so that once it returns the kind is
/// served and the definition's status written, and nothing is left to write behind
/// the client's back. Failures are logged: the background task retries.
pub(super) async fn after_write(state: &AppState) {
    for _ in 0..MAX_SYNC_ATTEMPTS {
        match sync(state.store.as_ref(), &state.registry).await {
            Ok(s) if s.settled => return,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot apply custom resource definitions now; retrying in the background");
                return;
            }
        }
    }
    tracing::debug!("custom resource definitions still changing; the background task finishes the work");
}

/// What a sync saw.
struct Synced {
    /// Revision of the list it worked from.
    revision: u64,
    /// A deletion is waiting for objects to go away: run again later.
    pending: bool,
    /// Nothing raced with this run: the registry and every status reflect the list.
    settled: bool,
}

async fn watch_loop(state: &AppState, first: Synced) {
    let store = state.store.as_ref();
    let mut synced = Some(first);
    loop {
        let from = match synced.take() {
            Some(s) => s,
            None => match sync(store, &state.registry).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot sync custom resource definitions; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        let mut pending = from.pending;
        let request = WatchRequest { resources: vec![crd_resource()], from: Some(from.revision), ..Default::default() };
        let mut stream = match store.watch(request).await {
            Ok(s) => s,
            Err(e) => {
                // Compacted past the list's revision, or the store is closing: list again.
                tracing::debug!(error = %e, "cannot watch custom resource definitions; re-listing");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = tokio::time::sleep(RETRY), if pending => {
                    pending = sync_logged(state).await;
                    continue;
                }
            };
            match event {
                Some(WatchEvent::Event(e)) => {
                    if e.event_type == EventType::Deleted {
                        // Deleted without the cleanup finalizer (it was removed, or the
                        // definition went before it was added): sweep what is left.
                        // A definition created again since then keeps its objects.
                        if let Ok(value) = e.object.value()
                            && let Ok(crd) = serde_json::from_value::<CustomResourceDefinition>(value)
                            && matches!(store.exists(&e.object.key).await, Ok(false))
                        {
                            state.registry.remove_custom(&crd.metadata.name, e.revision);
                            sweep(store, &state.registry, &KindInfo::from_crd(&crd)).await;
                        }
                    }
                    pending = sync_logged(state).await;
                }
                Some(WatchEvent::Bookmark(_)) => {}
                Some(WatchEvent::Gone { .. }) | None => break,
            }
        }
    }
}

/// [`sync`], logging failures; returns whether to run again later.
async fn sync_logged(state: &AppState) -> bool {
    match sync(state.store.as_ref(), &state.registry).await {
        Ok(s) => s.pending,
        Err(e) => {
            tracing::warn!(error = %e, "cannot sync custom resource definitions; retrying");
            true
        }
    }
}

/// Makes the served custom kinds match the stored definitions (see the module docs).
async fn sync(store: &dyn Storage, registry: &Registry) -> Result<Synced, StoreError> {
    let list = store.list(&crd_resource(), None, &Selector::everything()).await?;
    let mut crds = Vec::with_capacity(list.items.len());
    for item in &list.items {
        match item.value().map(|v| (serde_json::from_value::<CustomResourceDefinition>(v.clone()), v)) {
            Ok((Ok(crd), value)) => crds.push((item.revision, value, crd)),
            // Only valid definitions are written; one that no longer parses is left
            // alone rather than blocking every other.
            Ok((Err(e), _)) => tracing::error!(key = %item.key, error = %e, "stored definition does not parse"),
            Err(e) => tracing::error!(key = %item.key, error = %e, "stored definition does not decode"),
        }
    }
    let kinds = crds.iter().map(|(_, _, c)| (c.metadata.name.clone(), KindInfo::from_crd(c))).collect();
    let Some(outcome) = registry.sync_custom(list.revision, kinds) else {
        // A newer snapshot was applied meanwhile; that run does the rest.
        return Ok(Synced { revision: list.revision, pending: false, settled: false });
    };
    let mut pending = false;
    let mut settled = true;
    for ((revision, value, crd), (_, served)) in crds.iter().zip(outcome) {
        let name = crd.metadata.name.as_str();
        let key = Key::cluster(crd_resource(), name);
        if crd.metadata.deletion_timestamp.is_some() {
            match finish_deletion(store, registry, crd, value, &key, *revision).await? {
                Deletion::Done => {}
                Deletion::Waiting => pending = true,
                Deletion::Raced => settled = false,
            }
            continue;
        }
        if let Err(e) = &served {
            tracing::warn!(crd = name, error = %e, "custom resource definition not served");
        }
        let status = match &served {
            Ok(()) => json!({"accepted": true}),
            Err(e) => json!({"accepted": false, "message": e.to_string()}),
        };
        settled &= !conflicted(settle_definition(store, &key, *revision, crd, value, status).await)?;
    }
    Ok(Synced { revision: list.revision, pending, settled })
}

/// Puts the cleanup finalizer on a live definition and writes its status, each only
/// if missing or different.
async fn settle_definition(
    store: &dyn Storage,
    key: &Key,
    mut revision: u64,
    crd: &CustomResourceDefinition,
    value: &Value,
    status: Value,
) -> Result<(), StoreError> {
    if !crd.metadata.finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        let with = with_finalizers(value, |f| f.push(CLEANUP_FINALIZER.into()));
        revision = store.update(key.clone(), with, Some(revision)).await?.object().revision;
    }
    let current = crd.status.as_ref().map(serde_json::to_value).transpose().ok().flatten();
    if current.as_ref() != Some(&status) {
        let body = json!({"status": status});
        store.update_status(key.clone(), body, Some(revision)).await?;
    }
    Ok(())
}

/// How far the deletion of a definition got.
enum Deletion {
    /// Gone, or waiting only for finalizers other than ours.
    Done,
    /// Objects of the kind are still finalizing.
    Waiting,
    /// The definition changed since it was read.
    Raced,
}

/// A definition being deleted: deletes every object of its kind, then releases the
/// finalizer and stops serving the kind.
async fn finish_deletion(
    store: &dyn Storage,
    registry: &Registry,
    crd: &CustomResourceDefinition,
    value: &Value,
    key: &Key,
    revision: u64,
) -> Result<Deletion, StoreError> {
    let name = crd.metadata.name.as_str();
    let info = KindInfo::from_crd(crd);
    if !sweep(store, registry, &info).await {
        tracing::info!(crd = name, "waiting for objects of the deleted kind to be finalized");
        return Ok(Deletion::Waiting);
    }
    if !crd.metadata.finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        return Ok(Deletion::Done);
    }
    let without = with_finalizers(value, |f| f.retain(|f| f.as_str() != Some(CLEANUP_FINALIZER)));
    match store.update(key.clone(), without, Some(revision)).await {
        Ok(UpdateOutcome::Deleted(gone)) => {
            registry.remove_custom(name, gone.revision);
            // Objects created between the sweep and the kind's removal.
            sweep(store, registry, &info).await;
            tracing::info!(crd = name, "custom resource definition deleted with its objects");
            Ok(Deletion::Done)
        }
        Ok(_) => Ok(Deletion::Done),
        Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(Deletion::Raced),
        Err(e) => Err(e),
    }
}

/// Deletes every object of a custom kind, in all namespaces. Returns whether none is
/// left (objects with finalizers stay until their controllers release them).
///
/// A collection that belongs to another kind (a built-in one the definition collides
/// with) is never touched.
async fn sweep(store: &dyn Storage, registry: &Registry, info: &KindInfo) -> bool {
    if registry.kinds().iter().any(|k| k.group == info.group && k.plural == info.plural)
        && registry.custom_kind(&format!("{}.{}", info.plural, info.group)).is_none()
    {
        return true;
    }
    let list = match store.list(&info.resource(), None, &Selector::everything()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(kind = %info.kind, error = %e, "cannot list objects of a deleted kind");
            return false;
        }
    };
    let results: Vec<bool> = futures::stream::iter(list.items)
        .map(|o| async move {
            match store.delete(o.key.clone(), None).await {
                Ok(DeleteOutcome::Deleted(_)) | Err(StoreError::NotFound(_)) => true,
                Ok(DeleteOutcome::Finalizing(_)) => false,
                Err(e) => {
                    tracing::warn!(key = %o.key, error = %e, "cannot delete an object of a deleted kind");
                    false
                }
            }
        })
        .buffer_unordered(CLEANUP_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().all(|gone| gone)
}

/// The stored object with its finalizers changed by `edit`, nothing else: a typed
/// round trip would fill in defaults and count as a change of the spec.
fn with_finalizers(value: &Value, edit: impl FnOnce(&mut Vec<Value>)) -> Value {
    let mut out = value.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        let mut finalizers = meta.get("finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
        edit(&mut finalizers);
        if finalizers.is_empty() {
            meta.remove("finalizers");
        } else {
            meta.insert("finalizers".into(), Value::Array(finalizers));
        }
    }
    out
}

/// Whether a write lost a race: a conflict or a vanished object means someone wrote
/// after our read, and the watch brings that write and a new sync.
fn conflicted(r: Result<(), StoreError>) -> Result<bool, StoreError> {
    match r {
        Ok(()) => Ok(false),
        Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use corral_store::SledStore;

    use super::*;

    /// Next change to a definition; bounded so a broken build fails instead of hanging.
    async fn next_event(events: &mut corral_store::WatchStream) -> Arc<corral_store::Event> {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("event arrives");
            if let Some(WatchEvent::Event(e)) = ev {
                return e;
            }
        }
    }

    #[tokio::test]
    async fn definitions_written_behind_the_api_are_served_and_cleaned_up_by_the_watcher() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Storage> = Arc::new(SledStore::open(dir.path(), Default::default()).expect("store"));
        let state = AppState::new(store.clone(), Arc::new(Registry::builtin()));
        let task = start(&state).await.expect("starts");
        let request =
            WatchRequest { resources: vec![crd_resource()], from: Some(store.stats().revision), ..Default::default() };
        let mut events = store.watch(request).await.expect("watch");
        let key = Key::cluster(crd_resource(), "widgets.example.com");
        let crd = json!({"apiVersion": "corral.dev/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "version": "v1", "kind": "Widget", "plural": "widgets"}});
        store.create(key.clone(), crd).await.expect("created");
        loop {
            let value = next_event(&mut events).await.object.value().expect("decodes");
            if value.pointer("/status/accepted") == Some(&json!(true)) {
                assert!(value["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()), "{value}");
                break;
            }
        }
        assert!(state.registry.by_plural("example.com", "v1", "widgets").is_some());

        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}, "spec": {}});
        store.create(Key::namespaced("example.com/widgets", "default", "w"), widget).await.expect("widget");
        store.delete(key, None).await.expect("deletion requested");
        while next_event(&mut events).await.event_type != EventType::Deleted {}
        let left = store.list("example.com/widgets", None, &Selector::everything()).await.expect("list");
        assert!(left.items.is_empty(), "objects go before their definition");

        state.close_watches();
        task.await.expect("watcher ends when the server closes");
    }

    #[test]
    fn definitions_are_named_plural_dot_group() {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "corral.dev/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "version": "v1", "kind": "Widget", "plural": "widgets"}
        }))
        .expect("definition");
        assert_eq!(corral_api::crd::expected_name(&crd.spec), crd.metadata.name);
    }
}
