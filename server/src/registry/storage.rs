//! Content-addressed storage on disk, under the server's data directory:
//!
//! ```text
//! registry/blobs/sha256/<hex>                               layers, configs, manifests
//! registry/uploads/<id>                                     uploads in progress
//! registry/repositories/<name>/_manifests/revisions/<hex>   media type of a manifest of <name>
//! registry/repositories/<name>/_manifests/tags/<tag>        the digest a tag points at
//! ```
//!
//! A blob reaches its digest's name only by a rename of a complete, verified and
//! synced file, so a crash never leaves half a blob under a digest. Two uploads of
//! the same blob each write their own file; whichever renames last wins, with the
//! same bytes. Repository names are checked before they become paths (no `..`, no
//! component starting with `_`), so `_manifests` never collides with a name.

use std::path::{Path, PathBuf};

use sha2::Digest as _;
use tokio::io::AsyncWriteExt;

use super::error::{RegistryError, Result};
use super::names::Digest;

/// Largest blob accepted (a layer); larger uploads answer `SIZE_INVALID`.
pub const MAX_BLOB_BYTES: u64 = 8 << 30;
/// Largest manifest accepted.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// How often (in bytes written) an upload checks the disk's free space.
const SPACE_CHECK_EVERY: u64 = 8 << 20;

/// The registry's files.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    /// Space an upload leaves free on the disk (the store's reserve: images must not
    /// take the room the object store needs to keep answering).
    min_free_bytes: u64,
}

