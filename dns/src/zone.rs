//! The zone: every record served, each kept by the object that produced it.
//!
//! Writers hand over whole sets per [`Source`] ([`Change::Set`] replaces what that
//! source produced before); readers look names up. One `apply` is atomic for readers:
//! a query sees the zone before it or after it, never half of it.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};

/// The object a set of records comes from (`Task default/web-1`, `Node n1`), so that
/// `corral dns records` can say why each record is served.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    /// The object's kind, e.g. `Task`.
    pub kind: String,
    /// Its namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl Source {
    /// The source for object `name` of `kind` in `namespace` (empty: cluster-scoped).
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Source { kind: kind.into(), namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The data of one record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// An alias: the canonical name (absolute, ending in a dot).
    Cname(String),
    /// A service location (RFC 2782); `target` is absolute, ending in a dot.
    Srv {
        /// Lower is preferred.
        priority: u16,
        /// Share among equal priorities.
        weight: u16,
        /// The port.
        port: u16,
        /// The host.
        target: String,
    },
    /// Text, as one or more character strings of at most 255 bytes each.
    Txt(Vec<String>),
}

impl RecordData {
    /// The record type this data is.
    pub fn record_type(&self) -> RecordType {
        match self {
            RecordData::A(_) => RecordType::A,
            RecordData::Aaaa(_) => RecordType::Aaaa,
            RecordData::Cname(_) => RecordType::Cname,
            RecordData::Srv { .. } => RecordType::Srv,
            RecordData::Txt(_) => RecordType::Txt,
        }
    }
}

impl fmt::Display for RecordData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordData::A(ip) => write!(f, "{ip}"),
            RecordData::Aaaa(ip) => write!(f, "{ip}"),
            RecordData::Cname(n) => write!(f, "{n}"),
            RecordData::Srv { priority, weight, port, target } => write!(f, "{priority} {weight} {port} {target}"),
            RecordData::Txt(parts) => {
                let quoted: Vec<String> = parts.iter().map(|p| format!("{p:?}")).collect();
                write!(f, "{}", quoted.join(" "))
            }
        }
    }
}

/// The record types the zone holds (and `Any`, for queries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Alias.
    Cname,
    /// Service location.
    Srv,
    /// Text.
    Txt,
    /// Every type at the name (a query's `ANY`).
    Any,
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Srv => "SRV",
            RecordType::Txt => "TXT",
            RecordType::Any => "ANY",
        })
    }
}

/// One record: an absolute, lower-case name (ending in a dot), a TTL and its data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    /// The owner name, e.g. `web.default.corral.`.
    pub name: String,
    /// Seconds resolvers may cache it.
    pub ttl: u32,
    /// What it says.
    pub data: RecordData,
}

/// One update of the zone.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Everything `Source` produces now (replacing what it produced before; empty: nothing).
    Set(Source, Vec<Record>),
    /// The source is gone: remove what it produced.
    Remove(Source),
}

/// What a query finds.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// Records of the name and type (a CNAME of the name when it has one and another
    /// type was asked).
    Answer(Vec<Record>),
    /// The name exists (it has records, or names below it do) but none of that type.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// The name is not inside the zone.
    OutOfZone,
}

