//! The node lifecycle controller: judges each node's reachability from its heartbeat
//! `Lease` and marks the tasks of an unreachable node `LOST`.
//!
//! A node is reachable while its agent keeps renewing the lease `corral-system/<node>`.
//! Renewals are judged on this controller's own monotonic clock — by how long it has
//! seen the same lease record — so clock skew between machines cannot make a live node
//! look dead. After `grace_period` without a renewal the node becomes `Unreachable`
//! and each of its non-terminal tasks becomes `LOST` with reason `NodeUnreachable`;
//! whether to replace them is the owning framework's decision. When the agent renews
//! again the node is `Ready` again (its agent then kills the tasks it finds `LOST`).
//! Deleting a task of an unreachable node completes without waiting for its agent.
//!
//! Every node gets a full grace period from the moment this controller starts, so a
//! restarted control plane does not condemn nodes it simply has not heard from yet.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use corral_api::node::{NODE_LEASE_NAMESPACE, Node, NodePhase};
use corral_api::task::{Task, TaskPhase};
use corral_api::{KindInfo, Resource};
use serde_json::Value;
use tokio::sync::watch;

use crate::ObjectRef;
use crate::reflector::{Reflector, by_field};
use crate::{Client, Result};

/// Settings of the node lifecycle controller.
#[derive(Clone, Debug)]
pub struct NodeLifecycleConfig {
    /// How long a node may go without renewing its lease before it is unreachable.
    pub grace_period: Duration,
    /// How often nodes are judged.
    pub check_interval: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        // As Kubernetes: 40 s grace, checks every 5 s.
        NodeLifecycleConfig { grace_period: Duration::from_secs(40), check_interval: Duration::from_secs(5) }
    }
}

/// The lease record last seen for a node, and since when this controller has seen it.
struct Observed {
    record: Option<String>,
    since: Instant,
}

/// Runs the controller until `stop` turns true.
pub async fn run(client: Client, config: NodeLifecycleConfig, stop: watch::Receiver<bool>) -> Result<()> {
    let nodes_kind = client.kind(Node::PLURAL).await?;
    let leases_kind = client.kind("leases").await?;
    let tasks_kind = client.kind(Task::PLURAL).await?;
    let nodes = Reflector::new(client.clone(), nodes_kind.clone(), None, "");
    let lease_resource = leases_kind.resource();
    let leases = Reflector::new(client.clone(), leases_kind, Some(NODE_LEASE_NAMESPACE.to_string()), "");
    let tasks = Reflector::new(client.clone(), tasks_kind.clone(), None, "").index("node", by_field("/spec/nodeName"));
    let (node_cache, lease_cache, task_cache) = (nodes.cache(), leases.cache(), tasks.cache());
    let mut handles = vec![
        tokio::spawn(nodes.run(stop.clone(), |_| {})),
        tokio::spawn(leases.run(stop.clone(), |_| {})),
        tokio::spawn(tasks.run(stop.clone(), |_| {})),
    ];
    let mut stop_rx = stop.clone();
    let synced = async {
        node_cache.wait_synced().await;
        lease_cache.wait_synced().await;
        task_cache.wait_synced().await;
    };
    tokio::select! {
        _ = synced => {}
        _ = stop_rx.wait_for(|s| *s) => {}
    }
    let mut observed: HashMap<String, Observed> = HashMap::new();
    let mut tick = tokio::time::interval(config.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop_rx.wait_for(|s| *s) => break,
        }
        let now = Instant::now();
        let mut seen = Vec::new();
        for node in node_cache.list() {
            let Some(name) = node.pointer("/metadata/name").and_then(Value::as_str) else { continue };
            seen.push(name.to_string());
            let lease = lease_cache.get(&ObjectRef::namespaced(lease_resource.clone(), NODE_LEASE_NAMESPACE, name));
            let record = lease.as_ref().and_then(|l| l.pointer("/metadata/resourceVersion")).map(|v| v.to_string());
            let obs = observed.entry(name.to_string()).or_insert(Observed { record: record.clone(), since: now });
            if obs.record != record {
                *obs = Observed { record, since: now };
            }
            let reachable = obs.record.is_some() && now.duration_since(obs.since) < config.grace_period;
            let unheard = now.duration_since(obs.since) >= config.grace_period;
            let result = if reachable {
                set_phase(&client, &nodes_kind, &node, NodePhase::Ready, "the agent renews its lease").await
            } else if unheard {
                let msg = format!("no heartbeat for {}s", config.grace_period.as_secs());
                let r = set_phase(&client, &nodes_kind, &node, NodePhase::Unreachable, &msg).await;
                for task in task_cache.by_index("node", name) {
                    let r = if task.pointer("/metadata/deletionTimestamp").is_some() {
                        release(&client, &tasks_kind, &task).await
                    } else {
                        mark_lost(&client, &tasks_kind, &task, name).await
                    };
                    if let Err(e) = r {
                        tracing::warn!(node = name, error = %e, "cannot mark a task LOST or release it; will retry");
                    }
                }
                r
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::warn!(node = name, error = %e, "cannot update the node's phase; will retry");
            }
        }
        observed.retain(|n, _| seen.contains(n));
    }
    for h in handles.drain(..) {
        let _ = h.await;
    }
    Ok(())
}

