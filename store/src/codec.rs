//! On-disk encodings. Objects are stored as their JSON; events as
//! `[type: u8][key length: u32 BE][encoded key][object JSON]`, keyed by the revision
//! in big-endian so that sled's byte order is revision order.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::key::Key;
use crate::object::StoredObject;

pub(crate) const META_REVISION: &[u8] = b"revision";
pub(crate) const META_COMPACTED: &[u8] = b"compacted";

pub(crate) fn rev_key(rev: u64) -> [u8; 8] {
    rev.to_be_bytes()
}

pub(crate) fn decode_u64(b: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = b.try_into().map_err(|_| Error::Corrupt(format!("expected 8 bytes, found {}", b.len())))?;
    Ok(u64::from_be_bytes(arr))
}

pub(crate) fn encode_event(ev: &Event) -> Vec<u8> {
    let key = ev.object.key.encode();
    let mut out = Vec::with_capacity(5 + key.len() + ev.object.json.len());
    out.push(match ev.event_type {
        EventType::Added => 1,
        EventType::Modified => 2,
        EventType::Deleted => 3,
    });
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(&key);
    out.extend_from_slice(&ev.object.json);
    out
}

pub(crate) fn decode_event(rev_bytes: &[u8], v: &[u8]) -> Result<Event> {
    let revision = decode_u64(rev_bytes)?;
    let corrupt = || Error::Corrupt(format!("event {revision} is malformed"));
    let event_type = match v.first() {
        Some(1) => EventType::Added,
        Some(2) => EventType::Modified,
        Some(3) => EventType::Deleted,
        _ => return Err(corrupt()),
    };
    let len_bytes: [u8; 4] = v.get(1..5).and_then(|s| s.try_into().ok()).ok_or_else(corrupt)?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let key = v.get(5..5 + len).and_then(Key::decode).ok_or_else(corrupt)?;
    let json = v.get(5 + len..).ok_or_else(corrupt)?;
    let object = StoredObject::from_json(key, Bytes::copy_from_slice(json))?;
    Ok(Event { revision, event_type, object: Arc::new(object) })
}
