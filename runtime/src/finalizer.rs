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

use corral_client::{Api, ObjectType};

use crate::controller::Action;

/// What the finalizer asks the handler to do.
#[derive(Debug)]
pub enum Event<K> {
    /// The object lives: reconcile it.
    Apply(Arc<K>),
    /// The object is being deleted: clean up what it owns outside the API.
    Cleanup(Arc<K>),
}

/// Errors of [`finalizer`].
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError<E> {
    /// The handler failed.
    #[error("{0}")]
    Handler(E),
    /// Adding or removing the finalizer failed (e.g. a conflict).
    #[error("cannot update finalizers: {0}")]
    Client(corral_client::Error),
}

/// Runs `handler` under finalizer `name` (e.g. `example.corral.dev/cleanup`) for `obj`,
/// written through `api`.
pub async fn finalizer<K, E, F, Fut>(
    api: &Api<K>,
    name: &str,
    obj: Arc<K>,
    handler: F,
) -> Result<Action, FinalizerError<E>>
where
    K: ObjectType,
    F: FnOnce(Event<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
{
    let meta = obj.meta();
    match (meta.is_deleting(), meta.has_finalizer(name)) {
        (false, false) => {
            let mut updated = (*obj).clone();
            updated.meta_mut().add_finalizer(name);
            api.update(&updated).await.map_err(FinalizerError::Client)?;
            // The update brings a new version of the object, and with it a reconcile.
            Ok(Action::await_change())
        }
        (false, true) => handler(Event::Apply(obj)).await.map_err(FinalizerError::Handler),
        (true, true) => {
            let action = handler(Event::Cleanup(obj.clone())).await.map_err(FinalizerError::Handler)?;
            let mut updated = (*obj).clone();
            updated.meta_mut().remove_finalizer(name);
            api.update(&updated).await.map_err(FinalizerError::Client)?;
            Ok(action)
        }
        // Being deleted and not ours (any more): nothing to do.
        (true, false) => Ok(Action::await_change()),
    }
}
