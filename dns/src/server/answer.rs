//! From a query's bytes to a response's bytes: pure, no I/O, so that the UDP loop,
//! the TCP connections and the tests share one answerer.

use std::net::IpAddr;
use std::sync::Arc;

use crate::wire::{self, Reject, Section, Writer, rcode};
use crate::zone::{Lookup, Record, RecordData, RecordType, Zone};

/// SOA timers (seconds). Nothing transfers this zone; resolvers only read `minimum`.
const SOA_REFRESH: u32 = 60;
const SOA_RETRY: u32 = 10;
const SOA_EXPIRE: u32 = 3600;

/// CNAMEs followed inside the zone before the chain is answered as it is.
const MAX_CNAME_HOPS: usize = 8;

/// The transport a query came over, which bounds the response's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// 512 bytes, or the client's EDNS size up to [`wire::MAX_UDP_PAYLOAD`].
    Udp,
    /// 65535 bytes.
    Tcp,
}

/// What to do with a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The response is in the buffer; `cacheable` when it depends on nothing but the
    /// query's bytes (less the ID), the transport and the zone's serial.
    Reply {
        /// Whether the UDP loop may cache it.
        cacheable: bool,
    },
    /// A name outside the zone, to be sent to the upstream as it is.
    Forward,
    /// Not a query (too short, or a response): no reply.
    Drop,
}

/// An outcome with what the metrics count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answered {
    pub outcome: Outcome,
    pub qtype: u16,
    pub rcode: u16,
}

/// Answers queries from the zone.
pub(crate) struct Answerer {
    zone: Arc<Zone>,
    ttl: u32,
    ns_name: String,
    hostmaster: String,
    ns_ip: IpAddr,
    forwarding: bool,
}

/// A record to write: one of the zone's, or one the server makes up at the apex.
enum Rr {
    Zone(Record),
    Soa,
    Ns,
}

impl Answerer {
    /// An answerer for `zone`; `ns_ip` is the address `ns.<origin>` resolves to;
    /// `forwarding` whether names outside the zone go to an upstream (RA is set).
    pub(crate) fn new(zone: Arc<Zone>, ttl: u32, ns_ip: IpAddr, forwarding: bool) -> Self {
        let ns_name = format!("ns.{}", zone.origin());
        let hostmaster = format!("hostmaster.{}", zone.origin());
        Answerer { zone, ttl, ns_name, hostmaster, ns_ip, forwarding }
    }

    /// The zone answered from.
    pub(crate) fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Answers `packet` into `out`.
    pub(crate) fn answer(&self, packet: &[u8], transport: Transport, out: &mut Vec<u8>) -> Answered {
        let q = match wire::parse_query(packet) {
            Ok(q) => q,
            Err(Reject::Drop) => return Answered { outcome: Outcome::Drop, qtype: 0, rcode: 0 },
            Err(Reject::Respond { id, flags, rcode }) => {
                // Opcode and RD echoed.
                Writer::new(out, id, 0x8000 | (flags & 0x7900), rcode, None);
                return Answered { outcome: Outcome::Reply { cacheable: false }, qtype: 0, rcode };
            }
        };
        let reply = |rcode| Answered { outcome: Outcome::Reply { cacheable: true }, qtype: q.qtype, rcode };
        let mut flags = 0x8000 | (q.flags & 0x0110);
        if self.forwarding {
            flags |= 0x0080;
        }
        let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok);
        if let Some(e) = q.edns
            && e.version != 0
        {
            let mut w = Writer::new(out, q.id, flags, rcode::BADVERS, Some(q.question));
            w.opt(rcode::BADVERS, dnssec_ok);
            return reply(rcode::BADVERS);
        }
        let refuse = |out: &mut Vec<u8>| {
            let mut w = Writer::new(out, q.id, flags, rcode::REFUSED, Some(q.question));
            if q.edns.is_some() {
                w.opt(0, dnssec_ok);
            }
            reply(rcode::REFUSED)
        };
        if q.qclass != wire::CLASS_IN && q.qclass != wire::CLASS_ANY {
            return refuse(out);
        }
        if !self.zone.contains(&q.qname) {
            if self.forwarding && q.recursion_desired() {
                return Answered { outcome: Outcome::Forward, qtype: q.qtype, rcode: 0 };
            }
            return refuse(out);
        }
        if q.qtype == wire::TYPE_AXFR || q.qtype == wire::TYPE_IXFR {
            return refuse(out);
        }

        let (rcode, answers, negative) = self.resolve(&q.qname, q.qtype);
        let mut additional: Vec<Record> = Vec::new();
        let mut glue = false;
        for rr in &answers {
            match rr {
                Rr::Zone(Record { data: RecordData::Srv { target, .. }, .. }) => {
                    if additional.iter().any(|r| &r.name == target) {
                        continue;
                    }
                    for t in [RecordType::A, RecordType::Aaaa] {
                        if let Lookup::Answer(rs) = self.lookup(target, t) {
                            additional.extend(rs.into_iter().filter(|r| r.data.record_type() == t));
                        }
                    }
                }
                Rr::Ns => glue = true,
                _ => {}
            }
        }

