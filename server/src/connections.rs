//! Accepting HTTP connections within bounds.
//!
//! A connection costs a file descriptor for as long as it stays open. Without a limit
//! and a deadline for silent clients, a thousand idle TCP connections use up the common
//! 1,024 descriptors: accept then fails, and `/healthz` and writes go unanswered.
//! Here:
//! - the soft limit on open files is raised to the hard limit at start;
//! - connections are capped below that limit, in all and per client address, so
//!   that the descriptors the store and the log proxy need are never taken and one
//!   client cannot take every slot; a connection over a cap is answered `429` and
//!   closed;
//! - an HTTP/1 connection that does not send a complete request head within the
//!   header-read timeout — a new one, or a kept-alive one between requests — is
//!   closed; HTTP/2 connections are pinged and closed when the peer stops answering;
//! - a connection whose peer reads nothing for the write-stall timeout is closed
//!   (see `write_stall`).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::auth::ConnectionCache;
use crate::auth::certificates::ClientCertificate;
use crate::placement::{self, Opening, StreamsRuntime};
use crate::write_stall::StallGuard;

/// Descriptors kept out of the connection caps: the store's files, connections to
/// agents for logs, the in-process controllers' needs, and refusals in flight.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Refusals (`429` then close) in flight at once; past this, over-cap connections
/// are closed without an answer.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// How long a refusal may take to write before the connection is dropped.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Bounds on the connections the server holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionLimits {
    /// Open connections at most, from all clients.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_per_client: usize,
    /// Time a connection has to send a complete request head (HTTP/1), when new and
    /// between requests.
    pub header_read_timeout: Duration,
}

impl ConnectionLimits {
    /// Limits for a process allowed `open_files` descriptors: all connections fit in
    /// what is left after [`RESERVED_DESCRIPTORS`]; one client may hold half.
    pub fn for_open_files(open_files: u64) -> Self {
        let max_connections = open_files.saturating_sub(RESERVED_DESCRIPTORS).clamp(16, 16_384) as usize;
        ConnectionLimits {
            max_connections,
            max_per_client: (max_connections / 2).max(8),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, and returns the
/// soft limit now in force.
pub fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            } else {
                tracing::warn!(soft = lim.rlim_cur, hard = lim.rlim_max, "cannot raise the open files limit");
            }
        }
    }
    lim.rlim_cur
}

/// The connection metrics exported at `/metrics`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections refused for being over a cap.
    pub refused: Counter,
    /// Connections closed because their peer read nothing for the write-stall timeout.
    pub stalled: Counter,
}

/// Open connections, in all and by client address.
#[derive(Default)]
struct Tally {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
    open: Gauge,
}

/// One admitted connection; frees its place when dropped.
struct Slot {
    tally: Arc<Mutex<Tally>>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.tally.lock();
        t.total -= 1;
        t.open.dec();
        if let Some(n) = t.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                t.by_client.remove(&self.client);
            }
        }
    }
}

fn admit(tally: &Arc<Mutex<Tally>>, client: IpAddr, limits: &ConnectionLimits) -> Result<Slot, String> {
    let mut t = tally.lock();
    if t.total >= limits.max_connections {
        return Err(format!("the server holds its maximum of {} connections; retry shortly", limits.max_connections));
    }
    let mine = t.by_client.get(&client).copied().unwrap_or(0);
    if mine >= limits.max_per_client {
        return Err(format!(
            "{client} holds its maximum of {} connections; reuse them (keep-alive, HTTP/2) or close some",
            limits.max_per_client
        ));
    }
    t.total += 1;
    t.open.inc();
    *t.by_client.entry(client).or_default() += 1;
    Ok(Slot { tally: tally.clone(), client })
}

/// Most bytes buffered per connection, each way (beyond the object being written).
const CONNECTION_BUFFER: usize = 16 << 10;

