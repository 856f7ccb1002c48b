//! Pushing an image archive (what `corral image import` reads) to the control
//! plane's registry, and listing the registry: `corral image push` and `corral
//! image ls` through the API server's `/v2/…`.
//!
//! Blobs the registry already holds (a `HEAD` answers 200) are skipped; the others
//! are uploaded in chunks, then the manifest is put under the tag. A `docker save`
//! archive has no manifest of its own: an OCI manifest is made from its config and
//! layers, so that the image's id (its config's digest) stays the same.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;

use super::import;
use super::names::normalize;
use super::unpack::{self, Options, Unpacker};
use crate::error::{Error, Result};

/// Bytes sent per `PATCH`.
const CHUNK: usize = 8 << 20;

/// A step of a push, for progress reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushEvent {
    /// The archive is being read and checked.
    Reading,
    /// Part of a blob was sent.
    Sending {
        /// What the blob is: `config` or `layer 1/2`.
        what: String,
        /// sha256 hex of the blob.
        digest: String,
        /// Bytes sent so far.
        sent: u64,
        /// Its size.
        size: u64,
    },
    /// The registry had the blob already.
    Skipped {
        /// As in [`PushEvent::Sending`].
        what: String,
        /// sha256 hex of the blob.
        digest: String,
        /// Its size.
        size: u64,
    },
}

/// What a push stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// `repository:tag`.
    pub name: String,
    /// `sha256:…` of the manifest.
    pub digest: String,
    /// Bytes of the config and layers.
    pub size: u64,
}

/// A blob to push.
struct Part {
    what: String,
    hex: String,
    path: PathBuf,
    size: u64,
}

/// A temp dir removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = unpack::remove_tree(&self.0);
    }
}

/// Pushes the archive `file` as `name` (`repository:tag`; default: the name the
/// archive records) to the registry `client`'s server serves.
///
/// # Errors
/// The archive is unreadable or malformed, or the registry refuses (the message
/// carries its error code).
pub async fn push(
    client: &corral_client::Client,
    file: &Path,
    name: Option<&str>,
    progress: &mut (dyn FnMut(PushEvent) + Send),
) -> Result<Pushed> {
    progress(PushEvent::Reading);
    let (tmp, parsed, manifest, media_type, name) = {
        let (file, name) = (file.to_path_buf(), name.map(str::to_string));
        crate::blocking::run("reading the archive", move || read(&file, name.as_deref())).await?
    };
    let (repository, tag) = name.rsplit_once(':').unwrap_or((&name, "latest"));
    let mut parts = vec![Part {
        what: "config".into(),
        hex: parsed.config.hex.clone(),
        path: parsed.config.path.clone(),
        size: parsed.config.size,
    }];
    let count = parsed.layers.len();
    for (i, l) in parsed.layers.iter().enumerate() {
        parts.push(Part {
            what: format!("layer {}/{count}", i + 1),
            hex: l.hex.clone(),
            path: l.path.clone(),
            size: l.size,
        });
    }
    // The version check answers 401 with a reason when the credential is not good.
    let check = send(client, axum::http::Method::GET, "/v2/", None, Bytes::new()).await?;
    expect(check, 200, &format!("{name}: logging in")).await?;
    let mut size = 0;
    for part in &parts {
        size += part.size;
        push_blob(client, repository, part, progress).await?;
    }
    let resp = send(
        client,
        axum::http::Method::PUT,
        &format!("/v2/{repository}/manifests/{tag}"),
        Some(&media_type),
        Bytes::from(manifest.clone()),
    )
    .await?;
    expect(resp, 201, &format!("{name}: storing its manifest")).await?;
    drop(tmp);
    let digest = format!("sha256:{}", unpack::hex(&<sha2::Sha256 as sha2::Digest>::digest(&manifest)));
    Ok(Pushed { name, digest, size })
}

