//! The one client of the Corral API (`docs/api.md`), used by the CLI, the controller
//! runtime, the node agent and controllers written by users.
//!
//! - [`Transport`]: how requests reach a server — [`HttpTransport`] over the network,
//!   or the API server's own router in the same process (it implements the trait), with
//!   the same semantics either way;
//! - [`Client`]: dynamic, any served kind, objects as [`DynamicObject`](corral_api::DynamicObject),
//!   kinds discovered at run time;
//! - [`Api`]: typed, one kind, objects as `K` (a built-in kind, a custom kind's Rust
//!   type, or a dynamic object of a kind given at run time);
//! - lists whole or page by page ([`Client::list_all`] reads every page of one
//!   snapshot, restarting when it expires midway);
//! - watches as [`WatchEvent`]s, decoded once from each line into `K`;
//! - [`manifests`]: reading manifest files and directories into documents, every
//!   problem named by file, document and field;
//! - every error answer as [`Error::Api`] with the server's [`Status`] (code, reason,
//!   message, each offending field).

#![warn(missing_docs)]

mod api;
mod client;
pub mod credentials;
mod error;
mod logs;
pub mod manifests;
mod offers;
mod pager;
mod params;
pub mod task_report;
mod transaction;
mod transport;
mod watch;

pub use api::{Api, ObjectType};
pub use client::{Client, Deleted, IMPERSONATE_GROUP, IMPERSONATE_USER, ListMeta, ObjectList, Written};
pub use credentials::{BearerToken, ClientIdentity, Config};
pub use error::{Cause, Error, Result, Status, StatusDetails, TransportFailure};
pub use logs::LogBytes;
pub use pager::{DEFAULT_PAGE_SIZE, MAX_LIST_RESTARTS};
pub use params::{DeleteParams, ListParams, Patch, WatchParams, WriteParams};
pub use transaction::TransactParams;
pub use transport::{HttpTransport, Response, Transport};
pub use watch::{WatchEvent, WatchStream};

/// The field manager `corral` records on apply patches.
pub const CLI_FIELD_MANAGER: &str = corral_api::apply::CLI_FIELD_MANAGER;
