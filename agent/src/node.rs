//! The agent's `Node`: what this machine offers (detected or given on the command line),
//! its registration, and the heartbeat that keeps it reachable.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use corral_api::kinds::lease::{Lease, LeaseSpec};
use corral_api::kinds::node::{NODE_LEASE_NAMESPACE, Node, NodeSpec, NodeStatus, PortRange, Resources};
use corral_client::{Api, Client};

use crate::error::{Error, Result};

/// The host ports tasks get when nothing else is said, as in Mesos.
pub const DEFAULT_PORTS: PortRange = PortRange { begin: 31000, end: 32000 };

/// What this node registers.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// The Node's name.
    pub name: String,
    /// Attributes: hostname, zone, region and custom ones.
    pub attributes: BTreeMap<String, String>,
    /// Total resources offered.
    pub capacity: Resources,
    /// Host ports offered.
    pub ports: Vec<PortRange>,
    /// Static reservations per role.
    pub reservations: BTreeMap<String, Resources>,
    /// Address at which tasks are reached.
    pub address: String,
    /// URL of the agent's API.
    pub agent_endpoint: String,
}

/// The host's name, from the kernel.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Resources of this host: every CPU, all memory, and the space of the file system
/// holding the work dir.
pub fn detect_resources(work_dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0);
    let disk = disk_mib(work_dir).unwrap_or(0);
    Resources { cpus, mem, disk }
}

fn disk_mib(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| (st.f_blocks as u64).saturating_mul(st.f_frsize as u64) / (1024 * 1024))
}

/// Parses `k=v,k2=v2` attributes.
pub fn parse_attributes(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) =
            part.split_once('=').ok_or_else(|| Error::Invalid(format!("--attributes: {part:?} is not key=value")))?;
        corral_api::names::check_qualified_key(k.trim())
            .map_err(|e| Error::Invalid(format!("--attributes: key {k:?}: {e}")))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Parses Mesos-style `--resources`: `cpus:4;mem:8192;disk:100000;ports:[31000-32000,33000-33100]`;
/// what is not given keeps its value in `base`.
pub fn parse_resources(s: &str, base: Resources) -> Result<(Resources, Vec<PortRange>)> {
    let mut r = base;
    let mut ports = vec![DEFAULT_PORTS];
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) =
            part.split_once(':').ok_or_else(|| Error::Invalid(format!("--resources: {part:?} is not name:value")))?;
        let bad = |why: &str| Error::Invalid(format!("--resources: {part:?}: {why}"));
        match k.trim() {
            "cpus" => r.cpus = v.trim().parse().ok().filter(|c: &f64| *c >= 0.0).ok_or_else(|| bad("not a number"))?,
            "mem" => r.mem = v.trim().parse().map_err(|_| bad("not a whole number of MiB"))?,
            "disk" => r.disk = v.trim().parse().map_err(|_| bad("not a whole number of MiB"))?,
            "ports" => ports = parse_port_ranges(v.trim()).map_err(|e| bad(&e))?,
            other => return Err(bad(&format!("unknown resource {other:?} (cpus, mem, disk, ports)"))),
        }
    }
    Ok((r, ports))
}

fn parse_port_ranges(v: &str) -> std::result::Result<Vec<PortRange>, String> {
    let inner = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')).ok_or("ports are written [begin-end,...]")?;
    inner
        .split(',')
        .map(|r| {
            let (b, e) = r.trim().split_once('-').ok_or("a range is begin-end")?;
            let (begin, end) = (b.trim().parse::<u16>(), e.trim().parse::<u16>());
            match (begin, end) {
                (Ok(begin), Ok(end)) if begin <= end => Ok(PortRange { begin, end }),
                _ => Err(format!("{r:?} is not a valid port range")),
            }
        })
        .collect()
}

/// Parses reservations: `cpus(ads):2;mem(ads):512`.
pub fn parse_reservations(s: &str) -> Result<BTreeMap<String, Resources>> {
    let mut out: BTreeMap<String, Resources> = BTreeMap::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |why: &str| Error::Invalid(format!("--reservations: {part:?}: {why}"));
        let (head, value) = part.split_once(':').ok_or_else(|| bad("is not name(role):value"))?;
        let (name, role) =
            head.strip_suffix(')').and_then(|h| h.split_once('(')).ok_or_else(|| bad("is not name(role):value"))?;
        corral_api::names::check_dns_label(role).map_err(|e| bad(&format!("role: {e}")))?;
        let r = out.entry(role.to_string()).or_default();
        match name {
            "cpus" => r.cpus += value.parse::<f64>().map_err(|_| bad("not a number"))?,
            "mem" => r.mem += value.parse::<u64>().map_err(|_| bad("not a whole number of MiB"))?,
            "disk" => r.disk += value.parse::<u64>().map_err(|_| bad("not a whole number of MiB"))?,
            other => return Err(bad(&format!("unknown resource {other:?} (cpus, mem, disk)"))),
        }
    }
    Ok(out)
}

