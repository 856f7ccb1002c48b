//! Addresses of objects in the store.

/// Where an object lives: its kind's collection (`group/plural`), namespace (empty for
/// cluster-scoped kinds) and name. Ordered so that a collection, and a namespace within
/// it, are contiguous ranges.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// `group/plural`, e.g. `corral.dev/configmaps`.
    pub resource: String,
    /// Namespace, or empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl Key {
    /// A key of a namespaced object.
    pub fn namespaced(resource: impl Into<String>, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Key { resource: resource.into(), namespace: namespace.into(), name: name.into() }
    }

    /// A key of a cluster-scoped object.
    pub fn cluster(resource: impl Into<String>, name: impl Into<String>) -> Self {
        Key { resource: resource.into(), namespace: String::new(), name: name.into() }
    }

    /// The key as bytes: resource, namespace and name separated by NUL bytes, so that
    /// byte order is the key's order and a collection (and a namespace in it) is a
    /// contiguous range.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.resource.len() + self.namespace.len() + self.name.len() + 2);
        v.extend_from_slice(self.resource.as_bytes());
        v.push(0);
        v.extend_from_slice(self.namespace.as_bytes());
        v.push(0);
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    /// The key [`Key::encode`] made these bytes from, if they are one.
    pub fn decode(b: &[u8]) -> Option<Key> {
        let mut parts = b.splitn(3, |c| *c == 0);
        let r = std::str::from_utf8(parts.next()?).ok()?;
        let ns = std::str::from_utf8(parts.next()?).ok()?;
        let n = std::str::from_utf8(parts.next()?).ok()?;
        Some(Key::namespaced(r, ns, n))
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.resource, self.name)
        } else {
            write!(f, "{} {}/{}", self.resource, self.namespace, self.name)
        }
    }
}