/// Unpacks and checks the archive; returns its blobs, the manifest to push (the
/// archive's own, or one made for a `docker save` archive), its media type and the
/// image's name.
fn read(file: &Path, name: Option<&str>) -> Result<(TempDir, import::Parsed, Vec<u8>, String, String)> {
    let label = file.display().to_string();
    if !file.is_file() {
        return Err(Error::Invalid(format!("{label}: no such file")));
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("corral-push-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    let tmp = TempDir(dir.clone());
    let mut unpacker = Unpacker::new(&dir, Options { whiteouts: false, chown: false, mode_mask: 0o755 });
    unpacker.apply(unpack::maybe_gunzip(file)?, &label)?;
    unpacker.finish()?;
    let parsed = import::parse(&dir, &label)?;
    let name = match name {
        Some(n) => normalize(n)?,
        None => {
            let recorded = parsed.names.first().ok_or_else(|| {
                Error::Invalid(format!("{label} records no image name; give one: corral image push FILE NAME:TAG"))
            })?;
            normalize(recorded)?
        }
    };
    let (manifest, media_type) = match &parsed.manifest {
        Some(m) => {
            let bytes = std::fs::read(&m.path).map_err(|e| Error::io("cannot read", &m.path, e))?;
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Typed {
                media_type: Option<String>,
            }
            let typed: Typed = serde_json::from_slice(&bytes)
                .map_err(|source| Error::Json { what: format!("{label}: manifest"), source })?;
            let media_type = typed.media_type.unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
            (bytes, media_type)
        }
        None => {
            let mut layers = Vec::new();
            for l in &parsed.layers {
                let media_type = if gzipped(&l.path)? {
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                } else {
                    "application/vnd.oci.image.layer.v1.tar"
                };
                layers.push(serde_json::json!({
                    "mediaType": media_type, "digest": format!("sha256:{}", l.hex), "size": l.size,
                }));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{}", parsed.config.hex),
                    "size": parsed.config.size,
                },
                "layers": layers,
            });
            (manifest.to_string().into_bytes(), "application/vnd.oci.image.manifest.v1+json".to_string())
        }
    };
    Ok((tmp, parsed, manifest, media_type, name))
}

