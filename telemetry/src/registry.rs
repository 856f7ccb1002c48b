//! A metrics registry that several parts of a process fill and one `/metrics` serves.

use std::sync::Arc;

use parking_lot::RwLock;
use prometheus_client::registry::Registry;

/// A Prometheus registry shared between the code that registers metrics and the
/// endpoint that serves them. Cheap to clone; clones share the registry.
///
/// Registration takes a write lock and is meant for start-up; scrapes take a read lock.
#[derive(Clone, Default)]
pub struct SharedRegistry(Arc<RwLock<Registry>>);

impl SharedRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers metrics through `f`, which gets the registry itself.
    pub fn register<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.0.write())
    }

    /// The registry as OpenMetrics text without `# EOF` (see
    /// [`crate::exposition::encode`]).
    ///
    /// # Errors
    /// Only if a metric fails to encode itself.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        crate::exposition::encode(&self.0.read())
    }

    /// Reads the registry, e.g. to encode it.
    pub fn read<R>(&self, f: impl FnOnce(&Registry) -> R) -> R {
        f(&self.0.read())
    }
}

impl std::fmt::Debug for SharedRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedRegistry")
    }
}
