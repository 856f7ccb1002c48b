//! What list, watch, write and delete calls can ask for.

use corral_api::delete::{DeleteOptions, Preconditions, Propagation};

/// Options of a list.
///
/// A list can be read in pages: `limit` bounds the objects of one answer, and the
/// answer's `metadata.continue` ([`ObjectList::continue_token`](crate::ObjectList::continue_token)),
/// sent back as `continue_token` with the same selectors, fetches the next page of
/// the same snapshot. [`Client::list_all`](crate::Client::list_all) does this loop.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    /// A label selector such as `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// A field selector such as `spec.nodeName=n1,status.phase!=FINISHED`.
    pub field_selector: Option<String>,
    /// At most this many objects in the answer (`limit`); `None` or 0: all of them.
    pub limit: Option<u32>,
    /// The `metadata.continue` of the previous page (`continue`): the next page of
    /// the same list. The selectors must be the same as on the first page.
    pub continue_token: Option<String>,
}

impl ListParams {
    /// Only objects whose labels match `selector`.
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }

    /// Only objects whose fields match `selector`.
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.to_string());
        self
    }

    /// At most `limit` objects in the answer; 0: all of them.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The page after the one that answered `token` as its `metadata.continue`.
    pub fn continue_token(mut self, token: &str) -> Self {
        self.continue_token = Some(token.to_string());
        self
    }
}

/// Options of a watch.
#[derive(Clone, Debug, Default)]
pub struct WatchParams {
    /// A label selector such as `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// A field selector such as `spec.nodeName=n1`. An object that stops matching
    /// arrives as `Deleted`, one that starts matching as `Added`.
    pub field_selector: Option<String>,
    /// Replay every event after this revision, then go live. Without it, the server
    /// sends an `ADDED` for every current object first.
    pub resource_version: Option<String>,
    /// Ask for periodic `BOOKMARK` events.
    pub bookmarks: bool,
}

impl WatchParams {
    /// The same selection as `list`.
    pub fn from_list(list: &ListParams) -> Self {
        WatchParams {
            label_selector: list.label_selector.clone(),
            field_selector: list.field_selector.clone(),
            ..Default::default()
        }
    }
}

/// Options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteParams {
    /// Validate and compute the result, write nothing (`dryRun=All`).
    pub dry_run: bool,
    /// Recorded by the server on apply patches.
    pub field_manager: Option<String>,
    /// An apply takes over the fields other managers applied with other values,
    /// instead of failing with 409 (`force=true`).
    pub force: bool,
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteParams {
    /// Compute the outcome, change nothing.
    pub dry_run: bool,
    /// What becomes of the object's dependents; the server's default is background.
    pub propagation: Option<Propagation>,
    /// What must hold for the delete to happen (409 otherwise).
    pub preconditions: Option<Preconditions>,
}

impl DeleteParams {
    /// Dependents deleted before the object goes.
    pub fn foreground() -> Self {
        DeleteParams { propagation: Some(Propagation::Foreground), ..Default::default() }
    }

    /// Dependents orphaned.
    pub fn orphan() -> Self {
        DeleteParams { propagation: Some(Propagation::Orphan), ..Default::default() }
    }

    /// Only if the object is still at revision `rv` (and, if given, incarnation `uid`).
    pub fn if_unchanged(mut self, rv: u64, uid: Option<&str>) -> Self {
        self.preconditions =
            Some(Preconditions { resource_version: Some(rv.to_string()), uid: uid.map(str::to_string) });
        self
    }

    /// The `DeleteOptions` body carrying these options; `None` when there is nothing
    /// to say beyond the query.
    pub(crate) fn body(&self) -> Option<DeleteOptions> {
        let preconditions = self.preconditions.clone().filter(|p| !p.is_empty());
        preconditions.is_some().then(|| DeleteOptions {
            propagation_policy: self.propagation.map(|p| p.as_str().to_string()),
            dry_run: if self.dry_run { vec!["All".to_string()] } else { Vec::new() },
            preconditions,
        })
    }
}

/// A patch body, tagged with how the server must interpret it.
#[derive(Clone, Copy, Debug)]
pub enum Patch<'a> {
    /// An apply: create if missing, else three-way merge with the last applied
    /// manifest (`application/apply-patch+json`).
    Apply(&'a serde_json::Value),
    /// An RFC 7386 merge patch.
    Merge(&'a serde_json::Value),
    /// An RFC 6902 JSON patch (an array of operations).
    Json(&'a serde_json::Value),
}

impl Patch<'_> {
    pub(crate) fn content_type(&self) -> &'static str {
        match self {
            Patch::Apply(_) => "application/apply-patch+json",
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Json(_) => "application/json-patch+json",
        }
    }

    pub(crate) fn body(&self) -> &serde_json::Value {
        match self {
            Patch::Apply(v) | Patch::Merge(v) | Patch::Json(v) => v,
        }
    }
}
