//! The image store on disk.
//!
//! ```text
//! images/lock                 flock: exclusive for changes, shared for reads
//! images/refs.json            name:tag → image id (written atomically)
//! images/meta/<id>.json       one per image; its presence is what makes an image exist
//! images/blobs/sha256/<hex>   configs, manifests and layers as imported
//! images/rootfs/<id>/         the flattened layers; never modified once in place
//! images/leases/<id>/<holder> one file per task using the image
//! images/staging/<n>/         work in progress, each flock'ed by its owner
//! ```
//!
//! An import does its slow work (unpacking, hashing, applying layers) in a staging
//! dir without the store lock, then commits under it: blobs and rootfs are renamed
//! into place, the file system is synced, and the image's meta file is written last.
//! A crash before that leaves only staging dirs and orphans, which `open` removes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::import::{self, ConfigFile};
use super::names::{self, full_id, is_hex};
use super::unpack::{self, Options, Unpacker};
use super::{ImageInfo, ImportEvent, Removed, ResolvedImage};
use crate::error::{Error, Result};
use crate::layout::{check_uid, write_atomic};

/// A node's content-addressed image store. Cheap to open more than once, in one
/// process or several (the CLI and the agent): every change takes the store's file
/// lock. Methods block on the file system and on that lock; async code goes through
/// [`Images`](super::Images).
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

/// What the store records about one image.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Meta {
    id: String,
    size_bytes: u64,
    layers: Vec<String>,
    #[serde(default)]
    manifest: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    entrypoint: Vec<String>,
    #[serde(default)]
    cmd: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

impl Meta {
    /// Blobs this image keeps alive.
    fn blobs(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.id).chain(&self.layers).chain(&self.manifest)
    }
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct Refs {
    names: BTreeMap<String, String>,
}

/// A held store lock; released when dropped (the descriptor closes).
struct Lock {
    _file: File,
}

/// A private work dir under `staging/`, flock'ed so that `open` in another process
/// leaves it alone, and removed when dropped.
pub(super) struct Staging {
    path: PathBuf,
    _lock: File,
}

impl Staging {
    /// The dir.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = unpack::remove_tree(&self.path);
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store in `dir`, and tidies up after crashes:
    /// abandoned staging dirs, and rootfs dirs, blobs, names and leases of no image.
    pub fn open(dir: PathBuf) -> Result<Self> {
        for sub in ["blobs/sha256", "meta", "rootfs", "leases", "staging"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io("cannot create", &p, e))?;
        }
        let store = ImageStore { dir };
        let _lock = store.lock(true)?;
        store.clean_staging()?;
        store.collect_garbage()?;
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Imports an OCI image-layout or `docker save` archive (optionally gzipped),
    /// naming the image `name` (`name:tag`) or, without one, by the names recorded in
    /// the archive. Importing an image already present only adds the names; a name
    /// already given to another image moves to this one.
    ///
    /// # Errors
    /// The archive is unreadable, malformed, has a blob whose digest does not match,
    /// or has an entry that would land outside the image (the error names it). The
    /// store is then unchanged.
    pub fn import(&self, archive: &Path, name: Option<&str>) -> Result<ImageInfo> {
        self.import_with_progress(archive, name, &mut |_| {})
    }

    /// [`import`](Self::import), reporting each step to `progress`.
    pub fn import_with_progress(
        &self,
        archive: &Path,
        name: Option<&str>,
        progress: &mut dyn FnMut(ImportEvent),
    ) -> Result<ImageInfo> {
        let file = archive.display().to_string();
        let names = match name {
            Some(n) => vec![names::normalize(n)?],
            None => Vec::new(),
        };
        if !archive.is_file() {
            return Err(Error::Invalid(format!("{file}: no such file")));
        }
        let stage = self.staging()?;
        let unpacked = stage.path.join("archive");
        fs::create_dir(&unpacked).map_err(|e| Error::io("cannot create", &unpacked, e))?;
        progress(ImportEvent::Reading { archive: archive.to_path_buf() });
        let outer = Options { whiteouts: false, chown: false, mode_mask: 0o755 };
        let mut unpacker = Unpacker::new(&unpacked, outer);
        unpacker.apply(unpack::maybe_gunzip(archive)?, &file)?;
        unpacker.finish()?;
        self.import_unpacked(&stage, &unpacked, &file, names, progress)
    }