fn gzipped(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let n = f.read(&mut magic).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// Sends one blob unless the registry has it: `POST`, `PATCH` per chunk, `PUT`.
async fn push_blob(
    client: &corral_client::Client,
    repository: &str,
    part: &Part,
    progress: &mut (dyn FnMut(PushEvent) + Send),
) -> Result<()> {
    let digest = format!("sha256:{}", part.hex);
    let head =
        send(client, axum::http::Method::HEAD, &format!("/v2/{repository}/blobs/{digest}"), None, Bytes::new()).await?;
    let what = format!("{repository}: uploading the {}", part.what);
    // Anything but 200 (404, or a refusal): upload; a refusal then comes with a
    // body that says why, which a HEAD answer lacks.
    if head.status.as_u16() == 200 {
        progress(PushEvent::Skipped { what: part.what.clone(), digest: part.hex.clone(), size: part.size });
        return Ok(());
    }
    let start =
        send(client, axum::http::Method::POST, &format!("/v2/{repository}/blobs/uploads/"), None, Bytes::new()).await?;
    let location = location_opt(&start);
    expect(start, 202, &what).await?;
    let mut location =
        location.ok_or_else(|| Error::Image(format!("{what}: the registry started an upload without a Location")))?;
    let mut file = tokio::fs::File::open(&part.path).await.map_err(|e| Error::io("cannot open", &part.path, e))?;
    let mut sent: u64 = 0;
    progress(PushEvent::Sending { what: part.what.clone(), digest: part.hex.clone(), sent, size: part.size });
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            let n = tokio::io::AsyncReadExt::read(&mut file, &mut chunk[filled..])
                .await
                .map_err(|e| Error::io("cannot read", &part.path, e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        let mut req = axum::http::Request::builder().method(axum::http::Method::PATCH).uri(&location);
        req = req.header(axum::http::header::CONTENT_RANGE, format!("{sent}-{}", sent + filled as u64 - 1));
        req = req.header(axum::http::header::CONTENT_TYPE, "application/octet-stream");
        let req = req.body(Bytes::from(chunk)).map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
        let resp = client.send_request(req).await?;
        let next = location_opt(&resp);
        expect(resp, 202, &what).await?;
        if let Some(next) = next {
            location = next;
        }
        sent += filled as u64;
        progress(PushEvent::Sending { what: part.what.clone(), digest: part.hex.clone(), sent, size: part.size });
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let put =
        send(client, axum::http::Method::PUT, &format!("{location}{sep}digest={digest}"), None, Bytes::new()).await?;
    expect(put, 201, &what).await
}

async fn send(
    client: &corral_client::Client,
    method: axum::http::Method,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<corral_client::Response> {
    let mut req = axum::http::Request::builder().method(method).uri(path);
    if let Some(t) = content_type {
        req = req.header(axum::http::header::CONTENT_TYPE, t);
    }
    let req = req.body(body).map_err(|e| Error::Invalid(format!("request {path}: {e}")))?;
    Ok(client.send_request(req).await?)
}

fn location_opt(resp: &corral_client::Response) -> Option<String> {
    resp.headers.get(axum::http::header::LOCATION).and_then(|v| v.to_str().ok()).map(|l| {
        // A registry may answer with an absolute URL; requests here carry paths.
        match l.split_once("://") {
            Some((_, rest)) => rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_else(|| "/".into()),
            None => l.to_string(),
        }
    })
}

/// `Ok` if `resp` has status `want`; else the registry's error, as one line.
async fn expect(resp: corral_client::Response, want: u16, what: &str) -> Result<()> {
    if resp.status.as_u16() == want {
        return Ok(());
    }
    let status = resp.status;
    let body = resp.bytes().await.unwrap_or_default();
    Err(Error::Image(format!("{what}: the registry answered {status}: {}", registry_error(&body))))
}

/// `CODE: message` of an OCI error body, or the body's start.
pub(crate) fn registry_error(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.get(0)?.clone();
            Some(format!(
                "{}: {}",
                e.get("code").and_then(|c| c.as_str()).unwrap_or("?"),
                e.get("message").and_then(|m| m.as_str()).unwrap_or("")
            ))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// An image in the cluster's registry, as `corral image ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteImage {
    /// The repository.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// `sha256:…` of the manifest.
    pub digest: String,
    /// Bytes of the config and layers (as stored, compressed or not); for an index,
    /// of its manifests.
    pub size: u64,
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Sizes {
    #[serde(default)]
    config: Option<Sized>,
    #[serde(default)]
    layers: Vec<Sized>,
    #[serde(default)]
    manifests: Vec<Sized>,
}

#[derive(Deserialize)]
struct Sized {
    #[serde(default)]
    size: u64,
}

/// Every tag of every repository of the registry `client`'s server serves.
///
/// # Errors
/// The registry refuses (the message carries its error code) or answers nonsense.
pub async fn list(client: &corral_client::Client) -> Result<Vec<RemoteImage>> {
    let catalog: Catalog = get_json(client, "/v2/_catalog", None, "catalog").await?.0;
    let mut out = Vec::new();
    for repository in catalog.repositories {
        let path = format!("/v2/{repository}/tags/list");
        let tags: Tags = get_json(client, &path, None, &format!("{repository}: tags")).await?.0;
        for tag in tags.tags.unwrap_or_default() {
            let path = format!("/v2/{repository}/manifests/{tag}");
            let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                          application/vnd.docker.distribution.manifest.v2+json";
            let what = format!("{repository}:{tag}");
            let (sizes, digest): (Sizes, String) = get_json(client, &path, Some(accept), &what).await?;
            let size = sizes.config.map_or(0, |c| c.size)
                + sizes.layers.iter().map(|l| l.size).sum::<u64>()
                + sizes.manifests.iter().map(|m| m.size).sum::<u64>();
            out.push(RemoteImage { repository: repository.clone(), tag, digest, size });
        }
    }
    Ok(out)
}

/// `GET path` decoded as `T`, with the digest of the body.
async fn get_json<T: serde::de::DeserializeOwned>(
    client: &corral_client::Client,
    path: &str,
    accept: Option<&str>,
    what: &str,
) -> Result<(T, String)> {
    let mut req = axum::http::Request::builder().method(axum::http::Method::GET).uri(path);
    if let Some(a) = accept {
        req = req.header(axum::http::header::ACCEPT, a);
    }
    let req = req.body(Bytes::new()).map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    let resp = client.send_request(req).await?;
    let status = resp.status;
    let body = resp.bytes().await?;
    if !status.is_success() {
        return Err(Error::Image(format!("{what}: the registry answered {status}: {}", registry_error(&body))));
    }
    let digest = format!("sha256:{}", unpack::hex(&<sha2::Sha256 as sha2::Digest>::digest(&body)));
    let value = serde_json::from_slice(&body).map_err(|source| Error::Json { what: what.to_string(), source })?;
    Ok((value, digest))
}
