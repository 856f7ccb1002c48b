//! Reflectors keep a local, indexed copy of one kind's objects, in step with the
//! server: list, then watch from the list's revision; resume from the last revision
//! seen after a disconnect; on `Gone`, list again and reconcile the copy with it.
//!
//! The copy is read through a [`Cache`], a cheap handle; one reflector writes it.
//! Cached objects are shared (`Arc`) and never mutated in place: a reconcile that
//! wants to change an object clones it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use corral_api::KindInfo;
use futures::StreamExt;
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::watch;

use crate::client::{Client, WatchEvent};
use crate::error::{Error, Result};
use crate::object_ref::ObjectRef;

/// Computes the index values of an object (e.g. its node name, or its owners' uids).
pub type IndexFn = Arc<dyn Fn(&Value) -> Vec<String> + Send + Sync>;

/// Index by the uid of each owner (`metadata.ownerReferences[].uid`): find an
/// object's dependents with `cache.by_index("owner", uid)`.
pub fn by_owner_uid() -> IndexFn {
    Arc::new(|o: &Value| {
        o.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| refs.iter().filter_map(|r| r.get("uid")?.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    })
}

/// Index by the value of label `key`.
pub fn by_label(key: &str) -> IndexFn {
    let key = key.to_string();
    Arc::new(move |o: &Value| {
        o.pointer("/metadata/labels")
            .and_then(|l| l.get(&key))
            .and_then(Value::as_str)
            .map(str::to_string)
            .into_iter()
            .collect()
    })
}

/// Index by the string at a JSON pointer, e.g. `/spec/nodeName`.
pub fn by_field(pointer: &str) -> IndexFn {
    let pointer = pointer.to_string();
    Arc::new(move |o: &Value| o.pointer(&pointer).and_then(Value::as_str).map(str::to_string).into_iter().collect())
}

struct Index {
    func: IndexFn,
    entries: HashMap<String, BTreeSet<ObjectRef>>,
}

#[derive(Default)]
struct CacheState {
    objects: BTreeMap<ObjectRef, Arc<Value>>,
    indexes: HashMap<String, Index>,
    revision: u64,
}

/// A read handle on a reflector's copy of one kind. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    state: Arc<RwLock<CacheState>>,
    synced: watch::Receiver<bool>,
    resource: String,
}

impl Cache {
    /// The cached object, if any.
    pub fn get(&self, r: &ObjectRef) -> Option<Arc<Value>> {
        self.state.read().objects.get(r).cloned()
    }

    /// Every cached object, ordered by namespace and name.
    pub fn list(&self) -> Vec<Arc<Value>> {
        self.state.read().objects.values().cloned().collect()
    }

    /// Objects whose index `index` yields `value`.
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<Value>> {
        let st = self.state.read();
        st.indexes
            .get(index)
            .and_then(|i| i.entries.get(value))
            .map(|refs| refs.iter().filter_map(|r| st.objects.get(r).cloned()).collect())
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

    /// Waits until the first list has been loaded. Controllers must not act on an
    /// empty cache that is merely not filled yet.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// A change the reflector applied to its cache.
#[derive(Clone, Debug)]
pub enum Change {
    /// Created or updated: the new state, and the state it replaced in the cache.
    Applied {
        /// The object now.
        object: Arc<Value>,
        /// The object before, if the cache had it.
        previous: Option<Arc<Value>>,
    },
    /// Removed; the last state.
    Deleted(Arc<Value>),
}

impl Change {
    /// The object concerned.
    pub fn object(&self) -> &Arc<Value> {
        match self {
            Change::Applied { object, .. } | Change::Deleted(object) => object,
        }
    }
}

/// Reference of an object of `kind`.
pub fn object_ref(kind: &KindInfo, obj: &Value) -> Option<ObjectRef> {
    let name = obj.pointer("/metadata/name")?.as_str()?;
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).filter(|_| kind.namespaced);
    Some(ObjectRef { resource: kind.resource(), namespace: ns.map(str::to_string), name: name.to_string() })
}

fn revision_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Keeps a [`Cache`] of one kind in step with the server.
pub struct Reflector {
    client: Client,
    kind: Arc<KindInfo>,
    namespace: Option<String>,
    selector: String,
    state: Arc<RwLock<CacheState>>,
    synced: watch::Sender<bool>,
}

impl Reflector {
    /// A reflector of `kind` (in `namespace`, or all) limited to `selector` (may be empty).
    pub fn new(client: Client, kind: Arc<KindInfo>, namespace: Option<String>, selector: &str) -> Self {
        let (synced, _) = watch::channel(false);
        Reflector { client, kind, namespace, selector: selector.to_string(), state: Arc::default(), synced }
    }

    /// Adds an index, computed for every object from now on. Add indexes before
    /// [`Reflector::run`].
    pub fn index(self, name: &str, func: IndexFn) -> Self {
        self.state.write().indexes.insert(name.to_string(), Index { func, entries: HashMap::new() });
        self
    }

