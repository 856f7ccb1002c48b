//! The controllers' one error type, for what their public functions can fail at.

/// What a controller's public step can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sync's source could not be fetched or read (git failed, a directory is
    /// missing): the message says which command or path, and why.
    #[error("{0}")]
    Source(String),
    /// The API server refused or could not be reached.
    #[error(transparent)]
    Client(#[from] corral_client::Error),
}

/// The controllers' result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
