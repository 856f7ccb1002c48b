//! Corral's store on etcd: [`EtcdStore`] implements the same [`corral_store::Storage`]
//! contract as the embedded sled store, so that several API servers can share one
//! replicated store.
//!
//! # Layout in etcd
//! Each object is one etcd key, the store's prefix (`/corral/` by default) followed by
//! [`corral_store::Key::encode`] (resource, namespace and name separated by NUL bytes,
//! so that a collection and a namespace in it are contiguous ranges and lists come in
//! the same order as sled's). The value is the object's JSON **without**
//! `metadata.resourceVersion`: an object's revision is that of the etcd transaction
//! that wrote it, known only once the transaction is committed, so it is taken from
//! the key's `mod_revision` whenever the object is read or watched, and put back in
//! the JSON handed out.
//!
//! # Revisions
//! Corral's global revision is etcd's. Each Corral write is one etcd transaction: it
//! compares the revision of every key it read (`create_revision == 0` for a key that
//! must not exist, `mod_revision ==` for one that must be as read) and only then
//! writes, so a decision is never applied to a state other than the one it was made
//! on. What a write does to an object (server metadata, generation, status-only
//! writes, finalizers, deletion) is decided by [`corral_store::decide`], the code the
//! sled store uses.

mod codec;
pub mod store;
mod watch;

pub use store::{EtcdStore, Options, Tls, parse_store_url};
