//! Corral's controller runtime: the library every Corral controller — built in or
//! written by users — is built on.
//!
//! A controller watches objects, keeps them in a local cache, and reconciles each
//! object's desired state with the actual state whenever something relevant changes.
//! This crate provides the pieces: a work queue keyed by object reference, with
//! de-duplication, per-key exponential backoff and a global rate limit; and (growing)
//! clients, reflectors and the controller loop.

pub mod client;
pub mod controller;
pub mod error;
pub mod events;
pub mod finalizer;
pub mod leader;
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
pub use object_ref::ObjectRef;
pub use queue::{QueueConfig, WorkQueue};
pub use reflector::{Cache, Change, IndexFn, Reflector};
pub use transport::{HttpTransport, Transport};
