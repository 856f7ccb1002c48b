//! What every Corral process exposes about itself: its `/metrics` and its logs.
//!
//! The API server, the controller manager, the node agent and controllers written by
//! users all serve Prometheus metrics the same way, through [`exposition`], and log
//! through `tracing` set up by [`logging::init`]. The crate depends on no other Corral
//! crate, so that every one of them can use it.

#![warn(missing_docs)]

pub mod exposition;
pub mod logging;
pub mod registry;

pub use exposition::{metrics_response, render};
pub use registry::SharedRegistry;
