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
        artifacts: corral_agent::artifacts::ArtifactPolicy {
            file_dirs: a.artifact_dir.clone(),
            allowed_nets: a.artifact_allow_net.clone(),
            max_bytes: a.artifact_max_bytes,
        },
        server_ca: None,
        volumes: corral_agent::volumes::VolumeConfig {
            no_images: a.no_volume_images,
            host_path_allow: a.host_path_allow.clone(),
        },
        cluster_dns: a.cluster_dns,
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

pub(crate) async fn run(conn: &corral_client::Config, a: AgentArgs) -> anyhow::Result<()> {
    let cfg = AgentConfig { server_ca: conn.ca_pem.clone(), ..config(&a)? };
    let client = node_client(conn, &cfg.name, &a.work_dir).await?;
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

/// The file in the work dir holding the node's own credential: a kubeconfig file
/// (older agents kept a bare token there, which is still read).
const CREDENTIAL_FILE: &str = "credential";

/// The credential saved in `path`, as a configuration for `conn`'s server.
fn saved_credential(conn: &corral_client::Config, path: &std::path::Path) -> Option<corral_client::Config> {
    if let Ok(saved) = corral_client::Config::from_kubeconfig(path) {
        return Some(corral_client::Config {
            token: saved.token,
            client_identity: saved.client_identity,
            ..conn.clone()
        });
    }
    let token = std::fs::read_to_string(path).ok()?;
    Some(corral_client::Config { token: Some(token.trim().to_string()), client_identity: None, ..conn.clone() })
}

/// A client acting as node `name`: with the credential saved in `work_dir`, else
/// (or if the server no longer knows it) with one bought by joining with
/// `conn.token`, which is then saved. Over HTTPS the node's credential is a client
/// certificate for a key made here, which never leaves the node; over plain HTTP
/// (loopback only), a bearer token.
async fn node_client(
    conn: &corral_client::Config,
    name: &str,
    work_dir: &std::path::Path,
) -> anyhow::Result<corral_client::Client> {
    let saved_path = work_dir.join(CREDENTIAL_FILE);
    if let Some(with_saved) = saved_credential(conn, &saved_path) {
        match who_am_i(&with_saved).await {
            Ok(user) if user == format!("system:node:{name}") => {
                return Ok(corral_client::Client::from_config(&with_saved)?);
            }
            Ok(user) => tracing::warn!(%user, "the saved credential is another node's; joining again"),
            Err(e) if conn.token.is_some() => {
                tracing::warn!(error = %e, "the saved credential is refused; joining again")
            }
            Err(e) => return Err(e).context(format!("the node credential in {} is refused", saved_path.display())),
        }
    }
    if conn.token.is_none() {
        anyhow::bail!(
            "the agent has no credential yet: pass a join token with --token (`corral token create --join` on the \
             control plane makes one)"
        );
    }
    let key = if conn.server.starts_with("https://") {
        Some(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("cannot make the node's key")?)
    } else {
        None
    };
    let mut body = serde_json::json!({"node": name});
    if let Some(key) = &key {
        use base64::Engine;
        body["publicKey"] = base64::engine::general_purpose::STANDARD.encode(key.public_key_raw()).into();
    }
    let joined: serde_json::Value = corral_client::Client::from_config(conn)?
        .call_json("/auth/join", Some(&body))
        .await
        .with_context(|| format!("{} refused to join node {name:?}", conn.server))?;
    let node = match (&key, joined.get("certificate").and_then(|c| c.as_str())) {
        (Some(key), Some(cert)) => corral_client::Config {
            token: None,
            client_identity: Some(corral_client::ClientIdentity {
                certificate_pem: cert.as_bytes().to_vec(),
                key_pem: key.serialize_pem().into_bytes(),
            }),
            ..conn.clone()
        },
        (Some(_), None) => anyhow::bail!("the join answer holds no certificate for the node's key"),
        (None, _) => {
            let token = joined.get("token").and_then(|t| t.as_str()).context("the join answer holds no token")?;
            corral_client::Config { token: Some(token.to_string()), client_identity: None, ..conn.clone() }
        }
    };
    node.write_kubeconfig(&saved_path, &format!("node-{name}"))
        .with_context(|| format!("cannot save the node's credential in {}", saved_path.display()))?;
    let kind = if key.is_some() { "client certificate" } else { "token" };
    tracing::info!(node = name, "joined; the node's {kind} is saved in {}", saved_path.display());
    Ok(corral_client::Client::from_config(&node)?)
}

/// The user a credential authenticates as.
async fn who_am_i(conn: &corral_client::Config) -> anyhow::Result<String> {
    let v: serde_json::Value = corral_client::Client::from_config(conn)?.call_json("/auth/whoami", None).await?;
    Ok(v.get("user").and_then(|u| u.as_str()).unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_names_become_node_names() {
        assert_eq!(super::node_name_from("Build_01.example.com"), "build-01");
        assert_eq!(super::node_name_from("-"), "node");
    }
}
