//! The controller manager: `corral controllers` runs it on its own; `corral up` and
//! `corral server` run it beside the API server, in the same process.

use std::time::Duration;

use anyhow::Context as _;
use corral_controllers::Selection;
use corral_runtime::{CancellationToken, Manager, ManagerConfig};

use super::args::{ControllersArgs, ManagerArgs};

/// The lease the controller managers of a cluster campaign for.
pub(crate) const MANAGER_LEASE: &str = "corral-controller-manager";

/// A manager with the built-in controllers `args` selects, talking through `client`;
/// `None` when none is selected.
/// The controllers keep their one copy of the cluster's tasks in `tasks`.
/// `client_as`, where given, makes the clients of the controllers that act as users
/// of their own ([`corral_controllers::OWN_IDENTITIES`]); otherwise they act as the
/// manager.
pub(crate) fn manager(
    client: corral_client::Client,
    args: &ManagerArgs,
    identity: &str,
    client_as: Option<&dyn Fn(&str) -> corral_client::Client>,
    tasks: std::sync::Arc<corral_controllers::SharedTasks>,
    sync_work_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<Manager>> {
    let selection = Selection::parse(&args.controllers).map_err(|e| anyhow::anyhow!("--controllers: {e}"))?;
    let mut config =
        corral_controllers::Config::with_node_grace_period(Duration::from_secs(args.node_grace_period.max(1)));
    config.events.ttl = Duration::from_secs(args.event_ttl);
    config.sync.work_dir = sync_work_dir;
    config.sync.directory_allow = args.sync_directory_allow.clone();
    let mut controllers = corral_controllers::builtin_sharing(&config, &selection, tasks);
    if let Some(client_as) = client_as {
        controllers = corral_controllers::with_own_identities(controllers, client_as);
    }
    if controllers.is_empty() {
        return Ok(None);
    }
    let mut manager = Manager::new(client, ManagerConfig::new(MANAGER_LEASE, identity));
    for c in controllers {
        manager.add(c);
    }
    tracing::info!(controllers = ?manager.names(), identity, "controller manager configured");
    Ok(Some(manager))
}

/// `corral controllers`: the manager against a remote server, until SIGINT/SIGTERM.
pub(crate) async fn run(conn: &corral_client::Config, a: ControllersArgs) -> anyhow::Result<()> {
    let client = corral_client::Client::from_config(conn).with_context(|| format!("bad --server {}", conn.server))?;
    let identity =
        a.identity.clone().unwrap_or_else(|| format!("{}-{}", corral_agent::node::hostname(), std::process::id()));
    // A remote manager has one credential: every controller acts as it.
    let Some(manager) = manager(client, &a.manager, &identity, None, Default::default(), None)? else {
        anyhow::bail!("--controllers none: nothing to run");
    };
    let listener = tokio::net::TcpListener::bind(a.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.metrics_listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving the manager's /metrics and /healthz");
    let shutdown = CancellationToken::new();
    let router = corral_telemetry::exposition::router(manager.registry());
    let stop = shutdown.clone();
    let metrics = tokio::spawn(async move {
        if let Err(e) = axum_serve(listener, router, stop).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    let running = tokio::spawn(manager.run(shutdown.clone()));
    let waited = super::serve::shutdown_signal().await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
    let _ = running.await;
    let _ = metrics.await;
    waited
}

async fn axum_serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await
}
