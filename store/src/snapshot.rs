//! Backups: a snapshot is every object at one revision, as newline-delimited JSON,
//! checksummed as a whole (as `etcdctl snapshot save` / `etcdutl snapshot restore`).
//!
//! Layout: a header line `{"corralSnapshot":1,"revision":R}`, one line per object
//! `{"resource":..,"namespace":..,"name":..,"revision":..,"object":{..}}`, and a
//! trailer `{"end":true,"objects":N,"crc32":C}` where `C` is the CRC-32 of every byte
//! before the trailer. A restore refuses a file whose trailer is missing or wrong.

use std::io::BufRead;
use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::key::Key;
use crate::object::StoredObject;

/// The first line of a snapshot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotHeader {
    /// Format version (1).
    pub corral_snapshot: u32,
    /// The revision the snapshot is consistent at.
    pub revision: u64,
}

/// The last line of a snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotTrailer {
    /// Always true: marks the end.
    pub end: bool,
    /// Objects in the snapshot.
    pub objects: u64,
    /// CRC-32 of every byte before this line.
    pub crc32: u32,
}

/// Writes a snapshot incrementally, keeping its checksum.
#[derive(Default)]
pub struct SnapshotWriter {
    crc: crc32fast::Hasher,
    objects: u64,
}

impl SnapshotWriter {
    /// The header line of a snapshot at `revision`.
    pub fn header(&mut self, revision: u64) -> Bytes {
        let mut line = serde_json::to_vec(&SnapshotHeader { corral_snapshot: 1, revision }).unwrap_or_default();
        line.push(b'\n');
        self.crc.update(&line);
        Bytes::from(line)
    }

    /// The line of one object.
    pub fn object(&mut self, o: &StoredObject) -> Bytes {
        let head = serde_json::json!({
            "resource": o.key.resource, "namespace": o.key.namespace, "name": o.key.name, "revision": o.revision,
        })
        .to_string();
        let mut line = Vec::with_capacity(head.len() + o.json.len() + 12);
        line.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        line.extend_from_slice(b",\"object\":");
        line.extend_from_slice(&o.json);
        line.extend_from_slice(b"}\n");
        self.crc.update(&line);
        self.objects += 1;
        Bytes::from(line)
    }

    /// The trailer line.
    pub fn trailer(self) -> Bytes {
        let t = SnapshotTrailer { end: true, objects: self.objects, crc32: self.crc.finalize() };
        let mut line = serde_json::to_vec(&t).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

#[derive(Deserialize)]
struct Line {
    resource: String,
    namespace: String,
    name: String,
    revision: u64,
    object: serde_json::Value,
}

fn bad(path: &Path, line: usize, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}:{line}: {why}", path.display()))
}

/// Checks a whole snapshot file without keeping its objects: its revision and the
/// number of objects.
///
/// # Errors
/// `Invalid` naming the file and line when it is not a complete, intact snapshot.
pub fn check_snapshot(path: &Path) -> Result<(u64, u64)> {
    scan(path, |_| Ok(()))
}

/// Reads a snapshot file line by line, handing each object to `each` as it is read
/// (memory holds one object at a time), and checks its trailer. Returns its revision
/// and the number of objects. `each` sees the objects of a damaged file up to the
/// damage: check the file first where that matters.
fn scan(path: &Path, mut each: impl FnMut(StoredObject) -> Result<()>) -> Result<(u64, u64)> {
    let f = std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let mut reader = std::io::BufReader::new(f);
    let mut crc = crc32fast::Hasher::new();
    let mut buf = Vec::new();
    let mut n = 0;
    let mut revision = None;
    let mut objects = 0u64;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        n += 1;
        if read == 0 {
            return Err(bad(path, n, "the snapshot ends without its trailer: it is incomplete"));
        }
        let Some(rev) = revision else {
            let h: SnapshotHeader =
                serde_json::from_slice(&buf).map_err(|e| bad(path, n, format!("not a snapshot header: {e}")))?;
            if h.corral_snapshot != 1 {
                return Err(bad(path, n, format!("snapshot format {} is not supported", h.corral_snapshot)));
            }
            revision = Some(h.revision);
            crc.update(&buf);
            continue;
        };
        if buf.starts_with(b"{\"end\"") {
            let t: SnapshotTrailer = serde_json::from_slice(&buf).map_err(|e| bad(path, n, e))?;
            if t.crc32 != crc.finalize() || t.objects != objects {
                return Err(bad(path, n, "the snapshot's checksum does not match its content: it is damaged"));
            }
            return Ok((rev, objects));
        }
        crc.update(&buf);
        let l: Line = serde_json::from_slice(&buf).map_err(|e| bad(path, n, e))?;
        if l.revision > rev {
            return Err(bad(path, n, format!("object at revision {} beyond the snapshot's {rev}", l.revision)));
        }
        let key = Key::namespaced(l.resource, l.namespace, l.name);
        let json = Bytes::from(serde_json::to_vec(&l.object).map_err(|e| bad(path, n, e))?);
        let o = StoredObject::from_json(key, json).map_err(|e| bad(path, n, e))?;
        if o.revision != l.revision {
            return Err(bad(path, n, "the object's resourceVersion is not its revision"));
        }
        objects += 1;
        each(o)?;
    }
}

