//! The DNS wire format, as much of it as the server needs: a query's header, question
//! and EDNS OPT record read (RFC 1035, RFC 6891), answers written with name
//! compression.
//!
//! Reading never panics and never trusts a length: every access is checked against
//! the packet, so a malformed packet is an [`Reject`], not a crash.

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type NS.
pub const TYPE_NS: u16 = 2;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Record type SOA.
pub const TYPE_SOA: u16 = 6;
/// Record type TXT.
pub const TYPE_TXT: u16 = 16;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Record type SRV.
pub const TYPE_SRV: u16 = 33;
/// The EDNS pseudo-record (RFC 6891).
pub const TYPE_OPT: u16 = 41;
/// Incremental zone transfer.
pub const TYPE_IXFR: u16 = 251;
/// Full zone transfer.
pub const TYPE_AXFR: u16 = 252;
/// Every type (a query's `ANY`).
pub const TYPE_ANY: u16 = 255;
/// Class IN.
pub const CLASS_IN: u16 = 1;
/// Class ANY (a query's `*`).
pub const CLASS_ANY: u16 = 255;

/// Response codes (RFC 1035 §4.1.1, RFC 6891 for BADVERS).
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// The query could not be read.
    pub const FORMERR: u16 = 1;
    /// The server failed (here: the upstream did not answer).
    pub const SERVFAIL: u16 = 2;
    /// The name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// The kind of query is not implemented.
    pub const NOTIMP: u16 = 4;
    /// The server will not answer this query.
    pub const REFUSED: u16 = 5;
    /// An EDNS version the server does not speak (extended rcode 16).
    pub const BADVERS: u16 = 16;
}

/// The UDP payload size this server advertises and the most it sends over UDP
/// (the size the 2020 DNS flag day settled on, which avoids fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The header is 12 bytes.
pub const HEADER_LEN: usize = 12;

/// A query's EDNS options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The largest UDP response the client accepts.
    pub udp_size: u16,
    /// The EDNS version (only 0 is spoken).
    pub version: u8,
    /// DNSSEC OK bit (copied back; no signature is ever served).
    pub dnssec_ok: bool,
}

/// A query, read.
#[derive(Debug)]
pub struct Query<'a> {
    /// Its ID.
    pub id: u16,
    /// The header's flags word (RD, CD, opcode…), as received.
    pub flags: u16,
    /// The question section as received (name, type, class): echoed back as is, so
    /// the client's letter case survives.
    pub question: &'a [u8],
    /// The question's name, lower-case, absolute, in presentation form (`web.corral.`,
    /// `.` for the root); bytes outside printable ASCII and dots inside labels are
    /// escaped `\DDD`.
    pub qname: String,
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
    /// The OPT record, if any.
    pub edns: Option<Edns>,
}

impl Query<'_> {
    /// Whether the client asked for recursion (RD).
    pub fn recursion_desired(&self) -> bool {
        self.flags & 0x0100 != 0
    }
}

/// Why a packet is not a query to answer normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Too short to hold a header, or a response: nothing is sent back.
    Drop,
    /// Answer with this rcode and an empty body (FORMERR, NOTIMP), echoing the ID
    /// and flags.
    Respond {
        /// The query's ID.
        id: u16,
        /// The query's flags.
        flags: u16,
        /// The rcode to answer.
        rcode: u16,
    },
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// Reads a query. Compression pointers are refused in the question (a lone question
/// has nothing earlier to point at) but skipped in the additional section.
pub fn parse_query(p: &[u8]) -> Result<Query<'_>, Reject> {
    if p.len() < HEADER_LEN {
        return Err(Reject::Drop);
    }
    let id = u16::from_be_bytes([p[0], p[1]]);
    let flags = u16::from_be_bytes([p[2], p[3]]);
    if flags & 0x8000 != 0 {
        return Err(Reject::Drop);
    }
    let formerr = Reject::Respond { id, flags, rcode: rcode::FORMERR };
    let opcode = (flags >> 11) & 0xF;
    if opcode != 0 {
        return Err(Reject::Respond { id, flags, rcode: rcode::NOTIMP });
    }
    let qdcount = u16::from_be_bytes([p[4], p[5]]);
    let ancount = u16::from_be_bytes([p[6], p[7]]);
    let nscount = u16::from_be_bytes([p[8], p[9]]);
    let arcount = u16::from_be_bytes([p[10], p[11]]);
    if qdcount != 1 || ancount != 0 || nscount != 0 {
        return Err(formerr);
    }
    let (qname, name_end) = read_question_name(p, HEADER_LEN).ok_or(formerr)?;
    let qtype = be16(p, name_end).ok_or(formerr)?;
    let qclass = be16(p, name_end + 2).ok_or(formerr)?;
    let question_end = name_end + 4;
    let mut at = question_end;
    let mut edns = None;
    for _ in 0..arcount {
        let name_start = at;
        at = skip_name(p, at).ok_or(formerr)?;
        let (rtype, class, ttl, rdlen) = (|| {
            Some((
                be16(p, at)?,
                be16(p, at + 2)?,
                u32::from_be_bytes(p.get(at + 4..at + 8)?.try_into().ok()?),
                be16(p, at + 8)?,
            ))
        })()
        .ok_or(formerr)?;
        at += 10 + rdlen as usize;
        if at > p.len() {
            return Err(formerr);
        }
        if rtype == TYPE_OPT {
            // One OPT, owned by the root.
            if edns.is_some() || p[name_start] != 0 {
                return Err(formerr);
            }
            edns = Some(Edns { udp_size: class, version: (ttl >> 16) as u8, dnssec_ok: ttl & 0x8000 != 0 });
        }
    }
    Ok(Query { id, flags, question: &p[HEADER_LEN..question_end], qname, qtype, qclass, edns })
}

