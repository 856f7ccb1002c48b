//! Reading blobs: `GET` and `HEAD /v2/<name>/blobs/<digest>`.
//!
//! Blobs are shared by every repository of the cluster (one store, one set of
//! permissions), so a blob is found whichever repository the path names.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{RegistryError, Result};
use super::header_value;
use super::names::Digest;
use super::storage::Storage;
use crate::Metrics;

/// Answers with the blob (or only its headers, for `HEAD`).
pub async fn get(storage: &Storage, metrics: &Metrics, digest: &str, head: bool) -> Result<Response> {
    let digest = Digest::parse(digest)?;
    let size = storage.blob_size(&digest).await?.ok_or_else(|| RegistryError::BlobUnknown(digest.to_string()))?;
    let body = if head {
        Body::empty()
    } else {
        let file = tokio::fs::File::open(storage.blob_path(&digest))
            .await
            .map_err(|e| RegistryError::io(format!("opening blob {digest}"), e))?;
        metrics.registry_pulled.inc_by(size);
        tracing::debug!(%digest, size, "blob pulled");
        Body::from_stream(tokio_util::io::ReaderStream::new(file))
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, header_value(&size.to_string()));
    h.insert(header::CONTENT_TYPE, header_value("application/octet-stream"));
    h.insert("docker-content-digest", header_value(&digest.to_string()));
    Ok(resp)
}
