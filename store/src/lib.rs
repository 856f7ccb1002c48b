//! Corral's versioned resource store.
//!
//! Objects are JSON documents addressed by [`Key`] (`group/plural`, namespace, name).
//! Every write bumps one global revision and is recorded in an event log keyed by
//! revision, in the same atomic transaction as the object itself. A write is
//! acknowledged only after it is flushed to disk; concurrent writes share one flush
//! (group commit). Watches replay the log from any retained revision and then stream
//! live events, in order, each exactly once.
//!
//! [`Storage`] is the contract the API server and controllers use; [`SledStore`]
//! implements it on an embedded sled database. [`decide`] holds how a write changes
//! an object, shared with other backends (`corral-store-etcd`).

mod blobs;
mod codec;
pub mod decide;
pub mod error;
pub mod event;
mod history;
mod index;
pub mod key;
mod list;
mod load;
mod marker;
pub mod object;
mod recent;
pub mod sled_store;
pub mod snapshot;
pub mod storage;
mod wake;
mod watch;
mod writer;

pub use error::{Error, Result};
pub use event::{Event, EventType, WatchEvent, WatchRequest, WatchStream};
pub use key::Key;
pub use list::{ListPage, ListRequest};
pub use marker::MARKER_FILE;
pub use object::{Labels, StoredObject};
pub use sled_store::{Options, SledStore};
pub use storage::{
    DeleteOutcome, ListResult, ObjectHead, RevisionPin, Storage, StoreStats, TxnOp, TxnOutcome, UpdateOutcome,
};
