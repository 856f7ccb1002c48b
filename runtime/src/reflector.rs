//! Reflectors keep a local, indexed copy of one kind's objects, in step with the
//! server: list (page by page, through [`watcher::watch`](crate::watcher::watch)),
//! then watch from the list's revision; resume from the last revision seen after a
//! disconnect; on `Gone`, list again and reconcile the copy with it.
//!
//! The copy is read through a [`Cache`], a cheap handle; one reflector writes it.
//! Objects are decoded once per event into `K` and shared as `Arc<K>`: never mutated
//! in place. A reconcile that wants to change an object clones it.

use std::collections::hash_map::Entry as Slot;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use corral_api::{ApiObject, DynamicObject, KindInfo};
use corral_client::{Api, ListParams, ObjectType};
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::object_ref::ObjectRef;
use crate::watcher::Seen;

/// Computes the index values of an object (e.g. its node name, or its owners' uids).
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// Index by the uid of each owner (`metadata.ownerReferences[].uid`): find an
/// object's dependents with `cache.by_index("owner", uid)`.
pub fn by_owner_uid<K: ApiObject>() -> IndexFn<K> {
    Arc::new(|o: &K| o.meta().owner_references.iter().map(|r| r.uid.clone()).collect())
}

/// Index by the value of label `key`.
pub fn by_label<K: ApiObject>(key: &str) -> IndexFn<K> {
    let key = key.to_string();
    Arc::new(move |o: &K| o.meta().labels.get(&key).cloned().into_iter().collect())
}

/// Index dynamic objects by the string at a JSON pointer, e.g. `/spec/nodeName`
/// (typed kinds index with a closure over their fields instead).
pub fn by_field(pointer: &str) -> IndexFn<DynamicObject> {
    let pointer = pointer.to_string();
    Arc::new(move |o: &DynamicObject| {
        let mut parts = pointer.trim_start_matches('/').splitn(2, '/');
        let top = parts.next().unwrap_or_default();
        let rest = parts.next().map(|r| format!("/{r}")).unwrap_or_default();
        o.rest
            .get(top)
            .and_then(|v| v.pointer(&rest))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .into_iter()
            .collect()
    })
}

// An index holds the objects' cells, not references to look up again: a lookup by
// index is a controller's inner loop (a node's tasks, a service's tasks) and must
// not cost a search of the whole copy per object. Keys are shared: one reference
// per object, however many indexes hold it (100,000 tasks in three indexes would
// otherwise keep 400,000 copies of their names).
struct Index<K> {
    func: IndexFn<K>,
    entries: HashMap<String, BTreeMap<Arc<ObjectRef>, Cell<K>>>,
}

/// Where the cache holds one object: shared by the cache and every index entry of
/// the object, so that an update that keeps its index values — most updates, a
/// task's status — replaces it once, in place. An index's entry was otherwise found
/// by a search of its ordered set, whose references share their kind, namespace and
/// often a long name prefix: with ten thousand tasks of one framework, a search of
/// dozens of comparisons per index per event. Written only under the cache's write
/// lock.
type Cell<K> = Arc<RwLock<Arc<K>>>;

impl<K> Index<K> {
    fn remove(&mut self, value: &str, key: &ObjectRef) {
        if let Some(set) = self.entries.get_mut(value) {
            set.remove(key);
            if set.is_empty() {
                self.entries.remove(value);
            }
        }
    }
}

/// The reference of `o`, a `kind` whose resource is `resource`.
fn reference(kind: &KindInfo, resource: &str, o: &impl ApiObject) -> ObjectRef {
    ObjectRef {
        resource: resource.to_string(),
        namespace: o.namespace().filter(|_| kind.namespaced).map(str::to_string),
        name: o.name().to_string(),
    }
}

