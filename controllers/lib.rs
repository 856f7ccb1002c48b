//! Corral's built-in controllers, one folder each, all in one shape:
//!
//! - `mod.rs` wires watches and caches to a reconcile, and implements
//!   [`corral_runtime::Runnable`] so that a [`corral_runtime::Manager`] runs it;
//! - `decide.rs` is a pure function from an observed snapshot (and the clock, passed
//!   in) to the steps to take, tested by tables and property tests without I/O;
//! - the reconcile applies those steps through [`corral_client`] — never the store:
//!   in `corral up` and `corral server` the client reaches the API server in the same
//!   process, and `corral controllers --server URL` runs the same set elsewhere.
//!
//! The controllers: [`gc`] (cascading deletion, namespace emptying),
//! [`node_lifecycle`] (unreachable nodes, `LOST` tasks), [`offers`] (nodes' free
//! resources offered to frameworks in weighted DRF order, framework liveness and
//! failover), [`services`] (the built-in framework keeping services running),
//! [`jobs`] (the built-in framework running jobs, by hand and on schedules) and
//! [`events`] (Events deleted an hour after they last occurred) and [`sync`] (GitOps:
//! git repositories and directories kept applied). [`dns`] (the cluster
//! DNS zone) is not among them: it runs beside every API server, outside leader
//! election, and is started on its own. Offers, services and
//! jobs work in rounds over the whole cluster rather than per object.

#![warn(missing_docs)]

pub mod dns;
pub mod events;
pub mod gc;
pub mod jobs;
pub mod node_lifecycle;
pub mod offers;
pub mod services;
pub mod sync;
pub mod volumes;

mod error;
pub mod happenings;
pub mod matching;
mod registration;
mod rounds;
mod shared_tasks;

pub use error::{Error, Result};
pub use shared_tasks::SharedTasks;

use std::sync::Arc;
use std::time::Duration;

use corral_runtime::Runnable;

/// Settings of the built-in controllers.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The garbage collector's.
    pub gc: gc::Config,
    /// The node lifecycle controller's.
    pub node_lifecycle: node_lifecycle::Config,
    /// The offers controller's.
    pub offers: offers::Config,
    /// The services controller's.
    pub services: services::Config,
    /// The event expiry controller's.
    pub events: events::Config,
    /// The sync controller's.
    pub sync: sync::Config,
}

impl Config {
    /// Defaults, with `grace` as the node grace period.
    pub fn with_node_grace_period(grace: Duration) -> Self {
        Config { node_lifecycle: node_lifecycle::Config { grace_period: grace }, ..Default::default() }
    }
}

/// The names of every built-in controller, as `--controllers` takes them.
pub const NAMES: &[&str] = &[
    gc::NAME,
    node_lifecycle::NAME,
    offers::NAME,
    services::NAME,
    jobs::NAME,
    events::NAME,
    volumes::NAME,
    sync::NAME,
];

/// Which built-in controllers to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every one.
    All,
    /// Only these (names from [`NAMES`]).
    Only(Vec<String>),
}

impl Selection {
    /// Parses `--controllers`: `all` (or empty), `none`, or a comma-separated list of
    /// names.
    ///
    /// # Errors
    /// A name that is not a built-in controller, with the list of those that are.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "all" | "*" => Ok(Selection::All),
            "none" => Ok(Selection::Only(Vec::new())),
            list => {
                let names: Vec<String> =
                    list.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
                if let Some(bad) = names.iter().find(|n| !NAMES.contains(&n.as_str())) {
                    return Err(format!(
                        "{bad:?} is not a built-in controller; choose among {}, or all, or none",
                        NAMES.join(", ")
                    ));
                }
                Ok(Selection::Only(names))
            }
        }
    }

    /// Whether the controller `name` is selected.
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// The built-in controllers that act as a user of their own, least-privileged
/// (the server's bootstrap binds each to a ClusterRole of that name), rather than
/// as the controller manager: controller name, user.
pub const OWN_IDENTITIES: &[(&str, &str)] = &[(volumes::NAME, volumes::USER)];

/// `controllers`, those named in [`OWN_IDENTITIES`] given a client of their own,
/// `client_as(user)`, which they run with instead of the manager's.
pub fn with_own_identities(
    controllers: Vec<Arc<dyn Runnable>>,
    client_as: impl Fn(&str) -> corral_client::Client,
) -> Vec<Arc<dyn Runnable>> {
    controllers
        .into_iter()
        .map(|c| match OWN_IDENTITIES.iter().find(|(name, _)| *name == c.name()) {
            Some((_, user)) => Arc::new(OwnClient { inner: c, client: client_as(user) }) as Arc<dyn Runnable>,
            None => c,
        })
        .collect()
}

/// A controller run with a client of its own.
struct OwnClient {
    inner: Arc<dyn Runnable>,
    client: corral_client::Client,
}

#[async_trait::async_trait]
impl Runnable for OwnClient {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.register_metrics(registry);
    }

    async fn run(
        &self,
        _manager_client: corral_client::Client,
        shutdown: corral_runtime::CancellationToken,
    ) -> corral_runtime::Result<()> {
        self.inner.run(self.client.clone(), shutdown).await
    }
}

/// The selected built-in controllers, ready to add to a manager.
pub fn builtin(config: &Config, selection: &Selection) -> Vec<Arc<dyn Runnable>> {
    builtin_sharing(config, selection, Arc::default())
}

/// The selected built-in controllers, keeping their one copy of the cluster's tasks
/// in `tasks` (which other controllers of the process may share).
pub fn builtin_sharing(config: &Config, selection: &Selection, tasks: Arc<SharedTasks>) -> Vec<Arc<dyn Runnable>> {
    let mut out: Vec<Arc<dyn Runnable>> = Vec::new();
    if selection.includes(gc::NAME) {
        out.push(Arc::new(gc::GarbageCollector::new(config.gc.clone())));
    }
    if selection.includes(node_lifecycle::NAME) {
        out.push(Arc::new(node_lifecycle::NodeLifecycle::new(config.node_lifecycle.clone()).sharing(tasks.clone())));
    }
    if selection.includes(offers::NAME) {
        out.push(Arc::new(offers::Offers::new(config.offers.clone()).sharing(tasks.clone())));
    }
    if selection.includes(services::NAME) {
        out.push(Arc::new(services::Services::new(config.services.clone()).sharing(tasks.clone())));
    }
    if selection.includes(volumes::NAME) {
        out.push(Arc::new(volumes::Volumes::new().sharing(tasks.clone())));
    }
    if selection.includes(jobs::NAME) {
        out.push(Arc::new(jobs::Jobs::new().sharing(tasks)));
    }
    if selection.includes(events::NAME) {
        out.push(Arc::new(events::EventExpiry::new(config.events.clone())));
    }
    if selection.includes(sync::NAME) {
        out.push(Arc::new(sync::Syncs::new(config.sync.clone())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_and_name_what_is_wrong() {
        assert_eq!(Selection::parse("all"), Ok(Selection::All));
        assert_eq!(Selection::parse("none"), Ok(Selection::Only(vec![])));
        let s = Selection::parse("garbage-collector").expect("parses");
        assert!(s.includes(gc::NAME) && !s.includes(node_lifecycle::NAME));
        let e = Selection::parse("gc,dns").expect_err("unknown names");
        assert!(e.contains("\"gc\"") && e.contains("node-lifecycle"), "{e}");
        assert_eq!(builtin(&Config::default(), &Selection::All).len(), NAMES.len());
    }
}
