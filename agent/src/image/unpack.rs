//! A tar extractor that cannot be steered outside its root.
//!
//! The `tar` crate is used only to read entries; every file system change is made
//! here, so that the rules below hold whatever the archive says:
//!
//! - entry paths and hard link targets are relative and have no `..` component;
//! - no parent directory on the way to an entry may be a symbolic link, so nothing is
//!   ever written through one (symbolic link entries themselves may point anywhere:
//!   they are resolved later, inside the container);
//! - files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` after whatever was at the
//!   path has been unlinked, so a link planted by an earlier entry is replaced, never
//!   followed;
//! - device nodes and fifos are skipped.
//!
//! With whiteouts enabled (image layers), `.wh.<name>` deletes `<name>` and
//! `.wh..wh..opq` empties its directory of what lower layers put there. Per the OCI
//! image spec a whiteout never hides what its own layer adds, whatever the entry
//! order, so the paths a layer writes are remembered while it is applied.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The name of an opaque-directory marker.
const OPAQUE: &[u8] = b".wh..wh..opq";
/// The prefix of a whiteout.
const WHITEOUT: &[u8] = b".wh.";

/// How an archive is unpacked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Honour `.wh.` whiteouts (image layers) instead of extracting them as files.
    pub whiteouts: bool,
    /// Give entries the owner recorded in the archive (only meaningful as root).
    pub chown: bool,
    /// Mode bits kept from the archive.
    pub mode_mask: u32,
}

/// Applies tar streams, one after another, to one root directory.
pub(crate) struct Unpacker {
    root: PathBuf,
    opts: Options,
    /// Final modes of directories, applied at the end so that a read-only directory
    /// does not stop later entries (or layers) from being written into it.
    dir_modes: BTreeMap<PathBuf, u32>,
    /// Paths the current stream created, and their ancestors.
    touched: HashSet<PathBuf>,
}

impl Unpacker {
    /// An unpacker writing below `root`, which must exist.
    pub(crate) fn new(root: &Path, opts: Options) -> Self {
        Unpacker { root: root.to_path_buf(), opts, dir_modes: BTreeMap::new(), touched: HashSet::new() }
    }

