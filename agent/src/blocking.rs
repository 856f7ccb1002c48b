//! Blocking work (file system, flock, runc) handed off from async code.

use crate::error::{Error, Result};

/// Runs `f` on Tokio's blocking pool, so that a slow disk or a lock held by another
/// process stalls only the caller, never a runtime worker (and with it the heartbeats
/// and every other reconcile). `what` names the work in the error should it not
/// complete.
///
/// # Errors
/// `f`'s error, or [`Error::Background`] if `f` panicked or was cancelled.
pub(crate) async fn run<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|source| Error::Background { what, source })?
}