/// Lower-cases a name and makes it absolute.
pub fn normalize(name: &str) -> String {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

#[derive(Default)]
struct Inner {
    /// Who holds records at each owner name: a source, and where the record is among
    /// that source's. Each record is held once, in `by_source`: a hundred thousand
    /// tasks' and their services' records held twice were about a tenth of a busy
    /// control plane's memory.
    names: HashMap<String, Vec<(Arc<Source>, u32)>>,
    /// How many names lie below each name (empty non-terminals answer NODATA, not
    /// NXDOMAIN).
    below: HashMap<String, usize>,
    /// Each source's records, to replace them as a whole.
    by_source: HashMap<Arc<Source>, Vec<Record>>,
    serial: u32,
}

/// The zone, shared between the controller that writes it and the server that reads
/// it; cheap to clone.
#[derive(Clone)]
pub struct Zone {
    origin: Arc<str>,
    inner: Arc<RwLock<Inner>>,
}

impl Zone {
    /// An empty zone for `origin` (e.g. `corral.`).
    ///
    /// # Errors
    /// [`Error::InvalidName`] if `origin` is empty.
    pub fn new(origin: &str) -> Result<Self> {
        let origin = normalize(origin);
        if origin == "." {
            return Err(Error::InvalidName { name: origin, reason: "the zone cannot be the root".into() });
        }
        Ok(Zone { origin: origin.into(), inner: Arc::default() })
    }

    /// The zone's apex, lower-case and absolute (`corral.`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether `name` (normalized) is the apex or below it.
    pub fn contains(&self, name: &str) -> bool {
        let origin: &str = &self.origin;
        name == origin
            || (name.len() > origin.len()
                && name.ends_with(origin)
                && name.as_bytes()[name.len() - origin.len() - 1] == b'.')
    }

    /// Applies `changes` at once; records outside the zone are dropped (the caller
    /// makes names, so one outside is its bug, logged by it).
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        let mut inner = self.inner.write();
        for change in changes {
            let (source, records) = match change {
                Change::Set(s, r) => (s, r),
                Change::Remove(s) => (s, Vec::new()),
            };
            if let Some((held, old)) = inner.by_source.remove_entry(&source) {
                inner.unlink(&held, &old, &self.origin);
            }
            let records: Vec<Record> = records
                .into_iter()
                .map(|mut r| {
                    r.name = normalize(&r.name);
                    r
                })
                .filter(|r| self.contains(&r.name))
                .collect();
            if !records.is_empty() {
                let source = Arc::new(source);
                inner.link(&source, &records, &self.origin);
                inner.by_source.insert(source, records);
            }
        }
        inner.serial = inner.serial.wrapping_add(1);
    }

    /// Looks `name` up for `rtype`.
    pub fn lookup(&self, name: &str, rtype: RecordType) -> Lookup {
        // The server asks with names already normalized: no copy for those.
        let name: std::borrow::Cow<'_, str> = if name.ends_with('.') && !name.bytes().any(|b| b.is_ascii_uppercase()) {
            name.into()
        } else {
            normalize(name).into()
        };
        let name: &str = &name;
        if !self.contains(name) {
            return Lookup::OutOfZone;
        }
        let inner = self.inner.read();
        let Some(entries) = inner.names.get(name) else {
            return if name == &*self.origin || inner.below.contains_key(name) {
                Lookup::NoData
            } else {
                Lookup::NxDomain
            };
        };
        let wanted = |r: &Record| {
            rtype == RecordType::Any || r.data.record_type() == rtype || r.data.record_type() == RecordType::Cname
        };
        let mut found: Vec<Record> = inner.records_at(entries).filter(|r| wanted(r)).cloned().collect();
        found.sort();
        found.dedup();
        if found.is_empty() { Lookup::NoData } else { Lookup::Answer(found) }
    }

    /// Whether `source` serves exactly `records` now, in that order (no records:
    /// whether it serves nothing) — so that a writer need not keep its own copy of
    /// what it handed over.
    pub fn serves(&self, source: &Source, records: &[Record]) -> bool {
        let inner = self.inner.read();
        let Some(held) = inner.by_source.get(source) else { return records.is_empty() };
        held.len() == records.len()
            && held
                .iter()
                .zip(records)
                .all(|(h, r)| h.ttl == r.ttl && h.data == r.data && (h.name == r.name || h.name == normalize(&r.name)))
    }

    /// Every object with records in the zone.
    pub fn sources(&self) -> Vec<Source> {
        self.inner.read().by_source.keys().map(|s| (**s).clone()).collect()
    }

    /// The objects whose records hold `name` now, each once.
    pub fn holders(&self, name: &str) -> Vec<Source> {
        let name = normalize(name);
        let inner = self.inner.read();
        let mut holders: Vec<Source> =
            inner.names.get(&name).into_iter().flatten().map(|(s, _)| &**s).cloned().collect();
        holders.sort();
        holders.dedup();
        holders
    }

    /// Every record with its source, sorted by name; only those of sources whose name
    /// is `source_name`, when given (for `corral dns records NAME`).
    pub fn records(&self, source_name: Option<&str>) -> Vec<(Source, Record)> {
        let inner = self.inner.read();
        let mut all: Vec<(Source, Record)> = inner
            .by_source
            .iter()
            .filter(|(s, _)| source_name.is_none_or(|n| s.name == n))
            .flat_map(|(s, rs)| rs.iter().map(move |r| ((**s).clone(), r.clone())))
            .collect();
        all.sort_by(|a, b| (&a.1.name, &a.1.data, &a.0).cmp(&(&b.1.name, &b.1.data, &b.0)));
        all
    }

    /// How many records the zone holds.
    pub fn len(&self) -> usize {
        self.inner.read().by_source.values().map(Vec::len).sum()
    }

    /// Whether the zone holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bumped by every [`Zone::apply`]; the SOA serial.
    pub fn serial(&self) -> u32 {
        self.inner.read().serial
    }
}

