//! A small file beside the database recording which cluster the data belongs to and
//! the newest revision ever acknowledged. sled treats a damaged log tail as a torn
//! write and opens what precedes it; without this record, a corrupted, truncated,
//! replaced or missing database file would start silently in the past and issue
//! revision numbers a second time. With it, the store refuses to open instead.
//!
//! The record is rewritten in place after every durable commit (no fsync of its own:
//! it is written only after the data it names is durable, so on disk it can lag the
//! database, never lead it).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File name of the record, inside the store's directory.
pub const MARKER_FILE: &str = "corral-marker";

const MAGIC: &[u8; 8] = b"CRLMARK1";
const LEN: usize = 8 + 16 + 8 + 4;

/// What the record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) cluster: [u8; 16],
    pub(crate) revision: u64,
}

/// The open record.
pub(crate) struct Marker {
    file: File,
    path: PathBuf,
    cluster: [u8; 16],
}

fn encode(m: Mark) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..8].copy_from_slice(MAGIC);
    b[8..24].copy_from_slice(&m.cluster);
    b[24..32].copy_from_slice(&m.revision.to_be_bytes());
    let crc = crc32fast::hash(&b[..32]);
    b[32..].copy_from_slice(&crc.to_be_bytes());
    b
}

fn decode(path: &Path, b: &[u8]) -> Result<Mark> {
    let bad = |why: &str| {
        Error::Corrupt(format!(
            "{}: {why}; the store cannot tell what it last acknowledged — restore a snapshot \
             (corral admin snapshot restore) or, to accept whatever the database holds, remove this file",
            path.display()
        ))
    };
    if b.len() != LEN || &b[..8] != MAGIC {
        return Err(bad("not a store marker"));
    }
    let crc = u32::from_be_bytes(b[32..36].try_into().map_err(|_| bad("truncated"))?);
    if crc32fast::hash(&b[..32]) != crc {
        return Err(bad("its checksum does not match"));
    }
    let mut cluster = [0u8; 16];
    cluster.copy_from_slice(&b[8..24]);
    let revision = u64::from_be_bytes(b[24..32].try_into().map_err(|_| bad("truncated"))?);
    Ok(Mark { cluster, revision })
}

/// Reads the record in `dir`, if there is one.
pub(crate) fn read(dir: &Path) -> Result<Option<Mark>> {
    let path = dir.join(MARKER_FILE);
    match std::fs::read(&path) {
        Ok(b) => decode(&path, &b).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io(format!("{}: {e}", path.display()))),
    }
}

/// Checks that a database at `revision` of `cluster` is not behind what `dir`'s
/// record says was acknowledged, nor another cluster's.
pub(crate) fn check(dir: &Path, found: Option<Mark>, cluster: [u8; 16], revision: u64) -> Result<()> {
    let Some(mark) = found else { return Ok(()) };
    let path = dir.join(MARKER_FILE);
    if mark.cluster != cluster {
        return Err(Error::Corrupt(format!(
            "the database in {} belongs to cluster {} but {} says this directory holds cluster {}: \
             it was replaced by another store's files; put the right ones back or restore a snapshot",
            dir.display(),
            uuid::Uuid::from_bytes(cluster),
            path.display(),
            uuid::Uuid::from_bytes(mark.cluster)
        )));
    }
    if mark.revision > revision {
        return Err(Error::Corrupt(format!(
            "the database in {} is at revision {revision} but revision {} was acknowledged ({}): it was \
             truncated, rolled back or damaged, and starting would lose {} acknowledged writes and issue \
             their revisions again; restore a snapshot (corral admin snapshot restore) or, to accept the \
             loss, remove {}",
            dir.display(),
            mark.revision,
            path.display(),
            mark.revision - revision,
            path.display()
        )));
    }
    Ok(())
}

impl Marker {
    /// Opens (creating) the record in `dir` and writes `mark` into it.
    pub(crate) fn create(dir: &Path, mark: Mark) -> Result<Self> {
        let path = dir.join(MARKER_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let m = Marker { file, path, cluster: mark.cluster };
        m.record(mark.revision)?;
        m.file.sync_all().map_err(|e| Error::Io(format!("{}: {e}", m.path.display())))?;
        Ok(m)
    }

    /// Records that `revision` is durable.
    pub(crate) fn record(&self, revision: u64) -> Result<()> {
        let b = encode(Mark { cluster: self.cluster, revision });
        self.file.write_all_at(&b, 0).map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_refuses_a_store_behind_it_or_of_another_cluster() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(dir.path()).ok(), Some(None));
        let cluster = [7u8; 16];
        let m = Marker::create(dir.path(), Mark { cluster, revision: 5 }).unwrap_or_else(|e| panic!("{e}"));
        m.record(9).unwrap_or_else(|e| panic!("{e}"));
        let found = read(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found, Some(Mark { cluster, revision: 9 }));
        assert!(check(dir.path(), found, cluster, 9).is_ok());
        assert!(check(dir.path(), found, cluster, 12).is_ok());
        let behind = check(dir.path(), found, cluster, 8).unwrap_err().to_string();
        assert!(behind.contains("at revision 8 but revision 9 was acknowledged"), "{behind}");
        let other = check(dir.path(), found, [1u8; 16], 9).unwrap_err().to_string();
        assert!(other.contains("belongs to cluster"), "{other}");
        // A damaged record is refused too.
        let path = dir.path().join(MARKER_FILE);
        let mut b = std::fs::read(&path).unwrap_or_default();
        b[26] ^= 1;
        std::fs::write(&path, b).unwrap_or_else(|e| panic!("{e}"));
        assert!(read(dir.path()).unwrap_err().to_string().contains("checksum"));
    }
}