/// The cached objects: found by hashing their reference, listed in its order.
///
/// A busy kind sends every reflector of it thousands of events a second, each looked
/// up by its reference; in an ordered map alone that is a search of comparisons of
/// references that share their kind, namespace and often a long name prefix (most
/// of an upsert's time with 100,000 tasks). The ordered set changes only when an
/// object comes or goes.
struct Objects<K> {
    by_ref: HashMap<Arc<ObjectRef>, Cell<K>>,
    order: BTreeSet<Arc<ObjectRef>>,
}

impl<K> Default for Objects<K> {
    fn default() -> Self {
        Objects { by_ref: HashMap::new(), order: BTreeSet::new() }
    }
}

impl<K> Objects<K> {
    fn get(&self, r: &ObjectRef) -> Option<Arc<K>> {
        self.by_ref.get(r).map(|c| c.read().clone())
    }

    fn contains(&self, r: &ObjectRef) -> bool {
        self.by_ref.contains_key(r)
    }

    fn len(&self) -> usize {
        self.by_ref.len()
    }

    /// Sets the object of `r`, in its cell if it has one; returns the reference the
    /// cache holds (the first one inserted, shared with the indexes), the cell (the
    /// one the indexes hold, for an object already cached) and the object replaced.
    fn insert(&mut self, r: ObjectRef, object: Arc<K>) -> Inserted<K> {
        match self.by_ref.entry(Arc::new(r)) {
            Slot::Occupied(held) => {
                let previous = std::mem::replace(&mut *held.get().write(), object);
                Inserted { key: held.key().clone(), cell: held.get().clone(), previous: Some(previous) }
            }
            Slot::Vacant(free) => {
                let key = free.key().clone();
                self.order.insert(key.clone());
                let cell = free.insert(Arc::new(RwLock::new(object))).clone();
                Inserted { key, cell, previous: None }
            }
        }
    }

    fn remove(&mut self, r: &ObjectRef) -> Option<(Arc<ObjectRef>, Arc<K>)> {
        let (key, cell) = self.by_ref.remove_entry(r)?;
        self.order.remove(r);
        let object = cell.read().clone();
        Some((key, object))
    }

    /// Every reference with its object's cell, in order.
    fn cells(&self) -> impl Iterator<Item = (&Arc<ObjectRef>, &Cell<K>)> {
        // Both hold the same references: one without the other is a bug.
        self.order.iter().filter_map(|r| self.by_ref.get(r).map(|c| (r, c)))
    }

    /// Every reference with its object, in order.
    fn iter(&self) -> impl Iterator<Item = (&Arc<ObjectRef>, Arc<K>)> {
        self.cells().map(|(r, c)| (r, c.read().clone()))
    }
}

/// What [`Objects::insert`] did.
struct Inserted<K> {
    key: Arc<ObjectRef>,
    cell: Cell<K>,
    previous: Option<Arc<K>>,
}

struct CacheState<K> {
    objects: Objects<K>,
    indexes: HashMap<String, Index<K>>,
    revision: u64,
}

impl<K> Default for CacheState<K> {
    fn default() -> Self {
        CacheState { objects: Objects::default(), indexes: HashMap::new(), revision: 0 }
    }
}

/// A read handle on a reflector's copy of one kind. Cheap to clone.
pub struct Cache<K> {
    state: Arc<RwLock<CacheState<K>>>,
    synced: watch::Receiver<bool>,
    resource: String,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache { state: self.state.clone(), synced: self.synced.clone(), resource: self.resource.clone() }
    }
}

impl<K> Cache<K> {
    /// The cached object, if any.
    pub fn get(&self, r: &ObjectRef) -> Option<Arc<K>> {
        self.state.read().objects.get(r)
    }

    /// Every cached object, ordered by namespace and name.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.state.read().objects.iter().map(|(_, o)| o).collect()
    }

    /// Objects whose index `index` yields `value`.
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<K>> {
        let st = self.state.read();
        st.indexes
            .get(index)
            .and_then(|i| i.entries.get(value))
            .map(|cells| cells.values().map(|c| c.read().clone()).collect())
            .unwrap_or_default()
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.state.read().objects.len()
    }

    /// Whether the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last revision the cache is known to be in step with.
    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// The `group/plural` this cache holds.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Whether the first list has been loaded.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list has been loaded. Controllers must not act on an
    /// empty cache that is merely not filled yet.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// A change the reflector applied to its cache.
