//! References to objects: what work queues hold instead of objects.

use corral_api::{ApiObject, KindInfo, OwnerReference};

/// Identifies one object: its kind's collection, namespace and name. Queues hold
/// these, never objects, so that a reconcile always starts from the current state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `group/plural` of the kind, e.g. `corral.dev/configmaps`.
    pub resource: String,
    /// Namespace, or `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a namespaced object.
    pub fn namespaced(resource: impl Into<String>, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef { resource: resource.into(), namespace: Some(namespace.into()), name: name.into() }
    }

    /// A reference to a cluster-scoped object.
    pub fn cluster(resource: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef { resource: resource.into(), namespace: None, name: name.into() }
    }

    /// The reference of `obj`, an object of `kind`.
    pub fn of(kind: &KindInfo, obj: &impl ApiObject) -> Self {
        ObjectRef {
            resource: kind.resource(),
            namespace: obj.namespace().filter(|_| kind.namespaced).map(str::to_string),
            name: obj.name().to_string(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.resource, self.name),
            None => write!(f, "{} {}", self.resource, self.name),
        }
    }
}

/// An owner reference to `owner`, for a dependent's `metadata.ownerReferences`.
/// `controller` marks the owner as the managing controller; such references also block
/// foreground deletion of the owner until the dependent is gone. `None` if `owner` has
/// no uid (it was never stored).
pub fn owner_reference(owner: &impl ApiObject, controller: bool) -> Option<OwnerReference> {
    let uid = owner.meta().uid.clone()?;
    Some(OwnerReference {
        api_version: owner.api_version().to_string(),
        kind: owner.kind().to_string(),
        name: owner.name().to_string(),
        uid,
        controller: Some(controller),
        block_owner_deletion: Some(controller),
    })
}
