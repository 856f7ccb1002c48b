//! The UDP side: one thread per core, each with its own socket on the same address
//! (SO_REUSEPORT, the kernel spreads clients across them), reading and writing up to
//! [`BATCH`] datagrams per system call (recvmmsg / sendmmsg).
//!
//! Each thread keeps a small answer cache of its own (no lock): the response to a
//! query's bytes less its ID, valid while the zone's serial is the one it was built
//! at. A change of the zone bumps the serial, so the next batch after
//! [`Zone::apply`](crate::Zone::apply) returns answers from the new zone.

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use hickory_proto::op::Message;

use super::answer::{Answerer, HEADER_LEN, Outcome, encode, qtype_of, rcode_of, udp_limit};
use crate::metrics::DnsMetrics;

/// NOERROR and NXDOMAIN, the answers the cache keeps.
const CACHED_RCODES: [u16; 2] = [0, 3];
/// SERVFAIL, counted when the upstream fails.
const SERVFAIL: u16 = 2;

/// Datagrams read or written per system call.
const BATCH: usize = 32;
/// The largest query read; longer ones are dropped.
const MAX_QUERY: usize = 4096;
/// Answers cached per thread; when full the cache starts over.
const CACHE_ENTRIES: usize = 16 * 1024;
/// Only queries up to this size are cached (a plain query is under 100 bytes), so the
/// cache stays under a few MiB whatever clients send.
const CACHE_MAX_QUERY: usize = 256;
/// How often a thread waiting for datagrams looks at the stop flag.
pub(crate) const STOP_POLL: Duration = Duration::from_millis(100);

/// A query for a name outside the zone, handed to the forwarder.
pub(crate) struct ForwardJob {
    /// The query, read.
    pub query: Box<Message>,
    /// Who asked.
    pub client: SocketAddr,
}

/// One UDP thread.
pub(crate) struct Worker {
    pub socket: UdpSocket,
    pub answerer: Arc<Answerer>,
    pub metrics: Arc<DnsMetrics>,
    pub shard: usize,
    pub stop: Arc<AtomicBool>,
    pub forward: Option<mpsc::Sender<ForwardJob>>,
}

struct Cached {
    response: Box<[u8]>,
    qtype: u16,
    rcode: u16,
}

impl Worker {
    /// Serves until the stop flag is set (seen within [`STOP_POLL`]).
    pub(crate) fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut rbufs: Vec<Box<[u8; MAX_QUERY]>> = (0..BATCH).map(|_| Box::new([0u8; MAX_QUERY])).collect();
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all
        // zeroes is a valid value.
        let mut addrs: Vec<libc::sockaddr_storage> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut riovs: Vec<libc::iovec> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut rhdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut siovs: Vec<libc::iovec> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut shdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
        let mut reply: Vec<bool> = vec![false; BATCH];
        let mut cache: HashMap<Box<[u8]>, Cached> = HashMap::new();
        let mut cache_serial: Option<u32> = None;

