//! Lists in pages, each consistent at the revision of the list's first page: the
//! index as it is now, with the keys written since put back as they were (from the
//! history), so a client paging through a large list while writes go on sees one
//! state, as in Kubernetes.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use corral_api::Selector;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::object::StoredObject;
use crate::sled_store::Shared;

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// `group/plural` listed; empty: every kind.
    pub resource: String,
    /// Only this namespace, or all when `None`.
    pub namespace: Option<String>,
    /// Only objects whose labels match.
    pub selector: Selector,
    /// The revision to list at (that of the list's first page); `None`: the current one.
    pub at: Option<u64>,
    /// Start after this key: the previous page's [`ListPage::next`].
    pub after: Option<Key>,
    /// At most this many items; `None`: all.
    pub limit: Option<usize>,
    /// Count the matching objects after the page ([`ListPage::remaining`]); when
    /// false, `remaining` only says whether there are any (0 or 1).
    pub count_remaining: bool,
    /// At most about this many bytes of items (the first is taken whatever its
    /// size); `None`: no bound. For readers that stream a list in steps.
    pub max_bytes: Option<u64>,
}

impl ListRequest {
    /// Everything of `resource` (in `namespace`) matching `selector`, now.
    pub fn new(resource: impl Into<String>, namespace: Option<&str>, selector: &Selector) -> Self {
        ListRequest {
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
            selector: selector.clone(),
            ..ListRequest::default()
        }
    }

    fn holds(&self, k: &Key) -> bool {
        (self.resource.is_empty() || k.resource == self.resource)
            && self.namespace.as_ref().is_none_or(|ns| *ns == k.namespace)
    }
}

/// One page of a list.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Matching objects, ordered by namespace and name.
    pub items: Vec<Arc<StoredObject>>,
    /// The revision the page reflects; later pages of the same list ask for it.
    pub revision: u64,
    /// Where the next page starts (pass as [`ListRequest::after`]); `None` on the last.
    pub next: Option<Key>,
    /// Matching objects after this page (with [`ListRequest::count_remaining`];
    /// otherwise 1 when there are any).
    pub remaining: u64,
}

impl Shared {
    /// A page of the list `req` asks for.
    ///
    /// # Errors
    /// `Gone` when `req.at` is compacted (before or while reading), `Ahead` when it is
    /// beyond the store.
    pub(crate) fn list_page(&self, req: &ListRequest) -> Result<ListPage> {
        let limit = req.limit.unwrap_or(usize::MAX).max(1);
        let max_bytes = req.max_bytes.unwrap_or(u64::MAX);
        let mut bytes = 0u64;
        let mut full = false;
        let mut found = Vec::new();
        let mut next = None;
        let mut remaining = 0;
        let at;
        {
            let st = self.state.read();
            at = req.at.unwrap_or(st.revision);
            if at > st.revision {
                return Err(Error::Ahead { requested: at, current: st.revision });
            }
            let compacted = self.compacted.load(Ordering::Acquire);
            if at < compacted {
                return Err(Error::Gone { requested: at, compacted });
            }
            let start = Key::namespaced(&req.resource, req.namespace.as_deref().unwrap_or(""), "");
            let from = match &req.after {
                Some(k) => Bound::Excluded(k),
                None => Bound::Included(&start),
            };
            let historic = at < st.revision;
            // Keys that exist now, and keys deleted since `at` that may have existed then.
            let mut now = st.index.range(from).map(|(k, e)| (&**k, e)).peekable();
            let mut gone = st.history.deleted_from(from).filter(|_| historic).peekable();
            loop {
                let (key, current) = match (now.peek(), gone.peek()) {
                    (None, None) => break,
                    (Some((kn, _)), Some(kg)) if kn > kg => (gone.next().unwrap_or_else(|| unreachable!()), None),
                    (Some(_), _) => now.next().map(|(k, e)| (k, Some(e))).unwrap_or_else(|| unreachable!()),
                    (None, Some(_)) => (gone.next().unwrap_or_else(|| unreachable!()), None),
                };
                if !req.holds(key) {
                    // Past the collection's range; across every kind, only this one
                    // key is out.
                    if req.resource.is_empty() {
                        continue;
                    }
                    break;
                }
                let entry = if historic { st.history.state_at(key, current, at) } else { current.cloned() };
                let Some(e) = entry.filter(|e| req.selector.matches(&e.labels)) else { continue };
                full = full || found.len() == limit || (!found.is_empty() && bytes + e.size > max_bytes);
                if full {
                    if !req.count_remaining {
                        remaining = 1;
                        break;
                    }
                    remaining += 1;
                } else {
                    bytes += e.size;
                    found.push((key.clone(), e.revision, e.labels));
                    next = Some(key.clone());
                }
            }
        }
        if remaining == 0 {
            next = None;
        }
        let mut items = Vec::with_capacity(found.len());
        for (key, revision, labels) in found {
            match self.read_object(key, revision, labels) {
                Ok(o) => items.push(Arc::new(o)),
                Err(e) => {
                    // Missing only if a compaction overtook this read.
                    let compacted = self.compacted.load(Ordering::Acquire);
                    return Err(if at < compacted { Error::Gone { requested: at, compacted } } else { e });
                }
            }
        }
        Ok(ListPage { items, revision: at, next, remaining })
    }
}