    /// Imports the OCI image layout a pull wrote into `stage` (at `layout`), as
    /// [`import_with_progress`](Self::import_with_progress) does an unpacked archive:
    /// every digest is checked again, then the layers are applied and committed.
    pub(super) fn import_layout(
        &self,
        stage: &Staging,
        layout: &Path,
        what: &str,
        name: &str,
        progress: &mut dyn FnMut(ImportEvent),
    ) -> Result<ImageInfo> {
        let names = vec![names::normalize(name)?];
        self.import_unpacked(stage, layout, what, names, progress)
    }

    /// A staging dir for a pull to write an image layout into; removed when dropped.
    pub(super) fn pull_staging(&self) -> Result<Staging> {
        self.staging()
    }

    /// The rest of an import once an archive or layout lies unpacked at `unpacked`
    /// inside `stage`; `file` names it in errors.
    fn import_unpacked(
        &self,
        stage: &Staging,
        unpacked: &Path,
        file: &str,
        names: Vec<String>,
        progress: &mut dyn FnMut(ImportEvent),
    ) -> Result<ImageInfo> {
        let file = file.to_string();
        let parsed = import::parse(unpacked, &file)?;
        let names = if names.is_empty() {
            parsed
                .names
                .iter()
                .map(|n| {
                    names::normalize(n).map_err(|e| Error::Invalid(format!("{file}: {e}; give a name with --name")))
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            names
        };
        let id = parsed.config.hex.clone();
        let config: ConfigFile = import::read_json(&parsed.config.path, &format!("{file}: image config"))?;

        if self.meta_path(&id).is_file() {
            progress(ImportEvent::AlreadyPresent { id: id.clone() });
            return self.commit_names(&id, &names);
        }

        let rootfs = stage.path.join("rootfs");
        unpack::make_dir(&rootfs)?;
        // Only root can give files away; as root, files must belong to the image's users.
        // SAFETY: geteuid has no preconditions.
        let chown = unsafe { libc::geteuid() } == 0;
        let mut unpacker = Unpacker::new(&rootfs, Options { whiteouts: true, chown, mode_mask: 0o7777 });
        let count = parsed.layers.len();
        for (i, layer) in parsed.layers.iter().enumerate() {
            progress(ImportEvent::Layer { index: i + 1, count, digest: layer.hex.clone(), bytes: layer.size });
            let what = format!("{file}: layer sha256:{}", layer.hex);
            unpacker.apply(unpack::maybe_gunzip(&layer.path)?, &what)?;
        }
        unpacker.finish()?;
        let run = config.config.unwrap_or_default();
        let meta = Meta {
            id: id.clone(),
            size_bytes: tree_size(&rootfs)?,
            layers: parsed.layers.iter().map(|l| l.hex.clone()).collect(),
            manifest: parsed.manifest.as_ref().map(|m| m.hex.clone()),
            created: config.created,
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            env: run.env.unwrap_or_default(),
            working_dir: run.working_dir.filter(|w| !w.is_empty()),
            user: run.user.filter(|u| !u.is_empty()),
        };
        let mut blobs = vec![parsed.config.clone()];
        blobs.extend(parsed.layers.iter().cloned());
        blobs.extend(parsed.manifest.iter().cloned());
        self.commit(stage, meta, &blobs, &rootfs, &names)
    }

    /// Every image, sorted by first name (unnamed ones last), then id.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let _lock = self.lock(false)?;
        let refs = self.read_refs()?;
        let mut out = Vec::new();
        for id in self.ids()? {
            let meta = self.read_meta(&id)?;
            out.push(info(&meta, &refs));
        }
        out.sort_by(|a, b| (a.names.is_empty(), &a.names, &a.id).cmp(&(b.names.is_empty(), &b.names, &b.id)));
        Ok(out)
    }

    /// What a task needs to run an image: its rootfs and its defaults.
    ///
    /// A reference is a `name:tag` (`name` alone means `name:latest`), a full id,
    /// `sha256:<id>`, or a unique prefix of at least 6 hex digits of an id.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage> {
        let _lock = self.lock(false)?;
        let (id, _) = self.find(reference, &self.read_refs()?)?;
        let meta = self.read_meta(&id)?;
        Ok(ResolvedImage {
            rootfs: self.rootfs(&id),
            id,
            entrypoint: meta.entrypoint,
            cmd: meta.cmd,
            env: meta.env,
            working_dir: meta.working_dir,
            user: meta.user,
        })
    }

    /// Removes an image, or a name of it; see [`remove_detailed`](Self::remove_detailed).
    /// Returns the image as it was before.
    pub fn remove(&self, reference: &str) -> Result<ImageInfo> {
        self.remove_detailed(reference).map(|r| r.image)
    }

