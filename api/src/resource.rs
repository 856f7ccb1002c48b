//! Typed objects: the envelope shared by built-in kinds and the trait that describes
//! a kind to the registry.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::meta::{ApiObject, ObjectMeta};
use crate::registry::{KindInfo, PrinterColumn, Subresources};

/// A typed object of a kind with desired state `S` and observed state `St`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S: Default, St> {
    /// `group/version` of the kind, e.g. `corral.dev/v1`.
    pub api_version: String,
    /// The kind's name, e.g. `ConfigMap`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state, written by users.
    #[serde(default)]
    pub spec: S,
    /// Observed state, written by controllers through the status path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<St>,
}

impl<S: Default, St> Object<S, St>
where
    Self: Resource,
{
    /// A new object of this kind named `name` with desired state `spec`, its
    /// `apiVersion` and `kind` filled in. Set `metadata.namespace` for namespaced kinds
    /// (or use [`Object::namespaced`]).
    pub fn new(name: impl Into<String>, spec: S) -> Self {
        Object {
            api_version: format!("{}/{}", Self::GROUP, Self::VERSION),
            kind: Self::KIND.to_string(),
            metadata: ObjectMeta::named(name),
            spec,
            status: None,
        }
    }

    /// A new object named `name` in namespace `namespace`.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>, spec: S) -> Self {
        let mut o = Self::new(name, spec);
        o.metadata.namespace = Some(namespace.into());
        o
    }
}

crate::meta::impl_api_object!(Object<S, St>, generics <S: Default, St>);

/// The desired-state type of a kind, which names the kind: implement it for a `spec`
/// struct (serde + schemars), and `Object<Spec, Spec::Status>` is a [`Resource`] —
/// served, validated, listed, watched and cached as that kind, its definition derived
/// from the types (see `Object::custom_resource_definition`). Every built-in kind is
/// declared this way; so are users' custom kinds.
pub trait KindSpec: Serialize + DeserializeOwned + JsonSchema + Default + Clone + Send + Sync + 'static {
    /// The observed-state type.
    type Status: Serialize + DeserializeOwned + JsonSchema + Default + Clone + Send + Sync + 'static;
    /// API group, e.g. `corral.dev`.
    const GROUP: &'static str = crate::GROUP;
    /// API version within the group, e.g. `v1`.
    const VERSION: &'static str = crate::VERSION;
    /// Kind name, e.g. `ConfigMap`.
    const KIND: &'static str;
    /// Lowercase plural used in URLs, e.g. `configmaps`.
    const PLURAL: &'static str;
    /// Short aliases accepted by the CLI, e.g. `cm`.
    const SHORT_NAMES: &'static [&'static str] = &[];
    /// Whether objects live in a namespace.
    const NAMESPACED: bool;
    /// What the kind is for; the description of its published schema.
    const DESCRIPTION: &'static str;

    /// The columns `corral get` shows for the kind, between NAME and AGE.
    fn printer_columns() -> Vec<PrinterColumn> {
        Vec::new()
    }

    /// The subresources served besides the object itself.
    fn subresources() -> Subresources {
        Subresources::default()
    }
}

/// A kind with a typed representation: `Object<S, S::Status>` for every [`KindSpec`]
/// `S`. What typed clients, caches and controllers are generic over.
pub trait Resource: ApiObject + Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static {
    /// API group, e.g. `corral.dev`.
    const GROUP: &'static str;
    /// API version within the group, e.g. `v1`.
    const VERSION: &'static str;
    /// Kind name, e.g. `ConfigMap`.
    const KIND: &'static str;
    /// Lowercase plural used in URLs, e.g. `configmaps`.
    const PLURAL: &'static str;
    /// Short aliases accepted by the CLI, e.g. `cm`.
    const SHORT_NAMES: &'static [&'static str];
    /// Whether objects live in a namespace.
    const NAMESPACED: bool;
    /// What the kind is for; the description of its published schema.
    const DESCRIPTION: &'static str;

    /// Describes the kind for the registry, with its JSON Schema derived from the type.
    fn kind_info() -> KindInfo;

    /// [`Resource::kind_info`], shared: for a built-in kind, derived once per process
    /// (deriving the schema is far dearer than a lookup), then the same `Arc`.
    fn shared_kind_info() -> Arc<KindInfo> {
        Arc::new(Self::kind_info())
    }

    /// The store resource of the kind (`group/plural`, as [`KindInfo::resource`]),
    /// without deriving its schema.
    fn resource() -> String {
        format!("{}/{}", Self::GROUP, Self::PLURAL)
    }
}

/// The kinds described so far, by the type of their spec.
static DESCRIBED: LazyLock<RwLock<HashMap<TypeId, Arc<KindInfo>>>> = LazyLock::new(Default::default);

impl<S: KindSpec> Resource for Object<S, S::Status> {
    const GROUP: &'static str = S::GROUP;
    const VERSION: &'static str = S::VERSION;
    const KIND: &'static str = S::KIND;
    const PLURAL: &'static str = S::PLURAL;
    const SHORT_NAMES: &'static [&'static str] = S::SHORT_NAMES;
    const NAMESPACED: bool = S::NAMESPACED;
    const DESCRIPTION: &'static str = S::DESCRIPTION;

    fn kind_info() -> KindInfo {
        KindInfo::clone(&Self::shared_kind_info())
    }

    fn shared_kind_info() -> Arc<KindInfo> {
        let described = DESCRIBED.read().unwrap_or_else(PoisonError::into_inner).get(&TypeId::of::<S>()).cloned();
        if let Some(info) = described {
            return info;
        }
        let info = Arc::new(describe::<S>());
        DESCRIBED.write().unwrap_or_else(PoisonError::into_inner).entry(TypeId::of::<S>()).or_insert(info).clone()
    }
}

/// Describes the kind of spec `S`, deriving its schema.
fn describe<S: KindSpec>() -> KindInfo {
    KindInfo {
        group: S::GROUP.to_string(),
        version: S::VERSION.to_string(),
        kind: S::KIND.to_string(),
        plural: S::PLURAL.to_string(),
        singular: S::KIND.to_lowercase(),
        short_names: S::SHORT_NAMES.iter().map(|s| s.to_string()).collect(),
        namespaced: S::NAMESPACED,
        columns: S::printer_columns(),
        subresources: S::subresources(),
        schema: {
            let mut schema = crate::registry::inline_refs(
                &serde_json::to_value(schemars::schema_for!(Object<S, S::Status>)).unwrap_or_default(),
            );
            if let Some(m) = schema.as_object_mut() {
                m.insert("title".into(), S::KIND.into());
                m.insert("description".into(), S::DESCRIPTION.into());
            }
            schema
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{Node, Task};

    #[test]
    fn a_kind_is_described_once_and_its_resource_named_without_its_schema() {
        let (a, b) = (Task::shared_kind_info(), Task::shared_kind_info());
        assert!(Arc::ptr_eq(&a, &b), "the second call derives nothing");
        assert_eq!(*a, describe::<crate::kinds::task::TaskSpec>());
        assert_eq!(Task::kind_info(), *a);
        assert_ne!(*Node::shared_kind_info(), *a, "each kind its own");
        assert_eq!(Task::resource(), a.resource());
        assert_eq!(Node::resource(), Node::kind_info().resource());
    }
}
