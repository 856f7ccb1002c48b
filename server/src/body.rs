//! Request bodies in, JSON responses out.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use corral_api::nesting;
use futures::StreamExt;
use serde_json::Value;

use super::MAX_BODY_BYTES;
use super::error::{ApiError, ApiResult};

/// How much of an oversized body is still read (and discarded) before answering 413.
/// Answering while the client is still sending makes many clients see a reset
/// connection instead of the answer; past this much we stop being polite.
const DRAIN_LIMIT: usize = 8 * MAX_BODY_BYTES;

/// Reads the whole body, failing with 413 past [`MAX_BODY_BYTES`].
pub async fn read(body: Body, content_length: Option<u64>) -> ApiResult<Bytes> {
    read_limited(body, content_length, MAX_BODY_BYTES).await
}

/// Reads the whole body, failing with 413 past `limit` bytes (a transaction's body
/// holds many objects, so it may be larger than a single request's).
pub async fn read_limited(body: Body, content_length: Option<u64>, limit: usize) -> ApiResult<Bytes> {
    // Past the limit, a little more is drained for politeness, never the whole body.
    let drain_limit = DRAIN_LIMIT.max(limit);
    if content_length.is_some_and(|l| l > drain_limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        total = total.saturating_add(chunk.len());
        if total > drain_limit {
            break;
        }
        if total <= limit {
            buf.extend_from_slice(&chunk);
        }
    }
    if total > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(buf.freeze())
}

/// Decodes a JSON body, which must be an object; errors carry serde's line and column.
pub fn json_object(bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty; send the object as JSON"));
    }
    check_depth(nesting::check_json(bytes, nesting::MAX_NESTING_DEPTH))?;
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    require_object(v)
}

/// Refuses a body nested too deeply, before it is decoded.
pub fn check_depth(checked: Result<(), nesting::TooDeep>) -> ApiResult<()> {
    checked.map_err(|e| ApiError::bad_request(format!("the request body is not accepted: {e}")))
}

/// Decodes a YAML body (one document), which must be a mapping.
pub fn yaml_object(bytes: &[u8]) -> ApiResult<Value> {
    check_depth(nesting::check_yaml(bytes, nesting::MAX_NESTING_DEPTH))?;
    let v: Value = serde_norway::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))?;
    require_object(v)
}

fn require_object(v: Value) -> ApiResult<Value> {
    if v.is_object() { Ok(v) } else { Err(ApiError::bad_request("the request body must be a JSON object")) }
}

/// A JSON response whose body is already serialized (stored objects go out as is).
pub fn raw_json(code: StatusCode, json: Bytes) -> Response {
    let mut resp = (code, json).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON response from a value.
pub fn json(code: StatusCode, v: &Value) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => raw_json(code, Bytes::from(b)),
        Err(e) => ApiError::internal(format!("cannot serialize a response: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_body_is_rejected_with_413() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let err = read(Body::from(big), None).await.err();
        assert_eq!(err.map(|e| e.code), Some(StatusCode::PAYLOAD_TOO_LARGE));
        let ok = read(Body::from(vec![b' '; MAX_BODY_BYTES]), None).await;
        assert_eq!(ok.map(|b| b.len()).ok(), Some(MAX_BODY_BYTES));
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let err = json_object(b"{\n  \"a\": }").err().map(|e| e.message).unwrap_or_default();
        assert!(err.contains("line 2 column"), "{err}");
    }

    #[test]
    fn non_objects_are_rejected() {
        assert!(json_object(b"[1]").is_err());
        assert!(yaml_object(b"- a").is_err());
        assert!(yaml_object(b"kind: X\nmetadata: {name: a}\n").is_ok());
    }
}