    /// Removes by name or by id, like `docker rmi`: a name is untagged, and the image
    /// itself goes when it was its last name; an id removes the image and all its
    /// names. Its rootfs and the blobs no other image uses are deleted.
    ///
    /// # Errors
    /// The reference matches no image or several, or the image would be deleted while
    /// tasks hold leases on it (the error names them); nothing is changed then.
    pub fn remove_detailed(&self, reference: &str) -> Result<Removed> {
        let stage = self.staging()?;
        let removed = {
            let _lock = self.lock(true)?;
            let mut refs = self.read_refs()?;
            let (id, by_name) = self.find(reference, &refs)?;
            let meta = self.read_meta(&id)?;
            let image = info(&meta, &refs);
            let untagged = match &by_name {
                Some(name) => vec![name.clone()],
                None => image.names.clone(),
            };
            let deleted = untagged.len() == image.names.len();
            if deleted {
                let holders = self.holders(&id)?;
                if !holders.is_empty() {
                    return Err(Error::Image(format!(
                        "{reference} (id {}) is in use by task(s) {}; remove them first",
                        &id[..12],
                        holders.join(", ")
                    )));
                }
            }
            refs.names.retain(|n, _| !untagged.contains(n));
            self.write_refs(&refs)?;
            if deleted {
                self.delete_image(&meta, &stage)?;
            }
            tracing::info!(id = %id, untagged = ?untagged, deleted, "removed image");
            Removed { image, untagged, deleted }
        };
        // `stage` (holding the old rootfs) is removed here, outside the lock.
        drop(stage);
        Ok(removed)
    }

    /// Records that `holder` (a task uid) uses image `image_id`, so that it cannot be
    /// removed. Idempotent; survives restarts (leases are files).
    ///
    /// # Errors
    /// The image does not exist (any more), or the holder is not a valid task uid.
    pub fn acquire(&self, image_id: &str, holder: &str) -> Result<()> {
        let id = full_id(image_id)?;
        let holder = check_uid(holder)?;
        let _lock = self.lock(true)?;
        if !self.meta_path(id).is_file() {
            return Err(Error::Image(format!("{id} not found; it may have been removed")));
        }
        let dir = self.dir.join("leases").join(id);
        fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        // Not fsynced: leases only protect images from tasks that run, and none
        // survives a machine crash.
        crate::layout::write_replace(&dir.join(holder), b"")
    }

