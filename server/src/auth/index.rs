//! The in-memory copy of tokens, roles and bindings that every request is checked
//! against, kept up to date from a watch of the store (as kube-apiserver's RBAC
//! authorizer reads informers). Checking a request costs a hash map lookup and a few
//! rule matches, never a store read.
//!
//! A write to one of these kinds is answered only once the copy has caught up with
//! it ([`PolicyIndex::caught_up`]): a token is usable, a binding in force, as soon as
//! the client hears it was written.
//!
//! A token bound to a task (`spec.boundTo`, see [`super::task_token`]) dies with it:
//! when the watch reports the task deleted, the copy drops the task's tokens at once,
//! and deletes them from the store in the background. A token written bound to a task
//! already gone is deleted as soon as it is seen. Loading the policy (at start, and
//! after the watch lost its place) drops and deletes the tokens whose task is gone, or
//! is another task of the same name, so that none outlives its task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds::token::BoundObject;
use corral_api::kinds::{ClusterRoleBindingSpec, ClusterRoleSpec, RoleBindingSpec, RoleSpec, TokenSpec};
use corral_api::{GROUP, Selector};
use corral_store::{EventType, Key, Storage, StoredObject, WatchEvent, WatchRequest};
use futures::StreamExt;
use parking_lot::RwLock;
use serde::de::DeserializeOwned;

use super::rbac::{Attributes, Policy, SENSITIVE, TokenEntry};

/// Longest a policy write waits for the copy to catch up before it is answered.
const CATCH_UP: Duration = Duration::from_secs(5);
/// Pause before listing again after the watch failed.
const RETRY: Duration = Duration::from_millis(200);

