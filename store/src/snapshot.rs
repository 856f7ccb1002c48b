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

/// Reads and checks a whole snapshot file: its revision and objects.
///
/// # Errors
/// `Invalid` naming the file and line when it is not a complete, intact snapshot.
pub fn read_snapshot(path: &Path) -> Result<(u64, Vec<StoredObject>)> {
    let f = std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let mut reader = std::io::BufReader::new(f);
    let mut crc = crc32fast::Hasher::new();
    let mut buf = Vec::new();
    let mut n = 0;
    let mut revision = None;
    let mut objects = Vec::new();
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
            if t.crc32 != crc.finalize() || t.objects != objects.len() as u64 {
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
        objects.push(o);
    }
}

/// Creates a store in `dir` (which must hold none) from a snapshot file: every object
/// at its own revision, the store at the snapshot's revision with its history
/// compacted there, and a new cluster identity (it is a new store, as after
/// `etcdutl snapshot restore`). Returns the revision and the number of objects.
///
/// # Errors
/// Refuses a damaged snapshot or a directory that already holds a store.
pub fn restore(snapshot: &Path, dir: &Path) -> Result<(u64, u64)> {
    let (revision, objects) = read_snapshot(snapshot)?;
    if dir.join("db").exists() || dir.join(crate::marker::MARKER_FILE).exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a store; restore into a new directory and point the server at it",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let db = sled::Config::new().path(dir).open()?;
    let data = db.open_tree("corral")?;
    let blobs = crate::blobs::Blobs::open(dir)?;
    let mut batch = sled::Batch::default();
    for o in &objects {
        let ev = Event { revision: o.revision, event_type: EventType::Added, object: std::sync::Arc::new(o.clone()) };
        if o.json.len() >= crate::blobs::THRESHOLD {
            blobs.write(o.revision, &o.json)?;
        }
        batch.insert(&crate::codec::event_key(o.revision)[..], crate::codec::encode_event(&ev));
        batch.insert(crate::codec::object_key(&o.key), &crate::codec::rev_key(o.revision)[..]);
    }
    batch.insert(crate::codec::META_REVISION, &crate::codec::rev_key(revision)[..]);
    batch.insert(crate::codec::META_COMPACTED, &crate::codec::rev_key(revision)[..]);
    // A new store: a new identity, recorded beside it as every open store does.
    let cluster = *uuid::Uuid::new_v4().as_bytes();
    batch.insert(crate::codec::META_CLUSTER, &cluster[..]);
    blobs.sync_dir()?;
    data.apply_batch(batch)?;
    db.flush()?;
    // Read back as an open would, before the store is declared restored.
    crate::load::load(&data, &blobs)?;
    crate::marker::Marker::create(dir, crate::marker::Mark { cluster, revision })?;
    Ok((revision, objects.len() as u64))
}
