//! The one error type of the API server: every failure leaves as a JSON `Status`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_api::{FieldError, KindInfo};
use corral_store::Error as StoreError;
use serde::Serialize;

/// `details` of a `Status`: which object the error is about and, for `Invalid`,
/// every offending field.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StatusDetails {
    /// API group of the object's kind.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The object's kind.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The object's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Offending fields; empty unless the object is invalid.
    #[serde(serialize_with = "causes")]
    pub causes: Vec<FieldError>,
}

/// Causes as Kubernetes' `StatusCause`s: field, message and a reason, which clients
/// such as kubectl need to show the message.
fn causes<S: serde::Serializer>(causes: &[FieldError], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Cause<'a> {
        reason: &'static str,
        field: &'a str,
        message: &'a str,
    }
    s.collect_seq(causes.iter().map(|c| Cause { reason: "FieldValueInvalid", field: &c.field, message: &c.message }))
}

impl StatusDetails {
    /// Details naming an object of kind `info`.
    pub fn object(info: &KindInfo, name: &str) -> Self {
        StatusDetails { group: info.group.clone(), kind: info.kind.clone(), name: name.to_string(), causes: Vec::new() }
    }
}

/// An error answered to a client as a `Status` object with the matching HTTP code.
///
/// Internal errors are logged where they are created and reach the client only as a
/// generic message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: StatusCode,
    /// Machine-readable reason, e.g. `NotFound`.
    pub reason: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The object concerned, when known.
    pub details: Option<Box<StatusDetails>>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct StatusBody<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    metadata: Empty,
    /// Always `Failure`: client-go reads the details only of a failed Status.
    status: &'static str,
    code: u16,
    reason: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a StatusDetails>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    /// Attaches details about the object concerned.
    pub fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// Replaces the message, keeping code and reason.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 `Unauthorized`: no credential, or one that proves nothing.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// 403 `Forbidden`: authenticated, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 404 `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 404 for an object of kind `info` that does not exist.
    pub fn object_not_found(info: &KindInfo, name: &str) -> Self {
        Self::not_found(format!("{} {name:?} not found", info.kind)).with_details(StatusDetails::object(info, name))
    }

    /// 405 `MethodNotAllowed`.
    pub fn method_not_allowed(method: &axum::http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("method {method} is not supported on {path}"),
        )
    }

    /// 409 `Conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 507 `InsufficientStorage`: the store's disk is full; nothing was written.
    pub fn insufficient_storage(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INSUFFICIENT_STORAGE, "InsufficientStorage", message)
    }

    /// 503 `ServiceUnavailable`: the store (etcd) could not be reached or did not
    /// answer; the request may be sent again, after reading what a write changed.
    pub fn store_unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "the store is unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the store is unavailable (an etcd member failed or is electing a leader): retry in a moment; \
             a write may or may not have been applied, so read before writing again",
        )
    }

    /// 410 `Expired`: a list's `continue` token outlived its revision.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// 410 `Gone`.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Gone", message)
    }

    /// 413 `RequestEntityTooLarge`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 413 `RequestEntityTooLarge` for what a request would make too large, not for
    /// its body.
    pub fn entity_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", message)
    }

    /// 429 `TooManyRequests`.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message)
    }

    /// 415 `UnsupportedMediaType`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", message)
    }

    /// 422 `Invalid`, naming every offending field.
    pub fn invalid(info: &KindInfo, name: &str, causes: Vec<FieldError>) -> Self {
        let listed: Vec<String> = causes.iter().map(ToString::to_string).collect();
        let mut details = StatusDetails::object(info, name);
        details.causes = causes;
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{} {name:?} is invalid: {}", info.kind, listed.join("; ")),
        )
        .with_details(details)
    }

    /// 500 `InternalError`: `detail` is logged, the client gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error while serving a request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "an internal error occurred; the server log has the details",
        )
    }

    /// Maps a store error about an object of kind `info` named `name`.
    pub fn from_store(err: StoreError, info: &KindInfo, name: &str) -> Self {
        let details = StatusDetails::object(info, name);
        match err {
            StoreError::NotFound(_) => Self::object_not_found(info, name),
            StoreError::AlreadyExists(_) => {
                Self::new(StatusCode::CONFLICT, "AlreadyExists", format!("{} {name:?} already exists", info.kind))
                    .with_details(details)
            }
            StoreError::Conflict { .. } => Self::conflict(err.to_string()).with_details(details),
            StoreError::Gone { .. } | StoreError::Ahead { .. } => Self::gone(err.to_string()).with_details(details),
            StoreError::Invalid(m) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{} {name:?} is invalid: {m}", info.kind),
            )
            .with_details(details),
            StoreError::NoSpace(_) => Self::insufficient_storage(err.to_string()).with_details(details),
            StoreError::Unavailable(m) => Self::store_unavailable(m).with_details(details),
            other => Self::internal(other),
        }
    }

    /// The `Status` object as JSON.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).unwrap_or_default()
    }

    fn body(&self) -> StatusBody<'_> {
        StatusBody {
            // Status is Kubernetes' own `v1` kind, whatever the group of the request:
            // clients (client-go) read error details only from a `v1` Status.
            api_version: "v1",
            kind: "Status",
            metadata: Empty {},
            status: "Failure",
            code: self.code.as_u16(),
            reason: self.reason,
            message: &self.message,
            details: self.details.as_deref(),
        }
    }
}

/// Store errors without an object context (admin endpoints, watches of a whole
/// collection).
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(k) => Self::not_found(format!("{k} not found")),
            StoreError::AlreadyExists(k) => {
                Self::new(StatusCode::CONFLICT, "AlreadyExists", format!("{k} already exists"))
            }
            StoreError::Conflict { .. } => Self::conflict(err.to_string()),
            StoreError::Gone { .. } | StoreError::Ahead { .. } => Self::gone(err.to_string()),
            StoreError::Invalid(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", m),
            StoreError::NoSpace(_) => Self::insufficient_storage(err.to_string()),
            StoreError::Unavailable(m) => Self::store_unavailable(m),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.code, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.code == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Result of the server's handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_status_lists_every_cause() {
        let reg = corral_api::Registry::builtin();
        let info = reg.resolve("cm").map(|i| (*i).clone());
        let Some(info) = info else { panic!("configmaps are built in") };
        let e = ApiError::invalid(
            &info,
            "x",
            vec![FieldError::new("spec.extra", "unknown field"), FieldError::new("metadata.name", "bad")],
        );
        let v = e.status_json();
        assert_eq!(v["code"], 422);
        assert_eq!(v["reason"], "Invalid");
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["details"]["kind"], "ConfigMap");
        assert_eq!(v["details"]["causes"].as_array().map(Vec::len), Some(2));
        assert!(v["message"].as_str().is_some_and(|m| m.contains("spec.extra: unknown field")));
    }

    #[test]
    fn an_unavailable_store_is_a_503_to_retry_without_its_details() {
        let e = ApiError::from(StoreError::Unavailable("etcd: transport error at 10.0.0.7:2379".into()));
        assert_eq!(e.code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.message.contains("10.0.0.7"), "{}", e.message);
        assert!(e.message.contains("read before writing again"), "{}", e.message);
        let resp = e.into_response();
        assert_eq!(resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
    }

    #[test]
    fn internal_details_are_not_sent() {
        let e = ApiError::internal("disk on fire at /secret/path");
        assert!(!e.message.contains("/secret/path"));
        assert_eq!(e.code, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
