//! Field selectors on lists and watches (`?fieldSelector=spec.nodeName=n1`).
//!
//! A list keeps the objects whose fields match. A watch sends what a client keeping a
//! copy of the selection needs, as Kubernetes does: an object that starts to match
//! arrives as `ADDED`, one that changes and still matches as `MODIFIED`, and one that
//! stops matching, or goes, as `DELETED` (with its new, non-matching state). Objects
//! that never match are never sent: an agent watching `spec.nodeName=A` hears nothing
//! of node B's tasks.
//!
//! To tell "stops matching" from "never matched", a watch remembers which objects of
//! the selection its client holds ([`Selection`]). From the start of a watch without a
//! revision, that is exact. A watch resumed from a revision starts from the objects
//! that match when it opens — exact for every object that did not change while the
//! client was away — and, for an object that did change meanwhile, a first event that
//! does not match is sent as `DELETED` in case the client held it (a client that did
//! not hold it ignores the deletion of something it does not know). After the events
//! the client missed, membership is exact again.

use std::collections::HashSet;

use corral_api::FieldSelector;
use corral_store::{EventType, Key, StoredObject};

use super::error::{ApiError, ApiResult};

/// Parses `?fieldSelector=`; 400 naming the bad term.
pub(super) fn parse(text: Option<&str>) -> ApiResult<FieldSelector> {
    match text.filter(|t| !t.trim().is_empty()) {
        None => Ok(FieldSelector::everything()),
        Some(t) => FieldSelector::parse(t).map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

/// What one watch with a field selector knows of its client's copy.
pub(super) struct Selection {
    selector: FieldSelector,
    /// Objects the client holds (as far as this watch knows).
    members: HashSet<Key>,
    /// While replaying what a resumed client missed (events up to this revision): the
    /// objects whose first event has been seen, before which membership is unknown.
    catching_up: Option<(u64, HashSet<Key>)>,
}

impl Selection {
    /// A selection for a watch from the current objects (every one arrives as `ADDED`).
    pub(super) fn fresh(selector: FieldSelector) -> Self {
        Selection { selector, members: HashSet::new(), catching_up: None }
    }

    /// A selection for a watch resumed from an older revision: `current` are the
    /// objects that match now (listed before the watch opened) and `until` the store's
    /// revision once the watch is open; events up to `until` may be ones the client
    /// missed.
    pub(super) fn resumed(selector: FieldSelector, current: HashSet<Key>, until: u64) -> Self {
        Selection { selector, members: current, catching_up: Some((until, HashSet::new())) }
    }

    /// Whether `o` is selected.
    pub(super) fn matches(&self, o: &StoredObject) -> bool {
        self.selector.matches_json(&o.json)
    }

    /// The event type to send for an event, or `None` to send nothing.
    pub(super) fn admit(&mut self, revision: u64, event: EventType, o: &StoredObject) -> Option<EventType> {
        let first_unknown = match &mut self.catching_up {
            Some((until, seen)) if revision <= *until => seen.insert(o.key.clone()),
            Some(_) => {
                // Past what the client missed: membership is exact from here on.
                self.catching_up = None;
                false
            }
            None => false,
        };
        let matches = self.matches(o);
        let was_member = if first_unknown { None } else { Some(self.members.contains(&o.key)) };
        let out = match (event, matches, was_member) {
            (EventType::Deleted, true, _) | (EventType::Deleted, false, Some(true)) => Some(EventType::Deleted),
            (EventType::Deleted, false, _) => None,
            // Created just now: nobody can hold it yet.
            (EventType::Added, false, _) => None,
            (_, true, Some(false)) => Some(EventType::Added),
            (EventType::Added, true, _) => Some(EventType::Added),
            (EventType::Modified, true, _) => Some(EventType::Modified),
            // Left the selection, or might have (the client may hold it).
            (_, false, Some(true) | None) => Some(EventType::Deleted),
            (_, false, Some(false)) => None,
        };
        if event == EventType::Deleted || !matches {
            self.members.remove(&o.key);
        } else {
            self.members.insert(o.key.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn task(name: &str, node: &str) -> StoredObject {
        StoredObject {
            key: Key::namespaced("corral.dev/tasks", "default", name),
            revision: 1,
            labels: Default::default(),
            json: Bytes::from(format!(r#"{{"metadata":{{"name":"{name}"}},"spec":{{"nodeName":"{node}"}}}}"#)),
        }
    }

    fn on_a() -> FieldSelector {
        FieldSelector::parse("spec.nodeName=a").expect("parses")
    }

    #[test]
    fn a_fresh_watch_sends_entries_and_exits_and_nothing_of_the_rest() {
        let mut s = Selection::fresh(on_a());
        assert_eq!(s.admit(1, EventType::Added, &task("t1", "b")), None, "never selected: nothing");
        assert_eq!(s.admit(2, EventType::Modified, &task("t1", "b")), None);
        assert_eq!(s.admit(3, EventType::Deleted, &task("t1", "b")), None);
        assert_eq!(s.admit(4, EventType::Added, &task("t2", "")), None);
        assert_eq!(s.admit(5, EventType::Modified, &task("t2", "a")), Some(EventType::Added), "bound here: enters");
        assert_eq!(s.admit(6, EventType::Modified, &task("t2", "a")), Some(EventType::Modified));
        assert_eq!(s.admit(7, EventType::Modified, &task("t2", "b")), Some(EventType::Deleted), "moved: leaves");
        assert_eq!(s.admit(8, EventType::Modified, &task("t2", "b")), None);
        assert_eq!(s.admit(9, EventType::Modified, &task("t2", "a")), Some(EventType::Added));
        assert_eq!(s.admit(10, EventType::Deleted, &task("t2", "a")), Some(EventType::Deleted));
    }

    #[test]
    fn a_resumed_watch_is_conservative_only_for_what_changed_while_the_client_was_away() {
        let held: HashSet<Key> = [task("mine", "a").key].into_iter().collect();
        let mut s = Selection::resumed(on_a(), held, 10);
        // Missed while away: a task that may have been the client's, now elsewhere.
        assert_eq!(s.admit(4, EventType::Modified, &task("moved", "b")), Some(EventType::Deleted));
        assert_eq!(s.admit(5, EventType::Modified, &task("moved", "b")), None, "once is enough");
        // Unchanged while away and held: exact.
        assert_eq!(s.admit(11, EventType::Modified, &task("mine", "b")), Some(EventType::Deleted));
        // Unchanged while away and never selected: nothing, live.
        assert_eq!(s.admit(12, EventType::Modified, &task("other", "b")), None);
        assert_eq!(s.admit(13, EventType::Deleted, &task("other", "b")), None);
    }
}
