//! Finalizers: run cleanup before an object may disappear.
//!
//! [`finalizer`] wraps a reconciler. While the object lives, it makes sure the
//! finalizer is on the object, then calls the handler with [`Event::Apply`]. Once the
//! object is being deleted, it calls the handler with [`Event::Cleanup`] and, when that
//! succeeds, removes the finalizer so the deletion completes.
//!
//! # Guarantees
//! - Both steps are idempotent: a reconcile may run them again after a crash or a
//!   conflict, so handlers must be idempotent too.
//! - Cleanup runs before the object disappears; if cleanup keeps failing the object
//!   stays (visible with `corral describe`: finalizers and deletionTimestamp).
//! - Adding and removing the finalizer are compare-and-swap updates on the object's
//!   `resourceVersion`; a conflict is returned as an error, so the key is retried with
//!   the object's newer state.

use std::future::Future;
use std::sync::Arc;

use corral_api::KindInfo;
use serde_json::{Value, json};

use crate::client::Client;
use crate::controller::Action;

/// What the finalizer asks the handler to do.
#[derive(Clone, Debug)]
pub enum Event {
    /// The object lives: reconcile it.
    Apply(Arc<Value>),
    /// The object is being deleted: clean up what it owns outside the API.
    Cleanup(Arc<Value>),
}

/// Errors of [`finalizer`].
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError<E> {
    /// The handler failed.
    #[error("{0}")]
    Handler(E),
    /// Adding or removing the finalizer failed (e.g. a conflict).
    #[error("cannot update finalizers: {0}")]
    Client(crate::Error),
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn with_finalizers(obj: &Value, list: Vec<String>) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("finalizers".into(), json!(list));
    }
    // Status is written through its own path; sending it here would be ignored anyway.
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
    }
    o
}

/// Runs `handler` under finalizer `name` (e.g. `example.corral.dev/cleanup`).
pub async fn finalizer<E, F, Fut>(
    client: &Client,
    kind: &KindInfo,
    name: &str,
    obj: Arc<Value>,
    handler: F,
) -> Result<Action, FinalizerError<E>>
where
    F: FnOnce(Event) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
{
    let present = finalizers(&obj).iter().any(|f| f == name);
    let deleting = obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    match (deleting, present) {
        (false, false) => {
            let mut list = finalizers(&obj);
            list.push(name.to_string());
            client.update(kind, &with_finalizers(&obj, list)).await.map_err(FinalizerError::Client)?;
            // The update brings a new version of the object, and with it a reconcile.
            Ok(Action::await_change())
        }
        (false, true) => handler(Event::Apply(obj)).await.map_err(FinalizerError::Handler),
        (true, true) => {
            let action = handler(Event::Cleanup(obj.clone())).await.map_err(FinalizerError::Handler)?;
            let list = finalizers(&obj).into_iter().filter(|f| f != name).collect();
            client.update(kind, &with_finalizers(&obj, list)).await.map_err(FinalizerError::Client)?;
            Ok(action)
        }
        // Being deleted and not ours (any more): nothing to do.
        (true, false) => Ok(Action::await_change()),
    }
}
