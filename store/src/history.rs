//! What the store remembers of the revisions it has not compacted: for each one, the
//! key it wrote and that key's state just before. With it the writer knows which
//! events compaction may drop, lists can be read at an earlier revision (pages of one
//! list stay consistent while writes go on), and the retained history has a size.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::key::Key;

/// What the in-memory index keeps of an object: enough to filter it and to find its
/// JSON, which stays in sled (in the event of its revision), so memory grows with the
/// number of objects, not their size.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) revision: u64,
    pub(crate) labels: crate::object::Labels,
    pub(crate) deleting: bool,
    /// Bytes of the object's JSON.
    pub(crate) size: u64,
}

/// One retained revision.
#[derive(Debug)]
pub(crate) struct Revision {
    pub(crate) revision: u64,
    pub(crate) key: Arc<Key>,
    /// The key's state before this revision (`None`: it did not exist).
    pub(crate) prev: Option<Entry>,
    /// Whether this revision deleted the key.
    pub(crate) deleted: bool,
    /// Bytes of its event's JSON.
    pub(crate) bytes: u64,
    /// When it was written (for a store just opened: when it was opened).
    pub(crate) at: Instant,
}

/// The retained revisions, oldest first, contiguous.
#[derive(Debug, Default)]
pub(crate) struct History {
    revisions: VecDeque<Revision>,
    bytes: u64,
    /// Keys whose newest retained revision is their deletion, and that revision:
    /// what a list at an earlier revision needs of keys that no longer exist.
    deleted: BTreeMap<Arc<Key>, u64>,
}

/// How much history to keep; whichever bound is reached first wins.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    pub(crate) revisions: u64,
    pub(crate) age: Duration,
    pub(crate) bytes: u64,
}

impl History {
    pub(crate) fn push(&mut self, r: Revision) {
        self.bytes += r.bytes;
        if r.deleted {
            self.deleted.insert(r.key.clone(), r.revision);
        } else {
            self.deleted.remove(&r.key);
        }
        self.revisions.push_back(r);
    }

