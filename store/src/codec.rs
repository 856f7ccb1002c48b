//! On-disk layout. Everything lives in one sled tree, so that a batch of writes is
//! atomic (sled batches are atomic per tree) without the cost of a multi-tree
//! transaction. Keys are prefixed by what they hold:
//! - `e` + revision (u64 big-endian, so byte order is revision order) → the event,
//!   `[type: u8][CRC-32 of the rest: u32 BE][key length: u32 BE][encoded key][object JSON]`
//!   (types 0x11–0x13; stores written before checksums have types 1–3 and no CRC).
//!   Events are never rewritten, only removed by compaction;
//! - `o` + encoded [`Key`] → the revision (u64 big-endian) whose event holds the
//!   object's current state. Each object's JSON is thus written once per change, and
//!   compaction keeps the events that are some object's current state;
//! - `m` + name → metadata of the store itself (current and compacted revision).

use std::sync::Arc;

use bytes::Bytes;

use crate::blobs::Blobs;
use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::key::Key;
use crate::object::StoredObject;

pub(crate) const OBJECT_PREFIX: &[u8] = b"o";
pub(crate) const EVENT_PREFIX: u8 = b'e';
pub(crate) const META_REVISION: &[u8] = b"mrevision";
pub(crate) const META_COMPACTED: &[u8] = b"mcompacted";
pub(crate) const META_CLUSTER: &[u8] = b"mcluster";

/// Type bytes of checksummed events; `LEGACY_*` ones (1–3) carry no checksum.
const CHECKSUMMED: u8 = 0x10;
/// Flag of events whose JSON is in a file of its own.
const EXTERNAL: u8 = 0x20;

pub(crate) fn rev_key(rev: u64) -> [u8; 8] {
    rev.to_be_bytes()
}

/// Where the event of revision `rev` is stored.
pub(crate) fn event_key(rev: u64) -> [u8; 9] {
    let mut k = [EVENT_PREFIX; 9];
    k[1..].copy_from_slice(&rev.to_be_bytes());
    k
}

/// Where the object at `key` is stored.
pub(crate) fn object_key(key: &Key) -> Vec<u8> {
    let mut k = OBJECT_PREFIX.to_vec();
    k.extend_from_slice(&key.encode());
    k
}

pub(crate) fn decode_u64(b: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = b.try_into().map_err(|_| Error::Corrupt(format!("expected 8 bytes, found {}", b.len())))?;
    Ok(u64::from_be_bytes(arr))
}

/// Encodes an event for the database. The JSON of a large object is not included:
/// only its length and checksum, the JSON going to its own file (see `blobs`).
pub(crate) fn encode_event(ev: &Event) -> Vec<u8> {
    let key = ev.object.key.encode();
    let json = &ev.object.json;
    let external = json.len() >= crate::blobs::THRESHOLD;
    let mut out = Vec::with_capacity(9 + key.len() + if external { 12 } else { json.len() });
    out.push(
        CHECKSUMMED
            | if external { EXTERNAL } else { 0 }
            | match ev.event_type {
                EventType::Added => 1,
                EventType::Modified => 2,
                EventType::Deleted => 3,
            },
    );
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(&key);
    if external {
        out.extend_from_slice(&(json.len() as u64).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(json).to_be_bytes());
    } else {
        out.extend_from_slice(json);
    }
    let crc = crc32fast::hash(&out[5..]);
    out[1..5].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Where an event's JSON is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Body<'a> {
    /// In the database record.
    Inline(&'a [u8]),
    /// In the event's own file, of this length and checksum.
    External { len: u64, crc: u32 },
}

impl Body<'_> {
    /// Length of the JSON.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Inline(b) => b.len() as u64,
            Body::External { len, .. } => *len,
        }
    }
}

/// The parts of an encoded event, without reading its JSON.
pub(crate) fn event_parts(revision: u64, v: &[u8]) -> Result<(EventType, Key, Body<'_>)> {
    let corrupt = || Error::Corrupt(format!("event {revision} is malformed"));
    let first = *v.first().ok_or_else(corrupt)?;
    let event_type = match first & !(CHECKSUMMED | EXTERNAL) {
        1 => EventType::Added,
        2 => EventType::Modified,
        3 => EventType::Deleted,
        _ => return Err(corrupt()),
    };
    let v = if first & CHECKSUMMED != 0 {
        let crc: [u8; 4] = v.get(1..5).and_then(|s| s.try_into().ok()).ok_or_else(corrupt)?;
        let rest = &v[5..];
        if crc32fast::hash(rest) != u32::from_be_bytes(crc) {
            return Err(Error::Corrupt(format!("event {revision} fails its checksum")));
        }
        // Re-based so the layout below is the same for both encodings.
        &v[4..]
    } else {
        v
    };
    let len_bytes: [u8; 4] = v.get(1..5).and_then(|s| s.try_into().ok()).ok_or_else(corrupt)?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let key = v.get(5..5 + len).and_then(Key::decode).ok_or_else(corrupt)?;
    let rest = v.get(5 + len..).ok_or_else(corrupt)?;
    let body = if first & EXTERNAL != 0 {
        let len = rest.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(corrupt)?;
        let crc = rest.get(8..12).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).ok_or_else(corrupt)?;
        Body::External { len, crc }
    } else {
        Body::Inline(rest)
    };
    Ok((event_type, key, body))
}

/// The revision an event key stands for.
pub(crate) fn event_revision(event_key: &[u8]) -> Result<u64> {
    decode_u64(event_key.get(1..).unwrap_or_default())
}

pub(crate) fn decode_event(blobs: &Blobs, event_key: &[u8], v: &[u8]) -> Result<Event> {
    let revision = event_revision(event_key)?;
    let (event_type, key, body) = event_parts(revision, v)?;
    let object = StoredObject::from_json(key, json(blobs, revision, body)?)?;
    Ok(Event { revision, event_type, object: Arc::new(object) })
}

/// The JSON of the event of `revision`, wherever it is.
pub(crate) fn json(blobs: &Blobs, revision: u64, body: Body<'_>) -> Result<Bytes> {
    match body {
        Body::Inline(b) => Ok(Bytes::copy_from_slice(b)),
        Body::External { len, crc } => blobs.read(revision, len, crc),
    }
}
