//! What the cluster DNS serves, decided from a snapshot of tasks, services, nodes and
//! `DnsRecord`s: a pure function, no I/O.
//!
//! Per object (a [`Source`]):
//! - a `Node` with an address: `A`/`AAAA NODE.node.corral.`;
//! - a running `Task` on a node with an address: `A TASK.NAMESPACE.task.corral.`;
//! - a `Service`: `A SERVICE.NAMESPACE.corral.` with the addresses of its instances
//!   that run, are healthy (when they have health checks) and ready (when the service
//!   has a readiness check), are not being killed or deleted; and per named port of
//!   those instances `SRV _PORT._tcp.SERVICE.NAMESPACE.corral.` → the instance's host
//!   port at its task's name;
//! - the control plane (`Server leader`): `leader.corral.`;
//! - a `DnsRecord`: what it declares.
//!
//! Names are made by [`super::names`]; a name that cannot be made becomes a
//! [`Problem`] of its object and is not served. Collisions: Corral's own names are
//! unique by construction (see [`super::names`]), so only a `DnsRecord` can collide —
//! with one of Corral's names (Corral's wins) or with another `DnsRecord` (the older
//! one, by creation time then namespace and name, wins). The loser serves nothing and
//! its status says which object holds the name.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use corral_api::kinds::dns_record::{DnsRecord, DnsRecordType};
use corral_api::kinds::node::Node;
use corral_api::kinds::service::{SERVICE_LABEL, Service};
use corral_api::kinds::task::{TaskPhase, TaskSummary};
use corral_dns::{Record, RecordData, Source};

use super::names::{self, NameError};

/// Kinds of the sources, as `corral dns records` shows them.
pub const TASK: &str = "Task";
/// See [`TASK`].
pub const SERVICE: &str = "Service";
/// See [`TASK`].
pub const NODE: &str = "Node";
/// See [`TASK`].
pub const DNS_RECORD: &str = "DnsRecord";
/// The control plane's source: kind `Server`, name `leader`.
pub const SERVER: &str = "Server";

/// What the decision reads.
#[derive(Clone, Copy)]
pub struct Snapshot<'a> {
    /// Every task.
    pub tasks: &'a [Arc<TaskSummary>],
    /// Every service.
    pub services: &'a [Arc<Service>],
    /// Every node.
    pub nodes: &'a [Arc<Node>],
    /// Every `DnsRecord`.
    pub records: &'a [Arc<DnsRecord>],
    /// Tasks (`NAMESPACE/NAME`) whose service's readiness check they passed.
    pub ready: &'a HashSet<String>,
    /// The control plane's address, for `leader.corral.`.
    pub leader: Option<IpAddr>,
    /// TTL of Corral's own records, and of `DnsRecord`s that give none.
    pub ttl: u32,
}

/// Why an object's records (or some of them) are not served.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    /// CamelCase: `InvalidName`, `NameReserved`, `InvalidValue`, `NameTaken`.
    pub reason: String,
    /// For a person: what, and what to do.
    pub message: String,
}

impl Problem {
    fn name(e: &NameError) -> Self {
        Problem { reason: e.reason().into(), message: e.to_string() }
    }

    fn value(message: String) -> Self {
        Problem { reason: "InvalidValue".into(), message }
    }
}

/// What a `DnsRecord`'s status should say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserStatus {
    /// The names served for it.
    pub served: Vec<String>,
    /// Why it serves nothing, if it does not.
    pub problem: Option<Problem>,
}

/// The decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Every source with records, and its records (sorted).
    pub records: BTreeMap<Source, Vec<Record>>,
    /// Names that could not be made, by object (of every kind but `DnsRecord`, whose
    /// problems are in `user`).
    pub problems: BTreeMap<Source, BTreeSet<Problem>>,
    /// Each `DnsRecord`'s status, by `(namespace, name)`.
    pub user: BTreeMap<(String, String), UserStatus>,
}

/// What one object serves, and why some of it is not served.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Its records, sorted; empty when it serves nothing.
    pub records: Vec<Record>,
    /// Names it should have and cannot.
    pub problems: BTreeSet<Problem>,
}

impl Decision {
    fn problem(problem: Problem) -> Self {
        Decision { records: Vec::new(), problems: [problem].into() }
    }
}

