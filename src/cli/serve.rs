//! `corral up` and `corral server`: run the system in this process.

use anyhow::Context;
use clap::Parser as _;
use corral_runtime::CancellationToken;
use corral_server::ServerConfig;

use super::args::{EtcdArgs, ServeArgs};

/// Which parts of the system to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Everything in one process (`corral up`).
    Everything,
    /// The control plane only (`corral server`).
    ControlPlane,
}

pub(crate) async fn run(args: ServeArgs, role: Role, kubeconfig: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (choose another with --data-dir or CORRAL_DATA_DIR)",
            args.data_dir.display()
        )
    })?;
    // Held until this function returns: the process serves from the directory.
    let _held = hold_data_dir(&args.data_dir)?;
    let tls = tls_config(&args)?;
    if !args.listen.ip().is_loopback() && tls.is_none() {
        anyhow::bail!(
            "refusing to listen on {} without TLS: beyond loopback, bearer tokens would cross the network in \
             clear text; add --tls-auto (a certificate authority made for this server) or --tls-cert/--tls-key",
            args.listen
        );
    }
    let store = store_backend(&args.store, &args.etcd)?;
    let defaults = ServerConfig::default();
    let cfg = ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        compaction_retain: args.compaction_retain.unwrap_or(defaults.compaction_retain),
        history_max_age: args.history_max_age.map(std::time::Duration::from_secs).unwrap_or(defaults.history_max_age),
        history_max_bytes: args.history_max_bytes.or(defaults.history_max_bytes),
        min_free_bytes: args.min_free_bytes.unwrap_or(defaults.min_free_bytes),
        max_watches_per_client: args.max_watches_per_client.unwrap_or(defaults.max_watches_per_client),
        write_stall_timeout: args
            .write_stall_timeout
            .map(std::time::Duration::from_secs)
            .unwrap_or(defaults.write_stall_timeout),
        admin_kubeconfig: args.admin_kubeconfig.clone(),
        audit_log: if args.no_audit_log {
            None
        } else {
            Some(args.audit_log.clone().unwrap_or_else(|| args.data_dir.join("audit.log")))
        },
        audit_reads: args.audit_reads,
        tls,
        store,
        ..defaults
    };
    match role {
        Role::Everything => tracing::info!(data_dir = %cfg.data_dir.display(), "starting corral"),
        Role::ControlPlane => tracing::info!(data_dir = %cfg.data_dir.display(), "starting corral control plane"),
    }
    let data_dir = cfg.data_dir.clone();
    // The zone exists before the server, which lists it at /dns/records.
    let zone = corral_dns::Zone::new(super::dns::ORIGIN)?;
    let routes = if args.no_dns { axum::Router::new() } else { super::dns::routes(zone.clone()) };
    // The web interface's files are served to anyone (a browser loads them without a
    // token); its pages then call the API with the user's token.
    let server = corral_server::start_with_public_routes(cfg, routes, corral_ui::router()).await?;
    tracing::info!(path = %server.admin_kubeconfig().display(), "administrator credential");
    tracing::info!("web interface: {}{}", server.base_url().trim_end_matches('/'), corral_ui::PREFIX);
    if role == Role::Everything {
        // The all-in-one system is the user's own: its credential becomes the CLI's.
        let path = kubeconfig.or_else(corral_client::credentials::default_config_path);
        if let Some(path) = path {
            let config = corral_client::Config {
                server: server.base_url().to_string(),
                token: Some(server.admin_token().to_string()),
                ca_pem: server.ca_pem().map(<[u8]>::to_vec),
                client_identity: None,
            };
            config.write_kubeconfig(&path, "corral").with_context(|| "cannot write the CLI's configuration")?;
            tracing::info!(path = %path.display(), "the CLI's configuration now points at this cluster as admin");
        }
    }
    // The manager beside this server keeps one identity across restarts, so that a
    // restarted server leads again at once instead of waiting out its own lease.
    let identity = format!("{}/{}", corral_agent::node::hostname(), server.addr());
    let shutdown = CancellationToken::new();
    // Controllers with least-privileged identities of their own act as them.
    let client_as = |user: &str| {
        server.client_as(corral_server::auth::Identity {
            user: user.to_string(),
            groups: vec![corral_server::auth::AUTHENTICATED.to_string()],
        })
    };
    // One copy of the cluster's tasks for the controllers and the DNS controller.
    let tasks = std::sync::Arc::new(corral_controllers::SharedTasks::default());
    let manager = match super::controllers::manager(
        server.client(),
        &args.controllers,
        &identity,
        Some(&client_as),
        tasks.clone(),
        // Git sources' working copies live with the cluster's data.
        Some(data_dir.join("sync")),
    )? {
        Some(manager) => {
            server.add_metrics(manager.registry());
            Some(tokio::spawn(manager.run(shutdown.child_token())))
        }
        None => None,
    };
    // Every API server serves the cluster DNS from its own watches, outside leader
    // election.
    let dns = super::dns::start(&args, zone, &server, tasks).await?;
    if let Some(dns) = &dns {
        tracing::info!("cluster DNS: {}", dns.addr());
    }
    let agent = if role == Role::Everything && !args.no_agent {
        let defaults = super::args::AgentArgs::parse_from(["agent"]);
        // The one node of an all-in-one system is `local` unless told otherwise, so
        // that manifests can name it.
        let agent_args = super::args::AgentArgs {
            work_dir: data_dir.join("agent"),
            name: defaults.name.clone().or_else(|| Some("local".to_string())),
            host_path_allow: args.host_path_allow.clone(),
            no_volume_images: args.no_volume_images,
            ..defaults
        };
        let mut cfg = corral_agent::agent::AgentConfig {
            server_ca: server.ca_pem().map(<[u8]>::to_vec),
            ..super::agent::config(&agent_args)?
        };
        // Its containers resolve through this process's cluster DNS.
        cfg.cluster_dns = dns.as_ref().map(super::dns::ClusterDns::addr);
        let token = server.node_credential(&cfg.name).await.context("cannot make the local agent's credential")?;
        let client = corral_client::Client::from_config(&corral_client::Config {
            server: server.base_url().to_string(),
            token: Some(token),
            ca_pem: server.ca_pem().map(<[u8]>::to_vec),
            client_identity: None,
        })?;
        Some(corral_agent::agent::start(client, cfg).await.context("cannot start the local agent")?)
    } else {
        None
    };
    let waited = shutdown_signal().await;
    tracing::info!("shutdown requested");
    if let Some(agent) = agent {
        agent.shutdown().await;
    }
    shutdown.cancel();
    if let Some(m) = manager {
        let _ = m.await;
    }
    if let Some(dns) = dns {
        dns.shutdown().await;
    }
    server.shutdown().await?;
    waited
}

