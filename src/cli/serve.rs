//! `corral up` and `corral server`: run the system in this process.

use anyhow::Context;

use super::args::ServeArgs;
use crate::server::ServerConfig;

/// Which parts of the system to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Everything in one process (`corral up`).
    Everything,
    /// The control plane only (`corral server`).
    ControlPlane,
}

pub(crate) async fn run(args: ServeArgs, role: Role) -> anyhow::Result<()> {
    let defaults = ServerConfig::default();
    let cfg = ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        compaction_retain: args.compaction_retain.unwrap_or(defaults.compaction_retain),
        ..defaults
    };
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (choose another with --data-dir or CORRAL_DATA_DIR)",
            cfg.data_dir.display()
        )
    })?;
    match role {
        Role::Everything => {
            tracing::info!(data_dir = %cfg.data_dir.display(), "starting corral (API server)")
        }
        Role::ControlPlane => {
            tracing::info!(data_dir = %cfg.data_dir.display(), "starting corral control plane (API server)")
        }
    }
    // Controllers, DNS and the node agent join `Role::Everything` as they are built.
    // The server handles SIGINT/SIGTERM itself and shuts down gracefully.
    crate::server::run(cfg).await
}
