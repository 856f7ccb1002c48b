//! Large objects live in files of their own, one per event, beside the database.
//!
//! sled keeps values inside its tree nodes and rewrites a node whole when anything in
//! it changes; with objects of a megabyte, every write rewrote megabytes, and the
//! space of the old copies was not reclaimed (4,000 writes of 1 MiB left 20 GB on
//! disk). An event whose JSON is large is therefore written to its own file, made
//! durable before the database records it, and deleted when compaction drops the
//! event: the directory holds what is live and retained, nothing more.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Error, Result};

/// Objects at least this large are kept in files of their own.
pub(crate) const THRESHOLD: usize = 32 << 10;

/// Name of the directory of large objects, inside the store's directory.
pub(crate) const DIR: &str = "objects";

pub(crate) struct Blobs {
    dir: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return Error::NoSpace(format!("{}: {e}", path.display()));
    }
    Error::Io(format!("{}: {e}", path.display()))
}

impl Blobs {
    pub(crate) fn open(store_dir: &Path) -> Result<Self> {
        let dir = store_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(Blobs { dir })
    }

    fn path(&self, revision: u64) -> PathBuf {
        self.dir.join(format!("{revision:016x}"))
    }

    /// Writes the JSON of the event of `revision`, durably.
    pub(crate) fn write(&self, revision: u64, json: &[u8]) -> Result<()> {
        let path = self.path(revision);
        let mut f = File::create(&path).map_err(|e| io(&path, e))?;
        f.write_all(json).map_err(|e| io(&path, e))?;
        f.sync_data().map_err(|e| io(&path, e))
    }

    /// Makes the names of files just written durable.
    pub(crate) fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io(&self.dir, e))
    }

    /// The JSON of the event of `revision`, checked against its recorded length and
    /// checksum.
    pub(crate) fn read(&self, revision: u64, len: u64, crc: u32) -> Result<Bytes> {
        let path = self.path(revision);
        let b = std::fs::read(&path).map_err(|e| {
            Error::Corrupt(format!("the object file of revision {revision} ({}) cannot be read: {e}", path.display()))
        })?;
        if b.len() as u64 != len || crc32fast::hash(&b) != crc {
            return Err(Error::Corrupt(format!(
                "the object file of revision {revision} ({}) fails its checksum",
                path.display()
            )));
        }
        Ok(Bytes::from(b))
    }

    /// Deletes the file of `revision`, if there is one.
    pub(crate) fn remove(&self, revision: u64) {
        let path = self.path(revision);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete an object file"),
        }
    }

    /// Bytes of the files.
    pub(crate) fn bytes(&self) -> u64 {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return 0 };
        dir.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
    }

    /// Revisions that have a file.
    pub(crate) fn revisions(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let e = e.map_err(|e| io(&self.dir, e))?;
            match e.file_name().to_str().and_then(|n| u64::from_str_radix(n, 16).ok()) {
                Some(rev) => out.push(rev),
                // A file we did not write; left alone.
                None => tracing::warn!(file = ?e.file_name(), "unexpected file among object files"),
            }
        }
        Ok(out)
    }
}
