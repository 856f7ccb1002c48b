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