/// Decides every record served: the whole zone from the whole snapshot. The
/// controller decides only the objects that changed, with the functions this one is
/// made of ([`node`], [`task`], [`service`], [`leader`], [`user_records`]), so both
/// always agree.
pub fn decide(s: &Snapshot<'_>) -> Plan {
    let mut plan = Plan::default();
    let addresses: HashMap<&str, IpAddr> =
        s.nodes.iter().filter_map(|n| Some((n.metadata.name.as_str(), node_address(n)?))).collect();
    let address_of = |node: &str| addresses.get(node).copied();

    for n in s.nodes {
        add(&mut plan, Source::new(NODE, "", &n.metadata.name), node(n, s.ttl));
    }
    if let Some(ip) = s.leader {
        plan.records.insert(leader_source(), leader(ip, s.ttl));
    }
    let mut instances: HashMap<(&str, &str), Vec<Arc<TaskSummary>>> = HashMap::new();
    for t in s.tasks {
        let ns = t.metadata.namespace.as_deref().unwrap_or_default();
        add(&mut plan, Source::new(TASK, ns, &t.metadata.name), task(t, &address_of, s.ttl));
        if let Some(svc) = t.metadata.labels.get(SERVICE_LABEL) {
            instances.entry((ns, svc.as_str())).or_default().push(t.clone());
        }
    }
    for svc in s.services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let members = instances.get(&(ns, svc.metadata.name.as_str())).map(Vec::as_slice).unwrap_or_default();
        add(
            &mut plan,
            Source::new(SERVICE, ns, &svc.metadata.name),
            service(svc, members, &address_of, s.ready, s.ttl),
        );
    }

    // Corral's own names first: a `DnsRecord` cannot take one.
    let mut holders: HashMap<&str, &Source> = HashMap::new();
    for (source, records) in &plan.records {
        for r in records {
            holders.entry(r.name.as_str()).or_insert(source);
        }
    }
    let holders: HashMap<String, Source> =
        holders.into_iter().map(|(name, source)| (name.to_string(), source.clone())).collect();
    let (records, user) = user_records(s.records, &|name| holders.get(name).cloned(), s.ttl);
    plan.records.extend(records);
    plan.user = user;
    plan
}

fn add(plan: &mut Plan, source: Source, d: Decision) {
    if !d.problems.is_empty() {
        plan.problems.insert(source.clone(), d.problems);
    }
    if !d.records.is_empty() {
        plan.records.insert(source, d.records);
    }
}

fn record(name: &str, ttl: u32, data: RecordData) -> Record {
    Record { name: name.to_string(), ttl, data }
}

/// A node's record: its name at its address (nothing without an address).
pub fn node(n: &Node, ttl: u32) -> Decision {
    let Some(ip) = node_address(n) else { return Decision::default() };
    match names::node(&n.metadata.name) {
        Ok(name) => Decision { records: vec![record(&name, ttl, ip_data(ip))], problems: BTreeSet::new() },
        Err(e) => Decision::problem(Problem::name(&e)),
    }
}

/// The source of `leader.corral.`.
pub fn leader_source() -> Source {
    Source::new(SERVER, "", "leader")
}

/// The control plane's record, `leader.corral.` at `ip`.
pub fn leader(ip: IpAddr, ttl: u32) -> Vec<Record> {
    vec![record(&names::leader(), ttl, ip_data(ip))]
}

/// A task's record: its name at its node's address, while it runs. `address_of`
/// gives a node's address.
pub fn task(t: &TaskSummary, address_of: &dyn Fn(&str) -> Option<IpAddr>, ttl: u32) -> Decision {
    if !is_running(t) {
        return Decision::default();
    }
    let Some(ip) = task_address(t, address_of) else { return Decision::default() };
    let ns = t.metadata.namespace.as_deref().unwrap_or_default();
    match names::task(ns, &t.metadata.name) {
        Ok(name) => Decision { records: vec![record(&name, ttl, ip_data(ip))], problems: BTreeSet::new() },
        Err(e) => Decision::problem(Problem::name(&e)),
    }
}

