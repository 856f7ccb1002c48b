//! Pushing blobs: `POST /v2/<name>/blobs/uploads/` starts an upload (or, with
//! `?digest=`, is the whole upload; with `?mount=`, reuses a stored blob), `PATCH`
//! appends a chunk, `PUT ?digest=` ends it, `GET` tells its progress, `DELETE`
//! cancels it.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::error::{RegistryError, Result};
use super::names::Digest;
use super::storage::Storage;
use super::{header_value, query};
use crate::Metrics;

/// `POST`: a new upload, a monolithic upload, or a mount.
pub async fn start(storage: &Storage, metrics: &Metrics, name: &str, uri: &Uri, body: Body) -> Result<Response> {
    let q = query(uri);
    if let Some(mount) = q.get("mount") {
        let digest = Digest::parse(mount)?;
        if storage.blob_size(&digest).await?.is_some() {
            // Every repository shares the blob store: mounting is knowing the digest.
            return Ok(created(name, &digest));
        }
    }
    let id = storage.new_upload().await?;
    if let Some(digest) = q.get("digest") {
        let digest = Digest::parse(digest)?;
        let pushed = storage.append(&id, body).await?;
        metrics.registry_pushed.inc_by(pushed);
        storage.commit_upload(&id, &digest).await?;
        tracing::info!(repository = name, %digest, size = pushed, "blob pushed");
        return Ok(created(name, &digest));
    }
    Ok(accepted(name, &id, 0))
}

/// `PATCH`: appends the body to the upload.
pub async fn patch(
    storage: &Storage,
    metrics: &Metrics,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let before = storage.upload_size(id).await?;
    if let Some(range) = headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()) {
        // A chunk must start where the upload ends: chunks are never reordered.
        let start = range.split('-').next().and_then(|s| s.trim().parse::<u64>().ok());
        if start != Some(before) {
            let mut resp = RegistryError::UploadInvalid(format!(
                "the chunk's Content-Range {range:?} does not start at {before}, where the upload ends"
            ))
            .into_response();
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            return Ok(resp);
        }
    }
    let after = storage.append(id, body).await?;
    metrics.registry_pushed.inc_by(after - before);
    Ok(accepted(name, id, after))
}

/// `PUT ?digest=`: appends the body, verifies the digest, stores the blob.
pub async fn finish(
    storage: &Storage,
    metrics: &Metrics,
    name: &str,
    id: &str,
    uri: &Uri,
    body: Body,
) -> Result<Response> {
    let q = query(uri);
    let digest = q
        .get("digest")
        .ok_or_else(|| RegistryError::DigestInvalid("ending an upload needs ?digest=sha256:…".into()))?;
    let digest = match Digest::parse(digest) {
        Ok(d) => d,
        Err(e) => {
            let _ = storage.cancel_upload(id).await;
            return Err(e);
        }
    };
    let before = storage.upload_size(id).await?;
    let after = storage.append(id, body).await?;
    metrics.registry_pushed.inc_by(after - before);
    storage.commit_upload(id, &digest).await?;
    tracing::info!(repository = name, %digest, size = after, "blob pushed");
    Ok(created(name, &digest))
}

/// `GET`: how far the upload got.
pub async fn status(storage: &Storage, name: &str, id: &str) -> Result<Response> {
    let size = storage.upload_size(id).await?;
    let mut resp = accepted(name, id, size);
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// `DELETE`: drops the upload.
pub async fn cancel(storage: &Storage, id: &str) -> Result<Response> {
    storage.cancel_upload(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn accepted(name: &str, id: &str, size: u64) -> Response {
    let mut resp = StatusCode::ACCEPTED.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, header_value(&format!("/v2/{name}/blobs/uploads/{id}")));
    // Inclusive, as the specification has it; `0-0` for an empty upload too, as
    // clients expect.
    h.insert(header::RANGE, header_value(&format!("0-{}", size.saturating_sub(1))));
    h.insert("docker-upload-uuid", header_value(id));
    h.insert(header::CONTENT_LENGTH, header_value("0"));
    resp
}

fn created(name: &str, digest: &Digest) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, header_value(&format!("/v2/{name}/blobs/{digest}")));
    h.insert("docker-content-digest", header_value(&digest.to_string()));
    h.insert(header::CONTENT_LENGTH, header_value("0"));
    resp
}
