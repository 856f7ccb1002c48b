//! Corral's controller runtime: the library every Corral controller — built in or
//! written by users — is built on.
//!
//! A controller watches objects, keeps them in a local cache, and reconciles each
//! object's desired state with the actual state whenever something relevant changes.
//! This crate provides the pieces, over the one client ([`corral_client`]):
//! - [`watcher::watch`]: list + watch, resume, re-list on `Gone`, reporting what it
//!   sees and keeping nothing;
//! - [`Reflector`] and its [`Cache<K>`](Cache): list + watch, resume, re-list on
//!   `Gone`, indexes; objects decoded once per event and shared as `Arc<K>`, typed
//!   for built-in and custom Rust kinds, [`DynamicObject`](corral_api::DynamicObject)
//!   for kinds known only at run time;
//! - [`WorkQueue`]: keys, de-duplication, no concurrent processing of a key, per-key
//!   exponential backoff, a global rate limit;
//! - [`Controller<K>`](Controller): the loop tying them together (`owns`, `watches`,
//!   concurrency, graceful shutdown, [`Action`]s, metrics);
//! - [`finalizer()`], [`Recorder`] (Events), [`owner_reference`], [`LeaderElector`];
//! - [`StatusReporter`]: an agent's task status writes, many in one report;
//! - [`Manager`]: runs a set of controllers behind one leader election, with one
//!   metrics registry and one shutdown ([`CancellationToken`]).
//!
//! Start with `docs/writing-a-controller.md` and `examples/tenant-controller/`.

#![warn(missing_docs)]

pub mod controller;
pub mod error;
pub mod events;
pub mod finalizer;
pub mod leader;
pub mod manager;
pub mod object_ref;
pub mod queue;
pub mod reflector;
pub mod status_reporter;
pub mod watcher;

pub use controller::{Action, Controller, ControllerMetrics, Mapper};
pub use corral_client::{Api, Client, ListParams, ObjectType, WatchParams};
pub use corral_telemetry::exposition;
pub use error::{Error, Result};
pub use events::{EventType, Recorder};
pub use finalizer::{FinalizerError, finalizer};
pub use leader::{LeaderConfig, LeaderElector};
pub use manager::{Manager, ManagerConfig, Runnable};
pub use object_ref::{ObjectRef, owner_reference};
pub use queue::{QueueConfig, WorkQueue, backoff_delay};
pub use reflector::{Cache, Change, IndexFn, Reflector, by_field, by_label, by_owner_uid};
pub use status_reporter::StatusReporter;
pub use tokio_util::sync::CancellationToken;