impl Inner {
    /// Enters `records`, the records `source` is about to hold, under their names.
    fn link(&mut self, source: &Arc<Source>, records: &[Record], origin: &str) {
        for (at, r) in records.iter().enumerate() {
            // Bounded by the records a source holds, far below u32::MAX.
            let at = u32::try_from(at).unwrap_or(u32::MAX);
            if let Some(entry) = self.names.get_mut(&r.name) {
                entry.push((source.clone(), at));
                continue;
            }
            self.names.insert(r.name.clone(), vec![(source.clone(), at)]);
            for parent in parents(&r.name, origin) {
                *self.below.entry(parent.to_string()).or_default() += 1;
            }
        }
    }

    /// Takes `records`, which `source` held, out of their names.
    fn unlink(&mut self, source: &Arc<Source>, records: &[Record], origin: &str) {
        for r in records {
            // The first record of a name takes all of the source's there; the others
            // find none left.
            let Some(entry) = self.names.get_mut(&r.name) else { continue };
            entry.retain(|(s, _)| !Arc::ptr_eq(s, source));
            if !entry.is_empty() {
                continue;
            }
            self.names.remove(&r.name);
            for parent in parents(&r.name, origin) {
                if let Some(n) = self.below.get_mut(parent) {
                    *n -= 1;
                    if *n == 0 {
                        self.below.remove(parent);
                    }
                }
            }
        }
    }

    /// The records `entries` (of one name) point at.
    fn records_at<'a>(&'a self, entries: &'a [(Arc<Source>, u32)]) -> impl Iterator<Item = &'a Record> + 'a {
        // A name's entries come a source at a time (a service's hundred instances at
        // its name): its records are looked up once per run of them.
        let mut last: Option<(&Arc<Source>, &[Record])> = None;
        entries.iter().filter_map(move |(source, at)| {
            let records = match last {
                Some((s, records)) if Arc::ptr_eq(s, source) => records,
                _ => {
                    let records = self.by_source.get(source).map_or(&[][..], Vec::as_slice);
                    last = Some((source, records));
                    records
                }
            };
            records.get(*at as usize)
        })
    }
}

