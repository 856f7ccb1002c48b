//! Queries for names outside the zone, sent on to the upstream: each from a fresh
//! socket on an ephemeral port, with a random ID, a bounded number in flight and a
//! timeout; the first upstream that answers wins, none: SERVFAIL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use hickory_proto::op::{Message, MessageType};

/// Forwarded queries in flight at once, over UDP and TCP together; past it a query is
/// answered SERVFAIL at once.
pub(crate) const MAX_IN_FLIGHT: usize = 256;

/// How long one upstream gets to answer.
const PER_UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1500);

/// Upstreams tried for one query.
const MAX_UPSTREAMS_TRIED: usize = 3;

/// Sends queries to the upstream servers.
pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    permits: Arc<Semaphore>,
}

impl Forwarder {
    /// A forwarder to `upstreams`, tried in order.
    pub(crate) fn new(upstreams: Vec<SocketAddr>) -> Self {
        Forwarder { upstreams, permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)) }
    }

    /// A slot for one more query in flight, if there is one.
    pub(crate) fn permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// The upstream's response to `query`, with the query's own ID, RA set and AA
    /// cleared; `None` if none answered in time. Asked over UDP; for a client on TCP
    /// (`tcp`) a truncated answer is asked again over TCP, a client on UDP gets it
    /// truncated and comes back over TCP itself.
    pub(crate) async fn forward(&self, query: &Message, tcp: bool) -> Option<Message> {
        let mut sent = query.clone();
        sent.metadata.id = random_id();
        let bytes = sent.to_vec().ok()?;
        for upstream in self.upstreams.iter().take(MAX_UPSTREAMS_TRIED) {
            let exchange = async {
                let response = ask(*upstream, &bytes, &sent).await?;
                if tcp && response.metadata.truncation {
                    return ask_tcp(*upstream, &bytes, &sent).await;
                }
                Some(response)
            };
            let answer = tokio::time::timeout(PER_UPSTREAM_TIMEOUT, exchange).await;
            if let Ok(Some(mut response)) = answer {
                response.metadata.id = query.metadata.id;
                // Recursion was available (through us); the answer is not ours.
                response.metadata.recursion_available = true;
                response.metadata.authoritative = false;
                return Some(response);
            }
        }
        None
    }
}

/// Whether `response` (read by hickory-proto) answers `sent`: same ID, same question.
fn answers(response: &[u8], sent: &Message) -> Option<Message> {
    let r = Message::from_vec(response).ok()?;
    (r.metadata.id == sent.metadata.id && r.metadata.message_type == MessageType::Response && r.queries == sent.queries)
        .then_some(r)
}

/// One exchange with `upstream`: the first datagram that is a response to `sent` is
/// taken; others are ignored.
async fn ask(upstream: SocketAddr, bytes: &[u8], sent: &Message) -> Option<Message> {
    let local: IpAddr = match upstream.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(ip) if ip.is_loopback() => Ipv6Addr::LOCALHOST.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0)).await.ok()?;
    socket.connect(upstream).await.ok()?;
    socket.send(bytes).await.ok()?;
    let mut buf = vec![0u8; 65535];
    // Bounded: the caller's timeout ends the wait; a flood of wrong datagrams only
    // spends it.
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            // ICMP port unreachable: nobody listens there.
            Err(_) => return None,
        };
        if let Some(r) = answers(&buf[..n], sent) {
            return Some(r);
        }
    }
}

/// One exchange with `upstream` over TCP (a connection of its own).
async fn ask_tcp(upstream: SocketAddr, bytes: &[u8], sent: &Message) -> Option<Message> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(upstream).await.ok()?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&u16::try_from(bytes.len()).ok()?.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.ok()?;
    let len = stream.read_u16().await.ok()? as usize;
    let mut r = vec![0u8; len];
    stream.read_exact(&mut r).await.ok()?;
    answers(&r, sent)
}

/// A random query ID (from the kernel; a fixed one only if that fails).
fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: the buffer is valid for 2 bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
    if n == 2 { u16::from_ne_bytes(b) } else { 0x5a5a }
}
