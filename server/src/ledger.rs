//! What each node's live tasks hold, so that no write ever oversubscribes a node.
//!
//! Offers are made from a view that may be a moment old, and two frameworks may
//! accept offers of one node at once; the server is where a node's resources are
//! finally counted. Every write that binds a task to a node — an accepted offer or
//! a task created bound by hand — takes the node's lock, checks the tasks fit what
//! the node has free for their role ([`corral_api::allocation::Free`], the
//! allocator's own arithmetic), writes, and records the holds before the lock is
//! released. A watch of tasks releases holds when tasks end or go, and catches
//! anything bound otherwise. A hold is only ever replaced by a newer revision of
//! its task, so a late event never undoes a fresh accept.
//!
//! Bound volumes hold disk too: a volume's size is counted on its node, for the
//! role `*`, from the write that binds it ([`crate::volume_binding`]) until the
//! volume is gone, whether or not a task uses it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::Selector;
use corral_api::allocation::{Free, add, sub};
use corral_api::kinds::framework::DEFAULT_ROLE;
use corral_api::kinds::node::{Node, Resources};
use corral_api::kinds::task::TaskPhase;
use corral_store::{EventType, Key, ListRequest, Storage, StoredObject, WatchEvent, WatchRequest};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

/// The store resource of tasks.
pub(crate) const TASKS: &str = "corral.dev/tasks";

/// The store resource of volumes.
const VOLUMES: &str = crate::volume_binding::VOLUMES;

/// What a bound volume holds: its node, and its size in MiB as disk.
type VolumeHold = (String, u64);

/// The hold of the volume `json`: its node and size, once bound.
fn volume_hold(json: &[u8]) -> Option<VolumeHold> {
    #[derive(Deserialize)]
    struct V {
        spec: VSpec,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct VSpec {
        #[serde(default)]
        size: u64,
        node_name: Option<String>,
    }
    let v: V = serde_json::from_slice(json).ok()?;
    Some((v.spec.node_name.filter(|n| !n.is_empty())?, v.spec.size))
}

/// What one live task bound to a node holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Hold {
    pub node: String,
    pub role: String,
    pub resources: Resources,
    pub ports: Vec<u16>,
}