    /// A read handle on the cache.
    pub fn cache(&self) -> Cache {
        Cache { state: self.state.clone(), synced: self.synced.subscribe(), resource: self.kind.resource() }
    }

    /// The kind reflected.
    pub fn kind(&self) -> &Arc<KindInfo> {
        &self.kind
    }

    /// Runs until `stop` turns true, calling `on_change` for every change applied to
    /// the cache (including the differences found when re-listing).
    ///
    /// # Guarantees
    /// Every change after the first list is seen once, in revision order, unless the
    /// server compacted it away, in which case the re-list reports the net difference.
    pub async fn run(self, mut stop: watch::Receiver<bool>, on_change: impl Fn(Change) + Send + Sync) {
        let mut from: Option<u64> = None;
        let mut failures: u32 = 0;
        loop {
            if *stop.borrow() {
                return;
            }
            let step = async {
                let revision = match from {
                    Some(r) => r,
                    None => self.relist(&on_change).await?,
                };
                self.watch_from(revision, &on_change, &mut from).await
            };
            let outcome = tokio::select! {
                r = step => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(Error::Gone) => {
                    tracing::info!(resource = %self.kind.resource(), "watch revision compacted; re-listing");
                    from = None;
                    continue;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay =
                        crate::queue::backoff_delay(Duration::from_millis(50), Duration::from_secs(5), failures);
                    tracing::warn!(resource = %self.kind.resource(), error = %e, ?delay, "reflector interrupted; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }

    /// Lists, replaces the cache with the list, reports differences; returns the list's revision.
    async fn relist(&self, on_change: &(impl Fn(Change) + Send + Sync)) -> Result<u64> {
        let list = self.client.list(&self.kind, self.namespace.as_deref(), &self.selector).await?;
        let mut fresh: BTreeMap<ObjectRef, Arc<Value>> = BTreeMap::new();
        for obj in list.items {
            if let Some(r) = object_ref(&self.kind, &obj) {
                fresh.insert(r, Arc::new(obj));
            }
        }
        let mut changes = Vec::new();
        {
            let mut st = self.state.write();
            let old = std::mem::take(&mut st.objects);
            for (r, o) in &old {
                if !fresh.contains_key(r) {
                    changes.push(Change::Deleted(o.clone()));
                }
            }
            for (r, o) in &fresh {
                let previous = old.get(r);
                if previous.is_none_or(|prev| revision_of(prev) != revision_of(o)) {
                    changes.push(Change::Applied { object: o.clone(), previous: previous.cloned() });
                }
            }
            st.objects = fresh;
            st.revision = list.revision;
            let CacheState { objects, indexes, .. } = &mut *st;
            for index in indexes.values_mut() {
                index.entries.clear();
                for (r, o) in objects.iter() {
                    for v in (index.func)(o) {
                        index.entries.entry(v).or_default().insert(r.clone());
                    }
                }
            }
        }
        self.synced.send_replace(true);
        for c in changes {
            on_change(c);
        }
        Ok(list.revision)
    }

    async fn watch_from(
        &self,
        revision: u64,
        on_change: &(impl Fn(Change) + Send + Sync),
        from: &mut Option<u64>,
    ) -> Result<()> {
        *from = Some(revision);
        let mut events =
            self.client.watch(&self.kind, self.namespace.as_deref(), &self.selector, Some(revision)).await?;
        while let Some(ev) = events.next().await {
            let change = match ev? {
                WatchEvent::Bookmark(rv) => {
                    self.state.write().revision = rv;
                    *from = Some(rv);
                    continue;
                }
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    let object = Arc::new(o);
                    let previous =
                        object_ref(&self.kind, &object).and_then(|r| self.state.read().objects.get(&r).cloned());
                    Change::Applied { object, previous }
                }
                WatchEvent::Deleted(o) => Change::Deleted(Arc::new(o)),
            };
            let rv = revision_of(change.object());
            self.apply(&change);
            *from = Some(rv);
            on_change(change);
        }
        // The server ended the stream (e.g. it restarts): resume from `from`.
        Err(Error::Transport("watch stream ended".into()))
    }

    fn apply(&self, change: &Change) {
        let Some(r) = object_ref(&self.kind, change.object()) else { return };
        let mut st = self.state.write();
        let CacheState { objects, indexes, revision } = &mut *st;
        if let Some(prev) = objects.get(&r) {
            for index in indexes.values_mut() {
                for v in (index.func)(prev) {
                    if let Some(set) = index.entries.get_mut(&v) {
                        set.remove(&r);
                    }
                }
            }
        }
        match change {
            Change::Applied { object: o, .. } => {
                for index in indexes.values_mut() {
                    for v in (index.func)(o) {
                        index.entries.entry(v).or_default().insert(r.clone());
                    }
                }
                objects.insert(r, o.clone());
            }
            Change::Deleted(_) => {
                objects.remove(&r);
            }
        }
        *revision = (*revision).max(revision_of(change.object()));
    }
}
