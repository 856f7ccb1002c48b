//! Errors of the controller runtime.

/// Errors of the `corral-runtime` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The queue was shut down; no more keys will be handed out.
    #[error("the work queue is shut down")]
    ShutDown,
    /// The server answered with an error `Status`.
    #[error("{reason} ({code}): {message}")]
    Api {
        /// HTTP status code.
        code: u16,
        /// Machine-readable reason, e.g. `Conflict`, `NotFound`, `Invalid`.
        reason: String,
        /// What went wrong, for people.
        message: String,
    },
    /// A watch asked for a revision that is compacted away: re-list.
    #[error("watch revision is gone (compacted); re-list")]
    Gone,
    /// The server could not be reached or the connection broke.
    #[error("transport: {0}")]
    Transport(String),
    /// A response or object did not decode.
    #[error("decode: {0}")]
    Decode(String),
    /// This replica lost (or could not renew) its leader lease.
    #[error("leader lease lost")]
    LostLease,
    /// No kind of that name is served.
    #[error("no kind {0:?} is served")]
    UnknownKind(String),
}

impl Error {
    /// Whether this is an optimistic-concurrency conflict (re-read and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { code: 409, reason, .. } if reason == "Conflict")
    }

    /// Whether the object was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { code: 404, .. })
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
