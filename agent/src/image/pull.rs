//! Pulling an image from an OCI registry: the control plane's (`/v2/…`, with the
//! agent's own credential) or, for a reference naming a host (`host:port/repo:tag`),
//! that registry, anonymously.
//!
//! The tag is resolved to a manifest once; everything after is fetched by digest,
//! and every byte is checked against its digest as it arrives. The pull writes an
//! OCI image layout into a staging dir of the store, which the ordinary import then
//! reads (checking every digest once more) and commits: a pull that fails half-way
//! leaves nothing behind.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::import::{Descriptor, ManifestOrIndex, arch};
use super::names::{digest_hex, normalize};
use super::unpack::hex;
use super::{ImageInfo, ImageStore};
use crate::blocking;
use crate::error::{Error, Result};

/// Largest manifest or index read.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// What manifests a pull accepts, most preferred first.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json";

/// Where images are pulled from.
#[derive(Clone, Debug)]
pub struct Source {
    /// The control plane, reached with the agent's own client and credential.
    pub control_plane: corral_client::Client,
}

/// What a reference asks for: a repository of a registry, and a tag.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Wanted {
    /// `None`: the control plane; else `host[:port]` of another registry.
    host: Option<String>,
    /// The repository inside the registry.
    repository: String,
    /// The tag.
    tag: String,
    /// The name the image gets in the local store (the reference, normalized).
    local_name: String,
}

/// Splits `reference`: a first component with a `.` or `:`, or `localhost`, names a
/// registry host, as Docker reads references; anything else is the control plane's.
/// A host that is the control plane's own address is the control plane too.
fn wanted(reference: &str, control_plane: &str) -> Result<Wanted> {
    let local_name = normalize(reference)?;
    let (name, tag) = local_name.rsplit_once(':').unwrap_or((&local_name, "latest"));
    let (host, repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            let ours = control_plane.split("://").nth(1).map(|a| a.trim_end_matches('/'));
            let host = (ours != Some(first)).then(|| first.to_string());
            (host, rest.to_string())
        }
        _ => (None, name.to_string()),
    };
    Ok(Wanted { host, repository, tag: tag.to_string(), local_name })
}

/// A response's status and body.
struct Fetched {
    status: u16,
    content_type: Option<String>,
    body: BoxStream<'static, std::result::Result<Bytes, String>>,
}

/// The registry a pull talks to.
enum Registry {
    ControlPlane(corral_client::Client),
    Remote { base: String, http: reqwest::Client },
}