#[derive(Debug)]
pub enum Change<K> {
    /// Created or updated: the new state, and the state it replaced in the cache.
    Applied {
        /// The object now.
        object: Arc<K>,
        /// The object before, if the cache had it.
        previous: Option<Arc<K>>,
    },
    /// Removed (or no longer selected); the last state.
    Deleted(Arc<K>),
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied { object, previous } => {
                Change::Applied { object: object.clone(), previous: previous.clone() }
            }
            Change::Deleted(o) => Change::Deleted(o.clone()),
        }
    }
}

impl<K> Change<K> {
    /// The object concerned.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied { object, .. } | Change::Deleted(object) => object,
        }
    }
}

/// Keeps a [`Cache`] of one kind in step with the server.
pub struct Reflector<K> {
    api: Api<K>,
    params: ListParams,
    state: Arc<RwLock<CacheState<K>>>,
    synced: watch::Sender<bool>,
    events: Option<Counter>,
}

impl<K: ObjectType> Reflector<K> {
    /// A reflector of the objects `api` reaches (one namespace or all) that the
    /// selectors of `params` match.
    pub fn new(api: Api<K>, params: ListParams) -> Self {
        let (synced, _) = watch::channel(false);
        Reflector { api, params, state: Arc::default(), synced, events: None }
    }

    /// Adds an index, computed for every object from now on. Add indexes before
    /// [`Reflector::run`].
    pub fn index(self, name: &str, func: IndexFn<K>) -> Self {
        self.state.write().indexes.insert(name.to_string(), Index { func, entries: HashMap::new() });
        self
    }

    /// Counts every watch event received (bookmarks excepted) in `counter`.
    pub fn count_events(mut self, counter: Counter) -> Self {
        self.events = Some(counter);
        self
    }

    /// A read handle on the cache.
    pub fn cache(&self) -> Cache<K> {
        Cache { state: self.state.clone(), synced: self.synced.subscribe(), resource: self.api.kind().resource() }
    }

    /// The kind reflected.
    pub fn kind(&self) -> &Arc<KindInfo> {
        self.api.kind()
    }

    /// Runs until `shutdown` is cancelled, calling `on_change` for every change applied
    /// to the cache (including the differences found when re-listing).
    ///
    /// # Guarantees
    /// Every change after the first list is seen once, in revision order, unless the
    /// server compacted it away, in which case the re-list reports the net difference.
    pub async fn run(self, shutdown: CancellationToken, on_change: impl Fn(Change<K>) + Send + Sync) {
        let kind = self.api.kind().clone();
        // Formatted once: every event's reference shares the kind's.
        let resource = kind.resource();
        let (api, params, events) = (self.api.clone(), self.params.clone(), self.events.clone());
        crate::watcher::watch(api, params, shutdown, events, |seen| {
            match seen {
                Seen::Listed { objects, revision } => {
                    for c in self.replace(&kind, objects, revision) {
                        on_change(c);
                    }
                }
                Seen::Applied(o) => {
                    let r = reference(&kind, &resource, &o);
                    let object = Arc::new(o);
                    let previous = self.upsert(r, &object);
                    on_change(Change::Applied { object, previous });
                }
                Seen::Deleted(o) => {
                    self.remove(&reference(&kind, &resource, &o), o.revision());
                    on_change(Change::Deleted(Arc::new(o)));
                }
                Seen::Bookmark(rv) => self.state.write().revision = rv,
            }
            std::future::ready(())
        })
        .await;
    }

