//! The authoritative server: UDP and TCP on one address, answering from the [`Zone`]
//! with the AA bit; names outside the zone are forwarded to the host's resolvers or
//! refused ([`Upstream`]).
//!
//! What is answered (origin `corral.` for example):
//! - A, AAAA, CNAME, SRV, TXT from the zone; a CNAME is followed inside the zone
//!   (up to 8 links) and the chain answered; SRV answers carry the targets' A/AAAA
//!   records in the additional section.
//! - SOA at the apex (`ns.corral. hostmaster.corral.`, serial = [`Zone::serial`],
//!   refresh 60, retry 10, expire 3600, minimum = the configured TTL, which is also the
//!   negative-caching TTL) and NS at the apex (`ns.corral.`, whose address is the one
//!   the server listens on, `127.0.0.1`/`::1` when that is the unspecified address).
//! - NXDOMAIN and NODATA (empty non-terminals included) carry the SOA in the
//!   authority section.
//! - ANY is answered with every record the zone has at the name (plus SOA and NS at
//!   the apex), like any other type; AXFR/IXFR are REFUSED.
//! - Over UDP an answer larger than 512 bytes (or the client's EDNS size, at most
//!   1232) is sent empty with TC set, and the client retries over TCP.
//! - A query that cannot be read gets FORMERR, an opcode other than QUERY NOTIMP, an
//!   EDNS version other than 0 BADVERS; a response or a datagram shorter than a
//!   header gets nothing.
//!
//! Names outside the zone, when the client asked for recursion (RD): forwarded over
//! UDP to the upstream (each tried for 1.5 s, at most 3; none answers: SERVFAIL; more
//! than 256 in flight: SERVFAIL at once); with [`Upstream::Refuse`] or without RD:
//! REFUSED.

mod answer;
mod forward;
mod tcp;
mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::metrics::DnsMetrics;
use crate::zone::Zone;

/// Where queries for names outside the zone go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// To these servers, tried in order (at most three per query).
    Forward(Vec<SocketAddr>),
    /// Nowhere: they are answered REFUSED.
    Refuse,
}

impl Upstream {
    /// The `nameserver` lines of a resolv.conf (port 53), in order; [`Upstream::Refuse`]
    /// if there are none or the file does not exist. Addresses that do not parse (an
    /// IPv6 address with a zone, say) are skipped.
    ///
    /// # Errors
    /// [`Error::Io`] if the file exists but cannot be read.
    pub fn from_resolv_conf(path: &Path) -> Result<Upstream> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Upstream::Refuse),
            Err(source) => return Err(Error::Io { what: format!("reading {}", path.display()), source }),
        };
        Ok(Self::parse_resolv_conf(&text))
    }

    fn parse_resolv_conf(text: &str) -> Upstream {
        let servers: Vec<SocketAddr> = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("nameserver")).then(|| words.next()).flatten()
            })
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if servers.is_empty() { Upstream::Refuse } else { Upstream::Forward(servers) }
    }
}

/// How the server runs.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The address for UDP and TCP alike. With port 0 the kernel picks an ephemeral
    /// port free for both (retried if the one picked for TCP is taken for UDP).
    pub listen: SocketAddr,
    /// Where names outside the zone go.
    pub upstream: Upstream,
    /// TTL of the SOA and NS records, and of negative answers (the SOA minimum); the
    /// zone's records keep their own.
    pub ttl: u32,
}

impl Default for DnsConfig {
    /// `127.0.0.1:0`, [`Upstream::Refuse`], TTL 5.
    fn default() -> Self {
        DnsConfig { listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), upstream: Upstream::Refuse, ttl: 5 }
    }
}

/// A running server; [`RunningDns::shutdown`] stops it (dropping it stops it too,
/// without waiting for the UDP threads).
pub struct RunningDns {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: Arc<DnsMetrics>,
}

impl std::fmt::Debug for RunningDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningDns").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl RunningDns {
    /// The address it serves on (UDP and TCP), with the port the kernel chose.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its counters.
    pub fn metrics(&self) -> Arc<DnsMetrics> {
        self.metrics.clone()
    }

    /// Publishes its counters in `registry` (see [`DnsMetrics::register`]).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// Stops serving: the sockets are closed when this returns.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
            let _ = task.await;
        }
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for RunningDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Forward jobs queued between the UDP threads and the forwarder; past it, SERVFAIL.
const FORWARD_QUEUE: usize = 1024;
/// Kernel receive buffer asked for each UDP socket (the kernel may give less).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Attempts to find a port free for both UDP and TCP when the port is 0.
const EPHEMERAL_TRIES: usize = 16;