impl Registry {
    fn describe(&self) -> String {
        match self {
            Registry::ControlPlane(_) => "the control plane".to_string(),
            Registry::Remote { base, .. } => base.clone(),
        }
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> Result<Fetched> {
        match self {
            Registry::ControlPlane(client) => {
                let mut req = axum::http::Request::builder().method(axum::http::Method::GET).uri(path);
                if let Some(a) = accept {
                    req = req.header(axum::http::header::ACCEPT, a);
                }
                let req = req.body(Bytes::new()).map_err(|e| Error::Invalid(format!("request {path}: {e}")))?;
                let resp = client.send_request(req).await?;
                let content_type = resp
                    .headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                Ok(Fetched {
                    status: resp.status.as_u16(),
                    content_type,
                    body: resp.body.map(|c| c.map_err(|e| e.to_string())).boxed(),
                })
            }
            Registry::Remote { base, http } => {
                let mut req = http.get(format!("{base}{path}"));
                if let Some(a) = accept {
                    req = req.header(axum::http::header::ACCEPT, a);
                }
                let resp = req.send().await.map_err(|e| Error::Image(format!("{base}{path}: {e}")))?;
                let content_type = resp
                    .headers()
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                Ok(Fetched {
                    status: resp.status().as_u16(),
                    content_type,
                    body: resp.bytes_stream().map(|c| c.map_err(|e| e.to_string())).boxed(),
                })
            }
        }
    }
}

/// The OCI error a registry sent, as one line.
async fn refusal(f: Fetched, what: &str, registry: &str) -> Error {
    let body = collect(f.body, 64 << 10).await.unwrap_or_default();
    let detail = super::push::registry_error(&body);
    let hint = match f.status {
        404 => " (push it first: `corral image push FILE NAME:TAG` or skopeo)",
        401 | 403 => " (the registry refused this node's credential)",
        _ => "",
    };
    let message = format!("{what}: {registry} answered {}: {detail}{hint}", f.status);
    if f.status == 404 { Error::ImageUnknown(message) } else { Error::Image(message) }
}

async fn collect(
    mut body: BoxStream<'static, std::result::Result<Bytes, String>>,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Pulls `reference` from `source` into `store`, reporting progress as one line at a
/// time on `progress` (for the task's status), and returns the imported image.
///
/// # Errors
/// The registry refuses or lacks the image, a digest does not match, or the import
/// fails; the message names the image, the registry and why.
pub async fn pull(
    store: &ImageStore,
    source: &Source,
    reference: &str,
    progress: &tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<ImageInfo> {
    let want = wanted(reference, &source.control_plane.server())?;
    let registry = match &want.host {
        None => Registry::ControlPlane(source.control_plane.clone()),
        Some(host) => {
            let http = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| Error::Image(format!("cannot make an HTTP client: {e}")))?;
            // Loopback registries are plain HTTP in practice (tests, a local
            // registry); anything else is HTTPS.
            let loopback = host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
            let scheme = if loopback { "http" } else { "https" };
            Registry::Remote { base: format!("{scheme}://{host}"), http }
        }
    };
    let from = registry.describe();
    let what = format!("pulling {reference} from {from}");
    let _ = progress.send(format!("{what}: resolving {}:{}", want.repository, want.tag));

    // Tag → manifest (or index → this platform's manifest), each checked by digest.
    let mut path = format!("/v2/{}/manifests/{}", want.repository, want.tag);
    let mut expected: Option<String> = None;
    let (manifest, media_type, digest) = loop {
        let f = registry.get(&path, Some(ACCEPT)).await?;
        if f.status != 200 {
            return Err(refusal(f, &what, &from).await);
        }
        let content_type = f.content_type.clone();
        let bytes = collect(f.body, MAX_MANIFEST_BYTES).await.map_err(|e| Error::Image(format!("{what}: {e}")))?;
        let digest = hex(&Sha256::digest(&bytes));
        if let Some(e) = &expected
            && e != &digest
        {
            return Err(Error::Image(format!(
                "{what}: manifest sha256:{digest} arrived for sha256:{e}: the registry sent other content"
            )));
        }
        let doc: ManifestOrIndex = serde_json::from_slice(&bytes)
            .map_err(|source| Error::Json { what: format!("{what}: manifest"), source })?;
        match doc.manifests {
            Some(list) if expected.is_none() => {
                let ours = list
                    .iter()
                    .find(|d| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == arch()))
                    .or(if list.len() == 1 { list.first() } else { None })
                    .ok_or_else(|| Error::Image(format!("{what}: the index holds no image for linux/{}", arch())))?;
                let hex = digest_hex(&ours.digest)?.to_string();
                path = format!("/v2/{}/manifests/sha256:{hex}", want.repository);
                expected = Some(hex);
            }
            Some(_) => return Err(Error::Image(format!("{what}: an index inside an index is not supported"))),
            None => break (bytes, content_type, digest),
        }
    };
    let doc: ManifestOrIndex = serde_json::from_slice(&manifest)
        .map_err(|source| Error::Json { what: format!("{what}: manifest"), source })?;
    let config = doc.config.ok_or_else(|| Error::Image(format!("{what}: the manifest has no config")))?;

    // The layout is written into a staging dir of the store, removed when dropped.
    let stage = {
        let store = store.clone();
        blocking::run("making a staging dir", move || store.pull_staging()).await?
    };
    let layout = stage.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    tokio::fs::create_dir_all(&blobs).await.map_err(|e| Error::io("cannot create", &blobs, e))?;
    write(&layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).await?;
    let media_type = media_type
        .filter(|t| t.contains("manifest"))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_string());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": media_type, "digest": format!("sha256:{digest}"), "size": manifest.len()}],
    });
    write(&layout.join("index.json"), index.to_string().as_bytes()).await?;
    write(&blobs.join(&digest), &manifest).await?;

    let parts: Vec<&Descriptor> = std::iter::once(&config).chain(&doc.layers).collect();
    let count = parts.len();
    for (i, d) in parts.iter().enumerate() {
        let hex = digest_hex(&d.digest)?.to_string();
        let kind = if i == 0 { "config".to_string() } else { format!("layer {i}/{}", count - 1) };
        let size = d.size.map(human).unwrap_or_else(|| "? bytes".into());
        let _ = progress.send(format!("{what}: {kind} sha256:{} ({size})", &hex[..12]));
        let path = format!("/v2/{}/blobs/sha256:{hex}", want.repository);
        let f = registry.get(&path, None).await?;
        if f.status != 200 {
            return Err(refusal(f, &format!("{what}: {kind}"), &from).await);
        }
        fetch_blob(f, &blobs, &hex, d.size, &format!("{what}: {kind}")).await?;
    }
    let _ = progress.send(format!("{what}: unpacking {} layers", count - 1));
    let (store, name, label) = (store.clone(), want.local_name.clone(), what.clone());
    blocking::run("importing a pulled image", move || store.import_layout(&stage, &layout, &label, &name, &mut |_| {}))
        .await
}