/// Whether a request (if it succeeds) changes what the policy holds.
pub fn changes_policy(a: &Attributes<'_>) -> bool {
    matches!(a, Attributes::Resource { verb, group, resource, .. }
        if group == GROUP && SENSITIVE.contains(&resource.as_ref()) && !matches!(verb.as_ref(), "get" | "list" | "watch"))
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
        let (from, bound) = self.load(&store).await?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            tokio::select! {
                _ = closed => {}
                _ = me.follow(store, from, bound) => {}
            }
        }))
    }

    /// Waits (boundedly) until the policy reflects every write the store has taken;
    /// false if it has not within [`CATCH_UP`].
    pub async fn caught_up(&self, store: &dyn Storage) -> bool {
        let target = store.stats().revision;
        let mut rx = self.applied.subscribe();
        if *rx.borrow() >= target {
            return true;
        }
        // The watch sees only the policy's kinds: the writes since the last of those
        // move it on only when it reports how far it has read.
        store.request_progress();
        let reached = tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= target)).await;
        if reached.is_err() {
            tracing::warn!(target, "the authorization policy has not caught up with a write yet");
        }
        reached.is_ok()
    }

    /// Replaces the policy with the store's, without the tokens whose bound object
    /// is gone (those are deleted in the background); returns the revision to watch
    /// from and the bound tokens.
    async fn load(&self, store: &Arc<dyn Storage>) -> Result<(u64, Bound), corral_store::Error> {
        let mut fresh = Policy::default();
        let mut bound = Bound::default();
        let mut objects = HashMap::new();
        let mut oldest = u64::MAX;
        let mut newest = 0;
        for plural in SENSITIVE {
            let list = store.list(&format!("{GROUP}/{plural}"), None, &Selector::everything()).await?;
            oldest = oldest.min(list.revision);
            newest = newest.max(list.revision);
            for o in &list.items {
                if let Some(object) = track(&mut fresh, &mut bound, o, false) {
                    objects.insert(object.uid.clone(), object);
                }
            }
        }
        let mut orphans = Vec::new();
        for (uid, object) in objects {
            if !exists(store.as_ref(), &object).await {
                let ids = bound.take(&uid);
                for id in &ids {
                    fresh.remove_token(id);
                }
                tracing::info!(kind = %object.kind, namespace = %object.namespace, name = %object.name, %uid,
                    tokens = ids.len(), "the object these tokens were bound to is gone; deleting them");
                orphans.extend(ids);
            }
        }
        revoke(store, orphans);
        // The lists were taken at slightly different revisions: replaying from the
        // oldest converges on the newest (each event carries the object's whole state).
        *self.policy.write() = fresh;
        self.applied.send_replace(oldest);
        Ok((oldest.min(newest), bound))
    }

    async fn follow(&self, store: Arc<dyn Storage>, mut from: u64, mut bound: Bound) {
        loop {
            let request =
                WatchRequest { resources: watched(), from: Some(from), bookmarks: true, ..Default::default() };
            match store.watch(request).await {
                Ok(mut events) => {
                    while let Some(e) = events.next().await {
                        match e {
                            WatchEvent::Event(e) => {
                                let deleted = e.event_type == EventType::Deleted;
                                if is_policy(&e.object) {
                                    let object = track(&mut self.policy.write(), &mut bound, &e.object, deleted);
                                    if let Some(object) = object {
                                        sweep_if_gone(&store, e.object.key.name.clone(), object);
                                    }
                                } else if deleted && is_task(&e.object) {
                                    let gone = self.task_deleted(&mut bound, &e.object);
                                    revoke(&store, gone);
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
            match self.load(&store).await {
                Ok((r, b)) => (from, bound) = (r, b),
                Err(e) => tracing::warn!(error = %e, "cannot load the authorization policy; retrying"),
            }
        }
    }

    /// Drops the tokens bound to task `o`, just deleted; returns their ids.
    fn task_deleted(&self, bound: &mut Bound, o: &StoredObject) -> Vec<String> {
        // Most deletions concern no token: skip decoding then.
        if bound.is_empty() {
            return Vec::new();
        }
        let Some(uid) = uid_of(o) else { return Vec::new() };
        let ids = bound.take(&uid);
        if !ids.is_empty() {
            let mut p = self.policy.write();
            for id in &ids {
                p.remove_token(id);
            }
            tracing::info!(task = %format!("{}/{}", o.key.namespace, o.key.name), %uid, tokens = ids.len(),
                "task deleted; its tokens are revoked");
        }
        ids
    }
}

/// Tokens bound to an object, by the object's uid: what to revoke when it goes.
#[derive(Default, Debug)]
struct Bound {
    /// Token ids by the uid of the object they are bound to.
    by_object: HashMap<String, Vec<String>>,
    /// The uid each bound token is bound to (a token's binding may change).
    by_token: HashMap<String, String>,
}

impl Bound {
    fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// Records that token `id` is bound to the object of uid `to` (or to none).
    fn set(&mut self, id: &str, to: Option<&str>) {
        if let Some(old) = self.by_token.remove(id)
            && let Some(ids) = self.by_object.get_mut(&old)
        {
            ids.retain(|t| t != id);
            if ids.is_empty() {
                self.by_object.remove(&old);
            }
        }
        if let Some(uid) = to {
            self.by_token.insert(id.to_string(), uid.to_string());
            self.by_object.entry(uid.to_string()).or_default().push(id.to_string());
        }
    }

    /// Forgets, and returns, the tokens bound to the object of uid `uid`.
    fn take(&mut self, uid: &str) -> Vec<String> {
        let ids = self.by_object.remove(uid).unwrap_or_default();
        for id in &ids {
            self.by_token.remove(id);
        }
        ids
    }
}

/// [`apply`], also keeping `bound` current; returns the object a live token is
/// bound to, if it is one.
fn track(p: &mut Policy, bound: &mut Bound, o: &StoredObject, deleted: bool) -> Option<BoundObject> {
    apply(p, o, deleted);
    if o.key.resource.rsplit('/').next() != Some("tokens") {
        return None;
    }
    let object = if deleted { None } else { bound_object(o) };
    bound.set(&o.key.name, object.as_ref().map(|b| b.uid.as_str()));
    object
}

/// The object token `o` is bound to; only that field is decoded.
fn bound_object(o: &StoredObject) -> Option<BoundObject> {
    #[derive(serde::Deserialize)]
    struct Head {
        spec: Option<HeadSpec>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct HeadSpec {
        bound_to: Option<BoundObject>,
    }
    serde_json::from_slice::<Head>(&o.json).ok()?.spec?.bound_to
}

/// The object's `metadata.uid`; only that field is decoded.
fn uid_of(o: &StoredObject) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        metadata: HeadMeta,
    }
    #[derive(serde::Deserialize)]
    struct HeadMeta {
        uid: Option<String>,
    }
    serde_json::from_slice::<Head>(&o.json).ok()?.metadata.uid
}

/// Whether `object` still exists as the very object (same uid). Kinds a token cannot
/// be bound to never do; a store failure counts as existing (nothing is deleted on a
/// doubt), and the next load looks again.
async fn exists(store: &dyn Storage, object: &BoundObject) -> bool {
    if object.kind != "Task" {
        return false;
    }
    let key = Key::namespaced(format!("{GROUP}/tasks"), &object.namespace, &object.name);
    match store.get(&key).await {
        Ok(Some(live)) => uid_of(&live).as_deref() == Some(object.uid.as_str()),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(%key, error = %e, "cannot tell whether a token's task still exists; keeping the token");
            true
        }
    }
}

/// Deletes tokens `ids` from the store in the background; failures are logged (the
/// policy has dropped them already, and the next load deletes them again).
fn revoke(store: &Arc<dyn Storage>, ids: Vec<String>) {
    if ids.is_empty() {
        return;
    }
    let store = store.clone();
    tokio::spawn(async move { delete_tokens(store.as_ref(), ids).await });
}

/// Deletes token `id` in the background if `object` is gone already: a token bound to
/// an object whose deletion was seen before the token was written would otherwise
/// live until the next load. Its deletion then reaches the policy as any other.
fn sweep_if_gone(store: &Arc<dyn Storage>, id: String, object: BoundObject) {
    let store = store.clone();
    tokio::spawn(async move {
        if !exists(store.as_ref(), &object).await {
            tracing::info!(token = %id, uid = %object.uid, "a token was bound to an object already gone; deleting it");
            delete_tokens(store.as_ref(), vec![id]).await;
        }
    });
}

async fn delete_tokens(store: &dyn Storage, ids: Vec<String>) {
    for id in ids {
        let key = Key::cluster(format!("{GROUP}/tokens"), &id);
        match store.delete(key.clone(), None).await {
            Ok(_) | Err(corral_store::Error::NotFound(_)) => {}
            Err(e) => tracing::warn!(%key, error = %e, "cannot delete a token whose bound object is gone"),
        }
    }
}

/// What the index watches: the policy's kinds, and tasks (whose tokens die with them).
/// Every other write passes it by, so that authorization costs writes nothing.
fn watched() -> Vec<String> {
    SENSITIVE.iter().chain(&["tasks"]).map(|plural| format!("{GROUP}/{plural}")).collect()
}

fn is_policy(o: &StoredObject) -> bool {
    o.key.resource.strip_prefix(GROUP).and_then(|r| r.strip_prefix('/')).is_some_and(|p| SENSITIVE.contains(&p))
}

fn is_task(o: &StoredObject) -> bool {
    o.key.resource.strip_prefix(GROUP).and_then(|r| r.strip_prefix('/')) == Some("tasks")
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
            (false, Some(entry)) => p.insert_token(name, entry),
            _ => p.remove_token(&name),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use corral_api::GROUP;
    use corral_store::{Key, SledStore, Storage, WatchEvent, WatchRequest};
    use futures::StreamExt;
    use serde_json::json;

    use super::PolicyIndex;
    use crate::auth::rbac::Policy;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn Storage>,
        index: Arc<PolicyIndex>,
        policy: Arc<parking_lot::RwLock<Policy>>,
        closed: tokio_util::sync::CancellationToken,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Storage> = Arc::new(SledStore::open(dir.path(), Default::default()).expect("store"));
        let policy = Arc::new(parking_lot::RwLock::new(Policy::default()));
        let index = Arc::new(PolicyIndex::new(policy.clone()));
        Fixture { _dir: dir, store, index, policy, closed: tokio_util::sync::CancellationToken::new() }
    }

    impl Fixture {
        async fn start(&self) -> tokio::task::JoinHandle<()> {
            let closed = self.closed.clone().cancelled_owned();
            self.index.start(self.store.clone(), closed).await.expect("policy loads")
        }

        async fn task(&self, name: &str) -> String {
            let task = json!({"apiVersion": "corral.dev/v1", "kind": "Task",
                "metadata": {"name": name, "namespace": "team"}, "spec": {"serviceAccount": "reader"}});
            let stored = self.store.create(task_key(name), task).await.expect("task");
            stored.value().expect("decodes")["metadata"]["uid"].as_str().expect("uid").to_string()
        }

        async fn token(&self, id: &str, bound_to: Option<(&str, &str)>) {
            let mut spec = json!({"user": "system:serviceaccount:team:reader", "secretHash": "ab".repeat(32)});
            if let Some((name, uid)) = bound_to {
                spec["boundTo"] = json!({"kind": "Task", "namespace": "team", "name": name, "uid": uid});
            }
            let token = json!({"apiVersion": "corral.dev/v1", "kind": "Token", "metadata": {"name": id}, "spec": spec});
            self.store.create(token_key(id), token).await.expect("token");
        }

        fn knows(&self, id: &str) -> bool {
            self.policy.read().tokens.contains_key(id)
        }

        /// Waits (boundedly) until token `id` is no longer stored.
        async fn wait_token_deleted(&self, id: &str) {
            // Watching first, then looking: a deletion in between is still an event.
            let from = self.store.stats().revision;
            let request =
                WatchRequest { resources: vec![format!("{GROUP}/tokens")], from: Some(from), ..Default::default() };
            let mut events = self.store.watch(request).await.expect("watch");
            for _ in 0..1000 {
                if self.store.get(&token_key(id)).await.expect("get").is_none() {
                    return;
                }
                let next = tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("an event");
                assert!(matches!(next, Some(WatchEvent::Event(_) | WatchEvent::Bookmark(_))), "watch ended");
            }
            panic!("token {id} was never deleted");
        }
    }

    fn task_key(name: &str) -> Key {
        Key::namespaced(format!("{GROUP}/tasks"), "team", name)
    }

    fn token_key(id: &str) -> Key {
        Key::cluster(format!("{GROUP}/tokens"), id)
    }

    #[tokio::test]
    async fn a_deleted_task_takes_its_tokens_with_it() {
        let f = fixture();
        let follower = f.start().await;
        let uid = f.task("web").await;
        let other = f.task("db").await;
        f.token("bound", Some(("web", &uid))).await;
        f.token("other", Some(("db", &other))).await;
        f.token("free", None).await;
        assert!(f.index.caught_up(f.store.as_ref()).await);
        assert!(f.knows("bound") && f.knows("other") && f.knows("free"));

        f.store.delete(task_key("web"), None).await.expect("task deleted");
        assert!(f.index.caught_up(f.store.as_ref()).await);
        assert!(!f.knows("bound"), "the token stops working with its task");
        assert!(f.knows("other") && f.knows("free"), "other tokens are untouched");
        f.wait_token_deleted("bound").await;
        assert!(f.store.get(&token_key("other")).await.expect("get").is_some());

        f.closed.cancel();
        follower.await.expect("the follower ends");
    }

    #[tokio::test]
    async fn loading_deletes_tokens_whose_task_is_gone_or_another() {
        let f = fixture();
        let uid = f.task("web").await;
        f.token("alive", Some(("web", &uid))).await;
        f.token("orphan", Some(("gone", "no-such-uid"))).await;
        // A task of the same name made again is another task.
        f.token("stale", Some(("web", "the-uid-of-an-earlier-web"))).await;
        let follower = f.start().await;
        assert!(f.knows("alive"));
        assert!(!f.knows("orphan") && !f.knows("stale"), "never usable, even before they are deleted");
        f.wait_token_deleted("orphan").await;
        f.wait_token_deleted("stale").await;
        assert!(f.store.get(&token_key("alive")).await.expect("get").is_some());

        f.closed.cancel();
        follower.await.expect("the follower ends");
    }

    #[tokio::test]
    async fn a_token_bound_to_a_task_already_gone_is_deleted() {
        let f = fixture();
        let follower = f.start().await;
        let uid = f.task("web").await;
        f.store.delete(task_key("web"), None).await.expect("task deleted");
        assert!(f.index.caught_up(f.store.as_ref()).await);
        // Written after the index saw the task go (as when a token is minted while
        // its task is being deleted).
        f.token("late", Some(("web", &uid))).await;
        f.wait_token_deleted("late").await;
        assert!(f.index.caught_up(f.store.as_ref()).await);
        assert!(!f.knows("late"));

        f.closed.cancel();
        follower.await.expect("the follower ends");
    }

    #[tokio::test]
    async fn a_token_is_in_force_as_soon_as_written_though_other_kinds_were_written_after_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        // No periodic bookmark comes to the rescue: only the progress request does.
        let options = corral_store::Options { bookmark_interval: Duration::from_secs(3600), ..Default::default() };
        let store: Arc<dyn Storage> = Arc::new(SledStore::open(dir.path(), options).expect("store"));
        let f = Fixture { store, _dir: dir, ..fixture() };
        let follower = f.start().await;
        f.token("fresh", None).await;
        // Tasks the index watches, then a kind it does not.
        f.task("web").await;
        let note =
            json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {"name": "n", "namespace": "team"}});
        f.store.create(Key::namespaced(format!("{GROUP}/configmaps"), "team", "n"), note).await.expect("config map");
        assert!(f.index.caught_up(f.store.as_ref()).await, "caught up without waiting for a periodic bookmark");
        assert!(f.knows("fresh"));

        f.closed.cancel();
        follower.await.expect("the follower ends");
    }

    #[test]
    fn a_token_bound_elsewhere_moves_in_the_map() {
        let mut b = super::Bound::default();
        b.set("t1", Some("u1"));
        b.set("t2", Some("u1"));
        b.set("t1", Some("u2"));
        assert_eq!(b.take("u1"), vec!["t2".to_string()]);
        b.set("t1", None);
        assert!(b.take("u2").is_empty());
        assert!(b.is_empty());
    }
}