/// The parts of a task a hold is made of: decoding only these skips the rest of
/// every task the watch brings (most of its bytes) without building it.
#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    spec: SpecFields,
    #[serde(default)]
    status: Option<StatusFields>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecFields {
    node_name: Option<String>,
    role: Option<String>,
    #[serde(default)]
    resources: Resources,
    #[serde(default)]
    ports: Vec<PortFields>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortFields {
    host_port: Option<u16>,
}

#[derive(Deserialize)]
struct StatusFields {
    #[serde(default)]
    phase: TaskPhase,
}

impl Hold {
    /// What the task `o` holds: nothing unless it is bound and not ended.
    pub(crate) fn of(o: &Value) -> Option<Hold> {
        Fields::deserialize(o).ok().and_then(Fields::hold)
    }

    /// As [`Hold::of`], from the task's JSON.
    fn of_json(json: &[u8]) -> Option<Hold> {
        serde_json::from_slice::<Fields>(json).ok().and_then(Fields::hold)
    }
}

impl Fields {
    fn hold(self) -> Option<Hold> {
        let node = self.spec.node_name.filter(|n| !n.is_empty())?;
        if self.status.is_some_and(|s| s.phase.is_terminal()) {
            return None;
        }
        Some(Hold {
            node,
            role: self.spec.role.unwrap_or_else(|| DEFAULT_ROLE.to_string()),
            resources: self.spec.resources,
            ports: self.spec.ports.iter().filter_map(|p| p.host_port).collect(),
        })
    }
}

#[derive(Default)]
struct Book {
    /// Each task's hold and the revision it was recorded at; `None` for a task
    /// gone or ended, remembered for [`TOMBSTONE_TIME`] so that the record of an
    /// accept that raced the watch cannot bring it back.
    holds: HashMap<Key, (u64, Option<Hold>)>,
    /// When each task was seen gone, oldest first.
    tombstones: VecDeque<(Instant, Key, u64)>,
    /// Sums by node.
    nodes: HashMap<String, NodeUse>,
    /// Each volume's hold and the revision it was recorded at; `None` for one not
    /// bound, or gone.
    volumes: HashMap<Key, (u64, Option<VolumeHold>)>,
}

/// How long a gone task is remembered: far longer than an accept takes between its
/// write and its record.
const TOMBSTONE_TIME: Duration = Duration::from_secs(60);

#[derive(Default)]
struct NodeUse {
    by_role: BTreeMap<String, Resources>,
    ports: BTreeMap<u16, u32>,
    /// MiB held by the volumes bound to the node.
    volume_disk: u64,
}

impl Book {
    /// Sets what the volume `key` holds as of `revision`, unless a newer revision is
    /// recorded.
    fn set_volume(&mut self, key: Key, revision: u64, hold: Option<VolumeHold>) {
        if let Some((seen, _)) = self.volumes.get(&key)
            && *seen > revision
        {
            return;
        }
        if let Some((_, Some((node, size)))) = self.volumes.get(&key)
            && let Some(n) = self.nodes.get_mut(node)
        {
            n.volume_disk = n.volume_disk.saturating_sub(*size);
        }
        if let Some((node, size)) = &hold {
            self.nodes.entry(node.clone()).or_default().volume_disk += size;
        }
        self.volumes.insert(key, (revision, hold));
    }

    /// Sets what the object `key` (a task or a volume) holds as of `revision`.
    fn set_any(&mut self, o: &StoredObject, revision: u64, gone: bool) {
        if o.key.resource == VOLUMES {
            let hold = if gone { None } else { volume_hold(&o.json) };
            self.set_volume(o.key.clone(), revision, hold);
        } else {
            let hold = if gone { None } else { hold_of(o) };
            self.set(o.key.clone(), revision, hold);
        }
    }

    /// Sets what `key` holds as of `revision`, unless a newer revision is recorded.
    fn set(&mut self, key: Key, revision: u64, hold: Option<Hold>) {
        if let Some((seen, _)) = self.holds.get(&key)
            && *seen > revision
        {
            return;
        }
        if hold.is_none() {
            let now = Instant::now();
            self.tombstones.push_back((now, key.clone(), revision));
            while let Some((at, k, r)) = self.tombstones.front() {
                if now.duration_since(*at) < TOMBSTONE_TIME {
                    break;
                }
                if self.holds.get(k).is_some_and(|(seen, h)| seen == r && h.is_none()) {
                    self.holds.remove(k);
                }
                self.tombstones.pop_front();
            }
        }
        let old = self.holds.insert(key, (revision, hold.clone())).and_then(|(_, h)| h);
        if let Some(h) = old {
            let n = self.nodes.entry(h.node.clone()).or_default();
            let e = n.by_role.entry(h.role.clone()).or_default();
            *e = sub(e, &h.resources);
            for p in &h.ports {
                if let Some(c) = n.ports.get_mut(p) {
                    *c -= 1;
                    if *c == 0 {
                        n.ports.remove(p);
                    }
                }
            }
        }
        if let Some(h) = hold {
            let n = self.nodes.entry(h.node.clone()).or_default();
            let e = n.by_role.entry(h.role.clone()).or_default();
            *e = add(e, &h.resources);
            for p in &h.ports {
                *n.ports.entry(*p).or_default() += 1;
            }
        }
    }
}

/// The ledger of every node's holds.
#[derive(Default)]
pub(crate) struct Ledger {
    book: Mutex<Book>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    started: OnceCell<()>,
}

/// Tasks read per page when the ledger loads.
const LOAD_PAGE: usize = 1000;

/// How long to wait before watching tasks again after the watch failed.
const RETRY: Duration = Duration::from_millis(200);

impl Ledger {
    /// Loads every task's hold and follows the store from then on; done once, on
    /// the first write that needs the ledger.
    pub(crate) async fn ready(
        self: &Arc<Self>,
        store: &Arc<dyn Storage>,
        closed: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), corral_store::Error> {
        self.started
            .get_or_try_init(|| async {
                let from = self.load(store).await?;
                let (me, store) = (self.clone(), store.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = closed => {}
                        _ = me.follow(store, from) => {}
                    }
                });
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Reads every task, in pages at one revision: one list of every task would
    /// hold the store's state (and so every write) for as long as it takes.
    async fn load(&self, store: &Arc<dyn Storage>) -> Result<u64, corral_store::Error> {
        let mut req = ListRequest::new(TASKS, None, &Selector::everything());
        req.limit = Some(LOAD_PAGE);
        let first = store.list_page(&req).await?;
        let revision = first.revision;
        let _pin = store.pin(revision)?;
        let (mut items, mut next) = (first.items, first.next);
        while let Some(after) = next {
            req.at = Some(revision);
            req.after = Some(after);
            let page = store.list_page(&req).await?;
            items.extend(page.items);
            next = page.next;
        }
        let mut volumes = ListRequest::new(VOLUMES, None, &Selector::everything());
        volumes.at = Some(revision);
        items.extend(store.list_page(&volumes).await?.items);
        let list = corral_store::ListResult { items, revision };
        let mut book = self.book.lock();
        // Holds recorded after the list (by writes racing it) stay.
        let newer: Vec<(Key, u64, Option<Hold>)> = book
            .holds
            .iter()
            .filter(|(_, (r, _))| *r > list.revision)
            .map(|(k, (r, h))| (k.clone(), *r, h.clone()))
            .collect();
        let newer_volumes: Vec<(Key, u64, Option<VolumeHold>)> = book
            .volumes
            .iter()
            .filter(|(_, (r, _))| *r > list.revision)
            .map(|(k, (r, h))| (k.clone(), *r, h.clone()))
            .collect();
        *book = Book::default();
        for o in &list.items {
            book.set_any(o, o.revision, false);
        }
        for (k, r, h) in newer {
            book.set(k, r, h);
        }
        for (k, r, h) in newer_volumes {
            book.set_volume(k, r, h);
        }
        Ok(list.revision)
    }

    async fn follow(&self, store: Arc<dyn Storage>, mut from: u64) {
        loop {
            let request = WatchRequest {
                resources: vec![TASKS.to_string(), VOLUMES.to_string()],
                from: Some(from),
                ..Default::default()
            };
            if let Ok(mut events) = store.watch(request).await {
                while let Some(e) = events.next().await {
                    match e {
                        WatchEvent::Event(e) => {
                            let gone = e.event_type == EventType::Deleted;
                            self.book.lock().set_any(&e.object, e.revision, gone);
                            from = e.revision;
                        }
                        WatchEvent::Bookmark(r) => from = r,
                        WatchEvent::Gone { .. } => break,
                    }
                }
            }
            tokio::time::sleep(RETRY).await;
            match self.load(&store).await {
                Ok(r) => from = r,
                Err(e) => tracing::warn!(error = %e, "cannot load the tasks' holds on nodes; retrying"),
            }
        }
    }

    /// The lock that serializes binding writes to `node`.
    pub(crate) async fn lock(&self, node: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.locks.lock().entry(node.to_string()).or_default().clone();
        lock.lock_owned().await
    }

    /// What `node` has free now.
    pub(crate) fn free(&self, node: &Node) -> Free {
        let book = self.book.lock();
        let empty = NodeUse::default();
        let used = book.nodes.get(&node.metadata.name).unwrap_or(&empty);
        let status = node.status.clone().unwrap_or_default();
        let ports: BTreeSet<u16> = used.ports.keys().copied().collect();
        if used.volume_disk == 0 {
            return Free::new(&status.capacity, &node.spec.reservations, &status.port_ranges, &used.by_role, &ports);
        }
        let mut by_role = used.by_role.clone();
        by_role.entry(DEFAULT_ROLE.to_string()).or_default().disk += used.volume_disk;
        Free::new(&status.capacity, &node.spec.reservations, &status.port_ranges, &by_role, &ports)
    }

    /// Records what the task `o`, just written, holds.
    pub(crate) fn record(&self, o: &StoredObject) {
        self.book.lock().set(o.key.clone(), o.revision, hold_of(o));
    }

    /// Records what the volume `o`, just written, holds.
    pub(crate) fn record_volume(&self, o: &StoredObject) {
        self.book.lock().set_volume(o.key.clone(), o.revision, volume_hold(&o.json));
    }

    /// Records the tasks just created, each with the hold its writer knows it
    /// makes (an accept's hundreds are not decoded again to learn it).
    pub(crate) fn record_created<'a>(&self, created: impl IntoIterator<Item = (&'a StoredObject, Hold)>) {
        let mut book = self.book.lock();
        for (o, hold) in created {
            book.set(o.key.clone(), o.revision, Some(hold));
        }
    }
}

