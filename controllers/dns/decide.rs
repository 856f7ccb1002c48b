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

/// Decides every record served.
pub fn decide(s: &Snapshot<'_>) -> Plan {
    let mut plan = Plan::default();
    let addresses: HashMap<&str, IpAddr> =
        s.nodes.iter().filter_map(|n| Some((n.metadata.name.as_str(), node_address(n)?))).collect();
    let record = |name: &str, data: RecordData| Record { name: name.to_string(), ttl: s.ttl, data };

    for n in s.nodes {
        let Some(ip) = addresses.get(n.metadata.name.as_str()) else { continue };
        let source = Source::new(NODE, "", &n.metadata.name);
        match names::node(&n.metadata.name) {
            Ok(name) => {
                plan.records.insert(source, vec![record(&name, ip_data(*ip))]);
            }
            Err(e) => add_problem(&mut plan, source, Problem::name(&e)),
        }
    }

    if let Some(ip) = s.leader {
        plan.records.insert(Source::new(SERVER, "", "leader"), vec![record(&names::leader(), ip_data(ip))]);
    }

    // Running tasks, with their address; service instances grouped by service.
    let mut instances: HashMap<(&str, &str), Vec<Instance<'_>>> = HashMap::new();
    for t in s.tasks {
        if !is_running(t) {
            continue;
        }
        let Some(ip) = task_address(t, &addresses) else { continue };
        let ns = t.metadata.namespace.as_deref().unwrap_or_default();
        let source = Source::new(TASK, ns, &t.metadata.name);
        let name = match names::task(ns, &t.metadata.name) {
            Ok(name) => {
                plan.records.insert(source, vec![record(&name, ip_data(ip))]);
                Some(name)
            }
            Err(e) => {
                add_problem(&mut plan, source, Problem::name(&e));
                None
            }
        };
        if let Some(svc) = t.metadata.labels.get(SERVICE_LABEL) {
            instances.entry((ns, svc.as_str())).or_default().push((t, ip, name));
        }
    }

    for svc in s.services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let source = Source::new(SERVICE, ns, &svc.metadata.name);
        let name = match names::service(ns, &svc.metadata.name) {
            Ok(name) => name,
            Err(e) => {
                add_problem(&mut plan, source, Problem::name(&e));
                continue;
            }
        };
        let mut records = Vec::new();
        let mut seen_ips = BTreeSet::new();
        let members = instances.get(&(ns, svc.metadata.name.as_str())).map(Vec::as_slice).unwrap_or_default();
        for (t, ip, task_name) in members {
            if !serves(t, svc, s.ready) {
                continue;
            }
            if seen_ips.insert(*ip) {
                records.push(record(&name, ip_data(*ip)));
            }
            let Some(target) = task_name else { continue };
            for p in &t.spec.ports {
                let Some(port) = t.status.as_ref().and_then(|st| st.ports.get(&p.name).copied()).or(p.host_port) else {
                    continue;
                };
                match names::srv(ns, &svc.metadata.name, &p.name, p.protocol.as_deref()) {
                    Ok(srv) => records
                        .push(record(&srv, RecordData::Srv { priority: 0, weight: 10, port, target: target.clone() })),
                    Err(e) => add_problem(&mut plan, source.clone(), Problem::name(&e)),
                }
            }
        }
        records.sort();
        records.dedup();
        if !records.is_empty() {
            plan.records.insert(source, records);
        }
    }

    user_records(s, &mut plan);
    plan
}

/// A running instance of a service: its task, address and task name (if it has one).
type Instance<'a> = (&'a TaskSummary, IpAddr, Option<String>);

fn add_problem(plan: &mut Plan, source: Source, problem: Problem) {
    plan.problems.entry(source).or_default().insert(problem);
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
fn task_address(t: &TaskSummary, nodes: &HashMap<&str, IpAddr>) -> Option<IpAddr> {
    t.spec
        .node_name
        .as_deref()
        .and_then(|n| nodes.get(n).copied())
        .or_else(|| t.status.as_ref()?.host_ip.as_deref()?.parse().ok())
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

/// The records of every `DnsRecord`, with collisions settled.
fn user_records(s: &Snapshot<'_>, plan: &mut Plan) {
    // Which object holds each name so far: Corral's own first.
    let mut holders: HashMap<String, Source> = HashMap::new();
    for (source, records) in &plan.records {
        for r in records {
            holders.entry(r.name.clone()).or_insert_with(|| source.clone());
        }
    }
    let mut ordered: Vec<&Arc<DnsRecord>> = s.records.iter().collect();
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
                plan.user.insert(key, UserStatus { served: vec![], problem: Some(p) });
                continue;
            }
        };
        if r.metadata.is_deleting() {
            continue;
        }
        if let Some(holder) = holders.get(&name) {
            let problem = Problem {
                reason: "NameTaken".into(),
                message: format!("{name} is already served for {holder}; choose another name"),
            };
            plan.user.insert(key, UserStatus { served: vec![], problem: Some(problem) });
            continue;
        }
        holders.insert(name.clone(), source.clone());
        let ttl = r.spec.ttl.unwrap_or(s.ttl);
        let mut records: Vec<Record> = data.into_iter().map(|d| Record { name: name.clone(), ttl, data: d }).collect();
        records.sort();
        records.dedup();
        plan.records.insert(source, records);
        plan.user.insert(key, UserStatus { served: vec![name], problem: None });
    }
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
