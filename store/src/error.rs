//! Errors of the store.

use crate::key::Key;

/// Errors of the `corral-store` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No object at that key.
    #[error("{0} not found")]
    NotFound(Key),
    /// Create of a key that is taken.
    #[error("{0} already exists")]
    AlreadyExists(Key),
    /// The precondition on `resourceVersion` failed: someone else wrote first.
    #[error("{key} was modified: expected resourceVersion {expected}, it is now {actual}; re-read and retry")]
    Conflict {
        /// The object.
        key: Key,
        /// The resourceVersion the writer based its change on.
        expected: u64,
        /// The object's current resourceVersion.
        actual: u64,
    },
    /// The requested revision is no longer in the event log.
    #[error(
        "revision {requested} has been compacted (oldest retained is {compacted}); re-list and watch from the list's revision"
    )]
    Gone {
        /// The revision asked for.
        requested: u64,
        /// Events at or below this revision are gone.
        compacted: u64,
    },
    /// The requested revision is ahead of the store: it did not come from this store,
    /// or the store was restored to an earlier state since.
    #[error(
        "revision {requested} is ahead of this store, which is at revision {current}; re-list and watch from the list's revision"
    )]
    Ahead {
        /// The revision asked for.
        requested: u64,
        /// The store's current revision.
        current: u64,
    },
    /// The object is not a JSON object with usable metadata.
    #[error("invalid object: {0}")]
    Invalid(String),
    /// The underlying database failed.
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    /// The disk holding the store is full: the write was refused and nothing
    /// changed; writes resume once space is freed.
    #[error("no space left for the store: {0}")]
    NoSpace(String),
    /// A file beside the database could not be read or written.
    #[error("store file: {0}")]
    Io(String),
    /// Data on disk could not be decoded.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A storage backend other than sled (etcd) failed or could not be reached; the
    /// write may or may not have been applied when the failure came after sending it.
    #[error("storage backend failure: {0}")]
    Backend(String),
    /// The storage backend (etcd) could not be reached, or did not answer in time
    /// (a member died, an election is under way). A read may simply be asked again; a
    /// write may or may not have been applied: read before writing again.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    /// The store is shut down or a previous storage failure poisoned it.
    #[error("store is closed")]
    Closed,
}

/// A list's reader thread that did not finish: cancelled as the runtime shuts down
/// (the store is going away), or panicked reading what is on disk.
pub(crate) fn list_reader_failed(e: tokio::task::JoinError) -> Error {
    if e.is_cancelled() { Error::Closed } else { Error::Corrupt(format!("list reader failed: {e}")) }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_list_reader_cancelled_at_shutdown_is_a_closed_store_not_a_corrupt_one() {
        let reader = tokio::spawn(std::future::pending::<()>());
        reader.abort();
        let e = reader.await.expect_err("aborted");
        assert!(matches!(list_reader_failed(e), Error::Closed));
        let reader = tokio::spawn(async { panic!("a bug") });
        let e = reader.await.expect_err("panicked");
        assert!(matches!(list_reader_failed(e), Error::Corrupt(_)));
    }
}
