//! Reading an unpacked image archive: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) or a `docker save` archive (`manifest.json`).
//! Archives from Docker 25 and later are both; `manifest.json` is preferred there
//! because its `RepoTags` are full names.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::names::{digest_hex, is_hex};
use super::unpack::hex;
use crate::error::{Error, Result};

/// What an archive holds, located in its unpacked directory.
#[derive(Debug)]
pub(super) struct Parsed {
    /// The config blob and its sha256 (the image id).
    pub config: Blob,
    /// Layer blobs, lowest first.
    pub layers: Vec<Blob>,
    /// The OCI manifest blob, if the archive had one.
    pub manifest: Option<Blob>,
    /// Names recorded in the archive, as written there.
    pub names: Vec<String>,
}

/// A blob inside the unpacked archive.
#[derive(Clone, Debug)]
pub(super) struct Blob {
    /// sha256 hex of the content.
    pub hex: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
}

/// The part of an image config the store keeps.
#[derive(Deserialize, Default, Debug)]
pub(super) struct ConfigFile {
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
}

/// How the image wants to be run.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RunConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An OCI descriptor: a blob by digest, in an archive or a registry.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    pub digest: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// The platform an index entry is for.
#[derive(Deserialize)]
pub(super) struct Platform {
    pub architecture: String,
    pub os: String,
}

/// A manifest or an index; which one is told by the fields present.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ManifestOrIndex {
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

/// This machine's architecture as images name it.
pub(super) use corral_api::version::arch;

/// Reads the unpacked archive at `root`; `file` names the archive in errors.
pub(super) fn parse(root: &Path, file: &str) -> Result<Parsed> {
    if root.join("manifest.json").is_file() {
        docker(root, file)
    } else if root.join("index.json").is_file() {
        oci(root, file)
    } else {
        Err(Error::Invalid(format!(
            "{file}: neither an OCI image layout (no index.json) nor a `docker save` archive (no manifest.json)"
        )))
    }
}

fn docker(root: &Path, file: &str) -> Result<Parsed> {
    let entries: Vec<DockerEntry> =
        read_json(&inside(root, "manifest.json", file)?, &format!("{file}: manifest.json"))?;
    let entry = single(entries, file)?;
    // Where the file name is the digest (`<id>.json`, `blobs/sha256/<hex>`), hold the
    // content to it: a mismatch means a corrupt or tampered archive.
    let blob = |rel: &str| -> Result<Blob> {
        let path = inside(root, rel, file)?;
        let (hex, size) = hash_file(&path)?;
        let claimed = rel.rsplit('/').next().unwrap_or(rel);
        let claimed = claimed.strip_suffix(".json").unwrap_or(claimed);
        if claimed.len() == 64 && is_hex(claimed) && claimed != hex {
            return Err(mismatch(file, rel, claimed, &hex));
        }
        Ok(Blob { hex, path, size })
    };
    let config = blob(&entry.config)?;
    let layers = entry.layers.iter().map(|l| blob(l)).collect::<Result<Vec<_>>>()?;
    Ok(Parsed { config, layers, manifest: None, names: entry.repo_tags.unwrap_or_default() })
}

fn oci(root: &Path, file: &str) -> Result<Parsed> {
    if !root.join("oci-layout").is_file() {
        return Err(Error::Invalid(format!("{file}: index.json without oci-layout: not an OCI image layout")));
    }
    let index: ManifestOrIndex = read_json(&inside(root, "index.json", file)?, &format!("{file}: index.json"))?;
    let top = pick(index.manifests.unwrap_or_default(), file)?;
    let names: Vec<String> = ["io.containerd.image.name", "org.opencontainers.image.ref.name"]
        .iter()
        .find_map(|k| top.annotations.get(*k))
        .map(|n| vec![n.clone()])
        .unwrap_or_default();
    let mut desc = top;
    // A multi-platform image: an index inside the index. Two levels are plenty.
    for _ in 0..3 {
        let blob = oci_blob(root, &desc, file)?;
        let what = format!("{file}: manifest {}", desc.digest);
        let m: ManifestOrIndex = read_json(&blob.path, &what)?;
        if let Some(manifests) = m.manifests {
            desc = pick(manifests, file)?;
            continue;
        }
        let config = m.config.ok_or_else(|| Error::Invalid(format!("{what}: no config")))?;
        let config = oci_blob(root, &config, file)?;
        let layers = m.layers.iter().map(|l| oci_blob(root, l, file)).collect::<Result<Vec<_>>>()?;
        return Ok(Parsed { config, layers, manifest: Some(blob), names });
    }
    Err(Error::Invalid(format!("{file}: image indexes nested too deeply")))
}

