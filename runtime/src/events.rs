//! Recording `Event`s about objects: what a controller did or failed to do, for
//! `corral describe` and `corral get events`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use corral_api::ApiObject;
pub use corral_api::kinds::event::EventType;
use corral_api::kinds::event::{Event, EventSource, EventSpec, ObjectReference};
use corral_client::{Api, Client};

use crate::error::Result;

/// Publishes events on behalf of one component. Repeats of the same event (same
/// object, type, reason and message) bump its `count` instead of piling up.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
}

impl Recorder {
    /// A recorder for `component` (e.g. `service-controller`).
    pub fn new(client: Client, component: &str) -> Self {
        Recorder { client, component: component.to_string() }
    }

    /// Records an event about `object` (any kind; its namespace, or `default` for
    /// cluster-scoped objects, holds the event).
    pub async fn publish(
        &self,
        object: &impl ApiObject,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        let meta = object.meta();
        let ns = meta.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let type_ = match event_type {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let mut h = DefaultHasher::new();
        (meta.uid.as_deref(), object.kind(), type_, reason, message, &self.component).hash(&mut h);
        let event_name = format!("{}-{:016x}", meta.name.chars().take(40).collect::<String>(), h.finish());
        let now = corral_api::meta::now_timestamp();
        // Bounded: a conflict means another replica bumped it at the same moment.
        for _ in 0..5 {
            match events.get_opt(&event_name).await? {
                Some(mut existing) => {
                    existing.spec.count = Some(existing.spec.count.unwrap_or(1) + 1);
                    existing.spec.last_timestamp = Some(now.clone());
                    match events.update(&existing).await {
                        Err(e) if e.is_conflict() => continue,
                        other => return other.map(|_| ()).map_err(Into::into),
                    }
                }
                None => {
                    let spec = EventSpec {
                        involved_object: ObjectReference {
                            api_version: object.api_version().to_string(),
                            kind: object.kind().to_string(),
                            namespace: meta.namespace.clone(),
                            name: meta.name.clone(),
                            uid: meta.uid.clone(),
                        },
                        reason: reason.to_string(),
                        message: message.to_string(),
                        type_: event_type,
                        count: Some(1),
                        first_timestamp: Some(now.clone()),
                        last_timestamp: Some(now.clone()),
                        source: Some(EventSource { component: Some(self.component.clone()) }),
                    };
                    match events.create(&Event::namespaced(ns, event_name.clone(), spec)).await {
                        Err(e) if e.code() == Some(409) => continue,
                        other => return other.map(|_| ()).map_err(Into::into),
                    }
                }
            }
        }
        Ok(())
    }
}
