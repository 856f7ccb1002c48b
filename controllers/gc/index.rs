//! What the garbage collector remembers between events: only the objects that take
//! part in collection — those with owners (dependents) and those being deleted — plus
//! which namespaces exist. An object with neither costs nothing here: the index of a
//! cluster of a hundred thousand plain objects is empty.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use corral_api::delete::FOREGROUND_FINALIZER;
use corral_api::{ApiObject, OwnerReference, PartialObject};
use corral_runtime::ObjectRef;
use tokio::time::Instant;

/// What the index keeps of one object.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub uid: Arc<str>,
    pub revision: u64,
    /// Shared by the dependents with the same owners (a service's hundred tasks).
    pub owners: Arc<[OwnerReference]>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
    /// When the collector first saw the object waiting on finalizers.
    pub waiting_since: Option<Instant>,
    /// Whether "stuck on finalizers" was logged for it.
    pub warned: bool,
}

impl Entry {
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

/// Whether the collector has anything to remember of an object.
fn takes_part(o: &PartialObject) -> bool {
    !o.metadata.owner_references.is_empty() || o.metadata.is_deleting()
}

/// The objects taking part in collection, and the namespaces. Each object's
/// reference and uid are held once, shared by the maps (a hundred thousand tasks
/// owned by their services are all here).
#[derive(Default)]
pub(super) struct Index {
    pub entries: HashMap<Arc<ObjectRef>, Entry>,
    pub by_uid: HashMap<Arc<str>, Arc<ObjectRef>>,
    /// Owner uid → its dependents (whether or not the owner itself is known).
    pub dependents: HashMap<String, BTreeSet<Arc<ObjectRef>>>,
    /// Namespace name → whether it is being deleted.
    pub namespaces: HashMap<String, bool>,
}

impl Index {
    fn unlink(&mut self, r: &ObjectRef, e: &Entry) {
        if self.by_uid.get(&e.uid).is_some_and(|held| **held == *r) {
            self.by_uid.remove(&e.uid);
        }
        for o in e.owners.iter() {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(r);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
    }

    /// Records `o`'s state unless a newer one is known. Returns `None` for a stale
    /// event, else the entry it replaced (if any).
    pub fn upsert(&mut self, r: &ObjectRef, o: &PartialObject) -> Option<Option<Entry>> {
        let revision = o.revision();
        if self.entries.get(r).is_some_and(|e| e.revision >= revision) {
            return None;
        }
        // A change that leaves all the index keeps as it was (a status written: most
        // changes) moves only the revision; no map but this one is touched.
        if let Some(e) = self.entries.get_mut(r)
            && *e.uid == *o.uid()
            && *e.owners == *o.metadata.owner_references
            && e.finalizers == o.metadata.finalizers
            && e.deleting == o.metadata.is_deleting()
        {
            let old = e.clone();
            e.revision = revision;
            return Some(Some(old));
        }
        let old = self.entries.remove(r);
        if let Some(old) = &old {
            self.unlink(r, old);
        }
        if !takes_part(o) {
            return Some(old);
        }
        let deleting = o.metadata.is_deleting();
        let waiting_since = deleting.then(|| old.as_ref().and_then(|e| e.waiting_since).unwrap_or_else(Instant::now));
        let wanted = o.metadata.owner_references.as_slice();
        // The owners of the entry replaced, or of another dependent of the same
        // owner, when they are the same: one copy for them all.
        let owners = old
            .as_ref()
            .map(|e| &e.owners)
            .into_iter()
            .chain(
                wanted
                    .first()
                    .and_then(|w| self.dependents.get(&w.uid))
                    .and_then(|set| set.iter().next())
                    .and_then(|d| self.entries.get(d))
                    .map(|e| &e.owners),
            )
            .find(|shared| ***shared == *wanted)
            .cloned()
            .unwrap_or_else(|| wanted.into());
        let r = Arc::new(r.clone());
        let entry = Entry {
            uid: o.uid().into(),
            revision,
            owners,
            finalizers: o.metadata.finalizers.clone(),
            deleting,
            waiting_since,
            warned: deleting && old.as_ref().is_some_and(|e| e.warned),
        };
        self.by_uid.insert(entry.uid.clone(), r.clone());
        for owner in entry.owners.iter() {
            self.dependents.entry(owner.uid.clone()).or_default().insert(r.clone());
        }
        self.entries.insert(r, entry);
        Some(old)
    }

    /// Forgets the object deleted at `revision`; returns its last known entry.
    pub fn remove(&mut self, r: &ObjectRef, revision: u64) -> Option<Entry> {
        if self.entries.get(r).is_some_and(|e| e.revision >= revision) {
            return None;
        }
        let e = self.entries.remove(r)?;
        self.unlink(r, &e);
        Some(e)
    }

    /// Forgets every entry of `resource` not in `keep` (after a fresh list of it);
    /// returns the forgotten ones.
    pub fn retain_listed(&mut self, resource: &str, keep: &HashSet<ObjectRef>) -> Vec<(ObjectRef, Entry)> {
        let gone: Vec<ObjectRef> = self
            .entries
            .keys()
            .filter(|r| r.resource == resource && !keep.contains(&***r))
            .map(|r| (**r).clone())
            .collect();
        gone.into_iter()
            .filter_map(|r| {
                let e = self.entries.remove(&r)?;
                self.unlink(&r, &e);
                Some((r, e))
            })
            .collect()
    }

    /// The known entry of the object with `uid`.
    pub fn by_uid(&self, uid: &str) -> Option<(&ObjectRef, &Entry)> {
        let r = self.by_uid.get(uid)?;
        self.entries.get(r).map(|e| (&**r, e))
    }

    /// The dependents of the owner with `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<ObjectRef> {
        self.dependents.get(uid).map(|s| s.iter().map(|r| (**r).clone()).collect()).unwrap_or_default()
    }

