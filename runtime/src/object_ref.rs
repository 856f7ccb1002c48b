//! References to objects: what work queues hold instead of objects.

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
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.resource, self.name),
            None => write!(f, "{} {}", self.resource, self.name),
        }
    }
}

/// An owner reference to `owner` (a whole object as JSON), for a dependent's
/// `metadata.ownerReferences`. `controller` marks the owner as the managing
/// controller; such references also block foreground deletion of the owner until the
/// dependent is gone. `None` if `owner` lacks a name or uid (it was never stored).
pub fn owner_reference(owner: &serde_json::Value, controller: bool) -> Option<serde_json::Value> {
    let meta = owner.get("metadata")?;
    Some(serde_json::json!({
        "apiVersion": owner.get("apiVersion")?,
        "kind": owner.get("kind")?,
        "name": meta.get("name")?,
        "uid": meta.get("uid")?,
        "controller": controller,
        "blockOwnerDeletion": controller,
    }))
}
