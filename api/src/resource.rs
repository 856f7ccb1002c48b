//! Typed objects: the envelope shared by built-in kinds and the trait that describes
//! a kind to the registry.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::meta::ObjectMeta;
use crate::registry::KindInfo;

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

/// A kind with a typed representation. Implemented by every built-in kind; custom
/// controllers may implement it for their own custom kinds.
pub trait Resource: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static {
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

    /// Describes the kind for the registry, with its JSON Schema derived from the type.
    fn kind_info() -> KindInfo {
        KindInfo {
            group: Self::GROUP.to_string(),
            version: Self::VERSION.to_string(),
            kind: Self::KIND.to_string(),
            plural: Self::PLURAL.to_string(),
            singular: Self::KIND.to_lowercase(),
            short_names: Self::SHORT_NAMES.iter().map(|s| s.to_string()).collect(),
            namespaced: Self::NAMESPACED,
            schema: {
                let mut schema = crate::registry::inline_refs(
                    &serde_json::to_value(schemars::schema_for!(Self)).unwrap_or_default(),
                );
                if let Some(m) = schema.as_object_mut() {
                    m.insert("title".into(), Self::KIND.into());
                    m.insert("description".into(), Self::DESCRIPTION.into());
                }
                schema
            },
        }
    }
}
