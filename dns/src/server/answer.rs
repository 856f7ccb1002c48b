//! The answer path shared by UDP and TCP: a query read by hickory-proto in, a
//! hickory-proto [`Message`] out. Pure, no I/O, so the UDP loop, hickory-server's
//! TCP connections and the tests share it.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record as Rr, RecordType as QType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::zone::{Lookup, Record, RecordData, RecordType, Zone};

/// SOA timers (seconds). Nothing transfers this zone; resolvers only read `minimum`.
const SOA_REFRESH: i32 = 60;
const SOA_RETRY: i32 = 10;
const SOA_EXPIRE: i32 = 3600;

/// CNAMEs followed inside the zone before the chain is answered as it is.
const MAX_CNAME_HOPS: usize = 8;

/// The UDP payload size this server advertises and the most it sends over UDP
/// (the size the 2020 DNS flag day settled on, which avoids fragmentation).
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;

/// A DNS header is 12 bytes.
pub(crate) const HEADER_LEN: usize = 12;

/// A packet read: a query to answer, or why not.
pub(crate) enum Read {
    /// A query with one question.
    Query(Box<Message>),
    /// Not answerable as it is: this error response (FORMERR, NOTIMP) goes back.
    Error(Box<Message>),
    /// Not a query (shorter than a header, or a response): nothing goes back.
    Drop,
}

/// What the zone says to a query.
pub(crate) enum Response {
    /// This response.
    Message(Box<Message>),
    /// A name outside the zone: the upstream answers it.
    Forward,
}

/// What the UDP path did with a datagram.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The response is in the buffer; `cacheable` when it depends on nothing but the
    /// query's bytes (less the ID) and the zone's serial.
    Reply {
        /// Whether the UDP loop may cache it.
        cacheable: bool,
    },
    /// A name outside the zone, to be sent to the upstream: the query, read.
    Forward(Box<Message>),
    /// Not a query: no reply.
    Drop,
}

/// An outcome with what the metrics count.
#[derive(Debug)]
pub(crate) struct Answered {
    pub outcome: Outcome,
    pub qtype: u16,
    pub rcode: u16,
}

/// A zone record or one the server makes up at the apex, with its hickory owner.
enum Item {
    Zone(Record),
    Soa,
    Ns,
}

/// Answers queries from the zone.
pub(crate) struct Answerer {
    zone: Arc<Zone>,
    ttl: u32,
    origin: Name,
    ns_name: String,
    ns: Name,
    hostmaster: Name,
    ns_ip: IpAddr,
    forwarding: bool,
}

/// Reads a packet with hickory-proto.
pub(crate) fn read(packet: &[u8]) -> Read {
    if packet.len() < HEADER_LEN {
        return Read::Drop;
    }
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else { return Read::Drop };
    if header.metadata.message_type == MessageType::Response {
        return Read::Drop;
    }
    let error = |rcode| {
        let mut m = Message::error_msg(header.metadata.id, header.metadata.op_code, rcode);
        m.metadata.recursion_desired = header.metadata.recursion_desired;
        m.metadata.checking_disabled = header.metadata.checking_disabled;
        Read::Error(Box::new(m))
    };
    if header.metadata.op_code != OpCode::Query {
        return error(ResponseCode::NotImp);
    }
    match Message::from_vec(packet) {
        Ok(m) if m.queries.len() == 1 && m.answers.is_empty() && m.authorities.is_empty() => Read::Query(Box::new(m)),
        _ => error(ResponseCode::FormErr),
    }
}

/// Encodes `message` into `out`; if it is longer than `max`, its records are left
/// out and TC is set (the client retries over TCP).
pub(crate) fn encode(message: &Message, max: usize, out: &mut Vec<u8>) {
    out.clear();
    match message.to_vec() {
        Ok(bytes) if bytes.len() <= max => out.extend_from_slice(&bytes),
        Ok(_) => match message.truncate().to_vec() {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(_) => encode_servfail(message, out),
        },
        Err(_) => encode_servfail(message, out),
    }
}

