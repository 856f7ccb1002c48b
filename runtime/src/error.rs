//! Errors of the controller runtime.

/// Errors of the `corral-runtime` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error(transparent)]
    Client(#[from] corral_client::Error),
    /// A watch asked for a revision that is compacted away: re-list.
    #[error("watch revision is gone (compacted); re-list")]
    Gone,
    /// The server ended a watch stream (it restarts, say): resume it.
    #[error("the watch stream ended")]
    StreamEnded,
    /// This replica lost (or could not renew) its leader lease.
    #[error("leader lease lost")]
    LostLease,
    /// A controller run by a manager failed; it is restarted.
    #[error("{controller}: {message}")]
    Controller {
        /// Which controller.
        controller: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Whether this is an optimistic-concurrency conflict (re-read and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Client(e) if e.is_conflict())
    }

    /// Whether the object was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Client(e) if e.is_not_found())
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
