//! Reading a store back at open: every event is read once, its checksum verified, and
//! the index, the history and what the object records say must all agree, or the
//! store refuses to open rather than serve something other than what it acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::blobs::Blobs;
use crate::codec;
use crate::error::{Error, Result};
use crate::event::EventType;
use crate::history::{Entry, Revision};
use crate::key::Key;
use crate::object::StoredObject;
use crate::sled_store::State;

/// A store as read from disk.
pub(crate) struct Loaded {
    pub(crate) state: State,
    pub(crate) compacted: u64,
    /// Events at or below the compaction floor that hold no state there (a crash
    /// between a compaction's two steps, or a store from an older release).
    pub(crate) leftovers: Vec<u64>,
    /// Revisions whose JSON is in a file of its own, leftovers excepted.
    pub(crate) external: std::collections::HashSet<u64>,
}

fn meta_u64(data: &sled::Tree, name: &[u8]) -> Result<u64> {
    Ok(data.get(name)?.map(|v| codec::decode_u64(&v)).transpose()?.unwrap_or(0))
}

pub(crate) fn load(data: &sled::Tree, blobs: &Blobs) -> Result<Loaded> {
    let revision = meta_u64(data, codec::META_REVISION)?;
    let compacted = meta_u64(data, codec::META_COMPACTED)?;
    if compacted > revision {
        return Err(Error::Corrupt(format!("compacted revision {compacted} is beyond the store's {revision}")));
    }
    let now = Instant::now();
    let mut state = State { revision, ..State::default() };
    // Each key's newest event so far: its revision and, unless a deletion, its state.
    let mut latest: HashMap<Arc<Key>, (u64, Option<Entry>)> = HashMap::new();
    let mut leftovers = Vec::new();
    let mut external = std::collections::HashSet::new();
    let mut expected = compacted + 1;
    for kv in data.scan_prefix([codec::EVENT_PREFIX]) {
        let (k, v) = kv?;
        let rev = codec::event_revision(&k)?;
        if rev > revision {
            return Err(Error::Corrupt(format!("event {rev} is beyond the store's revision {revision}")));
        }
        let (event_type, key, body) = codec::event_parts(rev, &v)?;
        let size = body.len();
        if matches!(body, codec::Body::External { .. }) {
            external.insert(rev);
        }
        let deleted = event_type == EventType::Deleted;
        // One copy of each key and, while they do not change, of its labels, shared
        // by the index and every revision of the history.
        let (key, before) = match latest.get_key_value(&key) {
            Some((k, (_, e))) => (k.clone(), e.as_ref().map(|e| e.labels.clone())),
            None => (Arc::new(key), None),
        };
        let entry = if deleted {
            None
        } else {
            let (obj, deleting) = StoredObject::decode((*key).clone(), codec::json(blobs, rev, body)?)?;
            let labels = before.filter(|b| *b == obj.labels).unwrap_or(obj.labels);
            Some(Entry { revision: rev, labels, deleting, size })
        };
        let prev = latest.insert(key.clone(), (rev, entry));
        if rev <= compacted {
            leftovers.extend(prev.map(|(r, _)| r));
            if deleted {
                leftovers.push(rev);
            }
            continue;
        }
        if rev != expected {
            return Err(Error::Corrupt(format!("the event of revision {expected} is missing")));
        }
        expected += 1;
        state.history.push(Revision {
            revision: rev,
            key,
            prev: prev.and_then(|(_, e)| e),
            deleted,
            bytes: size,
            at: now,
        });
    }
    if expected != revision + 1 {
        return Err(Error::Corrupt(format!(
            "the store is at revision {revision} but its events end at revision {}",
            expected - 1
        )));
    }
    leftovers.sort_unstable();
    leftovers.dedup();
    for rev in &leftovers {
        external.remove(rev);
    }
    for (key, (_, entry)) in latest {
        if let Some(e) = entry {
            state.insert(key, e);
        }
    }
    // Each object's record must name the event that holds its state.
    let mut records = 0;
    for kv in data.scan_prefix(codec::OBJECT_PREFIX) {
        let (k, v) = kv?;
        let key = Key::decode(&k[codec::OBJECT_PREFIX.len()..])
            .ok_or_else(|| Error::Corrupt("undecodable object key".into()))?;
        let at = codec::decode_u64(&v)?;
        match state.index.get(&key) {
            Some(e) if e.revision == at => records += 1,
            Some(e) => {
                return Err(Error::Corrupt(format!(
                    "{key} is recorded at revision {at} but its events end at {}",
                    e.revision
                )));
            }
            None => return Err(Error::Corrupt(format!("{key} is recorded at revision {at}, whose event is missing"))),
        }
    }
    if records != state.index.len() {
        return Err(Error::Corrupt(format!(
            "{} objects have events but only {records} are recorded",
            state.index.len()
        )));
    }
    Ok(Loaded { state, compacted, leftovers, external })
}