/// Starts serving `zone` as `config` says: one UDP thread per core (at most 4), TCP
/// and forwarding on the current tokio runtime.
///
/// # Errors
/// [`Error::Io`] if the address cannot be bound for UDP or TCP (in use, not local,
/// no permission for a port below 1024).
pub async fn start(config: DnsConfig, zone: Arc<Zone>) -> Result<RunningDns> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let (udp, tcp) = bind(config.listen, threads)?;
    let local_addr =
        udp[0].local_addr().map_err(|source| Error::Io { what: "reading the DNS socket's address".into(), source })?;
    let upstreams: Vec<SocketAddr> = match config.upstream {
        // Never forward to ourselves (a resolv.conf naming this server).
        Upstream::Forward(list) => list.into_iter().filter(|a| *a != local_addr).collect(),
        Upstream::Refuse => Vec::new(),
    };
    let ns_ip = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let answerer = Arc::new(answer::Answerer::new(zone, config.ttl, ns_ip, !upstreams.is_empty()));
    let metrics = Arc::new(DnsMetrics::new(threads + 1));
    let shared_shard = threads;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();

    let io_err = |what: &str| {
        let what = what.to_string();
        move |source| Error::Io { what, source }
    };
    let forwarder = (!upstreams.is_empty()).then(|| Arc::new(forward::Forwarder::new(upstreams)));
    let mut forward_tx = None;
    if let Some(forwarder) = &forwarder {
        let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
        forward_tx = Some(tx);
        let reply = udp[0].try_clone().map_err(io_err("cloning the DNS UDP socket"))?;
        tasks.push(tokio::spawn(udp::forward_loop(
            rx,
            forwarder.clone(),
            answerer.clone(),
            metrics.clone(),
            shared_shard,
            reply,
        )));
    }
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(io_err("registering the DNS TCP listener"))?;
    let mut tcp_server = tcp::server(tcp, answerer.clone(), forwarder, metrics.clone(), shared_shard);
    tasks.push(tokio::spawn(async move {
        if let Err(e) = tcp_server.block_until_done().await {
            tracing::warn!(error = %e, "dns: the TCP server stopped");
        }
    }));

    let mut handles = Vec::new();
    for (shard, socket) in udp.into_iter().enumerate() {
        let worker = udp::Worker {
            socket,
            answerer: answerer.clone(),
            metrics: metrics.clone(),
            shard,
            stop: stop.clone(),
            forward: forward_tx.clone(),
        };
        let spawned = std::thread::Builder::new().name(format!("dns-udp-{shard}")).spawn(move || worker.run());
        match spawned {
            Ok(h) => handles.push(h),
            Err(source) => {
                stop.store(true, Ordering::Relaxed);
                for t in &tasks {
                    t.abort();
                }
                return Err(Error::Io { what: "starting a DNS UDP thread".into(), source });
            }
        }
    }
    tracing::info!(addr = %local_addr, threads, "dns: serving");
    Ok(RunningDns { local_addr, stop, threads: handles, tasks, metrics })
}

/// `n` UDP sockets sharing `listen` (SO_REUSEPORT) and a TCP listener on the same
/// address.
fn bind(listen: SocketAddr, n: usize) -> Result<(Vec<std::net::UdpSocket>, std::net::TcpListener)> {
    let tries = if listen.port() == 0 { EPHEMERAL_TRIES } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        match bind_once(listen, n) {
            Ok(bound) => return Ok(bound),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| Error::Io { what: format!("binding {listen}"), source: io::ErrorKind::AddrInUse.into() }))
}

fn bind_once(listen: SocketAddr, n: usize) -> Result<(Vec<std::net::UdpSocket>, std::net::TcpListener)> {
    // TCP first and without SO_REUSEPORT: if another server holds the address this
    // fails before any UDP socket could join that server's SO_REUSEPORT group, and a
    // port the kernel picks for TCP is one no server of ours uses.
    let tcp = (|| {
        let s = Socket::new(Domain::for_address(listen), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&listen.into())?;
        s.listen(1024)?;
        io::Result::Ok(std::net::TcpListener::from(s))
    })()
    .map_err(|source| Error::Io { what: format!("binding {listen} (TCP)"), source })?;
    let port = tcp.local_addr().map_err(|source| Error::Io { what: format!("binding {listen} (TCP)"), source })?.port();
    let addr = SocketAddr::new(listen.ip(), port);
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(udp_socket(addr)?);
    }
    Ok((sockets, tcp))
}

fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    (|| {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_port(true)?;
        let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
        s.bind(&addr.into())?;
        s.set_read_timeout(Some(udp::STOP_POLL))?;
        io::Result::Ok(std::net::UdpSocket::from(s))
    })()
    .map_err(|source| Error::Io { what: format!("binding {addr} (UDP)"), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_become_upstreams_in_order() {
        let up = Upstream::parse_resolv_conf(
            "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver ::1\n",
        );
        assert_eq!(up, Upstream::Forward(vec!["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()]));
        assert_eq!(Upstream::parse_resolv_conf("search x\n"), Upstream::Refuse);
        assert_eq!(Upstream::from_resolv_conf(Path::new("/nonexistent/resolv.conf")).unwrap(), Upstream::Refuse);
    }
}
