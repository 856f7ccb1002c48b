//! Waiting for a condition, bounded by [`crate::PATIENCE`].

use std::time::{Duration, Instant};

use crate::PATIENCE;

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` returns `Some`, and returns what it returned; panics naming
/// `what` if [`PATIENCE`] runs out first.
pub async fn eventually<T>(what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
    match within_patience(check).await {
        Some(v) => v,
        None => panic!("{what}: not within {PATIENCE:?}"),
    }
}

/// Waits until `check` returns `Some`, and returns it; `None` once [`PATIENCE`] has
/// run out, for callers that add what they know to the failure.
pub async fn within_patience<T>(mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for tests without an async runtime.
pub fn eventually_blocking<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {PATIENCE:?}");
        }
        std::thread::sleep(POLL);
    }
}