impl Storage {
    /// Storage in `root` (created if missing), refusing uploads that would leave
    /// less than `min_free_bytes` free on its disk.
    ///
    /// # Errors
    /// The directories cannot be created.
    pub fn open(root: PathBuf, min_free_bytes: u64) -> std::io::Result<Self> {
        for sub in ["blobs/sha256", "uploads", "repositories"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        // Uploads of a previous run cannot be resumed (clients start over): drop them.
        if let Ok(entries) = std::fs::read_dir(root.join("uploads")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Storage { root, min_free_bytes })
    }

    /// Where blob `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// The size of blob `digest`, if stored.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io(format!("reading blob {digest}"), e)),
        }
    }

    /// The file of upload `id`, after checking the id is one this registry makes.
    pub fn upload_path(&self, id: &str) -> Result<PathBuf> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RegistryError::UploadUnknown(format!("{id:?} is not an upload id")));
        }
        Ok(self.root.join("uploads").join(id))
    }

    /// Starts an upload: a new empty file; returns its id.
    pub async fn new_upload(&self) -> Result<String> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw)
            .map_err(|e| RegistryError::io("making an upload id", std::io::Error::other(e.to_string())))?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.upload_path(&id)?;
        tokio::fs::File::create(&path).await.map_err(|e| RegistryError::io("creating an upload", e))?;
        Ok(id)
    }

    /// The bytes upload `id` holds so far.
    pub async fn upload_size(&self, id: &str) -> Result<u64> {
        let path = self.upload_path(id)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(RegistryError::UploadUnknown(format!("no upload {id}: it finished, was cancelled or never began")))
            }
            Err(e) => Err(RegistryError::io("reading an upload", e)),
        }
    }

    /// Appends `body` to upload `id`, refusing to grow it past [`MAX_BLOB_BYTES`];
    /// returns its new size.
    pub async fn append(&self, id: &str, body: axum::body::Body) -> Result<u64> {
        use futures::StreamExt;
        let path = self.upload_path(id)?;
        let mut size = self.upload_size(id).await?;
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .map_err(|e| RegistryError::io("opening an upload", e))?;
        let mut stream = body.into_data_stream();
        // Checked at once, then every few MiB: a statvfs per body frame would cost
        // more than the write.
        let mut unchecked = SPACE_CHECK_EVERY;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::UploadInvalid(format!("the request body broke off: {e}")))?;
            size += chunk.len() as u64;
            unchecked += chunk.len() as u64;
            let refusal = if size > MAX_BLOB_BYTES {
                Some(RegistryError::SizeInvalid(format!(
                    "a blob may hold at most {MAX_BLOB_BYTES} bytes; the upload was dropped"
                )))
            } else if unchecked >= SPACE_CHECK_EVERY {
                unchecked = 0;
                let free = free_bytes(&self.root);
                (free < self.min_free_bytes.saturating_add(SPACE_CHECK_EVERY)).then(|| {
                    RegistryError::NoSpace(format!(
                        "{free} bytes are free on the server's disk and {} must stay free; the upload was dropped",
                        self.min_free_bytes
                    ))
                })
            } else {
                None
            };
            if let Some(refusal) = refusal {
                drop(file);
                let _ = tokio::fs::remove_file(&path).await;
                return Err(refusal);
            }
            file.write_all(&chunk).await.map_err(|e| RegistryError::io("writing an upload", e))?;
        }
        file.flush().await.map_err(|e| RegistryError::io("writing an upload", e))?;
        Ok(size)
    }

    /// Ends upload `id`: hashes it, and if it is `expected`, syncs it and renames it
    /// to its digest's name. On a mismatch the upload is deleted and nothing is
    /// stored. Returns the blob's size.
    pub async fn commit_upload(&self, id: &str, expected: &Digest) -> Result<u64> {
        let path = self.upload_path(id)?;
        let size = self.upload_size(id).await?;
        let hashing = path.clone();
        let actual = tokio::task::spawn_blocking(move || -> std::io::Result<Digest> {
            let mut file = std::fs::File::open(&hashing)?;
            let mut hasher = sha2::Sha256::new();
            std::io::copy(&mut file, &mut hasher)?;
            // The content must be on disk before the name says it is there.
            file.sync_all()?;
            Ok(Digest::from_hasher(hasher))
        })
        .await
        .map_err(|e| RegistryError::io("hashing an upload", std::io::Error::other(e.to_string())))?
        .map_err(|e| RegistryError::io("hashing an upload", e))?;
        if &actual != expected {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(RegistryError::DigestInvalid(format!(
                "the uploaded content has digest {actual}, not {expected}; nothing was stored"
            )));
        }
        let dst = self.blob_path(expected);
        tokio::fs::rename(&path, &dst).await.map_err(|e| RegistryError::io(format!("storing blob {expected}"), e))?;
        sync_dir(dst.parent().unwrap_or(&self.root)).await?;
        Ok(size)
    }

    /// Cancels upload `id`.
    pub async fn cancel_upload(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RegistryError::UploadUnknown(id.to_string())),
            Err(e) => Err(RegistryError::io("cancelling an upload", e)),
        }
    }

    /// Stores `bytes` (already known to have digest `digest`) as a blob.
    pub async fn put_small_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let id = self.new_upload().await?;
        let path = self.upload_path(&id)?;
        let write = async {
            let mut f = tokio::fs::File::create(&path).await?;
            f.write_all(bytes).await?;
            f.sync_all().await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(RegistryError::io("writing a manifest", e));
        }
        let dst = self.blob_path(digest);
        tokio::fs::rename(&path, &dst).await.map_err(|e| RegistryError::io(format!("storing blob {digest}"), e))?;
        sync_dir(dst.parent().unwrap_or(&self.root)).await
    }

    fn manifests_dir(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name).join("_manifests")
    }

    /// Records that repository `name` holds manifest `digest` of `media_type`, and
    /// points `tag` at it.
    pub async fn link_manifest(&self, name: &str, digest: &Digest, media_type: &str, tag: Option<&str>) -> Result<()> {
        let dir = self.manifests_dir(name);
        write_atomic(&dir.join("revisions").join(digest.hex()), media_type.as_bytes()).await?;
        if let Some(tag) = tag {
            write_atomic(&dir.join("tags").join(tag), digest.to_string().as_bytes()).await?;
        }
        Ok(())
    }

    /// The digest tag `tag` of `name` points at, if any.
    pub async fn tag(&self, name: &str, tag: &str) -> Result<Option<Digest>> {
        match tokio::fs::read_to_string(self.manifests_dir(name).join("tags").join(tag)).await {
            Ok(text) => Digest::parse(text.trim()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io("reading a tag", e)),
        }
    }

    /// The media type of manifest `digest` in `name`, if the repository holds it.
    pub async fn manifest_type(&self, name: &str, digest: &Digest) -> Result<Option<String>> {
        match tokio::fs::read_to_string(self.manifests_dir(name).join("revisions").join(digest.hex())).await {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io("reading a manifest link", e)),
        }
    }

    /// Whether repository `name` exists (holds a manifest).
    pub async fn has_repository(&self, name: &str) -> bool {
        tokio::fs::metadata(self.manifests_dir(name)).await.is_ok()
    }

    /// Tags of `name`, sorted.
    pub async fn tags(&self, name: &str) -> Result<Vec<String>> {
        let dir = self.manifests_dir(name).join("tags");
        let mut out = read_names(&dir).await?;
        out.retain(|t| !t.starts_with('.'));
        out.sort();
        Ok(out)
    }

    /// Every repository, sorted.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let root = self.root.join("repositories");
        let found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &mut out, 0);
            out
        })
        .await
        .map_err(|e| RegistryError::io("listing repositories", std::io::Error::other(e.to_string())))?;
        let mut found = found;
        found.sort();
        Ok(found)
    }
}

