//! The client's one error type: either the server answered with a `Status`, or it
//! could not be reached or understood.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One offending field reported by the server in `details.causes`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Cause {
    /// Dotted path of the field, e.g. `spec.data.key`; empty when the cause is not
    /// about one field.
    #[serde(default)]
    pub field: String,
    /// What is wrong with it.
    #[serde(default)]
    pub message: String,
}

/// `details` of a server `Status`: which object the error is about and every cause.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusDetails {
    /// Group of the object's kind.
    #[serde(default)]
    pub group: String,
    /// Kind of the object.
    #[serde(default)]
    pub kind: String,
    /// Name of the object.
    #[serde(default)]
    pub name: String,
    /// Every offending field (for `Invalid`).
    #[serde(default)]
    pub causes: Vec<Cause>,
}

/// The JSON `Status` the server answers errors with (and sends in watch `ERROR`
/// events).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// HTTP status code, e.g. 422.
    #[serde(default)]
    pub code: u16,
    /// Machine-readable reason, e.g. `Invalid`, `NotFound`, `Gone`.
    #[serde(default)]
    pub reason: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// The object concerned and every cause.
    #[serde(default)]
    pub details: Option<StatusDetails>,
}

impl Status {
    /// The causes listed in `details`, if any.
    pub fn causes(&self) -> &[Cause] {
        self.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default()
    }
}

/// Why a server could not be reached or answered no further.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// No connection could be made.
    Connect,
    /// The server took too long.
    Timeout,
    /// The connection broke, or the request failed in flight.
    Broken,
}

/// Everything a [`Client`](crate::Client) call can fail with.
#[derive(Debug)]
pub enum Error {
    /// The server answered with an error `Status` (boxed: errors stay small to move).
    Api(Box<Status>),
    /// The server could not be reached, or the connection broke.
    Transport {
        /// The server's base URL (or `in-process`), so the message says where we tried.
        server: String,
        /// What kind of failure.
        failure: TransportFailure,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered something that is not what the API promises.
    Decode {
        /// What was being decoded, e.g. `the list of kinds`.
        what: String,
        /// Why it could not be decoded.
        message: String,
    },
    /// A URL could not be built from the server address given by the user.
    BadServerUrl {
        /// The address as given.
        url: String,
        /// Why it is not usable.
        message: String,
    },
    /// The server serves no kind of that name.
    UnknownKind(String),
    /// The request cannot be made as asked (e.g. a namespaced kind without a namespace).
    Invalid(String),
    /// A configuration file (kubeconfig) could not be read or understood.
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    /// The HTTP status code of an [`Error::Api`], if that is what this is.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api(s) => Some(s.code),
            _ => None,
        }
    }

    /// The server's `reason` of an [`Error::Api`], e.g. `NotFound`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::Api(s) => Some(&s.reason),
            _ => None,
        }
    }

    /// The causes of an [`Error::Api`]; empty otherwise.
    pub fn causes(&self) -> &[Cause] {
        match self {
            Error::Api(s) => s.causes(),
            _ => &[],
        }
    }

    /// Whether the server answered 404.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether the server answered 410: the requested revision was compacted and the
    /// caller must re-list.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }

    /// Whether a write lost an optimistic-concurrency race (409 `Conflict`): re-read
    /// and retry.
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409) && self.reason() == Some("Conflict")
    }

    /// Whether a create found the object already there (409 `AlreadyExists`).
    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(409) && self.reason() == Some("AlreadyExists")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(s) => {
                if s.message.is_empty() {
                    write!(f, "the server answered {} {}", s.code, s.reason)
                } else {
                    f.write_str(&s.message)
                }
            }
            Error::Transport { server, failure, source } => {
                // The transport's own message often only says "error sending request";
                // the root cause (connection refused, reset, ...) is what a user can act on.
                let mut root: &(dyn std::error::Error + 'static) = source.as_ref();
                while let Some(next) = root.source() {
                    root = next;
                }
                let what = match failure {
                    TransportFailure::Connect => "cannot connect to the Corral server",
                    TransportFailure::Timeout => "timed out talking to the Corral server",
                    TransportFailure::Broken => "lost the connection to the Corral server",
                };
                write!(
                    f,
                    "{what} at {server}: {root}; is it running (`corral up`)? \
                     Point --server or CORRAL_SERVER at it otherwise"
                )
            }
            Error::Decode { what, message } => {
                write!(f, "the server sent {what} in an unexpected form: {message}")
            }
            Error::BadServerUrl { url, message } => write!(
                f,
                "the server address {url:?} is not a usable URL ({message}); \
                 pass --server http://HOST:PORT"
            ),
            Error::UnknownKind(name) => write!(
                f,
                "the server does not serve a kind called {name:?}; run `corral api-resources` to list the kinds it serves"
            ),
            Error::Invalid(message) => f.write_str(message),
            Error::Config { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
