//! The typed client: one kind, objects as `K`.

use std::marker::PhantomData;
use std::sync::Arc;

use corral_api::{ApiObject, KindInfo, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{Client, Deleted, ObjectList, Written, not_found_is_none};
use crate::error::{Error, Result};
use crate::params::{DeleteParams, ListParams, Patch, WatchParams, WriteParams};
use crate::watch::WatchStream;

/// What an [`Api`] can read and write: any object type with metadata that serializes,
/// typed ([`corral_api::Object`] of a built-in or custom kind) or not
/// ([`corral_api::DynamicObject`], [`corral_api::PartialObject`]).
pub trait ObjectType: ApiObject + Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: ApiObject + Serialize + DeserializeOwned + Clone + Send + Sync + 'static> ObjectType for T {}

/// A typed view of one kind through a [`Client`], in one namespace or all of them.
/// Cheap to clone.
///
/// Reads by name (`get`, `delete`, `patch`) use the `Api`'s namespace; writes of a
/// whole object (`create`, `update`, `update_status`) use the object's own
/// `metadata.namespace`, falling back to the `Api`'s.
pub struct Api<K> {
    client: Client,
    kind: Arc<KindInfo>,
    namespace: Option<String>,
    _k: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api { client: self.client.clone(), kind: self.kind.clone(), namespace: self.namespace.clone(), _k: PhantomData }
    }
}

impl<K: Resource> Api<K> {
    /// The objects of `K` in every namespace (or the cluster-scoped ones).
    pub fn all(client: Client) -> Self {
        Self::for_kind(client, K::shared_kind_info(), None)
    }

    /// The objects of `K` in `namespace`.
    pub fn namespaced(client: Client, namespace: &str) -> Self {
        Self::for_kind(client, K::shared_kind_info(), Some(namespace))
    }
}

impl<K: ObjectType> Api<K> {
    /// The objects of `kind`, a kind known at run time (a custom kind read as
    /// [`corral_api::DynamicObject`], or any kind read as
    /// [`corral_api::PartialObject`]), in `namespace` or all.
    pub fn for_kind(client: Client, kind: Arc<KindInfo>, namespace: Option<&str>) -> Self {
        let namespace = namespace.filter(|_| kind.namespaced).map(str::to_string);
        Api { client, kind, namespace, _k: PhantomData }
    }

    /// The same kind in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Self {
        Self::for_kind(self.client.clone(), self.kind.clone(), Some(namespace))
    }

    /// The kind this API serves.
    pub fn kind(&self) -> &Arc<KindInfo> {
        &self.kind
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The namespace this API is confined to, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn scope(&self, what: &str) -> Result<Option<&str>> {
        if self.kind.namespaced && self.namespace.is_none() {
            return Err(Error::Invalid(format!(
                "{} is namespaced: {what} needs an Api for one namespace (Api::namespaced)",
                self.kind.kind
            )));
        }
        Ok(self.namespace.as_deref())
    }

    fn namespace_of<'a>(&'a self, obj: &'a K) -> Option<&'a str> {
        obj.namespace().or(self.namespace.as_deref())
    }

    /// The object `name`.
    ///
    /// # Errors
    /// 404 when it does not exist ([`Error::is_not_found`]).
    pub async fn get(&self, name: &str) -> Result<K> {
        self.client.get_as(&self.kind, self.scope("get")?, name).await
    }

    /// The object `name`, or `None`.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        not_found_is_none(self.get(name).await)
    }

    /// The objects the selectors match: all of them, or one page when `params.limit`
    /// is set (see [`Api::list_all`] to read every page).
    ///
    /// # Errors
    /// 410 `Expired` when `params.continue_token` names a snapshot compacted since:
    /// start the list again from its first page.
    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>> {
        self.client.list_as(&self.kind, self.namespace.as_deref(), params).await
    }

    /// Every object the selectors match, read in pages of `page_size` objects (0: in
    /// one request) and returned as one list at one revision; a snapshot compacted
    /// between two pages restarts the list. Guarantees and errors as
    /// [`Client::list_all`].
    pub async fn list_all(&self, params: &ListParams, page_size: u32) -> Result<ObjectList<K>> {
        self.client.list_all_as(&self.kind, self.namespace.as_deref(), params, page_size).await
    }

    /// Creates `obj`; returns it as stored.
    pub async fn create(&self, obj: &K) -> Result<K> {
        self.client.create_as(&self.kind, self.namespace_of(obj), obj, &WriteParams::default()).await
    }

    /// Replaces `obj` (its status is kept); its `resourceVersion`, if set, is a
    /// precondition (409 `Conflict` when stale).
    pub async fn update(&self, obj: &K) -> Result<K> {
        self.client.update_as(&self.kind, self.namespace_of(obj), obj.name(), obj, false, &WriteParams::default()).await
    }

    /// Replaces `obj`'s status only; `generation` does not change.
    pub async fn update_status(&self, obj: &K) -> Result<K> {
        self.client.update_as(&self.kind, self.namespace_of(obj), obj.name(), obj, true, &WriteParams::default()).await
    }

    /// Patches the object `name`.
    pub async fn patch(&self, name: &str, patch: Patch<'_>, params: &WriteParams) -> Result<Written<K>> {
        self.client.patch_as(&self.kind, self.scope("patch")?, name, patch, params).await
    }

    /// Deletes the object `name`.
    ///
    /// # Errors
    /// 404 when it does not exist; 409 when a precondition fails.
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<Deleted<K>> {
        self.client.delete_as(&self.kind, self.scope("delete")?, name, params).await
    }

    /// Watches the objects the selectors match.
    pub async fn watch(&self, params: &WatchParams) -> Result<WatchStream<K>> {
        self.client.watch_as(&self.kind, self.namespace.as_deref(), params).await
    }
}
