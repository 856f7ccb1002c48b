//! Waiting for a condition, bounded by [`crate::PATIENCE`].

use std::future::Future;
use std::time::{Duration, Instant};

use crate::PATIENCE;

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` returns `Some`, and returns what it returned; panics naming
/// `what` (and what `check` last saw, through `describe`-style messages it may log)
/// if [`PATIENCE`] runs out first.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {PATIENCE:?}");
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