/// A service's records, from `instances` (its namespace's tasks labelled with its
/// name; others are ignored): the address of each instance it answers with, and an
/// SRV record per named port of each.
pub fn service(
    svc: &Service,
    instances: &[Arc<TaskSummary>],
    address_of: &dyn Fn(&str) -> Option<IpAddr>,
    ready: &HashSet<String>,
    ttl: u32,
) -> Decision {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = match names::service(ns, &svc.metadata.name) {
        Ok(name) => name,
        Err(e) => return Decision::problem(Problem::name(&e)),
    };
    let mut d = Decision::default();
    // The records are gathered by name (the service's, and one per port), so that
    // each name is made once per service rather than once per instance, and come out
    // sorted without comparing the names of a hundred records again and again.
    let mut by_name: BTreeMap<String, BTreeSet<RecordData>> = BTreeMap::new();
    let mut addresses = BTreeSet::new();
    // Per (port name, protocol): its SRV name, made at its first instance (none: it
    // is not a valid name, which is told once as a problem).
    let mut srv_names: Vec<(&str, Option<&str>, Option<String>)> = Vec::new();
    for t in instances {
        let member = t.metadata.namespace.as_deref().unwrap_or_default() == ns
            && t.metadata.labels.get(SERVICE_LABEL).is_some_and(|l| *l == svc.metadata.name);
        if !member || !is_running(t) || !serves(t, svc, ready) {
            continue;
        }
        let Some(ip) = task_address(t, address_of) else { continue };
        addresses.insert(ip_data(ip));
        let Ok(target) = names::task(ns, &t.metadata.name) else { continue };
        for p in &t.spec.ports {
            let Some(port) = t.status.as_ref().and_then(|st| st.ports.get(&p.name).copied()).or(p.host_port) else {
                continue;
            };
            let protocol = p.protocol.as_deref();
            let at = match srv_names.iter().position(|(n, pr, _)| *n == p.name && *pr == protocol) {
                Some(at) => at,
                None => {
                    let srv = names::srv(ns, &svc.metadata.name, &p.name, protocol)
                        .map_err(|e| d.problems.insert(Problem::name(&e)))
                        .ok();
                    srv_names.push((&p.name, protocol, srv));
                    srv_names.len() - 1
                }
            };
            let Some(srv) = srv_names[at].2.as_deref() else { continue };
            let data = RecordData::Srv { priority: 0, weight: 10, port, target: target.clone() };
            match by_name.get_mut(srv) {
                Some(records) => {
                    records.insert(data);
                }
                None => {
                    by_name.insert(srv.to_string(), BTreeSet::from([data]));
                }
            }
        }
    }
    if !addresses.is_empty() {
        by_name.entry(name).or_default().extend(addresses);
    }
    for (name, data) in by_name {
        d.records.extend(data.into_iter().map(|data| record(&name, ttl, data)));
    }
    d
}

/// The address of a node, from its status.
pub fn node_address(n: &Node) -> Option<IpAddr> {
    n.status.as_ref()?.address.as_deref()?.parse().ok()
}

fn ip_data(ip: IpAddr) -> RecordData {
    match ip {
        IpAddr::V4(v4) => RecordData::A(v4),
        IpAddr::V6(v6) => RecordData::Aaaa(v6),
    }
}

/// Whether a task runs (and is not yet gone).
pub fn is_running(t: &TaskSummary) -> bool {
    t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Running)
}

/// A task's address: its node's, else the one its agent reported.
fn task_address(t: &TaskSummary, address_of: &dyn Fn(&str) -> Option<IpAddr>) -> Option<IpAddr> {
    t.spec.node_name.as_deref().and_then(address_of).or_else(|| t.status.as_ref()?.host_ip.as_deref()?.parse().ok())
}

/// Whether a running task of `svc` is one of its addresses: not on its way out,
/// healthy if it has health checks, ready if the service has a readiness check.
fn serves(t: &TaskSummary, svc: &Service, ready: &HashSet<String>) -> bool {
    if t.spec.kill || t.metadata.is_deleting() {
        return false;
    }
    let healthy = if t.spec.health_checks.is_empty() {
        true
    } else {
        t.status.as_ref().and_then(|s| s.health.as_ref()).is_some_and(|h| h.healthy)
    };
    healthy && (svc.spec.readiness_check.is_none() || ready.contains(&task_key(t)))
}

/// `NAMESPACE/NAME` of a task.
pub fn task_key(t: &TaskSummary) -> String {
    format!("{}/{}", t.metadata.namespace.as_deref().unwrap_or_default(), t.metadata.name)
}

/// Whether a running task waits for the readiness check of its service (so the
/// caller knows what to probe).
pub fn awaits_readiness(t: &TaskSummary, svc: &Service, ready: &HashSet<String>) -> bool {
    svc.spec.readiness_check.is_some() && is_running(t) && !ready.contains(&task_key(t))
}

/// Each `DnsRecord`'s status, by `(namespace, name)`.
pub type UserStatuses = BTreeMap<(String, String), UserStatus>;

