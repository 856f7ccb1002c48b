//! What every Corral test shares, so that each suite says only what it tests:
//!
//! - [`PATIENCE`]: the one bound on waiting for something that should happen — a
//!   guard so that a broken build fails instead of hanging, never a timing assertion;
//! - [`eventually`]: waits, within that bound, for a condition to hold;
//! - [`TestServer`]: the real control plane (the API server on `127.0.0.1:0` with a
//!   real sled store in a temporary directory, and the controller manager with the
//!   built-in controllers, as `corral server` runs them);
//! - [`busybox`]: a real image built from the host's static busybox;
//! - [`wait_logged`]: where a process under test says it listens, from its log.
//!
//! Dev-only: no production crate depends on it.

pub mod busybox;
mod eventually;
mod logged;
mod server;

pub use eventually::{eventually, eventually_blocking, within_patience};
pub use logged::{assert_running, logged, wait_logged};
pub use server::{Options, TestServer, authorized_http};

use std::time::Duration;

/// How long a test waits for something that should happen before it fails. A bound
/// so that a broken build fails instead of hanging, not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(90);
