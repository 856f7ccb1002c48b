//! The newest events, kept in memory for live watches, bounded in count and in
//! bytes: a watch that falls further behind reads the log on disk instead, so memory
//! never grows with how slowly a client reads.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::Event;
use crate::object::StoredObject;

/// What [`Recent::after`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum After {
    /// Nothing after the revision yet.
    UpToDate,
    /// Events after the revision are no longer in memory: read the log.
    InLog,
    /// The next events, in order.
    Events(Vec<Arc<Event>>),
}

pub(crate) struct Recent {
    events: VecDeque<Arc<Event>>,
    bytes: u64,
    max_events: usize,
    max_bytes: u64,
    /// The newest published revision.
    newest: u64,
}

impl Recent {
    pub(crate) fn new(newest: u64, max_events: usize, max_bytes: u64) -> Self {
        Recent { events: VecDeque::new(), bytes: 0, max_events: max_events.max(1), max_bytes, newest }
    }

    /// Adds the next published event, dropping the oldest beyond the bounds (the
    /// newest always stays, whatever its size).
    pub(crate) fn push(&mut self, ev: Arc<Event>) {
        self.newest = ev.revision;
        self.bytes += ev.object.json.len() as u64;
        self.events.push_back(ev);
        while self.events.len() > 1 && (self.events.len() > self.max_events || self.bytes > self.max_bytes) {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.object.json.len() as u64;
            }
        }
    }

    /// Bytes of the events held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The object written at `revision`, if its event is still held (events are
    /// contiguous: the one of a revision is found by its offset).
    pub(crate) fn object_at(&self, revision: u64) -> Option<Arc<StoredObject>> {
        let first = self.events.front()?.revision;
        let ev = self.events.get(usize::try_from(revision.checked_sub(first)?).ok()?)?;
        (ev.revision == revision).then(|| ev.object.clone())
    }

    /// The events after revision `last`: at most `max` of them and, beyond the first,
    /// at most `budget` bytes.
    pub(crate) fn after(&self, last: u64, max: usize, budget: u64) -> After {
        if last >= self.newest {
            return After::UpToDate;
        }
        let Some(first) = self.events.front().map(|e| e.revision) else { return After::InLog };
        if first > last + 1 {
            return After::InLog;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for ev in self.events.iter().skip((last + 1 - first) as usize) {
            bytes += ev.object.json.len() as u64;
            if !out.is_empty() && (out.len() >= max || bytes > budget) {
                break;
            }
            out.push(ev.clone());
        }
        After::Events(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::key::Key;
    use crate::object::StoredObject;

    fn ev(revision: u64, size: usize) -> Arc<Event> {
        let object = StoredObject {
            key: Key::cluster("r", "a"),
            revision,
            labels: Default::default(),
            json: vec![b' '; size].into(),
        };
        Arc::new(Event { revision, event_type: EventType::Modified, object: Arc::new(object) })
    }

    fn revs(a: After) -> Vec<u64> {
        match a {
            After::Events(e) => e.iter().map(|e| e.revision).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bounded_by_count_and_bytes_and_older_ones_are_in_the_log() {
        let mut r = Recent::new(0, 3, 250);
        assert_eq!(r.after(0, 10, 1000), After::UpToDate);
        for rev in 1..=5 {
            r.push(ev(rev, 100));
        }
        assert_eq!(r.bytes(), 200, "two events of 100 bytes fit in 250");
        assert_eq!(r.after(1, 10, 1000), After::InLog);
        assert_eq!(revs(r.after(3, 10, 1000)), vec![4, 5]);
        assert_eq!(revs(r.after(3, 1, 1000)), vec![4]);
        assert_eq!(revs(r.after(3, 10, 50)), vec![4], "the first goes whatever the budget");
        assert_eq!(r.after(5, 10, 1000), After::UpToDate);
        r.push(ev(6, 1000));
        assert_eq!(revs(r.after(5, 10, 10)), vec![6], "the newest stays even when too big");
    }

    #[test]
    fn an_object_is_found_by_its_revision_while_its_event_is_held() {
        let mut r = Recent::new(0, 3, 10_000);
        assert_eq!(r.object_at(1), None);
        for rev in 1..=5 {
            r.push(ev(rev, 10));
        }
        assert_eq!(r.object_at(2), None, "dropped: read the log");
        assert_eq!(r.object_at(3).map(|o| o.revision), Some(3));
        assert_eq!(r.object_at(5).map(|o| o.revision), Some(5));
        assert_eq!(r.object_at(6), None, "not written yet");
    }
}