/// File marking a restore in progress in a store's directory: a store holding it
/// refuses to open, since its database holds only part of the snapshot.
pub(crate) const RESTORING_FILE: &str = "corral-restoring";

/// Bytes of objects written per batch by a restore.
const RESTORE_BATCH_BYTES: usize = 16 << 20;

/// Creates a store in `dir` (which must hold none) from a snapshot file: every object
/// at its own revision, the store at the snapshot's revision with its history
/// compacted there, and a new cluster identity (it is a new store, as after
/// `etcdutl snapshot restore`). Returns the revision and the number of objects.
///
/// The file is checked whole before anything is written, then read again and
/// written in batches, so memory holds a batch, not the snapshot. A restore that
/// stops midway (a crash, a full disk) leaves a directory that refuses to open,
/// saying so; restore again into a new one.
///
/// # Errors
/// Refuses a damaged snapshot or a directory that already holds a store.
pub fn restore(snapshot: &Path, dir: &Path) -> Result<(u64, u64)> {
    let (revision, count) = check_snapshot(snapshot)?;
    let io = |p: &Path, e: std::io::Error| Error::Io(format!("{}: {e}", p.display()));
    if dir.join("db").exists() || dir.join(crate::marker::MARKER_FILE).exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a store; restore into a new directory and point the server at it",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let restoring = dir.join(RESTORING_FILE);
    std::fs::write(&restoring, b"a snapshot restore into this directory has not finished\n")
        .map_err(|e| io(&restoring, e))?;
    let db = sled::Config::new().path(dir).open()?;
    let data = db.open_tree("corral")?;
    let blobs = crate::blobs::Blobs::open(dir)?;
    let mut batch = sled::Batch::default();
    let mut batched = 0usize;
    let write = |batch: sled::Batch| -> Result<()> {
        // Files of large objects are durable before the records naming them.
        blobs.sync_dir()?;
        data.apply_batch(batch)?;
        Ok(())
    };
    scan(snapshot, |o| {
        if o.json.len() >= crate::blobs::THRESHOLD {
            blobs.write(o.revision, &o.json)?;
        }
        batched += o.json.len();
        batch.insert(crate::codec::object_key(&o.key), &crate::codec::rev_key(o.revision)[..]);
        let (rev, ev) = (o.revision, Event { revision: o.revision, event_type: EventType::Added, object: o.into() });
        batch.insert(&crate::codec::event_key(rev)[..], crate::codec::encode_event(&ev));
        if batched >= RESTORE_BATCH_BYTES {
            batched = 0;
            write(std::mem::take(&mut batch))?;
        }
        Ok(())
    })?;
    batch.insert(crate::codec::META_REVISION, &crate::codec::rev_key(revision)[..]);
    batch.insert(crate::codec::META_COMPACTED, &crate::codec::rev_key(revision)[..]);
    // A new store: a new identity, recorded beside it as every open store does.
    let cluster = *uuid::Uuid::new_v4().as_bytes();
    batch.insert(crate::codec::META_CLUSTER, &cluster[..]);
    write(batch)?;
    db.flush()?;
    // Read back as an open would, before the store is declared restored.
    let loaded = crate::load::load(&data, &blobs)?;
    if loaded.state.revision != revision || loaded.state.index.len() as u64 != count {
        return Err(Error::Corrupt(format!(
            "{} read back at revision {} with {} objects, not {revision} with {count}",
            dir.display(),
            loaded.state.revision,
            loaded.state.index.len()
        )));
    }
    crate::marker::Marker::create(dir, crate::marker::Mark { cluster, revision })?;
    std::fs::remove_file(&restoring).map_err(|e| io(&restoring, e))?;
    // Until the removal is durable a crash leaves the store refusing to open: the
    // safe side, but a finished restore should not need redoing.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
    Ok((revision, count))
}