/// Serves `router` on `listener` within `limits` until `stop` completes, then waits for
/// the open connections to finish. A connection whose writes wait longer than
/// `write_stall_timeout` on its peer is closed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    write_stall_timeout: Duration,
    metrics: ConnectionMetrics,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    // Buffers are per connection: what a client that stops reading can make the
    // server hold (hyper's defaults, 400 KB, times thousands of idle watches was most
    // of the server's memory).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(CONNECTION_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_send_buf_size(CONNECTION_BUFFER)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    let tally = Arc::new(Mutex::new(Tally { open: metrics.open.clone(), ..Tally::default() }));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let streams = StreamsRuntime::new()?;
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors (or a transient error): wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Watch events and small responses must leave at once: with Nagle's algorithm
        // they wait for the peer's delayed ACK, adding ~40 ms stalls.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let slot = match admit(&tally, peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(why) => {
                metrics.refused.inc();
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refuse(tcp, &why)).await;
                        drop(permit);
                    });
                }
                continue;
            }
        };
        let (builder, router, watcher) = (builder.clone(), router.clone(), graceful.watcher());
        let stalled = metrics.stalled.clone();
        let header_read_timeout = limits.header_read_timeout;
        let watch_runtime = streams.handle().cloned();
        let tls = tls.clone();
        tokio::spawn(async move {
            // Every request carries the address it came from (per-client limits).
            let client = crate::watch_limits::ClientAddr(peer.ip());
            if let Some(acceptor) = tls {
                // The request line is encrypted: TLS connections are all served
                // here, watches included. The handshake gets the header deadline.
                let Ok(Ok(stream)) = tokio::time::timeout(header_read_timeout, acceptor.accept(tcp)).await else {
                    return;
                };
                // Verified by the handshake; hashed once per connection, not per request.
                let certificate = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|der| ClientCertificate::of(der));
                let credentials = Arc::new(ConnectionCache::new(certificate));
                let service = tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(client);
                    req.extensions_mut().insert(credentials.clone());
                    router.clone().oneshot(req)
                });
                let io = TokioIo::new(StallGuard::new(stream, write_stall_timeout, stalled));
                let conn = builder.serve_connection(io, TowerToHyperService::new(service)).into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(slot);
                return;
            }
            let credentials = Arc::new(ConnectionCache::new(None));
            let service = tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(client);
                req.extensions_mut().insert(credentials.clone());
                router.clone().oneshot(req)
            });
            let Some(opening) = placement::opening(&tcp, header_read_timeout).await else {
                return;
            };
            let serve = move |tcp: TcpStream| async move {
                let io = TokioIo::new(StallGuard::new(tcp, write_stall_timeout, stalled));
                let conn = builder.serve_connection(io, TowerToHyperService::new(service)).into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(slot);
            };
            match (opening, watch_runtime) {
                (Opening::Watch, Some(streams)) => {
                    // Its readiness must come from the runtime that polls it, not
                    // from this one's reactor.
                    let tcp = match tcp.into_std() {
                        Ok(tcp) => tcp,
                        Err(e) => return tracing::debug!(error = %e, "cannot move a watch connection"),
                    };
                    streams.spawn(async move {
                        match TcpStream::from_std(tcp) {
                            Ok(tcp) => serve(tcp).await,
                            Err(e) => tracing::debug!(error = %e, "cannot move a watch connection"),
                        }
                    });
                }
                _ => serve(tcp).await,
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    // Every connection has ended: the watch runtime has nothing left to run.
    drop(streams);
    Ok(())
}

/// Answers `429 Too Many Requests` with a `Status` saying `why`, and closes.
async fn refuse(mut tcp: TcpStream, why: &str) {
    let status = crate::ApiError::too_many_requests(why).status_json();
    let body = status.to_string();
    let head = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let _ = tcp.write_all(body.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            max_per_client: per_client,
            header_read_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn connections_are_capped_in_all_and_per_client_and_freed_when_closed() {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (a, b, c) = (IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3]), IpAddr::from([127, 0, 0, 4]));
        let l = limits(3, 2);
        let a1 = admit(&tally, a, &l);
        let a2 = admit(&tally, a, &l);
        assert!(a1.is_ok() && a2.is_ok());
        assert!(admit(&tally, a, &l).is_err_and(|e| e.contains("127.0.0.2 holds its maximum of 2")));
        let b1 = admit(&tally, b, &l);
        assert!(b1.is_ok());
        assert!(admit(&tally, c, &l).is_err_and(|e| e.contains("maximum of 3 connections")));
        drop(a1);
        assert!(admit(&tally, c, &l).is_ok(), "a closed connection frees its place");
        drop((a2, b1));
        let t = tally.lock();
        assert!(t.by_client.is_empty(), "clients without connections are forgotten");
        assert_eq!((t.total, t.open.get()), (0, 0));
    }

    #[test]
    fn limits_leave_descriptors_for_the_store() {
        let l = ConnectionLimits::for_open_files(1024);
        assert_eq!((l.max_connections, l.max_per_client), (768, 384));
        assert_eq!(ConnectionLimits::for_open_files(100).max_connections, 16);
        assert_eq!(ConnectionLimits::for_open_files(1 << 20).max_connections, 16_384);
    }
}