        let max = match transport {
            Transport::Tcp => u16::MAX as usize,
            Transport::Udp => q.edns.map_or(512, |e| e.udp_size.clamp(512, wire::MAX_UDP_PAYLOAD) as usize),
        };
        flags |= 0x0400; // authoritative
        let mut w = Writer::new(out, q.id, flags, rcode, Some(q.question));
        for rr in &answers {
            self.write(&mut w, Section::Answer, rr);
        }
        if negative {
            self.write(&mut w, Section::Authority, &Rr::Soa);
        }
        for r in &additional {
            write_record(&mut w, Section::Additional, r);
        }
        if glue {
            self.write(&mut w, Section::Additional, &Rr::Zone(self.ns_glue_record()));
        }
        if q.edns.is_some() {
            w.opt(0, dnssec_ok);
        }
        if w.len() > max {
            let mut w = Writer::new(out, q.id, flags | 0x0200, rcode, Some(q.question));
            if q.edns.is_some() {
                w.opt(0, dnssec_ok);
            }
        }
        reply(rcode)
    }

    /// A SERVFAIL for `packet` (the upstream did not answer), or nothing if the
    /// packet is not a query.
    pub(crate) fn servfail(&self, packet: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok(q) = wire::parse_query(packet) else { return false };
        let mut w = Writer::new(out, q.id, 0x8080 | (q.flags & 0x0110), rcode::SERVFAIL, Some(q.question));
        if let Some(e) = q.edns {
            w.opt(0, e.dnssec_ok);
        }
        true
    }

    fn lookup(&self, name: &str, rtype: RecordType) -> Lookup {
        let found = self.zone.lookup(name, rtype);
        if name != self.ns_name || !matches!(found, Lookup::NxDomain | Lookup::NoData) {
            return found;
        }
        // ns.<origin> exists: the server's own address.
        let glue = self.ns_glue_record();
        if rtype == RecordType::Any || rtype == glue.data.record_type() {
            Lookup::Answer(vec![glue])
        } else {
            Lookup::NoData
        }
    }

    fn ns_glue_record(&self) -> Record {
        let data = match self.ns_ip {
            IpAddr::V4(ip) => RecordData::A(ip),
            IpAddr::V6(ip) => RecordData::Aaaa(ip),
        };
        Record { name: self.ns_name.clone(), ttl: self.ttl, data }
    }

    /// The rcode, the answer section and whether the answer is negative (SOA in the
    /// authority section).
    fn resolve(&self, qname: &str, qtype: u16) -> (u16, Vec<Rr>, bool) {
        let apex = qname == self.zone.origin();
        let mut answers = Vec::new();
        match qtype {
            wire::TYPE_SOA if apex => return (rcode::NOERROR, vec![Rr::Soa], false),
            wire::TYPE_NS if apex => return (rcode::NOERROR, vec![Rr::Ns], false),
            wire::TYPE_ANY if apex => answers.extend([Rr::Soa, Rr::Ns]),
            _ => {}
        }
        let rtype = match qtype {
            wire::TYPE_A => Some(RecordType::A),
            wire::TYPE_AAAA => Some(RecordType::Aaaa),
            wire::TYPE_CNAME => Some(RecordType::Cname),
            wire::TYPE_SRV => Some(RecordType::Srv),
            wire::TYPE_TXT => Some(RecordType::Txt),
            wire::TYPE_ANY => Some(RecordType::Any),
            _ => None,
        };
        let mut name = qname.to_string();
        for _ in 0..MAX_CNAME_HOPS {
            let found = match rtype {
                Some(t) => self.lookup(&name, t),
                // A type the zone never holds: only a CNAME can answer it.
                None => match self.lookup(&name, RecordType::Cname) {
                    Lookup::Answer(rs) => Lookup::Answer(rs),
                    Lookup::NxDomain => Lookup::NxDomain,
                    _ => Lookup::NoData,
                },
            };
            match found {
                Lookup::Answer(rs) => {
                    let follow = !matches!(rtype, Some(RecordType::Cname | RecordType::Any));
                    let target = rs.iter().find_map(|r| match &r.data {
                        RecordData::Cname(t) if follow => Some(crate::zone::normalize(t)),
                        _ => None,
                    });
                    answers.extend(rs.into_iter().map(Rr::Zone));
                    match target {
                        Some(t) if self.zone.contains(&t) => name = t,
                        _ => return (rcode::NOERROR, answers, false),
                    }
                }
                Lookup::NoData | Lookup::OutOfZone => {
                    let negative = (answers.is_empty() || matches!(found, Lookup::NoData)) && !apex_any(&answers);
                    return (rcode::NOERROR, answers, negative);
                }
                Lookup::NxDomain => return (rcode::NXDOMAIN, answers, true),
            }
        }
        (rcode::NOERROR, answers, false)
    }

    fn write(&self, w: &mut Writer<'_>, section: Section, rr: &Rr) {
        let origin = self.zone.origin();
        match rr {
            Rr::Zone(r) => write_record(w, section, r),
            Rr::Ns => w.record(section, origin, wire::TYPE_NS, self.ttl, |w| w.name(&self.ns_name, true)),
            Rr::Soa => {
                let serial = self.zone.serial();
                w.record(section, origin, wire::TYPE_SOA, self.ttl, |w| {
                    w.name(&self.ns_name, true);
                    w.name(&self.hostmaster, true);
                    for v in [serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.ttl] {
                        w.bytes(&v.to_be_bytes());
                    }
                });
            }
        }
    }
}