        while !self.stop.load(Ordering::Relaxed) {
            for i in 0..BATCH {
                riovs[i] = libc::iovec { iov_base: rbufs[i].as_mut_ptr().cast(), iov_len: MAX_QUERY };
                let h = &mut rhdrs[i];
                h.msg_len = 0;
                h.msg_hdr.msg_name = (&raw mut addrs[i]).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iov = &raw mut riovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
            }
            // SAFETY: every header points at live buffers of the lengths given, all
            // owned by this frame and not otherwise touched until the call returns.
            // The socket is blocking with a receive timeout: this waits at most
            // STOP_POLL for the first datagram, then takes what is queued.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    rhdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
                {
                    self.metrics.count_error(self.shard);
                    tracing::warn!(error = %e, "dns: reading UDP datagrams");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let n = n as usize;
            let serial = self.answerer.zone().serial();
            if cache_serial != Some(serial) {
                cache.clear();
                cache_serial = Some(serial);
            }
            for i in 0..n {
                reply[i] = false;
                let len = rhdrs[i].msg_len as usize;
                if rhdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > MAX_QUERY {
                    continue;
                }
                let packet = &rbufs[i][..len];
                let out = &mut outs[i];
                if len >= HEADER_LEN
                    && let Some(hit) = cache.get(&packet[2..])
                {
                    out.clear();
                    out.extend_from_slice(&packet[..2]);
                    out.extend_from_slice(&hit.response[2..]);
                    self.metrics.count_query(self.shard, hit.qtype, hit.rcode);
                    self.metrics.count_cache_hit(self.shard);
                    reply[i] = true;
                    continue;
                }
                let a = self.answerer.answer_udp(packet, out);
                match a.outcome {
                    Outcome::Reply { cacheable } => {
                        self.metrics.count_query(self.shard, a.qtype, a.rcode);
                        if cacheable && len <= CACHE_MAX_QUERY && CACHED_RCODES.contains(&a.rcode) {
                            if cache.len() >= CACHE_ENTRIES {
                                cache.clear();
                            }
                            cache.insert(
                                packet[2..].into(),
                                Cached { response: out.as_slice().into(), qtype: a.qtype, rcode: a.rcode },
                            );
                        }
                        reply[i] = true;
                    }
                    Outcome::Forward(query) => {
                        let client = sockaddr_to_std(&addrs[i]);
                        let refused = match (&self.forward, client) {
                            (Some(tx), Some(client)) => match tx.try_send(ForwardJob { query, client }) {
                                Ok(()) => None,
                                Err(e) => Some(e.into_inner().query),
                            },
                            _ => Some(query),
                        };
                        match refused {
                            None => self.metrics.count_forwarded(self.shard),
                            Some(query) => {
                                encode(&self.answerer.servfail(&query), udp_limit(&query), out);
                                self.metrics.count_forward_failed(self.shard);
                                self.metrics.count_query(self.shard, a.qtype, SERVFAIL);
                                reply[i] = true;
                            }
                        }
                    }
                    Outcome::Drop => {}
                }
            }
            let mut m = 0;
            for i in 0..n {
                if !reply[i] {
                    continue;
                }
                siovs[m] = libc::iovec { iov_base: outs[i].as_mut_ptr().cast(), iov_len: outs[i].len() };
                let h = &mut shdrs[m];
                h.msg_len = 0;
                h.msg_hdr.msg_name = (&raw mut addrs[i]).cast();
                h.msg_hdr.msg_namelen = rhdrs[i].msg_hdr.msg_namelen;
                h.msg_hdr.msg_iov = &raw mut siovs[m];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
                m += 1;
            }
            let mut sent = 0;
            while sent < m {
                // SAFETY: headers sent..m point at live buffers (the responses and the
                // senders' addresses) not touched until the call returns.
                let r = unsafe { libc::sendmmsg(fd, shdrs[sent..].as_mut_ptr(), (m - sent) as libc::c_uint, 0) };
                if r <= 0 {
                    // The first one failed (an unreachable sender…): skip it.
                    self.metrics.count_error(self.shard);
                    sent += 1;
                } else {
                    sent += r as usize;
                }
            }
        }
    }
}

/// A socket address from the kernel's form.
fn sockaddr_to_std(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match a.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is
            // large and aligned enough for.
            let sin = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends forwarded queries to the upstream and their answers (or SERVFAIL) back to
/// the clients, from `reply` (a socket on the server's address). Bounded: at most
/// [`super::forward::MAX_IN_FLIGHT`] at once; the queue in front of it is bounded too
/// and the UDP threads answer SERVFAIL when it is full.
pub(crate) async fn forward_loop(
    mut jobs: mpsc::Receiver<ForwardJob>,
    forwarder: Arc<super::forward::Forwarder>,
    answerer: Arc<Answerer>,
    metrics: Arc<DnsMetrics>,
    shard: usize,
    reply: UdpSocket,
) {
    let reply = Arc::new(reply);
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(job) = jobs.recv().await {
        while in_flight.try_join_next().is_some() {}
        let Some(permit) = forwarder.permit() else {
            metrics.count_forward_failed(shard);
            let mut out = Vec::new();
            encode(&answerer.servfail(&job.query), udp_limit(&job.query), &mut out);
            metrics.count_query(shard, qtype_of(&job.query), SERVFAIL);
            let _ = reply.send_to(&out, job.client);
            continue;
        };
        let (forwarder, answerer, metrics, reply) =
            (forwarder.clone(), answerer.clone(), metrics.clone(), reply.clone());
        in_flight.spawn(async move {
            let _permit = permit;
            let response = match forwarder.forward(&job.query, false).await {
                Some(response) => response,
                None => {
                    metrics.count_forward_failed(shard);
                    answerer.servfail(&job.query)
                }
            };
            // Re-encoded by hickory-proto: still within what the client takes.
            let mut out = Vec::new();
            encode(&response, udp_limit(&job.query), &mut out);
            metrics.count_query(shard, qtype_of(&job.query), rcode_of(&response));
            // The socket is blocking but a datagram send does not wait in practice.
            if reply.send_to(&out, job.client).is_err() {
                metrics.count_error(shard);
            }
        });
    }
}
