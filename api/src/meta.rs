//! The metadata every object carries, and the kind-agnostic object envelope.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Metadata shared by every object, built-in or custom.
///
/// `uid`, `resourceVersion`, `generation`, `creationTimestamp` and `deletionTimestamp`
/// are owned by the server: values sent by clients are ignored (except
/// `resourceVersion`, which is a precondition on updates).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Name, unique per kind and namespace; an RFC 1123 label (it becomes a DNS name).
    #[serde(default)]
    pub name: String,
    /// Namespace of a namespaced object; absent for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Unique id of this incarnation of the object, set by the server on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Store revision of the last write to the object; opaque to clients, used for
    /// optimistic concurrency and as the starting point of watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Incremented each time the desired state (everything but metadata and status)
    /// changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When the object was created (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Identifying key/value pairs, matched by label selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Non-identifying key/value pairs for tools and people.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Objects this one belongs to; deleting an owner collects its dependents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    /// Controllers that must clean up before the object may disappear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Set when deletion was requested while finalizers remained (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
}

/// A reference from a dependent object to its owner.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    /// `apiVersion` of the owner.
    pub api_version: String,
    /// Kind of the owner.
    pub kind: String,
    /// Name of the owner (same namespace as the dependent, or cluster-scoped).
    pub name: String,
    /// uid of the owner; a reference to another incarnation is dangling.
    pub uid: String,
    /// Whether this owner is the managing controller of the dependent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// Whether a foreground deletion of the owner waits for this dependent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

impl ObjectMeta {
    /// Metadata naming an object `name` (cluster-scoped, or namespaced once
    /// [`ObjectMeta::namespace`] is set).
    pub fn named(name: impl Into<String>) -> Self {
        ObjectMeta { name: name.into(), ..Default::default() }
    }

    /// The resource version as a store revision, if present and numeric.
    pub fn revision(&self) -> Option<u64> {
        self.resource_version.as_deref().and_then(|v| v.parse().ok())
    }

    /// Whether finalizer `name` is on the object.
    pub fn has_finalizer(&self, name: &str) -> bool {
        self.finalizers.iter().any(|f| f == name)
    }

    /// Adds finalizer `name` unless it is there; returns whether it was added.
    pub fn add_finalizer(&mut self, name: &str) -> bool {
        if self.has_finalizer(name) {
            return false;
        }
        self.finalizers.push(name.to_string());
        true
    }

    /// Removes finalizer `name`; returns whether it was there.
    pub fn remove_finalizer(&mut self, name: &str) -> bool {
        let before = self.finalizers.len();
        self.finalizers.retain(|f| f != name);
        self.finalizers.len() != before
    }

    /// Whether deletion was requested and finalizers hold the object.
    pub fn is_deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }

    /// The owner reference naming `uid`, if the object has one.
    pub fn owner(&self, uid: &str) -> Option<&OwnerReference> {
        self.owner_references.iter().find(|r| r.uid == uid)
    }

    /// The managing controller among the owners, if any.
    pub fn controller_owner(&self) -> Option<&OwnerReference> {
        self.owner_references.iter().find(|r| r.controller == Some(true))
    }
}

/// What every object of the API has, typed or not: its `apiVersion`, `kind` and
/// metadata. Clients, caches and controllers work on any `ApiObject`.
pub trait ApiObject {
    /// `group/version` of its kind.
    fn api_version(&self) -> &str;
    /// Its kind's name.
    fn kind(&self) -> &str;
    /// Its metadata.
    fn meta(&self) -> &ObjectMeta;
    /// Its metadata, to change.
    fn meta_mut(&mut self) -> &mut ObjectMeta;

    /// `metadata.name`.
    fn name(&self) -> &str {
        &self.meta().name
    }

    /// `metadata.namespace`; `None` for cluster-scoped objects.
    fn namespace(&self) -> Option<&str> {
        self.meta().namespace.as_deref()
    }

    /// `metadata.uid`, or empty for an object never stored.
    fn uid(&self) -> &str {
        self.meta().uid.as_deref().unwrap_or_default()
    }

    /// `metadata.resourceVersion` as a revision; 0 for an object never stored.
    fn revision(&self) -> u64 {
        self.meta().revision().unwrap_or(0)
    }
}

/// Implements [`ApiObject`] for a type with `api_version`, `kind` and `metadata`
/// fields (every object type of this crate has them).
macro_rules! impl_api_object {
    ($t:ty $(, generics <$($g:ident $(: $bound:path)?),+>)?) => {
        impl$(<$($g $(: $bound)?),+>)? $crate::meta::ApiObject for $t {
            fn api_version(&self) -> &str {
                &self.api_version
            }
            fn kind(&self) -> &str {
                &self.kind
            }
            fn meta(&self) -> &$crate::meta::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut $crate::meta::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use impl_api_object;

impl_api_object!(DynamicObject);

/// An object of any kind read for its metadata alone: everything else in the document
/// is skipped while decoding, without being built. What a controller that only looks
/// at metadata (the garbage collector) watches every kind as.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartialObject {
    /// `group/version` of the kind.
    #[serde(default)]
    pub api_version: String,
    /// The kind's name.
    #[serde(default)]
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
}

impl_api_object!(PartialObject);

/// Any object as JSON with typed metadata: what the store, the server and dynamic
/// clients handle, whatever the kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DynamicObject {
    /// `group/version` of the kind.
    pub api_version: String,
    /// The kind's name, e.g. `Namespace`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Everything else: `spec`, `status`, and whatever a custom kind defines.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// Current time as the RFC 3339 UTC timestamps metadata uses.
pub fn now_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Current time as an RFC 3339 UTC timestamp with microseconds, for fields renewed more
/// often than once a second (lease renewals), where every renewal must be a change.
pub fn now_micro_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