    /// Applies one tar stream; `what` names it in errors (e.g. the archive's path).
    pub(crate) fn apply(&mut self, reader: impl Read, what: &str) -> Result<()> {
        self.touched.clear();
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| Error::Invalid(format!("{what}: not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Error::Invalid(format!("{what}: not a valid tar archive (or truncated): {e}")))?;
            self.entry(&mut entry, what)?;
        }
        Ok(())
    }

    /// Gives directories their recorded modes. Call once, after the last stream.
    pub(crate) fn finish(self) -> Result<()> {
        // Children first, so that a parent losing its write bit comes last.
        for (rel, mode) in self.dir_modes.iter().rev() {
            let path = self.root.join(rel);
            // Only a real directory reached through real directories: chmod follows links.
            let mut walk = self.root.clone();
            if rel.components().all(|c| {
                walk.push(c);
                fs::symlink_metadata(&walk).is_ok_and(|m| m.is_dir())
            }) {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & self.opts.mode_mask))
                    .map_err(|e| Error::io("cannot set the mode of", &path, e))?;
            }
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, what: &str) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let reject = |why: String| Error::Invalid(format!("{what}: entry {shown:?}: {why}"));
        let rel = relative(&raw).map_err(&reject)?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644);
        let owner = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));

        if self.opts.whiteouts
            && let Some(name) = rel.file_name().map(OsStrExt::as_bytes)
            && name.starts_with(WHITEOUT)
        {
            return self.whiteout(&rel, name).map_err(|e| flatten(e, &reject));
        }
        if rel.as_os_str().is_empty() {
            // The root itself (`./`): its mode and owner belong to whoever made it.
            return if kind.is_dir() { Ok(()) } else { Err(reject("not a directory, but names the root".into())) };
        }

        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                let target = self.prepare(&rel, false).map_err(|e| flatten(e, &reject))?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&target)
                    .map_err(|e| Error::io("cannot create", &target, e))?;
                io::copy(entry, &mut file).map_err(|e| reject(format!("cannot extract: {e}")))?;
                if self.opts.chown {
                    std::os::unix::fs::fchown(&file, Some(owner.0 as u32), Some(owner.1 as u32))
                        .map_err(|e| Error::io("cannot set the owner of", &target, e))?;
                }
                // After chown, which clears set-id bits.
                file.set_permissions(fs::Permissions::from_mode(mode & self.opts.mode_mask))
                    .map_err(|e| Error::io("cannot set the mode of", &target, e))?;
            }
            T::Directory => {
                let target = self.prepare(&rel, true).map_err(|e| flatten(e, &reject))?;
                if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    make_dir(&target)?;
                }
                self.chown(&target, owner)?;
                self.dir_modes.insert(rel.clone(), mode);
            }
            T::Symlink => {
                let link = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                if link.is_empty() {
                    return Err(reject("symbolic link without a target".into()));
                }
                let target = self.prepare(&rel, false).map_err(|e| flatten(e, &reject))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                    .map_err(|e| Error::io("cannot create symbolic link", &target, e))?;
                self.chown(&target, owner)?;
            }
            T::Link => {
                let link = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                let link_shown = String::from_utf8_lossy(&link).into_owned();
                let source_rel =
                    relative(&link).map_err(|why| reject(format!("hard link target {link_shown:?}: {why}")))?;
                if source_rel == rel {
                    return Ok(());
                }
                let source = self.existing(&source_rel).map_err(|why| {
                    reject(format!(
                        "hard link target {link_shown:?}: {why}; hard links must point to a file inside the archive"
                    ))
                })?;
                let target = self.prepare(&rel, false).map_err(|e| flatten(e, &reject))?;
                // linkat(2) without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
                fs::hard_link(&source, &target).map_err(|e| Error::io("cannot create hard link", &target, e))?;
            }
            // Device nodes and fifos have no business in an image or a sandbox; pax
            // and GNU bookkeeping entries are consumed by the reader or meaningless here.
            _ => {}
        }
        Ok(())
    }

    /// Makes way for an entry at `rel`: parents exist as real directories, and
    /// whatever was at `rel` is gone (unless it is a directory and `keep_dir`).
    fn prepare(&mut self, rel: &Path, keep_dir: bool) -> Result<PathBuf> {
        let target = self.parents(rel)?;
        self.touched.insert(rel.to_path_buf());
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() && keep_dir => {}
            Ok(m) if m.is_dir() => {
                remove_tree(&target)?;
                self.forget(rel);
            }
            Ok(_) => fs::remove_file(&target).map_err(|e| Error::io("cannot replace", &target, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot inspect", &target, e)),
        }
        Ok(target)
    }

    /// Walks the parents of `rel`, creating missing ones; refuses a parent that is a
    /// symbolic link or not a directory. Returns the absolute path of `rel`.
    fn parents(&mut self, rel: &Path) -> Result<PathBuf> {
        let mut path = self.root.clone();
        let mut sofar = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                path.push(c);
                sofar.push(c);
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(Error::Invalid(format!(
                            "{} is a symbolic link; refusing to write through it",
                            sofar.display()
                        )));
                    }
                    Ok(_) => return Err(Error::Invalid(format!("{} is not a directory", sofar.display()))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&path)?,
                    Err(e) => return Err(Error::io("cannot inspect", &path, e)),
                }
                self.touched.insert(sofar.clone());
            }
        }
        Ok(path.join(rel.file_name().unwrap_or_default()))
    }

    /// The absolute path of an existing non-directory `rel` reached through real
    /// directories only.
    fn existing(&self, rel: &Path) -> std::result::Result<PathBuf, String> {
        let mut path = self.root.clone();
        let mut parts = rel.components().peekable();
        while let Some(c) = parts.next() {
            path.push(c);
            let meta = fs::symlink_metadata(&path).map_err(|_| "does not exist (yet)".to_string())?;
            let last = parts.peek().is_none();
            if !last && meta.file_type().is_symlink() {
                return Err("goes through a symbolic link".into());
            }
            if !last && !meta.is_dir() {
                return Err("goes through a non-directory".into());
            }
            if last && meta.is_dir() {
                return Err("is a directory".into());
            }
        }
        if rel.as_os_str().is_empty() { Err("is the root".into()) } else { Ok(path) }
    }

    /// Handles `.wh.<name>` and `.wh..wh..opq` at `rel`.
    fn whiteout(&mut self, rel: &Path, name: &[u8]) -> Result<()> {
        // The directory holding a whiteout exists in this layer.
        let holder = self.parents(rel)?;
        let dir_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let dir = holder.parent().unwrap_or(&self.root).to_path_buf();
        if name == OPAQUE {
            return self.clear_lower(&dir, &dir_rel);
        }
        if name.starts_with(b".wh..wh.") {
            // Other aufs bookkeeping (`.wh..wh.plnk`, …): nothing to apply.
            return Ok(());
        }
        let victim = &name[WHITEOUT.len()..];
        if victim.is_empty() || victim == b"." || victim == b".." {
            return Err(Error::Invalid("whiteout names no file".into()));
        }
        let victim_rel = dir_rel.join(OsStr::from_bytes(victim));
        if self.touched.contains(&victim_rel) {
            return Ok(());
        }
        self.delete(&dir.join(OsStr::from_bytes(victim)), &victim_rel)
    }

    /// Deletes everything in `dir` that the current layer did not write.
    fn clear_lower(&mut self, dir: &Path, dir_rel: &Path) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("cannot list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot list", dir, e))?;
            let path = entry.path();
            let rel = dir_rel.join(entry.file_name());
            if !self.touched.contains(&rel) {
                self.delete(&path, &rel)?;
            } else if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                self.clear_lower(&path, &rel)?;
            }
        }
        Ok(())
    }

    /// Removes `path` (not following links), if it exists.
    fn delete(&mut self, path: &Path, rel: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => remove_tree(path)?,
            Ok(_) => fs::remove_file(path).map_err(|e| Error::io("cannot remove", path, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot inspect", path, e)),
        }
        self.forget(rel);
        Ok(())
    }

    /// Drops recorded directory modes at and below `rel`.
    fn forget(&mut self, rel: &Path) {
        self.dir_modes.retain(|p, _| !p.starts_with(rel));
    }

    fn chown(&self, path: &Path, (uid, gid): (u64, u64)) -> Result<()> {
        if self.opts.chown {
            std::os::unix::fs::lchown(path, Some(uid as u32), Some(gid as u32))
                .map_err(|e| Error::io("cannot set the owner of", path, e))?;
        }
        Ok(())
    }
}