    /// Replaces the cache with a fresh list; returns the differences.
    fn replace(&self, kind: &KindInfo, objects: Vec<K>, revision: u64) -> Vec<Change<K>> {
        let mut fresh: Objects<K> = Objects::default();
        for obj in objects {
            fresh.insert(ObjectRef::of(kind, &obj), Arc::new(obj));
        }
        let mut changes = Vec::new();
        {
            let mut st = self.state.write();
            let old = std::mem::take(&mut st.objects);
            for (r, o) in old.iter() {
                if !fresh.contains(r) {
                    changes.push(Change::Deleted(o));
                }
            }
            for (r, o) in fresh.iter() {
                let previous = old.get(r);
                if previous.as_ref().is_none_or(|prev| prev.revision() != o.revision()) {
                    changes.push(Change::Applied { object: o, previous });
                }
            }
            st.objects = fresh;
            st.revision = revision;
            let CacheState { objects, indexes, .. } = &mut *st;
            for index in indexes.values_mut() {
                index.entries.clear();
                for (r, c) in objects.cells() {
                    for v in (index.func)(&c.read()) {
                        index.entries.entry(v).or_default().insert(r.clone(), c.clone());
                    }
                }
            }
        }
        self.synced.send_replace(true);
        changes
    }

    /// Puts `object` in the cache and its indexes; returns the state it replaced.
    /// One search of the copy per event: a busy kind (a hundred thousand tasks)
    /// sends thousands a second to every controller that reflects it.
    fn upsert(&self, r: ObjectRef, object: &Arc<K>) -> Option<Arc<K>> {
        let mut st = self.state.write();
        let CacheState { objects, indexes, revision } = &mut *st;
        *revision = (*revision).max(object.revision());
        let Inserted { key, cell, previous } = objects.insert(r, object.clone());
        for index in indexes.values_mut() {
            let now = (index.func)(object);
            let before = previous.as_ref().map(|p| (index.func)(p)).unwrap_or_default();
            // A value kept holds the cell, which holds the new object already.
            for v in before.iter().filter(|v| !now.contains(v)) {
                index.remove(v, &key);
            }
            for v in now {
                if !before.contains(&v) {
                    index.entries.entry(v).or_default().insert(key.clone(), cell.clone());
                }
            }
        }
        previous
    }

    /// Drops the object `r` from the cache and its indexes.
    fn remove(&self, r: &ObjectRef, object_revision: u64) {
        let mut st = self.state.write();
        let CacheState { objects, indexes, revision } = &mut *st;
        *revision = (*revision).max(object_revision);
        let Some((key, previous)) = objects.remove(r) else { return };
        for index in indexes.values_mut() {
            for v in (index.func)(&previous) {
                index.remove(&v, &key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str) -> ObjectRef {
        ObjectRef::namespaced("corral.dev/tasks", "ns", name)
    }

    #[test]
    fn objects_are_listed_in_reference_order_through_updates_and_removals() {
        let mut objects: Objects<u32> = Objects::default();
        for (i, name) in ["c", "a", "d", "b"].into_iter().enumerate() {
            assert!(objects.insert(task(name), Arc::new(i as u32)).previous.is_none());
        }
        let cell = objects.insert(task("b"), Arc::new(0)).cell;
        let Inserted { key: kept, cell: same, previous } = objects.insert(task("b"), Arc::new(9));
        assert_eq!(previous.as_deref(), Some(&0));
        assert!(Arc::ptr_eq(&cell, &same) && **cell.read() == 9, "an update is made in the cell the indexes share");
        let (listed_b, _) = objects.iter().nth(1).expect("b is listed");
        assert!(Arc::ptr_eq(&kept, listed_b), "an update keeps the reference the indexes share");
        assert_eq!(objects.remove(&task("c")).map(|(_, o)| *o), Some(0));
        assert!(objects.remove(&task("c")).is_none());
        let listed: Vec<(String, u32)> = objects.iter().map(|(r, o)| (r.name.clone(), *o)).collect();
        assert_eq!(listed, [("a".to_string(), 1), ("b".to_string(), 9), ("d".to_string(), 2)]);
        assert_eq!(objects.len(), 3);
        assert!(objects.contains(&task("d")) && objects.get(&task("c")).is_none());
    }
}