/// Streams a blob to `dir/<hex>` through a temp file, checking its size and digest.
async fn fetch_blob(f: Fetched, dir: &Path, hex: &str, size: Option<u64>, what: &str) -> Result<()> {
    let part: PathBuf = dir.join(format!("{hex}.part"));
    let mut file = tokio::fs::File::create(&part).await.map_err(|e| Error::io("cannot create", &part, e))?;
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let mut body = f.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::Image(format!("{what}: the download broke off: {e}")))?;
        got += chunk.len() as u64;
        if size.is_some_and(|s| got > s) {
            return Err(Error::Image(format!("{what}: more bytes arrived than the manifest says ({size:?})")));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| Error::io("cannot write", &part, e))?;
    }
    file.flush().await.map_err(|e| Error::io("cannot write", &part, e))?;
    let actual = super::unpack::hex(&hasher.finalize());
    if actual != hex {
        return Err(Error::Image(format!(
            "{what}: the registry sent content with digest sha256:{actual} for sha256:{hex}; nothing was imported"
        )));
    }
    if size.is_some_and(|s| s != got) {
        return Err(Error::Image(format!("{what}: {got} bytes arrived, the manifest says {size:?}")));
    }
    let dst = dir.join(hex);
    tokio::fs::rename(&part, &dst).await.map_err(|e| Error::io("cannot move into place", &dst, e))
}

async fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    tokio::fs::write(path, bytes).await.map_err(|e| Error::io("cannot write", path, e))
}

/// `n` bytes for people: `1.4 MiB`.
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_the_control_plane_unless_they_name_a_host() {
        let w = wanted("busybox:1", "http://127.0.0.1:7070").unwrap();
        assert_eq!((w.host, w.repository.as_str(), w.tag.as_str()), (None, "busybox", "1"));
        let w = wanted("team/app", "http://127.0.0.1:7070").unwrap();
        assert_eq!((w.host, w.repository.as_str(), w.tag.as_str()), (None, "team/app", "latest"));
        let w = wanted("registry.example:5000/team/app:2", "http://127.0.0.1:7070").unwrap();
        assert_eq!(w.host.as_deref(), Some("registry.example:5000"));
        assert_eq!((w.repository.as_str(), w.tag.as_str()), ("team/app", "2"));
        let w = wanted("127.0.0.1:7070/busybox:1", "http://127.0.0.1:7070").unwrap();
        assert_eq!(w.host, None, "the control plane's own address");
        assert_eq!(w.local_name, "127.0.0.1:7070/busybox:1");
    }
}