/// Turns an `Invalid` error about a path into one naming the entry too.
fn flatten(e: Error, reject: &impl Fn(String) -> Error) -> Error {
    match e {
        Error::Invalid(why) => reject(why),
        other => other,
    }
}

/// A tar path as a relative path of normal components: `.` and empty components
/// are dropped; an absolute path or a `..` component is refused.
pub(crate) fn relative(raw: &[u8]) -> std::result::Result<PathBuf, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    let mut path = PathBuf::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains \"..\"".into()),
            _ => path.push(OsStr::from_bytes(c)),
        }
    }
    Ok(path)
}

/// Creates a directory with mode 0755 whatever the umask: directories an archive
/// implies without listing them must be traversable by a container's users.
pub(crate) fn make_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path).map_err(|e| Error::io("cannot create directory", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("cannot set the mode of", path, e))
}

/// Removes a directory tree without following links, even one with read-only
/// directories in it (which stop a non-root user from deleting their entries).
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path);
            fs::remove_dir_all(path).map_err(|e| Error::io("cannot remove", path, e))
        }
        Err(e) => Err(Error::io("cannot remove", path, e)),
    }
}

fn make_writable(dir: &Path) {
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A reader for a file that may be gzip-compressed (told by its magic bytes).
pub(crate) fn maybe_gunzip(path: &Path) -> Result<Box<dyn Read>> {
    let mut file = fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(|e| Error::io("cannot read", path, e))?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let whole = head.chain(file);
    if magic[..n].starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(io::BufReader::new(flate2::read::MultiGzDecoder::new(whole))))
    } else if magic[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
        Err(Error::Invalid(format!("{}: zstd compression is not supported; use gzip or none", path.display())))
    } else {
        Ok(Box::new(io::BufReader::new(whole)))
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer of (path, content) files; a path ending in `/` is a directory.
    fn layer(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            let dir = path.ends_with('/');
            h.set_entry_type(if dir { tar::EntryType::Directory } else { tar::EntryType::Regular });
            h.set_size(data.len() as u64);
            h.set_mode(if dir { 0o755 } else { 0o644 });
            b.append_data(&mut h, path, data.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn apply(layers: &[Vec<u8>]) -> (tempfile::TempDir, Vec<String>) {
        let tmp = tempfile::tempdir().unwrap();
        let mut u = Unpacker::new(tmp.path(), Options { whiteouts: true, chown: false, mode_mask: 0o7777 });
        for l in layers {
            u.apply(l.as_slice(), "test").unwrap();
        }
        u.finish().unwrap();
        let mut found = Vec::new();
        let mut stack = vec![tmp.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                found.push(p.strip_prefix(tmp.path()).unwrap().display().to_string());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        found.sort();
        (tmp, found)
    }

    #[test]
    fn whiteouts_hide_lower_layers_only_whatever_the_order() {
        let lower = layer(&[("d/", ""), ("d/old", "1"), ("d/sub/", ""), ("d/sub/old", "1"), ("e/", ""), ("e/x", "1")]);
        // The opaque marker after the layer's own entries, and a whiteout before the
        // file of the same name the layer adds back.
        let upper = layer(&[
            ("d/", ""),
            ("d/sub/", ""),
            ("d/sub/new", "2"),
            ("d/.wh..wh..opq", ""),
            ("e/.wh.x", ""),
            ("e/x", "2"),
        ]);
        let (tmp, found) = apply(&[lower, upper]);
        assert_eq!(found, ["d", "d/sub", "d/sub/new", "e", "e/x"]);
        assert_eq!(fs::read_to_string(tmp.path().join("e/x")).unwrap(), "2");
    }

    #[test]
    fn a_whiteout_does_not_hide_its_own_layer() {
        let lower = layer(&[("a", "1"), ("b/", ""), ("b/c", "1")]);
        let upper = layer(&[("a", "2"), (".wh.a", ""), ("b/.wh.c", ""), ("b/.wh.missing", "")]);
        let (tmp, found) = apply(&[lower, upper]);
        assert_eq!(found, ["a", "b"]);
        assert_eq!(fs::read_to_string(tmp.path().join("a")).unwrap(), "2");
    }

    #[test]
    fn whiteouts_are_plain_files_when_disabled() {
        let tmp = tempfile::tempdir().unwrap();
        let mut u = Unpacker::new(tmp.path(), Options { whiteouts: false, chown: false, mode_mask: 0o777 });
        u.apply(layer(&[("x/.wh.y", "")]).as_slice(), "test").unwrap();
        assert!(tmp.path().join("x/.wh.y").is_file());
    }

    #[test]
    fn read_only_directories_get_their_mode_at_the_end() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o555);
        b.append_data(&mut h, "ro/", std::io::empty()).unwrap();
        let ro = b.into_inner().unwrap();
        let (tmp, found) = apply(&[ro, layer(&[("ro/later", "x")])]);
        assert_eq!(found, ["ro", "ro/later"]);
        assert_eq!(fs::metadata(tmp.path().join("ro")).unwrap().permissions().mode() & 0o777, 0o555);
    }

    #[test]
    fn relative_paths_drop_dots_and_refuse_escapes() {
        assert_eq!(relative(b"./a//b/./c").unwrap(), PathBuf::from("a/b/c"));
        assert_eq!(relative(b"./").unwrap(), PathBuf::new());
        assert!(relative(b"/etc/passwd").is_err());
        assert!(relative(b"a/../../b").is_err());
        assert!(relative(b"..").is_err());
    }
}