/// Creates or updates this node's `Node`. The spec's attributes and reservations are
/// the agent's to set; `unschedulable` belongs to operators and is kept. The phase is
/// left to the node lifecycle controller.
pub async fn register(client: &Client, info: &NodeInfo) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for _ in 0..5 {
        let existing = api.get_opt(&info.name).await?;
        let mut node = existing.clone().unwrap_or_else(|| Node::new(&info.name, NodeSpec::default()));
        node.spec.attributes = info.attributes.clone();
        node.spec.reservations = info.reservations.clone();
        let node = match existing {
            None => match api.create(&node).await {
                Ok(n) => n,
                Err(e) if e.is_already_exists() => continue,
                Err(e) => return Err(e.into()),
            },
            Some(old) if old.spec == node.spec => old,
            Some(_) => match api.update(&node).await {
                Ok(n) => n,
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            },
        };
        let status = node.status.clone().unwrap_or_default();
        let status = NodeStatus {
            phase: status.phase,
            capacity: info.capacity,
            port_ranges: info.ports.clone(),
            address: Some(info.address.clone()),
            agent_endpoint: Some(info.agent_endpoint.clone()),
            agent_version: Some(env!("CARGO_PKG_VERSION").into()),
            message: status.message,
            last_transition_time: status.last_transition_time,
        };
        let mut with_status = node;
        with_status.status = Some(status);
        match api.update_status(&with_status).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Runtime(format!("node {}: registration kept conflicting with other writers", info.name)))
}

/// Renews (or creates) the node's heartbeat lease once.
pub async fn heartbeat(leases: &Api<Lease>, node: &str, interval: Duration) -> Result<()> {
    // Microseconds: each renewal must change the lease, or the write is a no-op that
    // the node lifecycle controller cannot see.
    let now = corral_api::meta::now_micro_timestamp();
    // Four missed beats make a lease look stale to readers that judge by duration.
    let duration = i64::try_from((interval.as_secs() * 4).max(1)).unwrap_or(i64::MAX);
    match leases.get_opt(node).await? {
        None => {
            let spec = LeaseSpec {
                holder_identity: Some(node.to_string()),
                lease_duration_seconds: Some(duration),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: None,
            };
            leases.create(&Lease::namespaced(NODE_LEASE_NAMESPACE, node, spec)).await?;
        }
        Some(mut lease) => {
            lease.spec.holder_identity = Some(node.to_string());
            lease.spec.lease_duration_seconds = Some(duration);
            lease.spec.renew_time = Some(now);
            leases.update(&lease).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_mesos_style() {
        let (r, ports) =
            parse_resources("cpus:2.5;mem:1024;ports:[31000-31010,40000-40000]", Resources::default()).expect("valid");
        assert_eq!(r, Resources { cpus: 2.5, mem: 1024, disk: 0 });
        assert_eq!(ports, vec![PortRange { begin: 31000, end: 31010 }, PortRange { begin: 40000, end: 40000 }]);
        assert!(parse_resources("gpus:1", Resources::default()).is_err());
        assert!(parse_resources("ports:[5-1]", Resources::default()).is_err());
    }

    #[test]
    fn reservations_parse_per_role() {
        let r = parse_reservations("cpus(ads):2;mem(ads):512;cpus(web):1").expect("valid");
        assert_eq!(r["ads"], Resources { cpus: 2.0, mem: 512, disk: 0 });
        assert_eq!(r["web"].cpus, 1.0);
        assert!(parse_reservations("cpus:2").is_err());
    }

    #[test]
    fn attributes_parse_and_reject_garbage() {
        let a = parse_attributes("zone=a, rack=r1").expect("valid");
        assert_eq!(a["zone"], "a");
        assert_eq!(a["rack"], "r1");
        assert!(parse_attributes("novalue").is_err());
    }
}
