//! Errors of the resource model.

use serde::{Deserialize, Serialize};

/// One offending field of an object: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Dotted path to the field, e.g. `spec.data.key` or `metadata.name`.
    pub field: String,
    /// What is wrong, phrased so a user can act on it.
    pub message: String,
}

impl FieldError {
    /// A new field error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Errors of the `corral-api` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not satisfy its kind's schema or naming rules; every offending
    /// field is listed.
    #[error("invalid object: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// No served kind matches.
    #[error("unknown kind {0}")]
    UnknownKind(String),
    /// A kind of that name (or plural) is already registered.
    #[error("kind {0} is already registered")]
    DuplicateKind(String),
    /// A schema could not be compiled.
    #[error("schema of {kind} does not compile: {message}")]
    BadSchema {
        /// The kind whose schema failed.
        kind: String,
        /// Why the schema failed to compile.
        message: String,
    },
    /// A label selector could not be parsed.
    #[error("invalid label selector {selector:?}: {message}")]
    BadSelector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        message: String,
    },
    /// A field selector could not be parsed.
    #[error("invalid field selector {selector:?}: {message}")]
    BadFieldSelector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        message: String,
    },
    /// JSON (de)serialization failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and each of its sources, as one line: `what: why: root cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
