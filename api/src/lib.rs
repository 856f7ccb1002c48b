//! Corral's resource model: the object envelope every kind shares, the built-in kinds,
//! the registry of served kinds with their JSON Schemas, validation against exactly
//! those schemas, label selectors and the three-way merge behind `corral apply`.
//!
//! The store and the API server are generic over kinds as JSON; typed Rust structs
//! exist for the built-in kinds so that controllers can work with them comfortably,
//! and their schemas are derived from those structs.

pub mod apply;
pub mod crd;
pub mod error;
pub mod kinds;
pub mod meta;
pub mod names;
pub mod node;
pub mod registry;
pub mod resource;
pub mod selector;
pub mod task;
pub mod validate;

pub use error::{Error, FieldError, Result};
pub use meta::{DynamicObject, ObjectMeta, OwnerReference};
pub use registry::{KindInfo, Registry};
pub use resource::{Object, Resource};
pub use selector::Selector;

/// The group of every built-in kind.
pub const GROUP: &str = "corral.dev";
/// The version of every built-in kind.
pub const VERSION: &str = "v1";
/// `apiVersion` of the built-in kinds.
pub const API_VERSION: &str = "corral.dev/v1";