fn hold_of(o: &StoredObject) -> Option<Hold> {
    Hold::of_json(&o.json)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_hold_is_what_a_bound_live_task_asks_for() {
        let task = json!({"metadata": {"name": "t"}, "spec": {"nodeName": "n1", "role": "ads",
            "resources": {"cpus": 0.5, "mem": 64}, "ports": [{"name": "http", "hostPort": 31000}, {"name": "x"}],
            "image": "busybox", "env": {"A": "1"}}, "status": {"phase": "RUNNING", "hostIp": "10.0.0.1"}});
        let hold = Hold::of(&task).expect("a hold");
        assert_eq!(
            hold,
            Hold {
                node: "n1".into(),
                role: "ads".into(),
                resources: Resources { cpus: 0.5, mem: 64, disk: 0 },
                ports: vec![31000]
            }
        );
        assert_eq!(Hold::of_json(task.to_string().as_bytes()), Some(hold));

        let unbound = json!({"spec": {"resources": {"cpus": 1.0}}});
        assert_eq!(Hold::of(&unbound), None);
        let ended = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "FAILED"}});
        assert_eq!(Hold::of(&ended), None, "an ended task holds nothing");
        let fresh = json!({"spec": {"nodeName": "n1"}});
        assert_eq!(Hold::of(&fresh).map(|h| h.role), Some(DEFAULT_ROLE.to_string()), "no status yet: it holds, as *");
    }
}
