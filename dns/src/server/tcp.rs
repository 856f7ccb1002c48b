//! The TCP side (RFC 7766): length-prefixed messages, several per connection, a
//! bounded number of connections, each closed after [`IDLE_TIMEOUT`] without a query.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::answer::{Answerer, Outcome, Transport};
use super::forward::Forwarder;
use crate::metrics::DnsMetrics;
use crate::wire::{self, rcode};

/// Connections served at once; further ones wait in the listen backlog.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// A connection with no query for this long is closed (and a query or response that
/// takes longer to move).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the task is aborted; aborting it drops every
/// connection's task too.
pub(crate) async fn serve(
    listener: TcpListener,
    answerer: Arc<Answerer>,
    forwarder: Option<Arc<Forwarder>>,
    metrics: Arc<DnsMetrics>,
    shard: usize,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, usually: wait a little rather than spin.
                metrics.count_error(shard);
                tracing::warn!(error = %e, "dns: accepting a TCP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (answerer, forwarder, metrics) = (answerer.clone(), forwarder.clone(), metrics.clone());
        connections.spawn(async move {
            let _slot = slot;
            connection(stream, &answerer, forwarder.as_deref(), &metrics, shard).await;
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    answerer: &Answerer,
    forwarder: Option<&Forwarder>,
    metrics: &DnsMetrics,
    shard: usize,
) {
    let _ = stream.set_nodelay(true);
    let mut query = Vec::new();
    let mut out = Vec::with_capacity(512);
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(IDLE_TIMEOUT, stream.read_u16()).await else { return };
        query.resize(len as usize, 0);
        let Ok(Ok(_)) = tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut query)).await else { return };
        let a = answerer.answer(&query, Transport::Tcp, &mut out);
        match a.outcome {
            Outcome::Reply { .. } => metrics.count_query(shard, a.qtype, a.rcode),
            Outcome::Forward => {
                metrics.count_forwarded(shard);
                let response = match (forwarder, forwarder.and_then(Forwarder::permit)) {
                    (Some(f), Some(_permit)) => f.forward(&query, true).await,
                    _ => None,
                };
                match response {
                    Some(r) => out = r,
                    None => {
                        metrics.count_forward_failed(shard);
                        if !answerer.servfail(&query, &mut out) {
                            return;
                        }
                    }
                }
                metrics.count_query(shard, a.qtype, wire::response_rcode(&out));
            }
            // A response sent to us, or less than a header: not a DNS client.
            Outcome::Drop => return,
        }
        if out.len() > u16::MAX as usize {
            metrics.count_query(shard, a.qtype, rcode::SERVFAIL);
            return;
        }
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        let Ok(Ok(())) = tokio::time::timeout(IDLE_TIMEOUT, stream.write_all(&framed)).await else { return };
    }
}