/// Reads an uncompressed name at `at`: its presentation form (lower-case) and where
/// it ends.
fn read_question_name(p: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::with_capacity(32);
    let mut wire_len = 1;
    loop {
        let len = *p.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        wire_len += len + 1;
        if wire_len > 255 {
            return None;
        }
        for &b in p.get(at..at + len)? {
            match b {
                b'.' | b'\\' | 0..=0x20 | 0x7f.. => {
                    name.push('\\');
                    name.push_str(&format!("{b:03}"));
                }
                _ => name.push(b.to_ascii_lowercase() as char),
            }
        }
        name.push('.');
        at += len;
    }
    if name.is_empty() {
        name.push('.');
    }
    Some((name, at))
}

/// Skips a possibly compressed name at `at`; returns where the record goes on.
fn skip_name(p: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *p.get(at)?;
        match len {
            0 => return Some(at + 1),
            1..=63 => at += 1 + len as usize,
            0xC0.. => {
                p.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
    None
}

/// Writes a response: the header, sections in order, names compressed against what
/// was written before (owners, CNAME/NS/SOA data; never SRV targets, RFC 2782).
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    /// Offsets of names already written, each a possible pointer target.
    names: Vec<u16>,
}

/// Sections, to count records.
#[derive(Clone, Copy, Debug)]
pub enum Section {
    /// Answers.
    Answer,
    /// Authority.
    Authority,
    /// Additional.
    Additional,
}

const MAX_POINTER_TARGETS: usize = 64;

impl<'b> Writer<'b> {
    /// Starts a response to `id` in `buf` (cleared): a header with `flags` and
    /// `rcode` (the low 4 bits; the rest goes into the OPT record), the question as
    /// received (or none).
    pub fn new(buf: &'b mut Vec<u8>, id: u16, flags: u16, rcode: u16, question: Option<&[u8]>) -> Self {
        buf.clear();
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&(flags | (rcode & 0xF)).to_be_bytes());
        buf.extend_from_slice(&[0, u8::from(question.is_some()), 0, 0, 0, 0, 0, 0]);
        let mut w = Writer { buf, names: Vec::new() };
        if let Some(q) = question {
            w.buf.extend_from_slice(q);
            // Each label of the question's name can be pointed at.
            let mut at = 0;
            while let Some(&len) = q.get(at) {
                if len == 0 || len > 63 {
                    break;
                }
                w.names.push((HEADER_LEN + at) as u16);
                at += 1 + len as usize;
            }
        }
        w
    }

    /// The length so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written (never: the header is).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn bump(&mut self, section: Section) {
        let at = match section {
            Section::Answer => 6,
            Section::Authority => 8,
            Section::Additional => 10,
        };
        let n = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]).saturating_add(1);
        self.buf[at..at + 2].copy_from_slice(&n.to_be_bytes());
    }

    /// Writes `name` (presentation form, absolute), compressed if `compress`.
    pub fn name(&mut self, name: &str, compress: bool) {
        let mut rest = name.strip_suffix('.').unwrap_or(name);
        loop {
            if rest.is_empty() {
                self.buf.push(0);
                return;
            }
            if compress && let Some(off) = self.find(rest) {
                self.buf.extend_from_slice(&(0xC000 | off).to_be_bytes());
                return;
            }
            let pos = self.buf.len();
            if pos < 0x3FFF && self.names.len() < MAX_POINTER_TARGETS {
                self.names.push(pos as u16);
            }
            let (label, tail) = rest.split_once('.').unwrap_or((rest, ""));
            let label = &label.as_bytes()[..label.len().min(63)];
            if !label.is_empty() {
                self.buf.push(label.len() as u8);
                self.buf.extend_from_slice(label);
            }
            rest = tail;
        }
    }

    fn find(&self, suffix: &str) -> Option<u16> {
        self.names.iter().copied().find(|&off| self.name_at_is(off as usize, suffix))
    }

    /// Whether the (possibly compressed) name at `at` is `suffix`, ignoring case.
    fn name_at_is(&self, mut at: usize, suffix: &str) -> bool {
        let p = &self.buf[..];
        let mut labels = suffix.split('.');
        for _ in 0..128 {
            let Some(&len) = p.get(at) else { return false };
            if len >= 0xC0 {
                let Some(&lo) = p.get(at + 1) else { return false };
                at = (((len & 0x3F) as usize) << 8) | lo as usize;
                continue;
            }
            let len = len as usize;
            match labels.next() {
                None => return len == 0,
                Some(l) => {
                    if len == 0 || l.len() != len {
                        return false;
                    }
                    let Some(bytes) = p.get(at + 1..at + 1 + len) else { return false };
                    if !bytes.eq_ignore_ascii_case(l.as_bytes()) {
                        return false;
                    }
                    at += 1 + len;
                }
            }
        }
        false
    }

    /// Writes one record: owner, type, class IN, TTL, and the data `rdata` writes.
    pub fn record(&mut self, section: Section, owner: &str, rtype: u16, ttl: u32, rdata: impl FnOnce(&mut Self)) {
        self.name(owner, true);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        rdata(self);
        let rdlen = (self.buf.len() - len_at - 2).min(u16::MAX as usize) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        self.bump(section);
    }

    /// Appends raw bytes (inside a record's data).
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Appends TXT character strings (each cut to 255 bytes; none: one empty string).
    pub fn txt(&mut self, parts: &[String]) {
        if parts.is_empty() {
            self.buf.push(0);
        }
        for part in parts {
            let b = &part.as_bytes()[..part.len().min(255)];
            self.buf.push(b.len() as u8);
            self.buf.extend_from_slice(b);
        }
    }

    /// Writes the OPT record (additional section): our UDP size, the extended rcode's
    /// upper bits, version 0, the DO bit copied.
    pub fn opt(&mut self, rcode: u16, dnssec_ok: bool) {
        self.buf.push(0);
        self.buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
        self.buf.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        self.buf.push((rcode >> 4) as u8);
        self.buf.push(0);
        self.buf.extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        self.bump(Section::Additional);
    }
}

