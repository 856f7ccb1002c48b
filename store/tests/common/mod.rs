#![allow(dead_code)]
//! Helpers shared by the store's integration tests.

use std::time::Duration;

use corral_store::{Key, Options, SledStore, WatchEvent, WatchStream};
use futures::StreamExt;
use serde_json::{Value, json};

pub const RES: &str = "corral.dev/configmaps";

pub fn key(name: &str) -> Key {
    Key::namespaced(RES, "default", name)
}

pub fn cm(name: &str, data: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
           "spec": {"data": {"v": data}}})
}

pub fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(dir, Options::default()).expect("open store")
}

pub fn open_with(dir: &std::path::Path, f: impl FnOnce(&mut Options)) -> SledStore {
    let mut o = Options::default();
    f(&mut o);
    SledStore::open(dir, o).expect("open store")
}

/// Next item of a watch; a stall of 10 s means the watch is broken (a bound, not a
/// timing assertion: correct code delivers in microseconds).
pub async fn next(w: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("watch stalled").expect("watch ended")
}

/// A store under test and how to restart it, so that one suite runs against every
/// backend (sled here; etcd in `corral-store-etcd`'s tests).
// Test code only, called from the test's own task: no caller needs the futures `Send`.
#[allow(async_fn_in_trait)]
pub trait Fixture {
    /// The store.
    fn store(&self) -> std::sync::Arc<dyn corral_store::Storage>;

    /// Closes the store and opens it again on the same data (for a remote store,
    /// a new connection). Every handle from [`Fixture::store`] must be dropped first.
    async fn reopen(&mut self);
}

/// A sled store in a temp dir.
pub struct SledFixture {
    dir: tempfile::TempDir,
    store: Option<std::sync::Arc<SledStore>>,
}

impl SledFixture {
    /// A new store in a new temp dir.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = std::sync::Arc::new(open(dir.path()));
        SledFixture { dir, store: Some(store) }
    }
}

impl Default for SledFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture for SledFixture {
    fn store(&self) -> std::sync::Arc<dyn corral_store::Storage> {
        self.store.clone().expect("store open")
    }

    async fn reopen(&mut self) {
        if let Some(s) = self.store.take() {
            match std::sync::Arc::try_unwrap(s) {
                Ok(s) => s.shutdown().await,
                Err(s) => panic!("{} handles to the store are still held", std::sync::Arc::strong_count(&s) - 1),
            }
        }
        self.store = Some(std::sync::Arc::new(open(self.dir.path())));
    }
}