/// Takes the data directory for this process, so that a second `corral up` or
/// `corral server` on it says, in one line, which process holds it (the store's own
/// lock would refuse it too, but names no one). A POSIX record lock on
/// `DATA_DIR/corral.lock`: the kernel drops it when the process ends, however it ends,
/// and tells a refused process the holder's pid.
fn hold_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    let path = dir.join("corral.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {} to take the data directory", path.display()))?;
    // SAFETY: a zeroed `flock` is a valid value of this plain C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `file` is open for the duration of the call and `lock` is a valid flock.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } == 0 {
        // The pid is for people reading the file; the lock is what counts, so a full
        // disk (which the store then reports in its own words) does not stop here.
        let _ = file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id()));
        return Ok(file);
    }
    let err = std::io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
        return Err(err).with_context(|| format!("cannot lock {}", path.display()));
    }
    // SAFETY: as above; F_GETLK fills `lock` with the lock that refused ours.
    let holder = if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } == 0
        && lock.l_type != libc::F_UNLCK as libc::c_short
    {
        format!(" (pid {})", lock.l_pid)
    } else {
        String::new()
    };
    anyhow::bail!(
        "another Corral{holder} holds the data directory {}: stop it first, or give this one its own --data-dir",
        dir.display()
    )
}

/// The TLS the options ask for: files given, or made once in the data directory.
fn tls_config(args: &ServeArgs) -> anyhow::Result<Option<corral_server::tls::TlsConfig>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(corral_server::tls::TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            ca: args.tls_ca.clone(),
        }));
    }
    if !args.tls_auto {
        return Ok(None);
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| s.to_string())
        .chain([corral_agent::node::hostname()])
        .collect();
    if !args.listen.ip().is_unspecified() {
        hosts.push(args.listen.ip().to_string());
    }
    hosts.extend(args.tls_san.iter().cloned());
    hosts.sort();
    hosts.dedup();
    let dir = args.data_dir.join("tls");
    let cfg = corral_server::tls::generate(&dir, &hosts).map_err(anyhow::Error::msg)?;
    let ca = corral_server::tls::trust_pem(&cfg).map_err(anyhow::Error::msg)?;
    let fingerprint = corral_server::tls::fingerprint(&ca);
    tracing::info!(ca = %dir.join("ca.crt").display(), %fingerprint, ?hosts, "serving HTTPS with the certificate authority");
    eprintln!("corral: HTTPS; certificate authority {} (SHA-256 {fingerprint})", dir.join("ca.crt").display());
    Ok(Some(cfg))
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// How to reach the etcd at `spec` (`etcd://…`, `etcds://…`) with `args`.
pub(crate) fn etcd_options(spec: &str, args: &EtcdArgs) -> anyhow::Result<corral_store_etcd::Options> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
    };
    let tls = if spec.starts_with("etcds://") {
        Some(corral_store_etcd::Tls {
            ca_pem: args.etcd_ca.as_deref().map(|p| read(p, "etcd certificate authority (--etcd-ca)")).transpose()?,
            identity_pem: match (&args.etcd_cert, &args.etcd_key) {
                (Some(cert), Some(key)) => Some((
                    read(cert, "etcd client certificate (--etcd-cert)")?,
                    read(key, "etcd client key (--etcd-key)")?,
                )),
                _ => None,
            },
            domain: None,
        })
    } else if args.etcd_ca.is_some() || args.etcd_cert.is_some() {
        anyhow::bail!("--etcd-ca and --etcd-cert are for TLS to etcd: name it etcds://HOST:PORT[,HOST:PORT...]");
    } else {
        None
    };
    Ok(corral_store_etcd::Options {
        user: args.etcd_user.clone().zip(args.etcd_password.clone()),
        tls,
        ..corral_store_etcd::Options::default()
    })
}

/// The store `--store` and the `--etcd-*` options name.
fn store_backend(spec: &str, etcd: &EtcdArgs) -> anyhow::Result<corral_server::StoreBackend> {
    if spec == "sled" {
        if etcd.etcd_user.is_some() || etcd.etcd_ca.is_some() || etcd.etcd_cert.is_some() {
            anyhow::bail!("the --etcd-* options need --store etcd://HOST:PORT[,HOST:PORT...]");
        }
        return Ok(corral_server::StoreBackend::Sled);
    }
    let options = if spec.starts_with("etcd://") || spec.starts_with("etcds://") {
        etcd_options(spec, etcd)?
    } else {
        corral_store_etcd::Options::default()
    };
    corral_server::StoreBackend::parse(spec, options).map_err(anyhow::Error::msg)
}
