//! Hollow nodes: a **simulation** of many agents, for scale tests. Each hollow node is
//! registered through the real API, renews its real heartbeat lease, and reports the
//! tasks bound to it `RUNNING` — without starting any process. Everything a hollow node
//! writes says so: the attribute `simulated=true`, the agent version
//! `hollow (simulated)`, and each task's status message. Real agents and hollow nodes
//! can share one cluster; the control plane treats them alike.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use corral_api::kinds::Lease;
use corral_api::kinds::Node;
use corral_api::kinds::node::{NODE_LEASE_NAMESPACE, NodeSpec, NodeStatus, PortRange, Resources};
use corral_api::kinds::task::{AGENT_FINALIZER, Task, TaskPhase};
use corral_client::{Api, Client, ListParams};
use corral_runtime::CancellationToken;
use corral_runtime::watcher::{Seen, watch};
use futures::StreamExt;

/// The attribute that marks a node as simulated.
pub const SIMULATED: &str = "simulated";
/// The agent version hollow nodes report.
pub const AGENT_VERSION: &str = "hollow (simulated)";
/// Requests a hollow cluster has in flight at once while registering or heartbeating.
const CONCURRENCY: usize = 32;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct HollowOptions {
    /// How many nodes.
    pub nodes: usize,
    /// Their names: `PREFIX0`, `PREFIX1`, …
    pub prefix: String,
    /// Each node's capacity.
    pub capacity: Resources,
    /// Each node's host ports.
    pub ports: Vec<PortRange>,
    /// How often each node renews its lease.
    pub heartbeat: Duration,
}

impl Default for HollowOptions {
    fn default() -> Self {
        HollowOptions {
            nodes: 100,
            prefix: "hollow-".into(),
            capacity: Resources { cpus: 4.0, mem: 8192, disk: 65536 },
            ports: vec![PortRange { begin: 31000, end: 32000 }],
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// Registers the hollow nodes, then keeps them alive and realizes their tasks (on
/// paper) until `shutdown` is cancelled.
///
/// # Errors
/// A node could not be registered.
pub async fn run_hollow(client: Client, opts: HollowOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let names: Vec<String> = (0..opts.nodes).map(|i| format!("{}{i}", opts.prefix)).collect();
    let nodes: Api<Node> = Api::all(client.clone());
    // Owned copies in each future: a spawned future may not borrow from its stream.
    let registered = futures::stream::iter(names.clone())
        .map(|n| {
            let (nodes, opts) = (nodes.clone(), opts.clone());
            async move { register(&nodes, &n, &opts).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    registered.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    tracing::info!(nodes = names.len(), "hollow nodes registered (simulated: no process runs on them)");

    let leases: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let beats = {
        let (names, shutdown, interval) = (names.clone(), shutdown.clone(), opts.heartbeat);
        async move {
            while !shutdown.is_cancelled() {
                let round = futures::stream::iter(names.clone())
                    .map(|n| {
                        let leases = leases.clone();
                        async move {
                            if let Err(e) = corral_agent::node::heartbeat(&leases, &n, interval).await {
                                tracing::warn!(node = %n, error = %e, "hollow heartbeat failed");
                            }
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect::<Vec<()>>();
                tokio::select! {
                    _ = round => {}
                    _ = shutdown.cancelled() => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    };

    let ours: Arc<BTreeSet<String>> = Arc::new(names.into_iter().collect());
    let tasks: Api<Task> = Api::all(client.clone());
    let realize = watch(tasks.clone(), ListParams::default(), shutdown.clone(), None, |seen| {
        let (tasks, ours) = (tasks.clone(), ours.clone());
        async move {
            let seen = match seen {
                Seen::Listed { objects, .. } => objects,
                Seen::Applied(t) => vec![t],
                Seen::Deleted(_) | Seen::Bookmark(_) => Vec::new(),
            };
            for task in seen.into_iter().filter(|t| t.spec.node_name.as_ref().is_some_and(|n| ours.contains(n))) {
                if let Err(e) = realize(&tasks, task).await {
                    tracing::debug!(error = %e, "hollow task update failed; the next event retries");
                }
            }
        }
    });
    tokio::join!(beats, realize);
    Ok(())
}

/// Creates the node (or takes over one of the same name) and writes its status.
async fn register(nodes: &Api<Node>, name: &str, opts: &HollowOptions) -> anyhow::Result<()> {
    let attributes = BTreeMap::from([("hostname".to_string(), name.to_string()), (SIMULATED.into(), "true".into())]);
    let spec = NodeSpec { attributes, ..Default::default() };
    let node = match nodes.create(&Node::new(name, spec.clone())).await {
        Ok(n) => n,
        Err(e) if e.is_already_exists() => {
            let mut n = nodes.get(name).await?;
            n.spec.attributes = spec.attributes;
            nodes.update(&n).await?
        }
        Err(e) => return Err(e).with_context(|| format!("registering hollow node {name}")),
    };
    let mut with_status = node;
    let phase = with_status.status.as_ref().map(|s| s.phase).unwrap_or_default();
    with_status.status = Some(NodeStatus {
        phase,
        capacity: opts.capacity,
        port_ranges: opts.ports.clone(),
        address: Some("127.0.0.1".into()),
        agent_endpoint: None,
        agent_version: Some(AGENT_VERSION.into()),
        ..with_status.status.clone().unwrap_or_default()
    });
    nodes.update_status(&with_status).await.with_context(|| format!("writing hollow node {name}'s status"))?;
    Ok(())
}

/// Does on paper what an agent does: takes the task (finalizer), reports it running,
/// and on deletion reports it killed and lets it go.
async fn realize(tasks: &Api<Task>, mut task: Task) -> anyhow::Result<()> {
    let ns = task.metadata.namespace.clone().unwrap_or_default();
    let api = Api::<Task>::namespaced(tasks.client().clone(), &ns);
    let taken = task.metadata.finalizers.iter().any(|f| f == AGENT_FINALIZER);
    let phase = task.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if task.metadata.deletion_timestamp.is_some() {
        if !taken {
            return Ok(());
        }
        if !phase.is_terminal() {
            let st = task.status.get_or_insert_default();
            st.phase = TaskPhase::Killed;
            st.reason = Some("Killed".into());
            st.message = Some("killed: the task was deleted (simulated by a hollow node)".into());
            st.finish_time = Some(corral_api::meta::now_timestamp());
            task = api.update_status(&task).await?;
        }
        task.metadata.finalizers.retain(|f| f != AGENT_FINALIZER);
        api.update(&task).await?;
        return Ok(());
    }
    if phase.is_terminal() || phase == TaskPhase::Running {
        return Ok(());
    }
    if !taken {
        task.metadata.finalizers.push(AGENT_FINALIZER.into());
        task = api.update(&task).await?;
    }
    let st = task.status.get_or_insert_default();
    st.phase = TaskPhase::Running;
    st.start_time = Some(corral_api::meta::now_timestamp());
    st.host_ip = Some("127.0.0.1".into());
    st.message = Some("simulated by a hollow node: no process runs".into());
    api.update_status(&task).await?;
    Ok(())
}
