//! The in-memory copy of tokens, roles and bindings that every request is checked
//! against, kept up to date from a watch of the store (as kube-apiserver's RBAC
//! authorizer reads informers). Checking a request costs a hash map lookup and a few
//! rule matches, never a store read.
//!
//! A write to one of these kinds is answered only once the copy has caught up with
//! it ([`PolicyIndex::caught_up`]): a token is usable, a binding in force, as soon as
//! the client hears it was written.

use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds::{ClusterRoleBindingSpec, ClusterRoleSpec, RoleBindingSpec, RoleSpec, TokenSpec};
use corral_api::{GROUP, Selector};
use corral_store::{EventType, Storage, StoredObject, WatchEvent, WatchRequest};
use futures::StreamExt;
use parking_lot::RwLock;
use serde::de::DeserializeOwned;

use super::rbac::{Attributes, Policy, SENSITIVE, TokenEntry};

/// Longest a policy write waits for the copy to catch up before it is answered.
const CATCH_UP: Duration = Duration::from_secs(5);
/// Pause before listing again after the watch failed.
const RETRY: Duration = Duration::from_millis(200);

/// Whether a request (if it succeeds) changes what the policy holds.
pub fn changes_policy(a: &Attributes) -> bool {
    matches!(a, Attributes::Resource { verb, group, resource, .. }
        if group == GROUP && SENSITIVE.contains(&resource.as_str()) && !matches!(verb.as_str(), "get" | "list" | "watch"))
}

/// Keeps a [`Policy`] equal to the store's.
pub struct PolicyIndex {
    policy: Arc<RwLock<Policy>>,
    /// The store revision the policy reflects.
    applied: tokio::sync::watch::Sender<u64>,
}

impl PolicyIndex {
    /// An index writing into `policy`.
    pub fn new(policy: Arc<RwLock<Policy>>) -> Self {
        PolicyIndex { policy, applied: tokio::sync::watch::channel(0).0 }
    }

    /// Loads the policy from the store, then keeps it current in the background until
    /// `closed` resolves.
    ///
    /// # Errors
    /// The store's, if the first load fails.
    pub async fn start(
        self: &Arc<Self>,
        store: Arc<dyn Storage>,
        closed: impl Future<Output = ()> + Send + 'static,
    ) -> Result<tokio::task::JoinHandle<()>, corral_store::Error> {
        let from = self.load(store.as_ref()).await?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            tokio::select! {
                _ = closed => {}
                _ = me.follow(store, from) => {}
            }
        }))
    }

    /// Waits (boundedly) until the policy reflects every write the store has taken.
    pub async fn caught_up(&self, store: &dyn Storage) {
        let target = store.stats().revision;
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= target)).await;
        if reached.is_err() {
            tracing::warn!(target, "the authorization policy has not caught up with a write yet");
        }
    }

    /// Replaces the policy with the store's; returns the revision to watch from.
    async fn load(&self, store: &dyn Storage) -> Result<u64, corral_store::Error> {
        let mut fresh = Policy::default();
        let mut oldest = u64::MAX;
        let mut newest = 0;
        for plural in SENSITIVE {
            let list = store.list(&format!("{GROUP}/{plural}"), None, &Selector::everything()).await?;
            oldest = oldest.min(list.revision);
            newest = newest.max(list.revision);
            for o in &list.items {
                apply(&mut fresh, o, false);
            }
        }
        // The lists were taken at slightly different revisions: replaying from the
        // oldest converges on the newest (each event carries the object's whole state).
        *self.policy.write() = fresh;
        self.applied.send_replace(oldest);
        Ok(oldest.min(newest))
    }

    async fn follow(&self, store: Arc<dyn Storage>, mut from: u64) {
        loop {
            let request = WatchRequest { resource: None, from: Some(from), bookmarks: true, ..Default::default() };
            match store.watch(request).await {
                Ok(mut events) => {
                    while let Some(e) = events.next().await {
                        match e {
                            WatchEvent::Event(e) => {
                                if is_policy(&e.object) {
                                    apply(&mut self.policy.write(), &e.object, e.event_type == EventType::Deleted);
                                }
                                from = e.revision;
                                self.applied.send_replace(from);
                            }
                            WatchEvent::Bookmark(r) => {
                                from = r;
                                self.applied.send_replace(r);
                            }
                            WatchEvent::Gone { .. } => break,
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot watch the authorization policy; loading it again"),
            }
            tokio::time::sleep(RETRY).await;
            match self.load(store.as_ref()).await {
                Ok(r) => from = r,
                Err(e) => tracing::warn!(error = %e, "cannot load the authorization policy; retrying"),
            }
        }
    }
}

fn is_policy(o: &StoredObject) -> bool {
    o.key.resource.strip_prefix(GROUP).and_then(|r| r.strip_prefix('/')).is_some_and(|p| SENSITIVE.contains(&p))
}

fn spec<S: DeserializeOwned>(o: &StoredObject) -> Option<S> {
    let v = o.value().ok()?;
    match serde_json::from_value(v.get("spec").cloned().unwrap_or_default()) {
        Ok(s) => Some(s),
        Err(e) => {
            // Only valid objects are written; one that no longer decodes grants nothing.
            tracing::error!(key = %o.key, error = %e, "stored policy object does not decode");
            None
        }
    }
}

/// Puts the object's current state into `p` (or takes it out).
fn apply(p: &mut Policy, o: &StoredObject, deleted: bool) {
    let (ns, name) = (o.key.namespace.clone(), o.key.name.clone());
    let plural = o.key.resource.rsplit('/').next().unwrap_or_default();
    match plural {
        "tokens" => match (deleted, spec::<TokenSpec>(o).as_ref().and_then(TokenEntry::new)) {
            (false, Some(entry)) => {
                p.tokens.insert(name, entry);
            }
            _ => {
                p.tokens.remove(&name);
            }
        },
        "clusterroles" => match (deleted, spec::<ClusterRoleSpec>(o)) {
            (false, Some(s)) => {
                p.cluster_roles.insert(name, s.rules);
            }
            _ => {
                p.cluster_roles.remove(&name);
            }
        },
        "roles" => match (deleted, spec::<RoleSpec>(o)) {
            (false, Some(s)) => {
                p.roles.entry(ns).or_default().insert(name, s.rules);
            }
            _ => {
                p.roles.entry(ns).or_default().remove(&name);
            }
        },
        "clusterrolebindings" => match (deleted, spec::<ClusterRoleBindingSpec>(o)) {
            (false, Some(s)) => {
                p.cluster_bindings.insert(name.into(), s);
            }
            _ => {
                p.cluster_bindings.remove(name.as_str());
            }
        },
        "rolebindings" => match (deleted, spec::<RoleBindingSpec>(o)) {
            (false, Some(s)) => {
                p.bindings.entry(ns).or_default().insert(name.into(), s);
            }
            _ => {
                p.bindings.entry(ns).or_default().remove(name.as_str());
            }
        },
        _ => {}
    }
}
