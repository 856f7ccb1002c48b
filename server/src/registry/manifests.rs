//! Manifests and listings: `GET`/`HEAD`/`PUT /v2/<name>/manifests/<reference>`,
//! `GET /v2/<name>/tags/list`, `GET /v2/_catalog`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{RegistryError, Result};
use super::names::{Digest, Reference};
use super::storage::{MAX_MANIFEST_BYTES, Storage};
use super::{header_value, query};
use crate::Metrics;

/// The media type assumed for a manifest pushed without one.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

/// `GET`/`HEAD`: the manifest a tag or digest names, with its stored media type.
pub async fn get(storage: &Storage, metrics: &Metrics, name: &str, reference: &str, head: bool) -> Result<Response> {
    let unknown = || RegistryError::ManifestUnknown(format!("{name}:{reference}"));
    let digest = match Reference::parse(reference)? {
        Reference::Digest(d) => d,
        Reference::Tag(t) => storage.tag(name, &t).await?.ok_or_else(unknown)?,
    };
    let media_type = storage.manifest_type(name, &digest).await?.ok_or_else(unknown)?;
    let bytes = tokio::fs::read(storage.blob_path(&digest)).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => unknown(),
        _ => RegistryError::io(format!("reading manifest {digest}"), e),
    })?;
    let size = bytes.len();
    let body = if head {
        Body::empty()
    } else {
        metrics.registry_pulled.inc_by(size as u64);
        Body::from(bytes)
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&media_type));
    h.insert(header::CONTENT_LENGTH, header_value(&size.to_string()));
    h.insert("docker-content-digest", header_value(&digest.to_string()));
    Ok(resp)
}

/// `PUT`: stores a manifest whose blobs are all stored, under its digest and, when
/// the reference is a tag, points the tag at it.
pub async fn put(
    storage: &Storage,
    metrics: &Metrics,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let reference = Reference::parse(reference)?;
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST_BYTES)
        .await
        .map_err(|_| RegistryError::SizeInvalid(format!("a manifest may hold at most {MAX_MANIFEST_BYTES} bytes")))?;
    metrics.registry_pushed.inc_by(bytes.len() as u64);
    let digest = Digest::of(&bytes);
    if let Reference::Digest(claimed) = &reference
        && claimed != &digest
    {
        return Err(RegistryError::DigestInvalid(format!(
            "the manifest has digest {digest}, not {claimed}; nothing was stored"
        )));
    }
    let doc: Document = serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::ManifestInvalid(format!("not an image manifest or index: {e}")))?;
    if doc.schema_version != Some(2) {
        return Err(RegistryError::ManifestInvalid(
            "only schemaVersion 2 manifests (OCI, Docker v2 schema 2) are accepted".into(),
        ));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let media_type = content_type
        .filter(|t| !t.is_empty() && *t != "application/octet-stream")
        .map(str::to_string)
        .or(doc.media_type.clone())
        .unwrap_or_else(|| OCI_MANIFEST.to_string());
    // Everything the manifest names must already be here: a pull must never find
    // a manifest whose parts are missing.
    let mut parts = Vec::new();
    match &doc.manifests {
        Some(children) => {
            for child in children {
                let d = Digest::parse(&child.digest)?;
                if storage.manifest_type(name, &d).await?.is_none() {
                    return Err(RegistryError::ManifestBlobUnknown(format!("manifest {d} is not in {name}")));
                }
            }
        }
        None => {
            let config = doc
                .config
                .as_ref()
                .ok_or_else(|| RegistryError::ManifestInvalid("the manifest has no config".into()))?;
            parts.push(Digest::parse(&config.digest)?);
            for l in &doc.layers {
                parts.push(Digest::parse(&l.digest)?);
            }
        }
    }
    for d in &parts {
        if storage.blob_size(d).await?.is_none() {
            return Err(RegistryError::ManifestBlobUnknown(format!("blob {d} was not pushed")));
        }
    }
    storage.put_small_blob(&digest, &bytes).await?;
    let tag = match &reference {
        Reference::Tag(t) => Some(t.as_str()),
        Reference::Digest(_) => None,
    };
    storage.link_manifest(name, &digest, &media_type, tag).await?;
    tracing::info!(repository = name, tag = tag.unwrap_or(""), %digest, %media_type, "manifest pushed");
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, header_value(&format!("/v2/{name}/manifests/{digest}")));
    h.insert("docker-content-digest", header_value(&digest.to_string()));
    h.insert(header::CONTENT_LENGTH, header_value("0"));
    Ok(resp)
}

/// `n` and `last` of a listing: at most `n` entries after `last`.
fn page(mut items: Vec<String>, uri: &Uri) -> Vec<String> {
    let q = query(uri);
    if let Some(last) = q.get("last") {
        items.retain(|i| i.as_str() > last.as_str());
    }
    if let Some(n) = q.get("n").and_then(|n| n.parse::<usize>().ok()) {
        items.truncate(n);
    }
    items
}

/// `GET /v2/<name>/tags/list`.
pub async fn tags(storage: &Storage, name: &str, uri: &Uri) -> Result<Response> {
    if !storage.has_repository(name).await {
        return Err(RegistryError::NameUnknown(name.to_string()));
    }
    let tags = page(storage.tags(name).await?, uri);
    Ok(axum::Json(serde_json::json!({"name": name, "tags": tags})).into_response())
}

/// `GET /v2/_catalog`.
pub async fn catalog(storage: &Storage, uri: &Uri) -> Result<Response> {
    let repositories = page(storage.repositories().await?, uri);
    Ok(axum::Json(serde_json::json!({"repositories": repositories})).into_response())
}
