//! Recording `Event`s about objects: what a controller did or failed to do, for
//! `corral describe` and `corral get events`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use crate::client::Client;
use crate::error::Result;

/// Whether an event is routine or needs attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Things happening as expected.
    Normal,
    /// Something needs attention.
    Warning,
}

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
    pub async fn publish(&self, object: &Value, event_type: EventType, reason: &str, message: &str) -> Result<()> {
        let kind = self.client.kind("events").await?;
        let meta = &object["metadata"];
        let name = meta["name"].as_str().unwrap_or_default();
        let ns = meta["namespace"].as_str().unwrap_or("default");
        let type_ = match event_type {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let mut h = DefaultHasher::new();
        (meta["uid"].as_str(), object["kind"].as_str(), type_, reason, message, &self.component).hash(&mut h);
        let event_name = format!("{}-{:016x}", name.chars().take(40).collect::<String>(), h.finish());
        let now = corral_api::meta::now_timestamp();
        // Bounded: a conflict means another replica bumped it at the same moment.
        for _ in 0..5 {
            match self.client.get(&kind, Some(ns), &event_name).await? {
                Some(mut existing) => {
                    let count = existing.pointer("/spec/count").and_then(Value::as_i64).unwrap_or(1);
                    existing["spec"]["count"] = json!(count + 1);
                    existing["spec"]["lastTimestamp"] = json!(now);
                    match self.client.update(&kind, &existing).await {
                        Err(e) if e.is_conflict() => continue,
                        other => return other.map(|_| ()),
                    }
                }
                None => {
                    let mut involved = json!({
                        "apiVersion": object["apiVersion"], "kind": object["kind"], "name": name,
                    });
                    if let Some(n) = meta["namespace"].as_str() {
                        involved["namespace"] = json!(n);
                    }
                    if let Some(u) = meta["uid"].as_str() {
                        involved["uid"] = json!(u);
                    }
                    let event = json!({
                        "apiVersion": kind.api_version(), "kind": kind.kind,
                        "metadata": {"name": event_name, "namespace": ns},
                        "spec": {"involvedObject": involved, "reason": reason, "message": message, "type": type_,
                                 "count": 1, "firstTimestamp": now, "lastTimestamp": now,
                                 "source": {"component": self.component}},
                    });
                    match self.client.create(&kind, &event).await {
                        Err(crate::Error::Api { code: 409, .. }) => continue,
                        other => return other.map(|_| ()),
                    }
                }
            }
        }
        Ok(())
    }
}