/// An ANY at the apex always has the SOA and NS: never negative.
fn apex_any(answers: &[Rr]) -> bool {
    answers.iter().any(|r| matches!(r, Rr::Soa))
}

fn write_record(w: &mut Writer<'_>, section: Section, r: &Record) {
    match &r.data {
        RecordData::A(ip) => w.record(section, &r.name, wire::TYPE_A, r.ttl, |w| w.bytes(&ip.octets())),
        RecordData::Aaaa(ip) => w.record(section, &r.name, wire::TYPE_AAAA, r.ttl, |w| w.bytes(&ip.octets())),
        RecordData::Cname(t) => w.record(section, &r.name, wire::TYPE_CNAME, r.ttl, |w| w.name(t, true)),
        RecordData::Txt(parts) => w.record(section, &r.name, wire::TYPE_TXT, r.ttl, |w| w.txt(parts)),
        RecordData::Srv { priority, weight, port, target } => w.record(section, &r.name, wire::TYPE_SRV, r.ttl, |w| {
            w.bytes(&priority.to_be_bytes());
            w.bytes(&weight.to_be_bytes());
            w.bytes(&port.to_be_bytes());
            w.name(target, false);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{Change, Source};

    fn answerer() -> Answerer {
        let zone = Zone::new("corral.").unwrap();
        zone.apply([Change::Set(
            Source::new("Service", "default", "web"),
            vec![
                Record { name: "web.corral.".into(), ttl: 5, data: RecordData::A([10, 0, 0, 1].into()) },
                Record {
                    name: "_http._tcp.web.corral.".into(),
                    ttl: 5,
                    data: RecordData::Srv { priority: 0, weight: 0, port: 80, target: "web.corral.".into() },
                },
                Record { name: "www.corral.".into(), ttl: 5, data: RecordData::Cname("web.corral.".into()) },
            ],
        )]);
        Answerer::new(Arc::new(zone), 5, [127, 0, 0, 1].into(), true)
    }

    fn query(name: &[&str], qtype: u16) -> Vec<u8> {
        let mut p = vec![0, 7, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for l in name {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&wire::CLASS_IN.to_be_bytes());
        p.extend_from_slice(&[0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn a_cname_chain_is_followed_inside_the_zone() {
        let a = answerer();
        let mut out = Vec::new();
        let r = a.answer(&query(&["www", "corral"], wire::TYPE_A), Transport::Udp, &mut out);
        assert_eq!(r.rcode, rcode::NOERROR);
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 2, "CNAME and A");
        assert_eq!(out[2] & 0x04, 0x04, "AA");
    }

    #[test]
    fn names_outside_the_zone_are_forwarded_only_with_rd() {
        let a = answerer();
        let mut out = Vec::new();
        let mut q = query(&["example", "com"], wire::TYPE_A);
        assert_eq!(a.answer(&q, Transport::Udp, &mut out).outcome, Outcome::Forward);
        q[2] = 0;
        assert_eq!(a.answer(&q, Transport::Udp, &mut out).rcode, rcode::REFUSED);
    }

    #[test]
    fn mutated_queries_never_panic_and_always_fit_udp() {
        let a = answerer();
        let mut out = Vec::new();
        let seeds = [
            query(&["_http", "_tcp", "web", "corral"], wire::TYPE_SRV),
            query(&["www", "corral"], wire::TYPE_A),
            query(&["corral"], wire::TYPE_ANY),
        ];
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for seed in &seeds {
            for _ in 0..20_000 {
                let mut q = seed.clone();
                for _ in 0..(next() % 4) {
                    let i = (next() as usize) % q.len();
                    q[i] = next() as u8;
                }
                q.truncate(q.len() - (next() as usize % 3));
                let r = a.answer(&q, Transport::Udp, &mut out);
                if matches!(r.outcome, Outcome::Reply { .. }) {
                    assert!(out.len() >= wire::HEADER_LEN && out.len() <= wire::MAX_UDP_PAYLOAD as usize);
                }
            }
        }
    }
}
