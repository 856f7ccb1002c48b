//! A task as the hollow nodes' watch reads it: only what tells whether it is theirs
//! and whether it is the echo of their own write (its node, uid and revision) is
//! decoded as it arrives; the whole [`Task`] is decoded from the kept JSON only when
//! there is work to do. At a due time nearly every event the nodes see is the echo
//! of a status they just wrote, and a simulated agent that decoded each of them
//! whole took CPU from the control plane it shares the machine with.

use corral_api::ApiObject;
use corral_api::kinds::task::Task;
use corral_api::meta::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A watched task: its identity and node decoded, the rest kept as JSON.
#[derive(Clone, Debug)]
pub(super) struct SeenTask {
    /// Name, namespace, uid and resource version only.
    metadata: ObjectMeta,
    /// `spec.nodeName`.
    node: Option<String>,
    /// The task as the server sent it.
    json: Box<RawValue>,
}

impl SeenTask {
    /// The node it is bound to, if any.
    pub(super) fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The whole task.
    ///
    /// # Errors
    /// When the JSON is not a task (the server sent something this bench cannot read).
    pub(super) fn task(&self) -> serde_json::Result<Task> {
        serde_json::from_str(self.json.get())
    }

    /// `task` as the watch would have read it.
    #[cfg(test)]
    pub(super) fn of(task: &Task) -> Self {
        serde_json::from_str(&serde_json::to_string(task).expect("a task encodes")).expect("a task decodes")
    }
}

impl<'de> Deserialize<'de> for SeenTask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            metadata: Meta,
            #[serde(default)]
            spec: Spec,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            #[serde(default)]
            name: String,
            namespace: Option<String>,
            uid: Option<String>,
            resource_version: Option<String>,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Spec {
            node_name: Option<String>,
        }
        let json = Box::<RawValue>::deserialize(d)?;
        let head: Head = serde_json::from_str(json.get()).map_err(serde::de::Error::custom)?;
        let Meta { name, namespace, uid, resource_version } = head.metadata;
        let metadata = ObjectMeta { name, namespace, uid, resource_version, ..Default::default() };
        Ok(SeenTask { metadata, node: head.spec.node_name, json })
    }
}

impl Serialize for SeenTask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl ApiObject for SeenTask {
    fn api_version(&self) -> &str {
        "corral.dev/v1"
    }
    fn kind(&self) -> &str {
        "Task"
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_read_and_the_whole_task_kept() {
        let json = r#"{"apiVersion":"corral.dev/v1","kind":"Task",
            "metadata":{"name":"t","namespace":"ns","uid":"u1","resourceVersion":"42","labels":{"a":"b"}},
            "spec":{"command":["sleep","1"],"nodeName":"n7"},
            "status":{"phase":"RUNNING"}}"#;
        let seen: SeenTask = serde_json::from_str(json).expect("decodes");
        assert_eq!((seen.uid(), seen.revision(), seen.node()), ("u1", 42, Some("n7")));
        assert_eq!((seen.name(), seen.namespace()), ("t", Some("ns")));
        let task = seen.task().expect("the whole task");
        assert_eq!(task.metadata.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(task.spec.node_name.as_deref(), Some("n7"));
        let unbound: SeenTask = serde_json::from_str(r#"{"metadata":{"name":"x"},"spec":{}}"#).expect("decodes");
        assert_eq!(unbound.node(), None);
    }
}
