//! Change events and watch requests.

use std::sync::Arc;

use corral_api::Selector;
use futures::stream::BoxStream;

use crate::object::StoredObject;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed (including status, and deletion requested while finalizers remain).
    Modified,
    /// Removed; the object is its last state, at the revision of the removal.
    Deleted,
}

impl EventType {
    /// The wire name: `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One entry of the event log: exactly one per revision.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The revision this write created.
    pub revision: u64,
    /// What happened.
    pub event_type: EventType,
    /// The object after the write (before it, for deletions, but at this revision).
    pub object: Arc<StoredObject>,
}

/// What a watch stream yields.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// A change to a watched object.
    Event(Arc<Event>),
    /// Every event up to this revision has been delivered (or did not match); a
    /// client may resume from it.
    Bookmark(u64),
    /// The stream fell behind the compacted log and ends; re-list and watch again.
    Gone {
        /// The oldest revision that can no longer be replayed.
        compacted: u64,
    },
}

/// What to watch and from where.
#[derive(Clone, Debug, Default)]
pub struct WatchRequest {
    /// The kinds (`group/plural`) to watch; every kind when empty.
    pub resources: Vec<String>,
    /// Only this namespace, or all when `None`.
    pub namespace: Option<String>,
    /// Only objects whose labels match.
    pub selector: Selector,
    /// Replay every event after this revision, then go live. `None`: first an ADDED
    /// event for every current object, then live.
    pub from: Option<u64>,
    /// Send [`WatchEvent::Bookmark`]s periodically, and at once when asked
    /// ([`crate::Storage::request_progress`]).
    pub bookmarks: bool,
}

impl WatchRequest {
    /// Whether the watch wants changes of `o`: one of its kinds, its namespace,
    /// labels matching its selector.
    pub fn matches(&self, o: &StoredObject) -> bool {
        self.matches_parts(&o.key, &o.labels)
    }

    pub(crate) fn matches_parts(
        &self,
        key: &crate::key::Key,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        (self.resources.is_empty() || self.resources.contains(&key.resource))
            && self.namespace.as_ref().is_none_or(|n| *n == key.namespace)
            && self.selector.matches(labels)
    }
}

/// A stream of watch events; it ends when the store closes or after `Gone`.
pub type WatchStream = BoxStream<'static, WatchEvent>;