/// Sets the TC bit of a response in `buf`.
pub fn set_truncated(buf: &mut [u8]) {
    if let Some(b) = buf.get_mut(2) {
        *b |= 0x02;
    }
}

/// The rcode (low 4 bits) of a response.
pub fn response_rcode(buf: &[u8]) -> u16 {
    buf.get(3).map_or(0, |b| u16::from(b & 0xF))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[&str], qtype: u16, opt: Option<u16>) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())];
        for l in name {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some(size) = opt {
            p.push(0);
            p.extend_from_slice(&TYPE_OPT.to_be_bytes());
            p.extend_from_slice(&size.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x80, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn a_query_is_read_with_its_name_lower_cased_and_its_edns() {
        let p = query(&["Web", "CORRAL"], TYPE_A, Some(4096));
        let q = parse_query(&p).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.qname, "web.corral.");
        assert_eq!(q.qtype, TYPE_A);
        assert!(q.recursion_desired());
        assert_eq!(q.edns, Some(Edns { udp_size: 4096, version: 0, dnssec_ok: true }));
        assert_eq!(&q.question[..4], b"\x03Web");
    }

    #[test]
    fn every_prefix_of_a_query_and_random_bytes_are_rejected_without_panic() {
        let p = query(&["web", "corral"], TYPE_A, Some(1232));
        for n in 0..p.len() {
            let r = parse_query(&p[..n]);
            assert!(r.is_err(), "prefix {n} accepted");
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
            let _ = parse_query(&buf);
        }
    }

    #[test]
    fn names_are_compressed_against_the_question_ignoring_case() {
        let p = query(&["Web", "corral"], TYPE_CNAME, None);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, q.id, 0x8400, 0, Some(q.question));
        w.record(Section::Answer, "web.corral.", TYPE_CNAME, 5, |w| w.name("api.corral.", true));
        // Owner: a pointer to the question (offset 12); data: "api" then a pointer to
        // "corral" inside the question (offset 16).
        let rr = &buf[HEADER_LEN + q.question.len()..];
        assert_eq!(&rr[..2], &[0xC0, 12]);
        assert_eq!(&rr[12..18], &[3, b'a', b'p', b'i', 0xC0, 16]);
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 1);
    }

    #[test]
    fn responses_and_other_opcodes_are_not_answered_normally() {
        let mut p = query(&["a"], TYPE_A, None);
        p[2] |= 0x80;
        assert_eq!(parse_query(&p).unwrap_err(), Reject::Drop);
        p[2] = 0x28; // opcode UPDATE
        assert!(matches!(parse_query(&p), Err(Reject::Respond { rcode: rcode::NOTIMP, .. })));
    }
}