    /// Dependents of `uid` whose reference to it blocks its foreground deletion.
    ///
    /// A dependent that is itself waiting, directly or through other waiting objects,
    /// for `uid` to go does not count: in an ownership cycle (an object owning itself
    /// among them) each would otherwise wait for the other forever. Kubernetes breaks
    /// such cycles the same way.
    pub fn blocking(&self, uid: &str) -> usize {
        self.blocking_dependents(uid).filter(|(d_uid, _)| !self.waits_for(d_uid, uid)).count()
    }

    /// The dependents (uid, entry) of `uid` that block its foreground deletion.
    fn blocking_dependents<'a>(&'a self, uid: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.entries.get(d))
            .filter(move |e| e.owners.iter().any(|o| o.uid == uid && o.block_owner_deletion == Some(true)))
            .map(|e| (&*e.uid, e))
    }

    /// Whether the object `from` is waiting for `target` to go: it is `target`, or it
    /// is being deleted in foreground and one of its blocking dependents waits for
    /// `target`.
    fn waits_for(&self, from: &str, target: &str) -> bool {
        let mut seen = HashSet::new();
        let mut next = vec![from];
        while let Some(uid) = next.pop() {
            if uid == target {
                return true;
            }
            if !seen.insert(uid) {
                continue;
            }
            let waiting = self.by_uid(uid).is_some_and(|(_, e)| e.deleting && e.has_finalizer(FOREGROUND_FINALIZER));
            if waiting {
                next.extend(self.blocking_dependents(uid).map(|(d, _)| d));
            }
        }
        false
    }
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;

    /// A config map `name` in namespace `ns` at revision `rev`, with metadata `meta`.
    pub(in crate::gc) fn obj(name: &str, rev: u64, meta: serde_json::Value) -> PartialObject {
        let mut m = meta;
        m["name"] = json!(name);
        m["namespace"] = json!("ns");
        m["resourceVersion"] = json!(rev.to_string());
        serde_json::from_value(json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": m}))
            .expect("object")
    }

    /// The reference of config map `name` in namespace `ns`.
    pub(in crate::gc) fn key(name: &str) -> ObjectRef {
        ObjectRef::namespaced("corral.dev/configmaps", "ns", name)
    }

    #[test]
    fn only_objects_taking_part_are_kept_and_stale_events_change_nothing() {
        let mut idx = Index::default();
        assert_eq!(idx.upsert(&key("plain"), &obj("plain", 2, json!({"uid": "up"}))).map(|o| o.is_none()), Some(true));
        assert!(idx.entries.is_empty(), "an object without owners and not being deleted is not kept");
        let refs = json!([{"apiVersion":"corral.dev/v1","kind":"ConfigMap","name":"plain","uid":"up",
                           "blockOwnerDeletion": true}]);
        idx.upsert(&key("b"), &obj("b", 3, json!({"uid": "ub", "ownerReferences": refs})));
        assert_eq!(idx.dependents_of("up"), vec![key("b")]);
        assert_eq!(idx.blocking("up"), 1);
        assert!(idx.upsert(&key("b"), &obj("b", 1, json!({"uid": "ub"}))).is_none(), "older state: ignored");
        assert_eq!(idx.dependents_of("up").len(), 1);
        assert!(idx.remove(&key("b"), 3).is_none(), "a delete must be newer than the state held");
        assert!(idx.remove(&key("b"), 4).is_some());
        assert!(idx.dependents.is_empty() && idx.by_uid.is_empty());
    }

    #[test]
    fn index_tracks_owners_and_ignores_stale_events() {
        let mut idx = Index::default();
        idx.upsert(&key("a"), &obj("a", 2, json!({"uid": "ua"})));
        let refs = json!([{"apiVersion":"corral.dev/v1","kind":"ConfigMap","name":"a","uid":"ua"}]);
        idx.upsert(&key("b"), &obj("b", 3, json!({"uid": "ub", "ownerReferences": refs})));
        assert_eq!(idx.dependents.get("ua").map(|s| s.len()), Some(1));
        // A replayed older state changes nothing.
        assert!(idx.upsert(&key("b"), &obj("b", 1, json!({"uid": "ub"}))).is_none());
        assert_eq!(idx.dependents.get("ua").map(|s| s.len()), Some(1));
        assert!(idx.remove(&key("b"), 3).is_none(), "a delete must be newer than the state held");
        assert!(idx.remove(&key("b"), 4).is_some());
        assert!(!idx.dependents.contains_key("ua"));
        // The owner, which has no owners and is not being deleted, was never kept:
        // namespace contents are listed from the API when a namespace goes.
        assert!(idx.entries.is_empty());
    }

    #[test]
    fn a_change_that_keeps_owners_and_finalizers_moves_only_the_revision() {
        let mut idx = Index::default();
        let refs = json!([{"apiVersion":"corral.dev/v1","kind":"ConfigMap","name":"a","uid":"ua"}]);
        idx.upsert(&key("b"), &obj("b", 3, json!({"uid": "ub", "ownerReferences": refs})));
        let old =
            idx.upsert(&key("b"), &obj("b", 4, json!({"uid": "ub", "ownerReferences": refs, "labels": {"x": "y"}})));
        assert_eq!(old.flatten().map(|e| e.revision), Some(3), "the entry it replaced");
        assert_eq!(idx.entries.get(&key("b")).map(|e| e.revision), Some(4));
        assert_eq!(idx.dependents_of("ua"), vec![key("b")]);
        assert_eq!(idx.by_uid.get("ub").map(|r| (**r).clone()), Some(key("b")));
        // A finalizer added, then the object made again under another uid: relinked.
        idx.upsert(&key("b"), &obj("b", 5, json!({"uid": "ub", "ownerReferences": refs, "finalizers": ["f"]})));
        assert!(idx.entries.get(&key("b")).is_some_and(|e| e.has_finalizer("f")));
        idx.upsert(&key("b"), &obj("b", 6, json!({"uid": "ub2", "ownerReferences": refs, "finalizers": ["f"]})));
        assert!(!idx.by_uid.contains_key("ub") && idx.by_uid.contains_key("ub2"));
        assert_eq!(idx.dependents_of("ua"), vec![key("b")]);
    }

    /// `name` (uid `u<name>`) owned, blocking, by `owners`; being deleted in
    /// foreground when `waiting`.
    fn owned(idx: &mut Index, name: &str, owners: &[&str], waiting: bool) {
        let refs: Vec<_> = owners
            .iter()
            .map(|o| {
                json!({"apiVersion":"corral.dev/v1","kind":"ConfigMap","name":o,"uid":format!("u{o}"),
                            "blockOwnerDeletion": true})
            })
            .collect();
        let mut meta = json!({"uid": format!("u{name}"), "ownerReferences": refs});
        if waiting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            meta["finalizers"] = json!([FOREGROUND_FINALIZER]);
        }
        let rev = idx.entries.get(&key(name)).map_or(2, |e| e.revision + 1);
        idx.upsert(&key(name), &obj(name, rev, meta));
    }

    #[test]
    fn owners_in_a_cycle_do_not_wait_for_each_other() {
        let mut idx = Index::default();
        owned(&mut idx, "self", &["self"], true);
        assert_eq!(idx.blocking("uself"), 0, "an object owning itself does not wait for itself");

        owned(&mut idx, "a", &["b"], true);
        owned(&mut idx, "b", &["a"], false);
        assert_eq!(idx.blocking("ua"), 1, "b is not being deleted yet: a waits for it");
        owned(&mut idx, "b", &["a"], true);
        assert_eq!((idx.blocking("ua"), idx.blocking("ub")), (0, 0), "a and b wait only for each other");

        // A longer cycle, x → y → z → x, all in foreground deletion.
        owned(&mut idx, "x", &["z"], true);
        owned(&mut idx, "y", &["x"], true);
        owned(&mut idx, "z", &["y"], true);
        assert_eq!((idx.blocking("ux"), idx.blocking("uy"), idx.blocking("uz")), (0, 0, 0));
    }

    #[test]
    fn an_owner_still_waits_for_a_dependent_that_waits_for_others() {
        let mut idx = Index::default();
        owned(&mut idx, "top", &[], true);
        owned(&mut idx, "mid", &["top"], true);
        owned(&mut idx, "leaf", &["mid"], false);
        assert_eq!(idx.blocking("utop"), 1, "mid waits for leaf, not for top");
        assert_eq!(idx.blocking("umid"), 1);
        // mid and leaf form a cycle below top: they release each other, top still waits.
        owned(&mut idx, "mid", &["top", "leaf"], true);
        owned(&mut idx, "leaf", &["mid"], true);
        assert_eq!((idx.blocking("utop"), idx.blocking("umid"), idx.blocking("uleaf")), (1, 0, 0));
    }

    #[test]
    fn a_dependent_that_loses_its_owners_leaves_the_index() {
        let mut idx = Index::default();
        let refs = json!([{"apiVersion":"corral.dev/v1","kind":"ConfigMap","name":"o","uid":"uo"}]);
        idx.upsert(&key("d"), &obj("d", 2, json!({"uid": "ud", "ownerReferences": refs})));
        idx.upsert(&key("d"), &obj("d", 3, json!({"uid": "ud"})));
        assert!(idx.entries.is_empty() && idx.dependents.is_empty());
    }

    #[test]
    fn dependents_of_the_same_owners_share_one_copy_of_them() {
        let mut idx = Index::default();
        owned(&mut idx, "a", &["svc"], false);
        owned(&mut idx, "b", &["svc"], false);
        owned(&mut idx, "c", &["other"], false);
        let owners = |n: &str| idx.entries.get(&key(n)).expect("indexed").owners.clone();
        assert!(Arc::ptr_eq(&owners("a"), &owners("b")));
        assert!(!Arc::ptr_eq(&owners("a"), &owners("c")));
        assert_eq!(owners("c")[0].uid, "uother");
        assert_eq!(idx.by_uid("ub").map(|(r, _)| r.name.clone()), Some("b".to_string()));
        assert_eq!(idx.dependents_of("usvc").len(), 2);
    }

    #[test]
    fn a_fresh_list_forgets_what_is_no_longer_there() {
        let mut idx = Index::default();
        idx.upsert(
            &key("x"),
            &obj(
                "x",
                2,
                json!({"uid": "ux", "deletionTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": ["f"]}),
            ),
        );
        let gone = idx.retain_listed("corral.dev/configmaps", &HashSet::new());
        assert_eq!(gone.len(), 1);
        assert!(idx.entries.is_empty());
    }
}