/// The names strictly between `name` and `origin` (exclusive of both).
fn parents<'a>(name: &'a str, origin: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let mut rest = name;
    std::iter::from_fn(move || {
        let dot = rest.find('.')?;
        rest = &rest[dot + 1..];
        (rest.len() > origin.len()).then_some(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, ip: [u8; 4]) -> Record {
        Record { name: name.into(), ttl: 5, data: RecordData::A(ip.into()) }
    }

    #[test]
    fn a_set_replaces_what_its_source_produced_before() {
        let zone = Zone::new("corral").unwrap();
        let web = Source::new("Service", "default", "web");
        zone.apply([Change::Set(web.clone(), vec![a("web.default.corral", [10, 0, 0, 1])])]);
        zone.apply([Change::Set(web.clone(), vec![a("web.default.corral.", [10, 0, 0, 2])])]);
        assert_eq!(
            zone.lookup("WEB.default.corral.", RecordType::A),
            Lookup::Answer(vec![a("web.default.corral.", [10, 0, 0, 2])])
        );
        zone.apply([Change::Remove(web)]);
        assert_eq!(zone.lookup("web.default.corral.", RecordType::A), Lookup::NxDomain);
        assert!(zone.is_empty());
    }

    #[test]
    fn empty_non_terminals_and_other_types_answer_nodata() {
        let zone = Zone::new("corral.").unwrap();
        zone.apply([Change::Set(
            Source::new("Task", "default", "t1"),
            vec![a("t1.default.task.corral.", [10, 0, 0, 1])],
        )]);
        assert_eq!(zone.lookup("default.task.corral.", RecordType::A), Lookup::NoData);
        assert_eq!(zone.lookup("task.corral.", RecordType::A), Lookup::NoData);
        assert_eq!(zone.lookup("corral.", RecordType::A), Lookup::NoData);
        assert_eq!(zone.lookup("t1.default.task.corral.", RecordType::Srv), Lookup::NoData);
        assert_eq!(zone.lookup("t2.default.task.corral.", RecordType::A), Lookup::NxDomain);
        assert_eq!(zone.lookup("example.com.", RecordType::A), Lookup::OutOfZone);
        zone.apply([Change::Remove(Source::new("Task", "default", "t1"))]);
        assert_eq!(zone.lookup("default.task.corral.", RecordType::A), Lookup::NxDomain);
    }

    #[test]
    fn records_say_which_object_produced_them() {
        let zone = Zone::new("corral.").unwrap();
        zone.apply([
            Change::Set(Source::new("Node", "", "n1"), vec![a("n1.node.corral.", [10, 0, 0, 9])]),
            Change::Set(Source::new("Task", "default", "t1"), vec![a("t1.default.task.corral.", [10, 0, 0, 9])]),
        ]);
        let all = zone.records(None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0.to_string(), "Node n1");
        assert_eq!(zone.records(Some("t1")).len(), 1);
    }

    #[test]
    fn holders_name_each_object_serving_a_name_once() {
        let zone = Zone::new("corral.").unwrap();
        let web = Source::new("Service", "default", "web");
        zone.apply([Change::Set(
            web.clone(),
            vec![a("web.default.corral.", [10, 0, 0, 1]), a("web.default.corral.", [10, 0, 0, 2])],
        )]);
        assert_eq!(zone.holders("WEB.default.corral"), vec![web]);
        assert!(zone.holders("db.default.corral.").is_empty());
    }

    #[test]
    fn sources_sharing_a_name_are_replaced_and_removed_each_on_its_own() {
        let zone = Zone::new("corral.").unwrap();
        let web = Source::new("Service", "default", "web");
        let extra = Source::new("DnsRecord", "default", "extra");
        let srv = |port: u16| Record {
            name: "_http._tcp.web.default.corral.".into(),
            ttl: 5,
            data: RecordData::Srv { priority: 0, weight: 10, port, target: "t1.default.task.corral.".into() },
        };
        zone.apply([
            Change::Set(
                web.clone(),
                vec![srv(31000), a("web.default.corral.", [10, 0, 0, 1]), a("web.default.corral.", [10, 0, 0, 2])],
            ),
            Change::Set(extra.clone(), vec![a("web.default.corral.", [10, 0, 0, 9])]),
        ]);
        let ips = |zone: &Zone| match zone.lookup("web.default.corral.", RecordType::A) {
            Lookup::Answer(found) => found.into_iter().map(|r| r.data.to_string()).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ips(&zone), ["10.0.0.1", "10.0.0.2", "10.0.0.9"]);
        // Fewer records, in another order: each name points at what the source holds now.
        zone.apply([Change::Set(web.clone(), vec![a("web.default.corral.", [10, 0, 0, 3]), srv(31001)])]);
        assert_eq!(ips(&zone), ["10.0.0.3", "10.0.0.9"]);
        assert_eq!(zone.lookup("_http._tcp.web.default.corral.", RecordType::Srv), Lookup::Answer(vec![srv(31001)]));
        zone.apply([Change::Remove(web.clone())]);
        assert_eq!(ips(&zone), ["10.0.0.9"]);
        assert_eq!(zone.lookup("_http._tcp.web.default.corral.", RecordType::Srv), Lookup::NxDomain);
        assert_eq!(zone.lookup("_tcp.web.default.corral.", RecordType::Srv), Lookup::NxDomain);
        assert_eq!(zone.holders("web.default.corral."), vec![extra.clone()]);
        zone.apply([Change::Remove(extra)]);
        assert!(zone.is_empty());
        assert_eq!(zone.lookup("web.default.corral.", RecordType::A), Lookup::NxDomain);
        assert_eq!(zone.lookup("default.corral.", RecordType::A), Lookup::NxDomain);
    }

    #[test]
    fn serves_compares_what_a_source_holds() {
        let zone = Zone::new("corral.").unwrap();
        let web = Source::new("Service", "default", "web");
        assert!(zone.serves(&web, &[]));
        zone.apply([Change::Set(web.clone(), vec![a("WEB.default.corral", [10, 0, 0, 1])])]);
        assert!(zone.serves(&web, &[a("web.default.corral.", [10, 0, 0, 1])]));
        assert!(!zone.serves(&web, &[a("web.default.corral.", [10, 0, 0, 2])]));
        assert!(!zone.serves(&web, &[]));
        assert_eq!(zone.sources(), vec![web]);
    }
}
