//! Errors in the OCI distribution format: `{"errors":[{"code":…,"message":…}]}`
//! with the status code the specification gives each code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What went wrong with a registry request, as the distribution specification
/// names it. Internal details (I/O errors) are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// `BLOB_UNKNOWN` (404): no blob with that digest.
    #[error("blob unknown: {0}")]
    BlobUnknown(String),
    /// `BLOB_UPLOAD_UNKNOWN` (404): no upload session with that id.
    #[error("blob upload unknown: {0}")]
    UploadUnknown(String),
    /// `BLOB_UPLOAD_INVALID` (400 or 416): a chunk out of order, a bad range.
    #[error("blob upload invalid: {0}")]
    UploadInvalid(String),
    /// `DIGEST_INVALID` (400): malformed, or not the content's digest.
    #[error("digest invalid: {0}")]
    DigestInvalid(String),
    /// `MANIFEST_UNKNOWN` (404).
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// `MANIFEST_INVALID` (400): not a manifest this registry understands.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// `MANIFEST_BLOB_UNKNOWN` (400): the manifest names a blob not pushed first.
    #[error("manifest references unknown blob: {0}")]
    ManifestBlobUnknown(String),
    /// `NAME_INVALID` (400): a repository name or tag out of grammar.
    #[error("name invalid: {0}")]
    NameInvalid(String),
    /// `NAME_UNKNOWN` (404): no such repository.
    #[error("repository unknown: {0}")]
    NameUnknown(String),
    /// `SIZE_INVALID` (413): larger than this registry accepts.
    #[error("size invalid: {0}")]
    SizeInvalid(String),
    /// `UNAUTHORIZED` (401), with the challenge registry clients answer.
    #[error("{0}")]
    Unauthorized(String),
    /// `DENIED` (403).
    #[error("{0}")]
    Denied(String),
    /// `UNSUPPORTED` (405): an operation this registry does not offer.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// `UNAVAILABLE` (503): the server keeps no image storage (a server built without
    /// a data directory, in tests).
    #[error("{0}")]
    Unavailable(String),
    /// The server's disk is too full to take the upload (507).
    #[error("{0}")]
    NoSpace(String),
    /// Storage failed; the detail is logged, the client sees `UNKNOWN` (500).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Result of the registry's handlers.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// An I/O failure while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RegistryError::Io { what: what.into(), source }
    }

    /// The OCI error code and HTTP status.
    pub fn code(&self) -> (&'static str, StatusCode) {
        use RegistryError::*;
        match self {
            BlobUnknown(_) => ("BLOB_UNKNOWN", StatusCode::NOT_FOUND),
            UploadUnknown(_) => ("BLOB_UPLOAD_UNKNOWN", StatusCode::NOT_FOUND),
            UploadInvalid(_) => ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST),
            DigestInvalid(_) => ("DIGEST_INVALID", StatusCode::BAD_REQUEST),
            ManifestUnknown(_) => ("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND),
            ManifestInvalid(_) => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST),
            ManifestBlobUnknown(_) => ("MANIFEST_BLOB_UNKNOWN", StatusCode::BAD_REQUEST),
            NameInvalid(_) => ("NAME_INVALID", StatusCode::BAD_REQUEST),
            NameUnknown(_) => ("NAME_UNKNOWN", StatusCode::NOT_FOUND),
            SizeInvalid(_) => ("SIZE_INVALID", StatusCode::PAYLOAD_TOO_LARGE),
            Unauthorized(_) => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            Denied(_) => ("DENIED", StatusCode::FORBIDDEN),
            Unsupported(_) => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED),
            Unavailable(_) => ("UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
            // No code of the specification fits; registries use UNKNOWN for the rest.
            NoSpace(_) => ("UNKNOWN", StatusCode::INSUFFICIENT_STORAGE),
            Io { .. } => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (code, status) = self.code();
        let message = match &self {
            RegistryError::Io { .. } => {
                tracing::error!(error = %self, "registry storage failed");
                "the registry's storage failed; the server log says why".to_string()
            }
            other => other.to_string(),
        };
        let body = json!({"errors": [{"code": code, "message": message}]}).to_string();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Also on refusals made before a route runs (401, 403): Docker reads it to
        // know it speaks to a v2 registry.
        headers.insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
        if status == StatusCode::UNAUTHORIZED {
            // What `docker login`, skopeo and containerd look for to send credentials.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Basic realm="corral""#));
        }
        resp
    }
}
