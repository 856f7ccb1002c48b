//! `Event`: something that happened to an object, reported by a controller.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{ColumnType, PrinterColumn};
use crate::resource::{KindSpec, Object};

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

impl KindSpec for EventSpec {
    type Status = EventStatus;

    const KIND: &'static str = "Event";
    const PLURAL: &'static str = "events";
    const SHORT_NAMES: &'static [&'static str] = &["ev"];
    const NAMESPACED: bool = true;
    const DESCRIPTION: &'static str =
        "Something that happened to an object (reason, message, count), reported by a controller.";

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![
            PrinterColumn::new("TYPE", ".spec.type", ColumnType::String),
            PrinterColumn::new("REASON", ".spec.reason", ColumnType::String),
            PrinterColumn::new("OBJECT", ".spec.involvedObject", ColumnType::Reference),
            PrinterColumn::new("COUNT", ".spec.count", ColumnType::Integer),
            PrinterColumn::new("MESSAGE", ".spec.message", ColumnType::String),
        ]
    }
}
