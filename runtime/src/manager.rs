//! The controller manager: runs a set of controllers in one process, behind one leader
//! election (one `Lease` per manager), with one metrics registry and one shutdown.
//!
//! Built-in controllers and users' own are [`Runnable`]s. The manager registers their
//! metrics once, then — while it leads — runs each under supervision: a controller
//! that fails is logged and started again after a backoff. When leadership is lost,
//! every controller is stopped (reconciles in flight finish) and the manager campaigns
//! again; on shutdown it stops them the same way and releases the lease, so that a
//! standby takes over at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use corral_client::Client;
use corral_telemetry::SharedRegistry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::leader::{LeaderConfig, LeaderElector};

/// A long-running part of a controller manager: one controller, typically.
#[async_trait]
pub trait Runnable: Send + Sync + 'static {
    /// A short name (`garbage-collector`), for logs and metrics labels.
    fn name(&self) -> &str;

    /// Registers the runnable's metrics, once, before it first runs.
    fn register_metrics(&self, _registry: &mut Registry) {}

    /// Runs until `shutdown` is cancelled; then stops taking work, finishes what is in
    /// flight and returns `Ok`. An error (or a return before `shutdown`) makes the
    /// manager start it again after a backoff. It may be run again after a
    /// leadership change, so it keeps no state between runs that the API does not
    /// hold.
    async fn run(&self, client: Client, shutdown: CancellationToken) -> Result<()>;
}

/// How a [`Manager`] runs.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// The leader lease and its timings (namespace, name, this replica's identity).
    pub leader: LeaderConfig,
    /// Whether to campaign for the lease at all. Off: this manager always leads (for
    /// a single replica that must start at once, or for tests).
    pub leader_election: bool,
}

impl ManagerConfig {
    /// A manager named `name` (its lease, in `corral-system`), identified as
    /// `identity` among its replicas, with leader election on.
    pub fn new(name: &str, identity: &str) -> Self {
        ManagerConfig {
            leader: LeaderConfig::new(corral_api::kinds::node::NODE_LEASE_NAMESPACE, name, identity),
            leader_election: true,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ControllerLabel {
    controller: String,
}

/// Runs [`Runnable`]s while leading.
pub struct Manager {
    client: Client,
    config: ManagerConfig,
    runnables: Vec<Arc<dyn Runnable>>,
    registry: SharedRegistry,
    leader: Gauge,
    restarts: Family<ControllerLabel, Counter>,
}

impl Manager {
    /// A manager talking to the API through `client`.
    pub fn new(client: Client, config: ManagerConfig) -> Self {
        let registry = SharedRegistry::new();
        let leader = Gauge::default();
        let restarts = Family::<ControllerLabel, Counter>::default();
        registry.register(|r| {
            r.register("corral_manager_leader", "1 while this controller manager leads, else 0", leader.clone());
            r.register(
                "corral_manager_controller_restarts",
                "Controllers started again after they failed",
                restarts.clone(),
            );
        });
        Manager { client, config, runnables: Vec::new(), registry, leader, restarts }
    }

    /// Adds a runnable and registers its metrics.
    pub fn add(&mut self, runnable: Arc<dyn Runnable>) -> &mut Self {
        self.registry.register(|r| runnable.register_metrics(r));
        self.runnables.push(runnable);
        self
    }

    /// The registry every runnable's metrics are in: serve it (see
    /// [`corral_telemetry::exposition::router`]) or hand it to a server that serves it.
    pub fn registry(&self) -> SharedRegistry {
        self.registry.clone()
    }

    /// Names of the runnables, in the order they were added.
    pub fn names(&self) -> Vec<String> {
        self.runnables.iter().map(|r| r.name().to_string()).collect()
    }

    /// Runs until `shutdown` is cancelled: campaigns, runs every runnable while
    /// leading, stops them when leadership is lost and campaigns again.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut elector = LeaderElector::new(self.client.clone(), self.config.leader.clone());
        while !shutdown.is_cancelled() {
            if self.config.leader_election && !elector.acquire(&shutdown).await {
                break;
            }
            self.leader.set(1);
            let leading = shutdown.child_token();
            let tasks: Vec<_> = self.runnables.iter().map(|r| self.supervise(r.clone(), leading.clone())).collect();
            if self.config.leader_election {
                if let Err(e) = elector.keep(&leading).await {
                    tracing::warn!(error = %e, "leadership lost: stopping every controller");
                }
            } else {
                leading.cancelled().await;
            }
            leading.cancel();
            for t in tasks {
                let _ = t.await;
            }
            self.leader.set(0);
        }
        if self.config.leader_election {
            elector.release().await;
        }
        tracing::info!("controller manager stopped");
    }

    /// Runs `r` until `leading` is cancelled, starting it again after failures.
    fn supervise(&self, r: Arc<dyn Runnable>, leading: CancellationToken) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let restarts = self.restarts.get_or_create(&ControllerLabel { controller: r.name().to_string() }).clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                tracing::info!(controller = r.name(), "starting");
                let outcome = r.run(client.clone(), leading.clone()).await;
                if leading.is_cancelled() {
                    return;
                }
                failures = failures.saturating_add(1);
                let delay = crate::queue::backoff_delay(Duration::from_millis(200), Duration::from_secs(30), failures);
                match outcome {
                    Ok(()) => tracing::warn!(controller = r.name(), ?delay, "controller returned early; restarting"),
                    Err(e) => {
                        tracing::warn!(controller = r.name(), error = %e, ?delay, "controller failed; restarting")
                    }
                }
                restarts.inc();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = leading.cancelled() => return,
                }
            }
        })
    }
}
