//! The UDP answer cache, shared by the UDP threads: the response to a query's bytes
//! less its ID, valid while the zone's serial is the one it was built at. So each
//! distinct query is answered through hickory-proto once per serial, whichever thread
//! gets it.
//!
//! Split into [`SHARDS`] shards behind their own mutex (a lookup holds one for the
//! time of a hash-map probe and a copy, so threads seldom meet), each bounded to its
//! share of [`CACHE_BYTES`]: a shard that would grow past it starts over.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use parking_lot::Mutex;

/// Shards of the cache (a power of two).
const SHARDS: usize = 16;
/// The most the cache holds, keys, responses and a per-entry overhead counted.
pub(crate) const CACHE_BYTES: usize = 16 << 20;
/// What an entry costs beyond its key and response (the map's slot, two boxes'
/// headers), roughly.
const ENTRY_OVERHEAD: usize = 64;
/// Only queries up to this size are cached (a plain query is under 100 bytes).
pub(crate) const CACHE_MAX_QUERY: usize = 256;

struct Cached {
    response: Box<[u8]>,
    qtype: u16,
    rcode: u16,
}

#[derive(Default)]
struct Shard {
    serial: Option<u32>,
    bytes: usize,
    map: HashMap<Box<[u8]>, Cached>,
}

impl Shard {
    /// Empties the shard if its answers are of another serial.
    fn at(&mut self, serial: u32) {
        if self.serial != Some(serial) {
            self.map.clear();
            self.bytes = 0;
            self.serial = Some(serial);
        }
    }
}

/// Answers by query (less its ID), for one zone serial at a time.
pub(crate) struct AnswerCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl AnswerCache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        AnswerCache { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), hasher: RandomState::new() }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize & (SHARDS - 1)]
    }

    /// If `query` (a whole datagram, header included) was answered at `serial`: that
    /// answer with the query's ID in `out`, and its qtype and rcode.
    pub(crate) fn get(&self, serial: u32, query: &[u8], out: &mut Vec<u8>) -> Option<(u16, u16)> {
        let key = query.get(2..)?;
        let mut shard = self.shard(key).lock();
        shard.at(serial);
        let hit = shard.map.get(key)?;
        out.clear();
        out.extend_from_slice(&query[..2]);
        out.extend_from_slice(&hit.response[2..]);
        Some((hit.qtype, hit.rcode))
    }

    /// Keeps `response` as the answer to `query` at `serial` (queries longer than
    /// [`CACHE_MAX_QUERY`] are not kept).
    pub(crate) fn insert(&self, serial: u32, query: &[u8], response: &[u8], qtype: u16, rcode: u16) {
        if query.len() > CACHE_MAX_QUERY || query.len() < 2 || response.len() < 2 {
            return;
        }
        let key = &query[2..];
        let cost = key.len() + response.len() + ENTRY_OVERHEAD;
        let mut shard = self.shard(key).lock();
        shard.at(serial);
        if shard.bytes + cost > CACHE_BYTES / SHARDS {
            shard.map.clear();
            shard.bytes = 0;
        }
        let old = shard.map.insert(key.into(), Cached { response: response.into(), qtype, rcode });
        shard.bytes += cost;
        if let Some(old) = old {
            shard.bytes -= key.len() + old.response.len() + ENTRY_OVERHEAD;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_carries_the_querys_id_and_a_new_serial_forgets_everything() {
        let cache = AnswerCache::new();
        let mut out = Vec::new();
        cache.insert(1, b"\x00\x01question", b"\x00\x01answer", 1, 0);
        assert_eq!(cache.get(1, b"\xab\xcdquestion", &mut out), Some((1, 0)));
        assert_eq!(out, b"\xab\xcdanswer");
        assert_eq!(cache.get(2, b"\xab\xcdquestion", &mut out), None);
        assert_eq!(cache.get(1, b"\xab\xcdquestion", &mut out), None, "cleared when the serial moved");
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = AnswerCache::new();
        let response = vec![0u8; 1000];
        for i in 0..(4 * CACHE_BYTES / 1000) {
            cache.insert(7, format!("..q{i}").as_bytes(), &response, 1, 0);
        }
        let total: usize = cache.shards.iter().map(|s| s.lock().bytes).sum();
        assert!(total <= CACHE_BYTES, "{total} bytes held");
        let entries: usize = cache.shards.iter().map(|s| s.lock().map.len()).sum();
        assert!(entries > 0);
    }
}