/// What `DnsRecord`s serve, and the status each should have. `corral_holder` says
/// which of Corral's own objects serves a name, if one does: a `DnsRecord` cannot
/// take that name. Of two `DnsRecord`s with one name the older wins.
pub fn user_records(
    records: &[Arc<DnsRecord>],
    corral_holder: &dyn Fn(&str) -> Option<Source>,
    ttl: u32,
) -> (BTreeMap<Source, Vec<Record>>, UserStatuses) {
    let mut served: BTreeMap<Source, Vec<Record>> = BTreeMap::new();
    let mut statuses = UserStatuses::new();
    // Names taken by the `DnsRecord`s decided so far.
    let mut taken: HashMap<String, Source> = HashMap::new();
    let mut ordered: Vec<&Arc<DnsRecord>> = records.iter().collect();
    ordered.sort_by(|a, b| {
        let key = |r: &DnsRecord| {
            (r.metadata.creation_timestamp.clone(), r.metadata.namespace.clone(), r.metadata.name.clone())
        };
        key(a).cmp(&key(b))
    });
    for r in ordered {
        let ns = r.metadata.namespace.as_deref().unwrap_or_default();
        let key = (ns.to_string(), r.metadata.name.clone());
        let source = Source::new(DNS_RECORD, ns, &r.metadata.name);
        let outcome = names::user(ns, &r.spec.name)
            .map_err(|e| Problem::name(&e))
            .and_then(|name| user_data(ns, r).map(|data| (name, data)));
        let (name, data) = match outcome {
            Ok(v) => v,
            Err(p) => {
                statuses.insert(key, UserStatus { served: vec![], problem: Some(p) });
                continue;
            }
        };
        if r.metadata.is_deleting() {
            continue;
        }
        if let Some(holder) = corral_holder(&name).or_else(|| taken.get(&name).cloned()) {
            let problem = Problem {
                reason: "NameTaken".into(),
                message: format!("{name} is already served for {holder}; choose another name"),
            };
            statuses.insert(key, UserStatus { served: vec![], problem: Some(problem) });
            continue;
        }
        taken.insert(name.clone(), source.clone());
        let ttl = r.spec.ttl.unwrap_or(ttl);
        let mut records: Vec<Record> = data.into_iter().map(|d| Record { name: name.clone(), ttl, data: d }).collect();
        records.sort();
        records.dedup();
        served.insert(source, records);
        statuses.insert(key, UserStatus { served: vec![name], problem: None });
    }
    (served, statuses)
}

/// The data a `DnsRecord` declares, checked.
fn user_data(ns: &str, r: &DnsRecord) -> Result<Vec<RecordData>, Problem> {
    let spec = &r.spec;
    let values = &spec.values;
    if spec.type_ == DnsRecordType::Srv {
        if !values.is_empty() {
            return Err(Problem::value("an SRV record takes its targets in spec.srv, not spec.values".into()));
        }
    } else if !spec.srv.is_empty() {
        return Err(Problem::value(format!(
            "spec.srv is for SRV records; a {:?} record takes spec.values",
            spec.type_
        )));
    }
    let parse_each = |f: &dyn Fn(&str) -> Option<RecordData>, what: &str| -> Result<Vec<RecordData>, Problem> {
        if values.is_empty() {
            return Err(Problem::value(format!("spec.values is empty: give at least one {what}")));
        }
        values
            .iter()
            .enumerate()
            .map(|(i, v)| f(v).ok_or_else(|| Problem::value(format!("spec.values[{i}]: {v:?} is not {what}"))))
            .collect()
    };
    match spec.type_ {
        DnsRecordType::A => parse_each(&|v| v.parse::<Ipv4Addr>().ok().map(RecordData::A), "an IPv4 address"),
        DnsRecordType::Aaaa => parse_each(&|v| v.parse::<Ipv6Addr>().ok().map(RecordData::Aaaa), "an IPv6 address"),
        DnsRecordType::Txt => parse_each(
            &|v| (v.len() <= 255).then(|| RecordData::Txt(vec![v.to_string()])),
            "a text of at most 255 bytes",
        ),
        DnsRecordType::Cname => {
            if values.len() != 1 {
                return Err(Problem::value(format!(
                    "a CNAME record has exactly one value, the canonical name (has {})",
                    values.len()
                )));
            }
            let target = names::target(ns, &values[0]).map_err(|e| Problem::value(format!("spec.values[0]: {e}")))?;
            Ok(vec![RecordData::Cname(target)])
        }
        DnsRecordType::Srv => {
            if spec.srv.is_empty() {
                return Err(Problem::value("spec.srv is empty: give at least one target".into()));
            }
            spec.srv
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let target = names::target(ns, &t.target)
                        .map_err(|e| Problem::value(format!("spec.srv[{i}].target: {e}")))?;
                    Ok(RecordData::Srv { priority: t.priority, weight: t.weight, port: t.port, target })
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests;