/// Writes the node's phase when it differs, compare-and-swap on the cached version
/// (a conflict just waits for the next tick).
async fn set_phase(client: &Client, kind: &KindInfo, node: &Value, phase: NodePhase, message: &str) -> Result<()> {
    let current: Option<NodePhase> = node.pointer("/status/phase").and_then(|p| serde_json::from_value(p.clone()).ok());
    if current == Some(phase) {
        return Ok(());
    }
    let mut updated = node.clone();
    let status =
        updated.as_object_mut().map(|o| o.entry("status").or_insert_with(|| Value::Object(Default::default())));
    if let Some(Value::Object(s)) = status {
        s.insert("phase".into(), serde_json::to_value(phase).unwrap_or_default());
        s.insert("message".into(), message.into());
        s.insert("lastTransitionTime".into(), corral_api::meta::now_timestamp().into());
    }
    tracing::info!(node = ?node.pointer("/metadata/name"), ?phase, message, "node phase changes");
    match client.update_status(kind, &updated).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Marks a non-terminal task of an unreachable node `LOST`.
async fn mark_lost(client: &Client, kind: &KindInfo, task: &Value, node: &str) -> Result<()> {
    let phase: TaskPhase =
        task.pointer("/status/phase").and_then(|p| serde_json::from_value(p.clone()).ok()).unwrap_or_default();
    if phase.is_terminal() {
        return Ok(());
    }
    let mut updated = task.clone();
    let status =
        updated.as_object_mut().map(|o| o.entry("status").or_insert_with(|| Value::Object(Default::default())));
    if let Some(Value::Object(s)) = status {
        s.insert("phase".into(), serde_json::to_value(TaskPhase::Lost).unwrap_or_default());
        s.insert("reason".into(), "NodeUnreachable".into());
        s.insert("message".into(), format!("node {node} stopped sending heartbeats").into());
        s.insert("finishTime".into(), corral_api::meta::now_timestamp().into());
    }
    tracing::info!(task = ?task.pointer("/metadata/name"), node, "task LOST: its node is unreachable");
    match client.update_status(kind, &updated).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Lets the deletion of a task of an unreachable node complete: its agent, which would
/// remove its finalizer once the task is stopped, may never come back. Should it
/// return, it kills whatever runs without an object.
async fn release(client: &Client, kind: &KindInfo, task: &Value) -> Result<()> {
    let Some(finalizers) = task.pointer("/metadata/finalizers").and_then(Value::as_array) else { return Ok(()) };
    if !finalizers.iter().any(|f| f == corral_api::task::AGENT_FINALIZER) {
        return Ok(());
    }
    let mut updated = task.clone();
    if let Some(Value::Array(f)) = updated.pointer_mut("/metadata/finalizers") {
        f.retain(|f| f != corral_api::task::AGENT_FINALIZER);
    }
    tracing::info!(task = ?task.pointer("/metadata/name"), "releasing a deleted task of an unreachable node");
    match client.update(kind, &updated).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Spawns [`run`], logging a failure to start.
pub fn spawn(client: Client, config: NodeLifecycleConfig, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = run(client, config, stop).await {
            tracing::error!(error = %e, "node lifecycle controller stopped");
        }
    })
}