/// A bare SERVFAIL header for a response that cannot be encoded (never expected).
fn encode_servfail(message: &Message, out: &mut Vec<u8>) {
    out.clear();
    let m = Message::error_msg(message.metadata.id, message.metadata.op_code, ResponseCode::ServFail);
    if let Ok(bytes) = m.to_vec() {
        out.extend_from_slice(&bytes);
    }
}

/// The question's type of a query (0 if none).
pub(crate) fn qtype_of(query: &Message) -> u16 {
    query.queries.first().map_or(0, |q| u16::from(q.query_type()))
}

/// A response's rcode, as counted (the low 4 bits and EDNS's high bits).
pub(crate) fn rcode_of(response: &Message) -> u16 {
    u16::from(response.metadata.response_code)
}

/// The EDNS record a response carries when the query had one: our UDP size, version
/// 0, DO copied.
fn response_edns(query: &Message) -> Option<Edns> {
    query.edns.as_ref().map(|e| {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        edns.set_version(0);
        edns.set_dnssec_ok(e.flags().dnssec_ok);
        edns
    })
}

/// The largest response a UDP client takes: 512 bytes, or its EDNS size up to
/// [`MAX_UDP_PAYLOAD`].
pub(crate) fn udp_limit(query: &Message) -> usize {
    query.edns.as_ref().map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD) as usize)
}

fn name(s: &str) -> Option<Name> {
    Name::from_ascii(s).ok()
}

impl Answerer {
    /// An answerer for `zone`; `ns_ip` is the address `ns.<origin>` resolves to;
    /// `forwarding` whether names outside the zone go to an upstream (RA is set).
    pub(crate) fn new(zone: Arc<Zone>, ttl: u32, ns_ip: IpAddr, forwarding: bool) -> Self {
        let ns_name = format!("ns.{}", zone.origin());
        let origin = name(zone.origin()).unwrap_or_else(Name::root);
        let ns = name(&ns_name).unwrap_or_else(Name::root);
        let hostmaster = name(&format!("hostmaster.{}", zone.origin())).unwrap_or_else(Name::root);
        Answerer { zone, ttl, origin, ns_name, ns, hostmaster, ns_ip, forwarding }
    }

