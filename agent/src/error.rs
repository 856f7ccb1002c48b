//! The agent's one error type.

use std::path::PathBuf;

/// What can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system or process operation failed on `path`.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `cannot create`.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Input (an archive, a spec, a path) was rejected; the message says what and why.
    #[error("{0}")]
    Invalid(String),
    /// An image was not found or is unusable.
    #[error("image {0}")]
    Image(String),
    /// A registry (the control plane's, or the one a reference names) does not hold
    /// the image a task needs.
    #[error("image {0}")]
    ImageUnknown(String),
    /// The container runtime (runc, cgroups, the shim) failed.
    #[error("runtime: {0}")]
    Runtime(String),
    /// Fetching an artifact failed.
    #[error("artifact {uri}: {reason}")]
    Artifact {
        /// The artifact's URI.
        uri: String,
        /// Why it failed.
        reason: String,
    },
    /// The API server answered with an error, or could not be reached.
    #[error(transparent)]
    Api(#[from] corral_client::Error),
    /// Work handed to the blocking pool did not complete: it panicked (a bug) or was
    /// cancelled because the runtime is shutting down.
    #[error("{what} did not complete: {source}")]
    Background {
        /// The work, e.g. `resolving an image`.
        what: &'static str,
        /// Why it did not complete.
        #[source]
        source: tokio::task::JoinError,
    },
    /// JSON (a checkpoint, a manifest in an archive) did not parse.
    #[error("{what}: {source}")]
    Json {
        /// What was being parsed.
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

/// Result with the agent's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}

pub use corral_api::error::error_chain;
