//! Errors of the controller runtime.

/// Errors of the `corral-controllers` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The queue was shut down; no more keys will be handed out.
    #[error("the work queue is shut down")]
    ShutDown,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