/// Bytes free for an unprivileged writer on the filesystem of `dir` (unknown: as
/// good as unlimited, so that a failing statvfs never blocks pushes).
fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return u64::MAX };
    // SAFETY: statvfs writes only into the struct passed; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return u64::MAX;
    }
    (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
}

/// Collects the directories under `dir` that hold `_manifests`, as names relative to
/// `root`. Bounded in depth: names have at most a few components.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if name == "_manifests" {
            if let Ok(rel) = dir.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        } else if depth < 16 && e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &path, out, depth + 1);
        }
    }
}

async fn read_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(RegistryError::io("listing tags", e)),
    };
    while let Some(e) = entries.next_entry().await.map_err(|e| RegistryError::io("listing tags", e))? {
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Writes `path` whole or not at all: a synced temp file renamed over it.
async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await.map_err(|e| RegistryError::io("creating a repository", e))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut raw = [0u8; 8];
    let _ = getrandom::fill(&mut raw);
    let tmp = dir.join(format!(".{file_name}.{}.tmp", raw.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    let write = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(bytes).await?;
        f.sync_all().await?;
        tokio::fs::rename(&tmp, path).await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(RegistryError::io(format!("writing {}", path.display()), e));
    }
    sync_dir(dir).await
}

async fn sync_dir(dir: &Path) -> Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
        .await
        .map_err(|e| RegistryError::io("syncing a directory", std::io::Error::other(e.to_string())))?
        .map_err(|e| RegistryError::io("syncing a directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_that_would_eat_the_stores_reserve_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        // A reserve larger than any disk: every upload is refused.
        let storage = Storage::open(tmp.path().join("registry"), u64::MAX / 2).unwrap();
        let id = storage.new_upload().await.unwrap();
        let refused = storage.append(&id, axum::body::Body::from(vec![1u8; 10])).await;
        assert!(matches!(refused, Err(RegistryError::NoSpace(_))), "{refused:?}");
        let left = std::fs::read_dir(tmp.path().join("registry/uploads")).unwrap().count();
        assert_eq!(left, 0, "the refused upload's file is gone");

        // With room to spare the same upload is taken and stored under its digest.
        let storage = Storage::open(tmp.path().join("registry"), 0).unwrap();
        let id = storage.new_upload().await.unwrap();
        storage.append(&id, axum::body::Body::from(vec![1u8; 10])).await.unwrap();
        let digest = Digest::of(&[1u8; 10]);
        assert_eq!(storage.commit_upload(&id, &digest).await.unwrap(), 10);
        assert_eq!(storage.blob_size(&digest).await.unwrap(), Some(10));
    }
}
