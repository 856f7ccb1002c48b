//! The server's counters: plain atomics, one shard per UDP thread so the hot path
//! never shares a cache line, summed when scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;

/// Query types counted by name (their numbers, RFC 1035 and on); every other type
/// is `OTHER`.
const QTYPES: [(u16, &str); 8] =
    [(1, "A"), (28, "AAAA"), (5, "CNAME"), (33, "SRV"), (16, "TXT"), (6, "SOA"), (2, "NS"), (255, "ANY")];
const N_QTYPES: usize = QTYPES.len() + 1;
/// Response codes counted by name (index = rcode); every other is `OTHER`.
const RCODES: [&str; 6] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];
const N_RCODES: usize = RCODES.len() + 1;

#[repr(align(128))]
#[derive(Default)]
struct Shard {
    queries: [[AtomicU64; N_RCODES]; N_QTYPES],
    forwarded: AtomicU64,
    forward_failures: AtomicU64,
    errors: AtomicU64,
    cache_hits: AtomicU64,
}

/// The DNS server's counters. Cheap to update from many threads; read them with the
/// accessors or publish them with [`DnsMetrics::register`].
pub struct DnsMetrics {
    shards: Box<[Shard]>,
}

impl std::fmt::Debug for DnsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsMetrics")
            .field("queries", &self.queries())
            .field("forwarded", &self.forwarded())
            .field("errors", &self.errors())
            .finish()
    }
}

fn qtype_index(qtype: u16) -> usize {
    QTYPES.iter().position(|(t, _)| *t == qtype).unwrap_or(QTYPES.len())
}

fn rcode_index(rcode: u16) -> usize {
    (rcode as usize).min(RCODES.len())
}

impl DnsMetrics {
    /// Counters with `shards` shards (one per thread that counts a lot).
    pub(crate) fn new(shards: usize) -> Self {
        DnsMetrics { shards: (0..shards.max(1)).map(|_| Shard::default()).collect() }
    }

    fn shard(&self, shard: usize) -> &Shard {
        &self.shards[shard % self.shards.len()]
    }

    /// Counts an answered query.
    pub(crate) fn count_query(&self, shard: usize, qtype: u16, rcode: u16) {
        self.shard(shard).queries[qtype_index(qtype)][rcode_index(rcode)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a query sent to the upstream.
    pub(crate) fn count_forwarded(&self, shard: usize) {
        self.shard(shard).forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a forwarded query the upstream did not answer (SERVFAIL sent), or one
    /// dropped because too many were in flight.
    pub(crate) fn count_forward_failed(&self, shard: usize) {
        self.shard(shard).forward_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a socket error.
    pub(crate) fn count_error(&self, shard: usize) {
        self.shard(shard).errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an answer served from the UDP answer cache.
    pub(crate) fn count_cache_hit(&self, shard: usize) {
        self.shard(shard).cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self, f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    }

    /// Queries answered (or forwarded and answered), all types and rcodes.
    pub fn queries(&self) -> u64 {
        (0..N_QTYPES)
            .flat_map(|t| (0..N_RCODES).map(move |r| (t, r)))
            .map(|(t, r)| self.sum(|s| &s.queries[t][r]))
            .sum()
    }

    /// Queries of type `qtype` answered with `rcode`.
    pub fn queries_of(&self, qtype: u16, rcode: u16) -> u64 {
        let (t, r) = (qtype_index(qtype), rcode_index(rcode));
        self.sum(|s| &s.queries[t][r])
    }

    /// Queries sent to the upstream.
    pub fn forwarded(&self) -> u64 {
        self.sum(|s| &s.forwarded)
    }

    /// Forwarded queries that got no answer in time (answered SERVFAIL) or were
    /// dropped for too many in flight.
    pub fn forward_failures(&self) -> u64 {
        self.sum(|s| &s.forward_failures)
    }

    /// Socket errors.
    pub fn errors(&self) -> u64 {
        self.sum(|s| &s.errors)
    }

    /// Answers served from the UDP answer cache.
    pub fn cache_hits(&self) -> u64 {
        self.sum(|s| &s.cache_hits)
    }

    /// Publishes the counters in `registry`, read at each scrape:
    /// `corral_dns_queries{qtype,rcode}`, `corral_dns_forwarded`,
    /// `corral_dns_forward_failures`, `corral_dns_errors`, `corral_dns_cache_hits`.
    pub fn register(self: &std::sync::Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(MetricsCollector(self.clone())));
    }
}

#[derive(Debug)]
struct MetricsCollector(std::sync::Arc<DnsMetrics>);

impl Collector for MetricsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let kind = ConstCounter::new(0u64).metric_type();
        {
            let mut family = encoder.encode_descriptor(
                "corral_dns_queries",
                "DNS queries answered, by type and rcode.",
                None,
                kind,
            )?;
            for t in 0..N_QTYPES {
                for r in 0..N_RCODES {
                    let v = m.sum(|s| &s.queries[t][r]);
                    if v == 0 {
                        continue;
                    }
                    let qtype = QTYPES.get(t).map_or("OTHER", |(_, n)| n);
                    let rcode = RCODES.get(r).copied().unwrap_or("OTHER");
                    let labels = [("qtype", qtype), ("rcode", rcode)];
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let counters = [
            ("corral_dns_forwarded", "DNS queries forwarded to the upstream.", m.forwarded()),
            (
                "corral_dns_forward_failures",
                "Forwarded DNS queries the upstream did not answer in time, or dropped with too many in flight.",
                m.forward_failures(),
            ),
            ("corral_dns_errors", "DNS socket errors.", m.errors()),
            ("corral_dns_cache_hits", "DNS answers served from the UDP answer cache.", m.cache_hits()),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}