/// The one image an index lists: the only entry, or the one for this platform.
fn pick(manifests: Vec<Descriptor>, file: &str) -> Result<Descriptor> {
    let total = manifests.len();
    if total <= 1 {
        return manifests.into_iter().next().ok_or_else(|| Error::Invalid(format!("{file}: the index lists no image")));
    }
    let arch = arch();
    let mut ours = manifests
        .into_iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == arch))
        .filter(|d| d.media_type.as_deref().is_none_or(|t| !t.contains("attestation")));
    match (ours.next(), ours.next()) {
        (Some(d), None) => Ok(d),
        _ => Err(Error::Invalid(format!(
            "{file}: the archive holds {total} images and not exactly one for linux/{arch}; \
             import an archive of a single image"
        ))),
    }
}

/// A blob named by an OCI descriptor, with its digest and size verified.
fn oci_blob(root: &Path, desc: &Descriptor, file: &str) -> Result<Blob> {
    let claimed = digest_hex(&desc.digest).map_err(|e| Error::Invalid(format!("{file}: {e}")))?;
    let rel = format!("blobs/sha256/{claimed}");
    let path = inside(root, &rel, file)?;
    let (hex, size) = hash_file(&path)?;
    if hex != claimed {
        return Err(mismatch(file, &rel, claimed, &hex));
    }
    if let Some(expected) = desc.size
        && expected != size
    {
        return Err(Error::Invalid(format!(
            "{file}: blob {rel} is {size} bytes but its descriptor says {expected}: the archive is corrupt"
        )));
    }
    Ok(Blob { hex, path, size })
}

fn mismatch(file: &str, rel: &str, claimed: &str, actual: &str) -> Error {
    Error::Invalid(format!(
        "{file}: {rel} should have digest sha256:{claimed} but has sha256:{actual}: the archive is corrupt or was altered"
    ))
}

fn single(entries: Vec<DockerEntry>, file: &str) -> Result<DockerEntry> {
    let n = entries.len();
    let mut it = entries.into_iter();
    match (it.next(), it.next()) {
        (Some(e), None) => Ok(e),
        _ => {
            Err(Error::Invalid(format!("{file}: manifest.json lists {n} images; import an archive of a single image")))
        }
    }
}

/// `rel` (a path named inside the archive) resolved within `root`: symbolic links,
/// which `docker save` uses for repeated layers, are followed only while they stay
/// inside.
fn inside(root: &Path, rel: &str, file: &str) -> Result<PathBuf> {
    let clean = super::unpack::relative(rel.as_bytes())
        .map_err(|why| Error::Invalid(format!("{file}: the archive refers to {rel:?}: {why}")))?;
    let root = fs::canonicalize(root).map_err(|e| Error::io("cannot resolve", root, e))?;
    let path = fs::canonicalize(root.join(&clean))
        .map_err(|_| Error::Invalid(format!("{file}: the archive refers to {rel:?}, which it does not contain")))?;
    if !path.starts_with(&root) || !path.is_file() {
        return Err(Error::Invalid(format!("{file}: {rel:?} is not a file inside the archive")));
    }
    Ok(path)
}

/// sha256 hex and size of a file.
pub(super) fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut f, &mut hasher).map_err(|e| Error::io("cannot read", path, e))?;
    Ok((hex(&hasher.finalize()), size))
}

/// Parses a JSON file; `what` names it in errors.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json { what: what.to_string(), source })
}
