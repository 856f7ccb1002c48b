//! The index of current objects: each key's newest entry, found by hashing and
//! listed in key order.
//!
//! Every write looks its key up several times (its current state, the key to share
//! with the history, the entry it replaces), most of them on the single writer
//! thread. In an ordered map alone each lookup is a search of comparisons whose
//! keys share long prefixes (`corral.dev/tasks`, the namespace, a service's name):
//! that was about a third of the writer's time with 100,000 tasks. Here a lookup is
//! one hash of the key, and the ordered set is touched only when a key comes or goes
//! — not by the updates that are most writes.

use std::collections::hash_map::Entry as Slot;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use crate::history::Entry;
use crate::key::Key;

/// Current objects by key: a hash map for lookups, an ordered set of the same
/// (shared) keys for ranges.
#[derive(Default)]
pub(crate) struct Index {
    entries: HashMap<Arc<Key>, Entry>,
    order: BTreeSet<Arc<Key>>,
}

impl Index {
    /// The entry of `key`.
    pub(crate) fn get(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The index's copy of `key`, with its entry.
    pub(crate) fn get_key_value(&self, key: &Key) -> Option<(&Arc<Key>, &Entry)> {
        self.entries.get_key_value(key)
    }

    /// Whether `key` has an entry.
    pub(crate) fn contains_key(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sets the entry of `key`; returns the one it replaced.
    pub(crate) fn insert(&mut self, key: Arc<Key>, entry: Entry) -> Option<Entry> {
        match self.entries.entry(key) {
            Slot::Occupied(mut held) => Some(held.insert(entry)),
            Slot::Vacant(free) => {
                self.order.insert(free.key().clone());
                free.insert(entry);
                None
            }
        }
    }

    /// Drops the entry of `key`; returns it.
    pub(crate) fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.order.remove(key);
        Some(entry)
    }

    /// Keys from `from` on, in order, with their entries.
    pub(crate) fn range<'a>(&'a self, from: Bound<&Key>) -> impl Iterator<Item = (&'a Arc<Key>, &'a Entry)> + use<'a> {
        self.order.range::<Key, _>((from, Bound::Unbounded)).filter_map(|k| {
            let entry = self.entries.get(&**k);
            // Both hold the same keys: one without the other is a bug.
            debug_assert!(entry.is_some(), "{k} is ordered but has no entry");
            entry.map(|e| (k, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: u64) -> Entry {
        Entry { revision, labels: Default::default(), deleting: false, size: 10 }
    }

    fn key(name: &str) -> Arc<Key> {
        Arc::new(Key::namespaced("corral.dev/tasks", "ns", name))
    }

    #[test]
    fn ranges_list_keys_in_order_with_their_newest_entries() {
        let mut index = Index::default();
        for (i, name) in ["c", "a", "d", "b"].into_iter().enumerate() {
            assert!(index.insert(key(name), entry(i as u64)).is_none());
        }
        assert_eq!(index.insert(key("b"), entry(9)).map(|e| e.revision), Some(3));
        assert_eq!(index.remove(&key("c")).map(|e| e.revision), Some(0));
        assert!(index.remove(&key("c")).is_none());
        let all: Vec<(String, u64)> =
            index.range(Bound::Unbounded).map(|(k, e)| (k.name.clone(), e.revision)).collect();
        assert_eq!(all, [("a".to_string(), 1), ("b".to_string(), 9), ("d".to_string(), 2)]);
        let after_a: Vec<&str> = index.range(Bound::Excluded(&key("a"))).map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(after_a, ["b", "d"]);
        assert_eq!(index.len(), 3);
        assert!(index.contains_key(&key("d")) && !index.contains_key(&key("c")));
    }

    #[test]
    fn a_key_is_held_once_by_both() {
        let mut index = Index::default();
        let k = key("a");
        index.insert(k.clone(), entry(1));
        index.insert(key("a"), entry(2));
        let (held, _) = index.get_key_value(&k).expect("inserted");
        assert!(Arc::ptr_eq(held, &k), "an update keeps the first copy of the key");
        let ordered = index.range(Bound::Unbounded).next().map(|(k, _)| k.clone()).expect("listed");
        assert!(Arc::ptr_eq(&ordered, &k));
    }
}