    /// Drops `holder`'s lease on `image_id`. Idempotent.
    pub fn release(&self, image_id: &str, holder: &str) -> Result<()> {
        let id = full_id(image_id)?;
        let holder = check_uid(holder)?;
        let _lock = self.lock(true)?;
        let dir = self.dir.join("leases").join(id);
        let path = dir.join(holder);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot remove", &path, e)),
        }
        // Fails harmlessly while other leases remain.
        let _ = fs::remove_dir(&dir);
        Ok(())
    }

    /// The holders of leases on `image_id`, sorted.
    pub fn leases(&self, image_id: &str) -> Result<Vec<String>> {
        let id = full_id(image_id)?;
        let _lock = self.lock(false)?;
        self.holders(id)
    }

    fn holders(&self, id: &str) -> Result<Vec<String>> {
        let dir = self.dir.join("leases").join(id);
        let mut out: Vec<String> = read_names(&dir)?.into_iter().filter(|n| !n.starts_with('.')).collect();
        out.sort();
        Ok(out)
    }

    /// The image id (and the name, if that is how it was found) `reference` means.
    fn find(&self, reference: &str, refs: &Refs) -> Result<(String, Option<String>)> {
        let r = reference.trim();
        if let Some(hex) = r.strip_prefix("sha256:") {
            return self.by_prefix(hex, reference).map(|id| (id, None));
        }
        if let Ok(name) = names::normalize(r)
            && let Some(id) = refs.names.get(&name)
        {
            return Ok((id.clone(), Some(name)));
        }
        if r.len() >= 6 && is_hex(&r.to_ascii_lowercase()) {
            return self.by_prefix(r, reference).map(|id| (id, None));
        }
        Err(not_found(&self.dir, reference))
    }

    fn by_prefix(&self, prefix: &str, reference: &str) -> Result<String> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() < 6 || !is_hex(&prefix) {
            return Err(Error::Image(format!("{reference:?}: an id prefix needs at least 6 hex digits")));
        }
        let matches: Vec<String> = self.ids()?.into_iter().filter(|id| id.starts_with(&prefix)).collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(not_found(&self.dir, reference)),
            many => Err(Error::Image(format!(
                "{reference:?} is ambiguous: it starts the ids of {}; give more digits",
                many.iter().map(|m| &m[..12]).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn commit_names(&self, id: &str, new_names: &[String]) -> Result<ImageInfo> {
        let _lock = self.lock(true)?;
        let meta = self.read_meta(id)?;
        let mut refs = self.read_refs()?;
        if !new_names.is_empty() {
            for n in new_names {
                refs.names.insert(n.clone(), id.to_string());
            }
            self.write_refs(&refs)?;
        }
        Ok(info(&meta, &refs))
    }

    fn commit(
        &self,
        stage: &Staging,
        meta: Meta,
        blobs: &[import::Blob],
        rootfs: &Path,
        new_names: &[String],
    ) -> Result<ImageInfo> {
        let lock = self.lock(true)?;
        if self.meta_path(&meta.id).is_file() {
            // Another import of the same image won the race.
            drop(lock);
            return self.commit_names(&meta.id, new_names);
        }
        for blob in blobs {
            let dst = self.blob(&blob.hex);
            if !dst.exists() {
                fs::rename(&blob.path, &dst).map_err(|e| Error::io("cannot move into place", &dst, e))?;
            }
        }
        let dst = self.rootfs(&meta.id);
        if fs::symlink_metadata(&dst).is_ok() {
            // Left by a crash before a meta file was written: not an image.
            let old = stage.path.join("old-rootfs");
            fs::rename(&dst, &old).map_err(|e| Error::io("cannot move away", &dst, e))?;
        }
        fs::rename(rootfs, &dst).map_err(|e| Error::io("cannot move into place", &dst, e))?;
        sync_fs(&self.dir)?;
        let json =
            serde_json::to_vec_pretty(&meta).map_err(|source| Error::Json { what: "image meta".into(), source })?;
        write_atomic(&self.meta_path(&meta.id), &json)?;
        let mut refs = self.read_refs()?;
        for n in new_names {
            refs.names.insert(n.clone(), meta.id.clone());
        }
        self.write_refs(&refs)?;
        tracing::info!(id = %meta.id, names = ?new_names, layers = meta.layers.len(), "imported image");
        Ok(info(&meta, &refs))
    }

    /// Deletes an image's meta (the commit point), rootfs (moved into `stage`, to be
    /// deleted outside the lock), leases dir and the blobs no other image uses.
    fn delete_image(&self, meta: &Meta, stage: &Staging) -> Result<()> {
        let path = self.meta_path(&meta.id);
        fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
        let rootfs = self.rootfs(&meta.id);
        if rootfs.exists() {
            let trash = stage.path.join("rootfs");
            fs::rename(&rootfs, &trash).map_err(|e| Error::io("cannot move away", &rootfs, e))?;
        }
        let _ = fs::remove_dir(self.dir.join("leases").join(&meta.id));
        let mut used = BTreeSet::new();
        for id in self.ids()? {
            used.extend(self.read_meta(&id)?.blobs().cloned());
        }
        for hex in meta.blobs().filter(|h| !used.contains(*h)) {
            let blob = self.blob(hex);
            match fs::remove_file(&blob) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("cannot remove", &blob, e)),
            }
        }
        Ok(())
    }

    /// Removes staging dirs whose owner is gone (their flock is free). Call with the
    /// exclusive lock.
    fn clean_staging(&self) -> Result<()> {
        let dir = self.dir.join("staging");
        for name in read_names(&dir)? {
            let path = dir.join(&name);
            let Ok(f) = File::open(&path) else { continue };
            if flock(&f, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
                unpack::remove_tree(&path)?;
            }
        }
        Ok(())
    }

    /// Removes what no image meta accounts for. Call with the exclusive lock.
    fn collect_garbage(&self) -> Result<()> {
        let ids: BTreeSet<String> = self.ids()?.into_iter().collect();
        let mut used = BTreeSet::new();
        for id in &ids {
            used.extend(self.read_meta(id)?.blobs().cloned());
        }
        let rootfs_dir = self.dir.join("rootfs");
        for name in read_names(&rootfs_dir)? {
            if !ids.contains(&name) {
                let stage = self.staging_locked()?;
                let path = rootfs_dir.join(&name);
                fs::rename(&path, stage.path.join("rootfs")).map_err(|e| Error::io("cannot move away", &path, e))?;
            }
        }
        let blob_dir = self.dir.join("blobs/sha256");
        for name in read_names(&blob_dir)? {
            if !used.contains(&name) {
                let path = blob_dir.join(&name);
                fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
            }
        }
        let leases = self.dir.join("leases");
        for name in read_names(&leases)? {
            if !ids.contains(&name) {
                unpack::remove_tree(&leases.join(&name))?;
            }
        }
        let mut refs = self.read_refs()?;
        let before = refs.names.len();
        refs.names.retain(|_, id| ids.contains(id));
        if refs.names.len() != before {
            self.write_refs(&refs)?;
        }
        Ok(())
    }

    /// A new staging dir. The shared lock keeps `open` (which holds the exclusive
    /// one while cleaning) from seeing it before it is flock'ed.
    fn staging(&self) -> Result<Staging> {
        let _lock = self.lock(false)?;
        self.staging_locked()
    }

    /// [`staging`](Self::staging) for a caller holding the store lock.
    fn staging_locked(&self) -> Result<Staging> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join("staging").join(format!("{}-{nanos}-{n}", std::process::id()));
        fs::create_dir(&path).map_err(|e| Error::io("cannot create", &path, e))?;
        let lock = File::open(&path).map_err(|e| Error::io("cannot open", &path, e))?;
        flock(&lock, libc::LOCK_EX | libc::LOCK_NB).map_err(|e| Error::io("cannot lock", &path, e))?;
        Ok(Staging { path, _lock: lock })
    }

    fn lock(&self, exclusive: bool) -> Result<Lock> {
        let path = self.dir.join("lock");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        flock(&f, if exclusive { libc::LOCK_EX } else { libc::LOCK_SH })
            .map_err(|e| Error::io("cannot lock", &path, e))?;
        Ok(Lock { _file: f })
    }

    fn ids(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("meta");
        let mut ids: Vec<String> = read_names(&dir)?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|id| id.len() == 64 && is_hex(id))
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn read_meta(&self, id: &str) -> Result<Meta> {
        let path = self.meta_path(id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| Error::Json { what: path.display().to_string(), source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(&self.dir, id)),
            Err(e) => Err(Error::io("cannot read", &path, e)),
        }
    }

    fn read_refs(&self) -> Result<Refs> {
        let path = self.dir.join("refs.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| Error::Json { what: path.display().to_string(), source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Refs::default()),
            Err(e) => Err(Error::io("cannot read", &path, e)),
        }
    }

    fn write_refs(&self, refs: &Refs) -> Result<()> {
        let json =
            serde_json::to_vec_pretty(refs).map_err(|source| Error::Json { what: "refs.json".into(), source })?;
        write_atomic(&self.dir.join("refs.json"), &json)
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join("meta").join(format!("{id}.json"))
    }

    fn blob(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex)
    }

    fn rootfs(&self, id: &str) -> PathBuf {
        self.dir.join("rootfs").join(id)
    }
}

