//! The Corral node agent. An agent is a controller: it registers its `Node`, renews the
//! node's heartbeat `Lease`, watches the `Task`s bound to its node and realizes each as a
//! runc container (from the local image store) or a native process in its own cgroups,
//! supervised by a small per-task shim that outlives the agent. It reports status,
//! serves logs, runs health checks, and re-adopts its tasks after a restart.

#![warn(missing_docs)]

pub mod agent;
pub mod artifacts;
mod blocking;
pub mod error;
pub mod health;
pub mod http;
pub mod image;
pub mod layout;
pub mod logs;
pub mod metrics;
pub mod net_guard;
pub mod node;
pub mod runtime;
pub mod tasks;
pub mod users;
pub mod volumes;

pub use error::{Error, Result};
pub use layout::Layout;