    /// The zone answered from.
    pub(crate) fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Answers a datagram into `out` (UDP: the response fits the client's size or is
    /// sent empty with TC).
    pub(crate) fn answer_udp(&self, packet: &[u8], out: &mut Vec<u8>) -> Answered {
        match read(packet) {
            Read::Drop => Answered { outcome: Outcome::Drop, qtype: 0, rcode: 0 },
            Read::Error(m) => {
                encode(&m, 512, out);
                Answered { outcome: Outcome::Reply { cacheable: false }, qtype: 0, rcode: rcode_of(&m) }
            }
            Read::Query(q) => {
                let qtype = qtype_of(&q);
                match self.answer(&q) {
                    Response::Forward => Answered { outcome: Outcome::Forward(q), qtype, rcode: 0 },
                    Response::Message(m) => {
                        encode(&m, udp_limit(&q), out);
                        Answered { outcome: Outcome::Reply { cacheable: true }, qtype, rcode: rcode_of(&m) }
                    }
                }
            }
        }
    }

    /// A SERVFAIL for `query` (the upstream did not answer).
    pub(crate) fn servfail(&self, query: &Message) -> Message {
        let mut m = self.response_to(query, ResponseCode::ServFail);
        m.metadata.recursion_available = true;
        m
    }

    /// A response to `query` with its question, RD and CD copied, RA when
    /// forwarding, the EDNS record if the query had one.
    fn response_to(&self, query: &Message, rcode: ResponseCode) -> Message {
        let mut m = Message::response(query.metadata.id, query.metadata.op_code);
        m.metadata = Metadata::response_from_request(&query.metadata);
        m.metadata.recursion_available = self.forwarding;
        m.metadata.response_code = rcode;
        m.queries = query.queries.clone();
        m.edns = response_edns(query);
        m
    }

    /// The answer to a query read by [`read`]: the one function UDP and TCP answer
    /// with.
    pub(crate) fn answer(&self, query: &Message) -> Response {
        let Some(question) = query.queries.first() else {
            return Response::Message(Box::new(self.response_to(query, ResponseCode::FormErr)));
        };
        if query.edns.as_ref().is_some_and(|e| e.version() != 0) {
            return Response::Message(Box::new(self.response_to(query, ResponseCode::BADVERS)));
        }
        let refused = || Response::Message(Box::new(self.response_to(query, ResponseCode::Refused)));
        if question.query_class() != DNSClass::IN && question.query_class() != DNSClass::ANY {
            return refused();
        }
        let qname_lower = question.name().to_lowercase().to_ascii();
        if !self.zone.contains(&qname_lower) {
            if self.forwarding && query.metadata.recursion_desired {
                return Response::Forward;
            }
            return refused();
        }
        let qtype = question.query_type();
        if qtype == QType::AXFR || qtype == QType::IXFR {
            return refused();
        }

        let (rcode, answers, negative) = self.resolve(&qname_lower, qtype);
        let mut additional: Vec<Record> = Vec::new();
        let mut glue = false;
        for item in &answers {
            match item {
                Item::Zone(Record { data: RecordData::Srv { target, .. }, .. }) => {
                    if additional.iter().any(|r| &r.name == target) {
                        continue;
                    }
                    for t in [RecordType::A, RecordType::Aaaa] {
                        if let Lookup::Answer(rs) = self.lookup(target, t) {
                            additional.extend(rs.into_iter().filter(|r| r.data.record_type() == t));
                        }
                    }
                }
                Item::Ns => glue = true,
                _ => {}
            }
        }

        let mut m = self.response_to(query, rcode);
        m.metadata.authoritative = true;
        // The question's own name keeps the client's letter case in the answer.
        let owner = |r: &Record| if r.name == qname_lower { Some(question.name().clone()) } else { name(&r.name) };
        m.answers = answers.iter().filter_map(|i| self.item(i, &owner)).collect();
        if negative {
            m.authorities.extend(self.item(&Item::Soa, &owner));
        }
        m.additionals = additional.iter().filter_map(|r| zone_record(r, owner(r)?)).collect();
        if glue {
            let g = self.ns_glue_record();
            m.additionals.extend(zone_record(&g, self.ns.clone()));
        }
        Response::Message(Box::new(m))
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
    fn resolve(&self, qname: &str, qtype: QType) -> (ResponseCode, Vec<Item>, bool) {
        let apex = qname == self.zone.origin();
        let mut answers = Vec::new();
        match qtype {
            QType::SOA if apex => return (ResponseCode::NoError, vec![Item::Soa], false),
            QType::NS if apex => return (ResponseCode::NoError, vec![Item::Ns], false),
            QType::ANY if apex => answers.extend([Item::Soa, Item::Ns]),
            _ => {}
        }
        let rtype = match qtype {
            QType::A => Some(RecordType::A),
            QType::AAAA => Some(RecordType::Aaaa),
            QType::CNAME => Some(RecordType::Cname),
            QType::SRV => Some(RecordType::Srv),
            QType::TXT => Some(RecordType::Txt),
            QType::ANY => Some(RecordType::Any),
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
                    answers.extend(rs.into_iter().map(Item::Zone));
                    match target {
                        Some(t) if self.zone.contains(&t) => name = t,
                        _ => return (ResponseCode::NoError, answers, false),
                    }
                }
                Lookup::NoData | Lookup::OutOfZone => {
                    let apex_any = answers.iter().any(|i| matches!(i, Item::Soa));
                    let negative = (answers.is_empty() || matches!(found, Lookup::NoData)) && !apex_any;
                    return (ResponseCode::NoError, answers, negative);
                }
                Lookup::NxDomain => return (ResponseCode::NXDomain, answers, true),
            }
        }
        (ResponseCode::NoError, answers, false)
    }

    /// An item as a hickory record.
    fn item(&self, item: &Item, owner: &impl Fn(&Record) -> Option<Name>) -> Option<Rr> {
        match item {
            Item::Zone(r) => zone_record(r, owner(r)?),
            Item::Ns => Some(Rr::from_rdata(self.origin.clone(), self.ttl, RData::NS(NS(self.ns.clone())))),
            Item::Soa => {
                let soa = SOA::new(
                    self.ns.clone(),
                    self.hostmaster.clone(),
                    self.zone.serial(),
                    SOA_REFRESH,
                    SOA_RETRY,
                    SOA_EXPIRE,
                    self.ttl,
                );
                Some(Rr::from_rdata(self.origin.clone(), self.ttl, RData::SOA(soa)))
            }
        }
    }
}

