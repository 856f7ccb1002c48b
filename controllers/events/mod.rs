//! The event expiry controller: deletes each `Event` a time to live (an hour by
//! default, as Kubernetes keeps them; `--event-ttl`) after it last occurred, so that records of task ends, kills
//! and deletions do not pile up in the store without end (a job firing every ten
//! seconds adds one each run).
//!
//! Wiring: the primary kind is `Event`, in every namespace; each reconcile asks
//! [`decide::decide`] whether the event has expired, deletes it if so (conditional on
//! the revision read, so a repeat recorded meanwhile keeps it), and otherwise asks to
//! be woken when it will have.

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use corral_api::kinds::Event;
use corral_client::{Api, Client, DeleteParams, ListParams};
use corral_runtime::{Action, CancellationToken, Controller, Runnable};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use self::decide::Step;

/// The controller's name, in logs and metrics.
pub const NAME: &str = "event-expiry";

/// Settings of the event expiry controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long an event is kept after it last occurred.
    pub ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        // As Kubernetes (the API server's --event-ttl).
        Config { ttl: Duration::from_secs(3600) }
    }
}

/// The event expiry controller, for a [`corral_runtime::Manager`].
pub struct EventExpiry {
    config: Config,
    // What an operator asks of it: Events deleted.
    deleted: Counter,
}

impl EventExpiry {
    /// The controller with `config`.
    pub fn new(config: Config) -> Self {
        EventExpiry { config, deleted: Counter::default() }
    }
}

struct Ctx {
    client: Client,
    ttl: Duration,
    deleted: Counter,
}

#[async_trait]
impl Runnable for EventExpiry {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register("corral_events_expired", "Events deleted after their time to live", self.deleted.clone());
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        let ctx = Arc::new(Ctx { client: client.clone(), ttl: self.config.ttl, deleted: self.deleted.clone() });
        Controller::new(Api::<Event>::all(client), ListParams::default())
            .run(reconcile, error_policy, ctx, shutdown)
            .await;
        Ok(())
    }
}

/// Deletes one expired event, or waits until it expires.
async fn reconcile(event: Arc<Event>, ctx: Arc<Ctx>) -> corral_client::Result<Action> {
    let m = &event.metadata;
    let times =
        [event.spec.last_timestamp.as_deref(), event.spec.first_timestamp.as_deref(), m.creation_timestamp.as_deref()];
    match decide::decide(&times, corral_api::table::now_unix(), ctx.ttl) {
        Step::KeepFor(d) => Ok(Action::requeue(d)),
        Step::Delete => {
            let api: Api<Event> = Api::namespaced(ctx.client.clone(), m.namespace.as_deref().unwrap_or("default"));
            let rv = m.resource_version.as_deref().and_then(|rv| rv.parse().ok());
            let params = match rv {
                Some(rv) => DeleteParams::default().if_unchanged(rv, m.uid.as_deref()),
                None => DeleteParams::default(),
            };
            match api.delete(&m.name, &params).await {
                // Gone already, or repeated since it was read: its own event decides again.
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e),
                Ok(_) => {
                    ctx.deleted.inc();
                    tracing::debug!(event = %m.name, "expired event deleted");
                }
            }
            Ok(Action::await_change())
        }
    }
}

fn error_policy(_event: &Arc<Event>, _e: &corral_client::Error, _ctx: &Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_secs(5))
}
