//! Corral's controller runtime: the library every Corral controller — built in or
//! written by users — is built on.
//!
//! A controller watches objects, keeps them in a local cache, and reconciles each
//! object's desired state with the actual state whenever something relevant changes.
//! This crate provides the pieces:
//! - [`Client`] (dynamic JSON) and [`Api`] (typed) over a [`Transport`]: HTTP, or
//!   in-process through the server's router — the same semantics either way;
//! - [`Reflector`] and its [`Cache`]: list + watch, resume, re-list on `Gone`, indexes;
//! - [`WorkQueue`]: keys, de-duplication, no concurrent processing of a key, per-key
//!   exponential backoff, a global rate limit;
//! - [`Controller`]: the loop tying them together (`owns`, `watches`, concurrency,
//!   graceful shutdown, [`Action`]s, metrics);
//! - [`finalizer`], [`Recorder`] (Events), [`owner_reference`], [`LeaderElector`].
//!
//! Start with `docs/writing-a-controller.md` and `examples/tenant-controller/`.

#![warn(missing_docs)]

pub mod client;
pub mod controller;
pub mod error;
pub mod events;
pub mod exposition;
pub mod finalizer;
pub mod leader;
pub mod node_lifecycle;
pub mod object_ref;
pub mod queue;
pub mod reflector;
pub mod transport;

pub use client::{Api, Client, ObjectList, WatchEvent};
pub use controller::{Action, Controller, ControllerMetrics, Mapper};
pub use error::{Error, Result};
pub use events::{EventType, Recorder};
pub use finalizer::{FinalizerError, finalizer};
pub use leader::{LeaderConfig, LeaderElector};
pub use object_ref::{ObjectRef, owner_reference};
pub use queue::{QueueConfig, WorkQueue};
pub use reflector::{Cache, Change, IndexFn, Reflector, by_field, by_label, by_owner_uid};
pub use transport::{HttpTransport, Transport};
