//! Corral's resource model: the object envelope every kind shares, the built-in kinds
//! (one module each under [`kinds`]), the registry of served kinds with their JSON
//! Schemas, columns and subresources, validation against exactly those schemas, label
//! and field selectors, the three-way merge behind `corral apply`, and the wire types
//! servers and clients share (deletion options, log queries).
//!
//! The store and the API server are generic over kinds as JSON; typed Rust structs
//! exist for the built-in kinds so that controllers can work with them comfortably,
//! and their schemas are derived from those structs. This crate depends on no other
//! Corral crate.

pub mod allocation;
pub mod apply;
pub mod crd;
pub mod delete;
pub mod error;
pub mod field_selector;
pub mod kinds;
pub mod logs;
pub mod meta;
pub mod names;
pub mod nesting;
pub mod registry;
pub mod resource;
pub mod schema_limits;
pub mod selector;
pub mod table;
pub mod task_report;
pub mod transaction;
pub mod validate;
pub mod version;

pub use error::{Error, FieldError, Result};
pub use field_selector::FieldSelector;
pub use meta::{ApiObject, DynamicObject, ObjectMeta, OwnerReference, PartialObject};
pub use registry::{ColumnType, KindInfo, PrinterColumn, Registry, Subresources};
pub use resource::{KindSpec, Object, Resource};
pub use selector::Selector;

/// The group of every built-in kind.
pub const GROUP: &str = "corral.dev";
/// The version of every built-in kind.
pub const VERSION: &str = "v1";
/// `apiVersion` of the built-in kinds.
pub const API_VERSION: &str = "corral.dev/v1";
