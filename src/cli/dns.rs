//! The cluster DNS of `corral up` and `corral server` — the authoritative server
//! (`corral_dns`) and the controller keeping its zone (`corral_controllers::dns`),
//! both beside the API server, outside leader election — and `corral dns records`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use corral_dns::{Upstream, Zone};
use corral_runtime::{CancellationToken, Runnable as _};
use corral_server::AppState;
use serde::{Deserialize, Serialize};

use super::args::{DnsRecordsArgs, OutputFormat, ServeArgs};
use super::output::{Table, to_json, to_yaml};

/// Where the cluster DNS listens unless told otherwise: a loopback address of its
/// own, on the DNS port, so that a resolv.conf can name it.
pub(crate) const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 153)), 53);
/// Where it falls back to when [`DEFAULT_LISTEN`] cannot be bound (not root, or the
/// port is taken): a free loopback port.
const FALLBACK_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
/// How long the start waits for the zone to be filled before serving it anyway.
const FILL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// The zone's apex.
pub(crate) const ORIGIN: &str = "corral.";
/// Where `--dns-upstream forward` reads the host's resolvers.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// One record served, with the object that produced it (`corral dns records`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecordRow {
    /// The owner name, absolute.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `SRV` or `TXT`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Seconds.
    pub ttl: u32,
    /// The data, in zone-file form.
    pub data: String,
    /// The object it comes from.
    pub source: SourceRow,
}

/// The object a record comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct SourceRow {
    /// Its kind (`Server` for `leader.corral.`).
    pub kind: String,
    /// Its namespace, if namespaced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// The answer of [`corral_server::DNS_RECORDS_PATH`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub(crate) struct RecordList {
    /// The records, by name.
    pub items: Vec<RecordRow>,
}

/// The records of `zone` named `name` (a DNS name, relative names taken as they are
/// with the zone appended) or produced by an object called `name`; all without one.
pub(crate) fn list(zone: &Zone, name: Option<&str>) -> RecordList {
    let wanted = name.map(|n| {
        let n = n.to_ascii_lowercase();
        let dns = if n.ends_with('.') { n.clone() } else { format!("{n}.") };
        let under_zone =
            if dns.ends_with(&format!(".{ORIGIN}")) || dns == ORIGIN { dns } else { format!("{dns}{ORIGIN}") };
        (n, under_zone)
    });
    let items = zone
        .records(None)
        .into_iter()
        .filter(|(s, r)| match &wanted {
            None => true,
            Some((object, dns)) => &r.name == dns || &s.name == object,
        })
        .map(|(s, r)| RecordRow {
            type_: r.data.record_type().to_string(),
            data: r.data.to_string(),
            name: r.name,
            ttl: r.ttl,
            source: SourceRow { kind: s.kind, namespace: s.namespace, name: s.name },
        })
        .collect();
    RecordList { items }
}

/// The routes the API server mounts for the cluster DNS:
/// `GET /dns/records[?name=NAME]`, authorized as listing every `DnsRecord`.
pub(crate) fn routes(zone: Zone) -> axum::Router<AppState> {
    axum::Router::new().route(
        corral_server::DNS_RECORDS_PATH,
        axum::routing::get(move |uri: axum::http::Uri| {
            let zone = zone.clone();
            async move {
                let name = uri.query().and_then(|q| {
                    q.split('&').find_map(|kv| kv.strip_prefix("name=")).filter(|n| !n.is_empty()).map(String::from)
                });
                axum::Json(list(&zone, name.as_deref()))
            }
        }),
    )
}

/// What `--dns-upstream` says: `forward` (the host's resolvers), `refuse`, or
/// `IP[:PORT],...`.
pub(crate) fn upstream(spec: &str, own: SocketAddr) -> anyhow::Result<Upstream> {
    let upstream = match spec.trim() {
        "forward" => Upstream::from_resolv_conf(std::path::Path::new(HOST_RESOLV_CONF))
            .with_context(|| format!("--dns-upstream forward: cannot read {HOST_RESOLV_CONF}"))?,
        "refuse" => Upstream::Refuse,
        list => {
            let servers = list
                .split(',')
                .map(|s| {
                    let s = s.trim();
                    s.parse::<SocketAddr>().or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53))).map_err(
                        |_| anyhow::anyhow!("--dns-upstream: {s:?} is not IP or IP:PORT (or use forward or refuse)"),
                    )
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Upstream::Forward(servers)
        }
    };
    // Never forward to itself (a host whose resolv.conf already names the cluster DNS).
    Ok(match upstream {
        Upstream::Forward(servers) => {
            let servers: Vec<SocketAddr> = servers.into_iter().filter(|s| *s != own).collect();
            if servers.is_empty() { Upstream::Refuse } else { Upstream::Forward(servers) }
        }
        other => other,
    })
}