    /// Bytes of the retained events.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.revisions.len()
    }

    /// The revision up to which history should be compacted now, if any; `current`
    /// is the newest revision.
    pub(crate) fn compaction_target(&self, current: u64, keep: Retention, now: Instant) -> Option<u64> {
        let mut target = current.saturating_sub(keep.revisions.max(1));
        let mut bytes = self.bytes;
        for r in &self.revisions {
            let too_old = now.saturating_duration_since(r.at) > keep.age;
            if !(r.revision <= target || too_old || bytes > keep.bytes) {
                break;
            }
            target = target.max(r.revision);
            bytes -= r.bytes;
        }
        let target = target.min(current);
        (self.revisions.front().is_some_and(|r| r.revision <= target)).then_some(target)
    }

    /// Forgets revisions up to `floor` and returns the events that then hold no state
    /// at or after it: each one's predecessor, and deletions themselves.
    pub(crate) fn compact(&mut self, floor: u64) -> Vec<u64> {
        let mut dead = Vec::new();
        while let Some(r) = self.revisions.front().filter(|r| r.revision <= floor) {
            dead.extend(r.prev.as_ref().map(|p| p.revision));
            if r.deleted {
                dead.push(r.revision);
                if self.deleted.get(&r.key) == Some(&r.revision) {
                    self.deleted.remove(&r.key);
                }
            }
            self.bytes -= r.bytes;
            self.revisions.pop_front();
        }
        dead
    }

    /// The state at revision `at` (not compacted) of a key whose current state is
    /// `current`: walks back through the key's retained revisions, so it costs the
    /// number of writes to that key since `at`.
    pub(crate) fn state_at(&self, key: &Key, current: Option<&Entry>, at: u64) -> Option<Entry> {
        let mut rev = match current {
            Some(e) if e.revision <= at => return Some(e.clone()),
            Some(e) => e.revision,
            None => match self.deleted.get(key) {
                Some(d) if *d > at => *d,
                _ => return None,
            },
        };
        loop {
            let r = self.get(rev)?;
            match &r.prev {
                Some(p) if p.revision <= at => return Some(p.clone()),
                Some(p) => rev = p.revision,
                None => return None,
            }
        }
    }

    fn get(&self, revision: u64) -> Option<&Revision> {
        let first = self.revisions.front()?.revision;
        self.revisions.get(revision.checked_sub(first)? as usize)
    }

    /// Keys whose newest retained revision deleted them, from `from` on, in order.
    pub(crate) fn deleted_from(&self, from: std::ops::Bound<&Key>) -> impl Iterator<Item = &Key> {
        self.deleted.range::<Key, _>((from, std::ops::Bound::Unbounded)).map(|(k, _)| &**k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: u64) -> Entry {
        Entry { revision, labels: Default::default(), deleting: false, size: 10 }
    }

    fn rev(revision: u64, name: &str, prev: Option<u64>, deleted: bool, at: Instant) -> Revision {
        Revision { revision, key: Arc::new(Key::cluster("r", name)), prev: prev.map(entry), deleted, bytes: 10, at }
    }

    #[test]
    fn compaction_drops_superseded_states_and_deletions_only() {
        let now = Instant::now();
        let mut h = History::default();
        h.push(rev(1, "a", None, false, now));
        h.push(rev(2, "a", Some(1), false, now));
        h.push(rev(3, "b", None, false, now));
        h.push(rev(4, "b", Some(3), true, now));
        h.push(rev(5, "a", Some(2), false, now));
        assert_eq!(h.compact(4), vec![1, 3, 4], "2 is a's state at 4, so it stays");
        assert_eq!((h.len(), h.bytes()), (1, 10));
        assert_eq!(h.compact(5), vec![2]);
    }

    #[test]
    fn retention_by_count_age_and_bytes() {
        let now = Instant::now();
        let old = now - Duration::from_secs(100);
        let mut h = History::default();
        for r in 1..=10 {
            h.push(rev(r, "a", (r > 1).then_some(r - 1), false, if r <= 3 { old } else { now }));
        }
        let keep = |revisions, secs, bytes| Retention { revisions, age: Duration::from_secs(secs), bytes };
        assert_eq!(h.compaction_target(10, keep(100, 1000, 1000), now), None);
        assert_eq!(h.compaction_target(10, keep(4, 1000, 1000), now), Some(6));
        assert_eq!(h.compaction_target(10, keep(100, 50, 1000), now), Some(3));
        assert_eq!(h.compaction_target(10, keep(100, 1000, 25), now), Some(8), "at most 25 bytes: 2 events");
        assert_eq!(h.compaction_target(10, keep(100, 1000, 0), now), Some(10));
    }

    #[test]
    fn states_at_an_earlier_revision() {
        let now = Instant::now();
        let mut h = History::default();
        let a = Key::cluster("r", "a");
        let b = Key::cluster("r", "b");
        h.push(rev(5, "a", Some(2), false, now));
        h.push(rev(6, "b", None, false, now));
        h.push(rev(7, "a", Some(5), true, now));
        // a: 2 until 5, 5 until 7, gone since; b: created at 6.
        assert_eq!(h.state_at(&a, None, 7), None);
        assert_eq!(h.state_at(&a, None, 6).map(|e| e.revision), Some(5));
        assert_eq!(h.state_at(&a, None, 4).map(|e| e.revision), Some(2));
        let b_now = entry(6);
        assert_eq!(h.state_at(&b, Some(&b_now), 5), None);
        assert_eq!(h.state_at(&b, Some(&b_now), 6).map(|e| e.revision), Some(6));
        assert_eq!(h.deleted_from(std::ops::Bound::Unbounded).collect::<Vec<_>>(), vec![&a]);
        h.compact(7);
        assert_eq!(h.deleted_from(std::ops::Bound::Unbounded).count(), 0);
    }
}
