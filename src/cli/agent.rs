//! `corral agent`: run a node agent against an API server. `corral up` runs one too.

use std::time::Duration;

use anyhow::Context as _;
use corral_agent::agent::AgentConfig;

use super::args::AgentArgs;

/// Turns the command line into the agent's configuration.
pub(crate) fn config(a: &AgentArgs) -> anyhow::Result<AgentConfig> {
    let base = corral_agent::node::detect_resources(&a.work_dir);
    let (resources, ports) = match &a.resources {
        Some(r) => {
            let (res, ports) = corral_agent::node::parse_resources(r, base)?;
            (Some(res), ports)
        }
        None => (None, vec![corral_agent::node::DEFAULT_PORTS]),
    };
    let name = a.name.clone().unwrap_or_else(|| node_name_from(&corral_agent::node::hostname()));
    corral_api::names::check_dns_label(&name).map_err(|e| anyhow::anyhow!("--name {name:?}: {e}"))?;
    Ok(AgentConfig {
        name,
        work_dir: a.work_dir.clone(),
        attributes: corral_agent::node::parse_attributes(&a.attributes)?,
        resources,
        ports,
        reservations: corral_agent::node::parse_reservations(&a.reservations)?,
        listen: a.listen,
        heartbeat_interval: Duration::from_secs(a.heartbeat_interval.max(1)),
        log_max_bytes: a.log_max_bytes.max(1024),
        log_max_files: a.log_max_files.max(1),
        sandbox_retention: Duration::from_secs(a.sandbox_retention),
        sandbox_disk_cap: a.sandbox_disk_cap.saturating_mul(1024 * 1024),
        runc: a.runc.clone(),
        shim_exe: shim_exe()?,
        concurrency: 8,
        artifacts: corral_agent::artifacts::ArtifactPolicy { file_dirs: a.artifact_dir.clone() },
    })
}

/// A valid Node name from a host name: its first label, lowercased, other characters
/// replaced by `-` (`Build-01.example.com` → `build-01`).
fn node_name_from(host: &str) -> String {
    let label = host.split('.').next().unwrap_or_default().to_ascii_lowercase();
    let name: String = label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(63).collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() { "node".to_string() } else { name }
}

/// The program each task's shim runs: `corral-shim`, built beside this binary by the
/// same package (so never out of step with it), which starts in a fraction of the time
/// and holds a fraction of the memory; without it, this binary itself (`corral __shim`).
fn shim_exe() -> anyhow::Result<std::path::PathBuf> {
    let me = std::env::current_exe().context("cannot find the corral executable (the shim runs it)")?;
    let small = me.with_file_name("corral-shim");
    Ok(if small.is_file() { small } else { me })
}

pub(crate) async fn run(server: &str, a: AgentArgs) -> anyhow::Result<()> {
    let cfg = config(&a)?;
    let client = corral_client::Client::http(server).with_context(|| format!("bad --server {server}"))?;
    let shutdown = corral_runtime::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        match super::serve::shutdown_signal().await {
            Ok(()) => stop.cancel(),
            Err(e) => tracing::error!(error = %e, "cannot wait for a shutdown signal"),
        }
    });
    corral_agent::agent::run(client, cfg, shutdown).await.context("agent failed")
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_names_become_node_names() {
        assert_eq!(super::node_name_from("Build_01.example.com"), "build-01");
        assert_eq!(super::node_name_from("-"), "node");
    }
}