/// The cluster DNS of this process, running.
pub(crate) struct ClusterDns {
    server: corral_dns::RunningDns,
    controller: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl ClusterDns {
    /// The address it answers on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops the controller and the server.
    pub(crate) async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.controller.await;
        self.server.shutdown().await;
    }
}

/// Starts the DNS server on `zone` and the controller keeping it, as the
/// `system:controller:dns` user of `server`, reading the tasks from `tasks` (the copy
/// the process's controllers share); `None` with `--no-dns`.
pub(crate) async fn start(
    args: &ServeArgs,
    zone: Zone,
    server: &corral_server::RunningServer,
    tasks: Arc<corral_controllers::SharedTasks>,
) -> anyhow::Result<Option<ClusterDns>> {
    if args.no_dns {
        return Ok(None);
    }
    let listen = args.dns_listen.unwrap_or(DEFAULT_LISTEN);
    let config =
        corral_dns::DnsConfig { listen, upstream: upstream(&args.dns_upstream, listen)?, ..Default::default() };
    let identity = corral_server::auth::Identity {
        user: corral_server::auth::bootstrap::DNS_CONTROLLER_USER.into(),
        groups: vec![corral_server::auth::AUTHENTICATED.into()],
    };
    let client = server.client_as(identity);
    // `leader.corral.` names the API server answering (this one): every server
    // serves the whole zone, and any of them is the control plane to a client.
    let leader = Some(server.addr().ip()).filter(|ip| !ip.is_unspecified());
    let controller = Arc::new(
        corral_controllers::dns::DnsRecords::new(
            corral_controllers::dns::Config { leader, ..Default::default() },
            zone.clone(),
        )
        .sharing(tasks),
    );
    let stop = CancellationToken::new();
    let (token, running_controller) = (stop.clone(), controller.clone());
    let controller_task = tokio::spawn(async move {
        if let Err(e) = running_controller.run(client, token).await {
            tracing::warn!(error = %e, "the DNS controller stopped");
        }
    });
    // Answers start once the zone holds what exists, not before: a first answer
    // denying a name that exists would be cached by resolvers.
    if tokio::time::timeout(FILL_PATIENCE, controller.filled()).await.is_err() {
        tracing::warn!("the cluster DNS zone is not filled yet; serving it as it fills");
    }
    let shared = Arc::new(zone);
    let running = match corral_dns::start(config.clone(), shared.clone()).await {
        Ok(r) => r,
        Err(e) if args.dns_listen.is_none() => {
            tracing::warn!(
                error = %e,
                "cannot serve the cluster DNS on {listen} (as root, or with CAP_NET_BIND_SERVICE, it can): serving it \
                 on a free loopback port instead; choose with --dns-listen"
            );
            corral_dns::start(corral_dns::DnsConfig { listen: FALLBACK_LISTEN, ..config }, shared)
                .await
                .context("cannot serve the cluster DNS")?
        }
        Err(e) => {
            stop.cancel();
            let _ = controller_task.await;
            return Err(e).with_context(|| format!("--dns-listen {listen}: cannot serve the cluster DNS"));
        }
    };
    let registry = corral_telemetry::registry::SharedRegistry::new();
    registry.register(|r| {
        controller.register_metrics(r);
        running.register_metrics(r);
    });
    server.add_metrics(registry);
    let controller = controller_task;
    Ok(Some(ClusterDns { server: running, controller, stop }))
}

/// `corral dns records [NAME]`.
pub(crate) async fn records(client: &corral_client::Client, a: DnsRecordsArgs) -> anyhow::Result<u8> {
    let path = match &a.name {
        Some(n) => format!("{}?name={n}", corral_server::DNS_RECORDS_PATH),
        None => corral_server::DNS_RECORDS_PATH.to_string(),
    };
    let list: RecordList = client.call_json(&path, None).await.map_err(|e| {
        anyhow::anyhow!("cannot list the cluster DNS's records: {e} (is the server run with --no-dns?)")
    })?;
    match a.output {
        Some(OutputFormat::Json) => out!("{}", to_json(&list)?)?,
        Some(OutputFormat::Yaml) => out!("{}", to_yaml(&list)?)?,
        _ => {
            if list.items.is_empty() {
                eprintln!("No records served{}.", a.name.as_ref().map(|n| format!(" for {n}")).unwrap_or_default());
                return Ok(0);
            }
            let mut table = Table::new(["NAME", "TYPE", "TTL", "DATA", "SOURCE"]);
            for r in &list.items {
                let source = if r.source.namespace.is_empty() {
                    format!("{}/{}", r.source.kind, r.source.name)
                } else {
                    format!("{}/{}/{}", r.source.kind, r.source.namespace, r.source.name)
                };
                table.rows.push(vec![r.name.clone(), r.type_.clone(), r.ttl.to_string(), r.data.clone(), source]);
            }
            out!("{}", table.render())?;
        }
    }
    Ok(0)
}