fn info(meta: &Meta, refs: &Refs) -> ImageInfo {
    ImageInfo {
        id: meta.id.clone(),
        names: refs.names.iter().filter(|(_, id)| **id == meta.id).map(|(n, _)| n.clone()).collect(),
        size_bytes: meta.size_bytes,
        layers: meta.layers.len(),
        created: meta.created.clone(),
    }
}

/// An image not in the store at `dir` (`WORK_DIR/images`): the message names the
/// work dir, so that an import into another directory is seen for what it is.
fn not_found(dir: &Path, reference: &str) -> Error {
    let work = dir.parent().unwrap_or(dir);
    Error::Image(format!(
        "{reference:?} not found in the image store of {}; `corral image ls --work-dir {}` lists its images",
        work.display(),
        work.display()
    ))
}

/// Names in a directory (missing: none); temporary files of `write_atomic` excluded.
fn read_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot list", dir, e))?;
        if let Some(name) = entry.file_name().to_str()
            && !name.ends_with(".tmp")
        {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Bytes in the regular files of a tree, hard links counted once.
fn tree_size(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(|e| Error::io("cannot list", &d, e))? {
            let entry = entry.map_err(|e| Error::io("cannot list", &d, e))?;
            let m = entry.metadata().map_err(|e| Error::io("cannot inspect", entry.path(), e))?;
            if m.is_dir() {
                stack.push(entry.path());
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    Ok(total)
}

fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Flushes the file system holding `dir`, so that a meta file written next never
/// describes a rootfs whose data a power loss could still take away.
fn sync_fs(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io("cannot open", dir, e))?;
    // SAFETY: syncfs on a descriptor we own; no memory is involved.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(Error::io("cannot sync", dir, io::Error::last_os_error()));
    }
    Ok(())
}