/// A zone record as a hickory record owned by `owner` (`None` if a name in its data
/// is not a domain name, which the zone never holds).
fn zone_record(r: &Record, owner: Name) -> Option<Rr> {
    let data = match &r.data {
        RecordData::A(ip) => RData::A(A(*ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        RecordData::Cname(t) => RData::CNAME(CNAME(name(t)?)),
        RecordData::Txt(parts) => {
            // Each character string at most 255 bytes; none: one empty string.
            let mut strings: Vec<&[u8]> = parts.iter().map(|p| &p.as_bytes()[..p.len().min(255)]).collect();
            if strings.is_empty() {
                strings.push(b"");
            }
            RData::TXT(TXT::from_bytes(strings))
        }
        RecordData::Srv { priority, weight, port, target } => {
            RData::SRV(SRV::new(*priority, *weight, *port, name(target)?))
        }
    };
    Some(Rr::from_rdata(owner, r.ttl, data))
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;

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

    /// A query with RD and EDNS (1232), encoded by hickory-proto.
    fn query(qname: &str, qtype: QType) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        m.set_edns(edns);
        m.to_vec().unwrap()
    }

    #[test]
    fn a_cname_chain_is_followed_inside_the_zone() {
        let a = answerer();
        let mut out = Vec::new();
        let r = a.answer_udp(&query("www.corral.", QType::A), &mut out);
        assert_eq!(r.rcode, 0);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers.len(), 2, "CNAME and A");
        assert!(m.metadata.authoritative);
    }

    #[test]
    fn names_outside_the_zone_are_forwarded_only_with_rd() {
        let a = answerer();
        let mut out = Vec::new();
        let mut q = query("example.com.", QType::A);
        assert!(matches!(a.answer_udp(&q, &mut out).outcome, Outcome::Forward(_)));
        q[2] = 0;
        assert_eq!(a.answer_udp(&q, &mut out).rcode, u16::from(ResponseCode::Refused));
    }

    #[test]
    fn an_unknown_edns_version_gets_badvers() {
        let a = answerer();
        let mut out = Vec::new();
        let mut m = Message::from_vec(&query("web.corral.", QType::A)).unwrap();
        if let Some(e) = m.edns.as_mut() {
            e.set_version(1);
        }
        let r = a.answer_udp(&m.to_vec().unwrap(), &mut out);
        assert_eq!(r.rcode, u16::from(ResponseCode::BADVERS));
        // 16 is BADVERS in a response to a query (BADSIG, the same number, is TSIG's).
        assert_eq!(u16::from(Message::from_vec(&out).unwrap().metadata.response_code), 16);
    }

    #[test]
    fn mutated_queries_never_panic_and_always_fit_udp() {
        let a = answerer();
        let mut out = Vec::new();
        let seeds =
            [query("_http._tcp.web.corral.", QType::SRV), query("www.corral.", QType::A), query("corral.", QType::ANY)];
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
                let r = a.answer_udp(&q, &mut out);
                if matches!(r.outcome, Outcome::Reply { .. }) {
                    assert!(out.len() >= HEADER_LEN && out.len() <= MAX_UDP_PAYLOAD as usize);
                }
            }
        }
    }

    #[test]
    fn every_prefix_of_a_query_and_random_bytes_are_rejected_without_panic() {
        let p = query("web.corral.", QType::A);
        for n in 0..p.len() {
            assert!(!matches!(read(&p[..n]), Read::Query(_)), "prefix {n} accepted");
        }
        let mut seed = 0x2545F491u32;
        for _ in 0..20_000 {
            let len = (seed % 64) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                buf.push(seed as u8);
            }
            let _ = read(&buf);
        }
    }

    #[test]
    fn responses_and_other_opcodes_are_not_answered_normally() {
        let mut p = query("web.corral.", QType::A);
        p[2] |= 0x80;
        assert!(matches!(read(&p), Read::Drop));
        p[2] = 0x28; // opcode UPDATE
        let Read::Error(m) = read(&p) else { panic!("UPDATE answered normally") };
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    }
}
