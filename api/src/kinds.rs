//! The built-in kinds served by every Corral server.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::resource::{Object, Resource};

/// Desired state of a [`Namespace`]; namespaces have none yet.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSpec {}

/// Observed state of a [`Namespace`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceStatus {
    /// `Active` or `Terminating`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A scope for names of namespaced objects. Cluster-scoped; `default` always exists.
pub type Namespace = Object<NamespaceSpec, NamespaceStatus>;

impl Resource for Namespace {
    const KIND: &'static str = "Namespace";
    const PLURAL: &'static str = "namespaces";
    const SHORT_NAMES: &'static [&'static str] = &["ns"];
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str =
        "A scope for the names of namespaced objects. Cluster-scoped; `default` always exists.";
}

/// Desired state of a [`ConfigMap`]: configuration data for tasks and services.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapSpec {
    /// Configuration entries, each a UTF-8 string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// Observed state of a [`ConfigMap`]; nothing is observed about one yet.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapStatus {}

/// Named configuration data, namespaced.
pub type ConfigMap = Object<ConfigMapSpec, ConfigMapStatus>;

impl Resource for ConfigMap {
    const KIND: &'static str = "ConfigMap";
    const PLURAL: &'static str = "configmaps";
    const SHORT_NAMES: &'static [&'static str] = &["cm"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str = "Named configuration data (string key/value pairs) for tasks and services.";
}

/// Whether objects of a custom kind live in a namespace or are cluster-scoped.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResourceScope {
    /// Objects live in a namespace.
    #[default]
    Namespaced,
    /// Objects are cluster-scoped.
    Cluster,
}

/// The JSON Schemas of a custom kind's `spec` and `status`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResourceSchema {
    /// JSON Schema (2020-12) of the objects' `spec`, used as given: write
    /// `additionalProperties: false` on object nodes to reject unknown fields. Absent:
    /// any object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// JSON Schema (2020-12) of the objects' `status`. Absent: any object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// Desired state of a [`CustomResourceDefinition`]: the kind to serve.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResourceDefinitionSpec {
    /// API group of the kind, a DNS subdomain such as `example.com`.
    pub group: String,
    /// Version within the group, e.g. `v1`.
    pub version: String,
    /// Kind name in CamelCase, e.g. `Widget`.
    pub kind: String,
    /// Lowercase plural used in URLs, e.g. `widgets`.
    pub plural: String,
    /// Lowercase singular; defaults to the kind in lowercase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub singular: Option<String>,
    /// Short aliases accepted by the CLI, e.g. `wd`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short_names: Vec<String>,
    /// `Namespaced` (the default) or `Cluster`.
    #[serde(default)]
    pub scope: ResourceScope,
    /// What the kind is for; shown by `corral explain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schemas of the objects' `spec` and `status`.
    #[serde(default)]
    pub schema: CustomResourceSchema,
}

/// Observed state of a [`CustomResourceDefinition`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResourceDefinitionStatus {
    /// Whether the kind is served.
    #[serde(default)]
    pub accepted: bool,
    /// Why the kind is not served, or what is happening to it (e.g. terminating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A custom kind, served at `/apis/{group}/{version}/...` as soon as it is created.
/// Cluster-scoped; its name must be `{plural}.{group}`.
pub type CustomResourceDefinition = Object<CustomResourceDefinitionSpec, CustomResourceDefinitionStatus>;

impl Resource for CustomResourceDefinition {
    const KIND: &'static str = "CustomResourceDefinition";
    const PLURAL: &'static str = "customresourcedefinitions";
    const SHORT_NAMES: &'static [&'static str] = &["crd", "crds"];
    const NAMESPACED: bool = false;
    const DESCRIPTION: &'static str = "A custom kind served by the API like a built-in one, validated against its JSON \
         Schema. Cluster-scoped; named `{plural}.{group}`. Deleting it deletes every object of the kind.";
}

/// Desired state of a [`Lease`]: who holds it and until when.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseSpec {
    /// Identity of the current holder; absent when nobody holds the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// How long, after `renewTime`, the holder keeps the lease without renewing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i64>,
    /// When the current holder acquired the lease (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    /// When the current holder last renewed the lease (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// How many times the lease changed holders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i64>,
}

/// Observed state of a [`Lease`]; the spec says everything.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseStatus {}

/// A lease held by one of several replicas at a time, for leader election. Namespaced.
pub type Lease = Object<LeaseSpec, LeaseStatus>;

impl Resource for Lease {
    const KIND: &'static str = "Lease";
    const PLURAL: &'static str = "leases";
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str =
        "A lease held by one replica at a time, renewed periodically; used for leader election.";
}

/// The object an [`Event`] is about.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    /// `apiVersion` of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// Namespace of the object; absent for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the object.
    pub name: String,
    /// uid of the object, telling its incarnations apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Whether an [`Event`] is routine or needs attention.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventType {
    /// Routine: things happening as expected.
    #[default]
    Normal,
    /// Something needs attention.
    Warning,
}

/// Which component reported an [`Event`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSource {
    /// Name of the component, e.g. `service-controller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

/// What an [`Event`] reports.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSpec {
    /// The object the event is about.
    pub involved_object: ObjectReference,
    /// Short CamelCase reason a program can match, e.g. `Scheduled`.
    pub reason: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// `Normal` or `Warning`.
    #[serde(default, rename = "type")]
    pub type_: EventType,
    /// How many times this event occurred; repeats bump it instead of adding events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// When it first occurred (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<String>,
    /// When it last occurred (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<String>,
    /// Who reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
}

/// Observed state of an [`Event`]; events are records and observe nothing.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventStatus {}

/// Something that happened to an object, reported by a controller. Namespaced (in the
/// object's namespace, or `default` for cluster-scoped objects).
pub type Event = Object<EventSpec, EventStatus>;

impl Resource for Event {
    const KIND: &'static str = "Event";
    const PLURAL: &'static str = "events";
    const SHORT_NAMES: &'static [&'static str] = &["ev"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str =
        "Something that happened to an object (reason, message, count), reported by a controller.";
}

/// The kinds every server serves, in discovery order.
pub fn builtin_kinds() -> Vec<crate::KindInfo> {
    vec![
        Namespace::kind_info(),
        ConfigMap::kind_info(),
        CustomResourceDefinition::kind_info(),
        Lease::kind_info(),
        Event::kind_info(),
        crate::node::Node::kind_info(),
        crate::task::Task::kind_info(),
    ]
}
