//! The DNS records controller: keeps the cluster DNS zone ([`corral_dns::Zone`]) in
//! step with tasks, services, nodes and `DnsRecord`s.
//!
//! It runs beside every API server, outside leader election: each server answers DNS
//! from its own watches, so every one of them serves the whole zone. The zone is built
//! from the watches alone — nothing is written per task. The only writes are the
//! status of `DnsRecord`s (what they serve, or why not) and an Event on any other
//! object whose name cannot be made (see [`names`]).
//!
//! Like the services controller it works in rounds: any change wakes it, and after a
//! short settle [`decide::decide`] turns the whole snapshot into each object's
//! records; only the objects whose records changed are handed to [`Zone::apply`],
//! in one atomic step. A round over 10,000 tasks takes milliseconds, well within
//! the second a change may take to show.
//!
//! Readiness: instances of a service with a readiness check are answered once the
//! check passed; this controller runs the check itself (as the services controller
//! does, with [`crate::services::readiness::check`]), since each server decides on its
//! own.

pub mod decide;
pub mod names;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use corral_api::Resource;
use corral_api::kinds::dns_record::{DnsRecord, DnsRecordStatus};
use corral_api::kinds::node::Node;
use corral_api::kinds::service::{Condition, SERVICE_LABEL, Service};
use corral_api::kinds::task::{Task, TaskSummary};
use corral_client::{Api, Client, ListParams};
use corral_dns::{Change, Record, Source, Zone};
use corral_runtime::{Cache, CancellationToken, EventType, Recorder, Reflector, Runnable};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use self::decide::{Plan, Problem, Snapshot, UserStatus};

/// The controller's name, in logs and metrics.
pub const NAME: &str = "dns";
/// The component named in its Events.
const COMPONENT: &str = "dns-controller";
/// The condition a `DnsRecord`'s status carries.
pub const SERVED_CONDITION: &str = "Served";

/// Settings of the DNS controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// TTL of the records it makes (and of `DnsRecord`s that give none).
    pub ttl: u32,
    /// The control plane's address, served as `leader.corral.`.
    pub leader: Option<IpAddr>,
    /// How long to gather changes before a round.
    pub settle: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { ttl: 5, leader: None, settle: Duration::from_millis(10) }
    }
}

/// The DNS records controller: run it with [`Runnable::run`] (not behind a leader
/// election) and serve `zone` with `corral_dns`'s server.
pub struct DnsRecords {
    config: Config,
    zone: Zone,
    counts: Arc<Counts>,
    /// Whether a first round filled the zone from synced caches.
    filled: tokio::sync::watch::Sender<bool>,
}

/// What it counts.
struct Counts {
    rounds: Histogram,
    records: Gauge,
    changes: Counter,
    name_errors: Counter,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            // 0.1 ms to ~3 s.
            rounds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            records: Gauge::default(),
            changes: Counter::default(),
            name_errors: Counter::default(),
        }
    }
}

impl DnsRecords {
    /// The controller keeping `zone`.
    pub fn new(config: Config, zone: Zone) -> Self {
        DnsRecords { config, zone, counts: Arc::default(), filled: tokio::sync::watch::Sender::new(false) }
    }

    /// Resolves once a first round has filled the zone from complete caches: serve
    /// DNS after it, or the first answers would deny names that exist.
    pub async fn filled(&self) {
        let mut rx = self.filled.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    /// The zone it keeps.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }
}

struct Caches {
    tasks: Cache<TaskSummary>,
    services: Cache<Service>,
    nodes: Cache<Node>,
    records: Cache<DnsRecord>,
}

/// What the rounds remember.
#[derive(Default)]
struct Memory {
    /// What each source last handed to the zone.
    applied: HashMap<Source, Vec<Record>>,
    /// Problems already reported as Events (each once per run).
    reported: HashSet<(Source, Problem)>,
}

#[async_trait]
impl Runnable for DnsRecords {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        // Rounds, not reconciles of one object: metrics of their own, as the services
        // controller's.
        registry.register(
            "corral_dns_round_duration_seconds",
            "Rounds deciding every DNS record and how long each took",
            self.counts.rounds.clone(),
        );
        registry.register("corral_dns_records", "Records the zone holds", self.counts.records.clone());
        registry.register(
            "corral_dns_source_changes",
            "Objects whose records changed in the zone",
            self.counts.changes.clone(),
        );
        registry.register(
            "corral_dns_name_errors",
            "Names that could not be made (reported on their object)",
            self.counts.name_errors.clone(),
        );
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        let wake = Arc::new(Notify::new());
        let tasks = Reflector::new(
            Api::<TaskSummary>::for_kind(client.clone(), Arc::new(Task::kind_info()), None),
            ListParams::default(),
        );
        let services = Reflector::new(Api::<Service>::all(client.clone()), ListParams::default());
        let nodes = Reflector::new(Api::<Node>::all(client.clone()), ListParams::default());
        let records = Reflector::new(Api::<DnsRecord>::all(client.clone()), ListParams::default());
        let caches =
            Caches { tasks: tasks.cache(), services: services.cache(), nodes: nodes.cache(), records: records.cache() };
        let reflectors = futures::future::join4(
            tasks.run(shutdown.clone(), poke(&wake)),
            services.run(shutdown.clone(), poke(&wake)),
            nodes.run(shutdown.clone(), poke(&wake)),
            records.run(shutdown.clone(), poke(&wake)),
        );
        let rounds = self.rounds(client, caches, wake, shutdown.clone());
        tokio::select! {
            _ = reflectors => {}
            _ = rounds => {}
        }
        // What this server served goes with it.
        self.zone.apply(self.zone.records(None).into_iter().map(|(s, _)| Change::Remove(s)).collect::<Vec<_>>());
        Ok(())
    }
}

impl DnsRecords {
    async fn rounds(&self, client: Client, caches: Caches, wake: Arc<Notify>, shutdown: CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = async {
                caches.tasks.wait_synced().await;
                caches.services.wait_synced().await;
                caches.nodes.wait_synced().await;
                caches.records.wait_synced().await;
            } => {}
        }
        let recorder = Recorder::new(client.clone(), COMPONENT);
        let dns_records: Api<DnsRecord> = Api::all(client);
        let ready: Arc<Mutex<HashSet<String>>> = Arc::default();
        let probing: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut memory = Memory::default();
        loop {
            let started = Instant::now();
            let snapshot = (caches.tasks.list(), caches.services.list(), caches.nodes.list(), caches.records.list());
            let ready_now = ready.lock().clone();
            let plan = decide::decide(&Snapshot {
                tasks: &snapshot.0,
                services: &snapshot.1,
                nodes: &snapshot.2,
                records: &snapshot.3,
                ready: &ready_now,
                leader: self.config.leader,
                ttl: self.config.ttl,
            });
            let changes = diff(&mut memory.applied, &plan.records);
            if !changes.is_empty() {
                self.counts.changes.inc_by(changes.len() as u64);
                self.zone.apply(changes);
            }
            self.counts.records.set(i64::try_from(self.zone.len()).unwrap_or(i64::MAX));
            self.counts.rounds.observe(started.elapsed().as_secs_f64());
            self.filled.send_if_modified(|f| !std::mem::replace(f, true));
            // Reports and statuses after the zone: they never hold an answer back.
            self.report(&recorder, &plan, &snapshot, &mut memory).await;
            write_statuses(&dns_records, &plan, &snapshot.3).await;
            probe_readiness(&snapshot.0, &snapshot.1, &snapshot.2, &ready, &probing, &wake, &shutdown);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => tokio::time::sleep(self.config.settle).await,
            }
        }
    }

    /// Reports each new problem once, as a Warning Event on its object.
    async fn report(&self, recorder: &Recorder, plan: &Plan, snapshot: &SnapshotLists, memory: &mut Memory) {
        let (tasks, services, nodes, _) = snapshot;
        let current: HashSet<(Source, Problem)> =
            plan.problems.iter().flat_map(|(s, ps)| ps.iter().map(move |p| (s.clone(), p.clone()))).collect();
        // Forget what is no longer a problem, so it is reported again if it comes back.
        memory.reported.retain(|r| current.contains(r));
        for (source, problem) in current {
            if memory.reported.contains(&(source.clone(), problem.clone())) {
                continue;
            }
            self.counts.name_errors.inc();
            tracing::warn!(object = %source, reason = problem.reason.as_str(), "{}", problem.message);
            let same = |ns: Option<&String>, name: &str| {
                ns.map(String::as_str).unwrap_or_default() == source.namespace && name == source.name
            };
            let published = match source.kind.as_str() {
                decide::TASK => match tasks.iter().find(|t| same(t.metadata.namespace.as_ref(), &t.metadata.name)) {
                    Some(t) => publish(recorder, &**t, &problem).await,
                    None => Ok(()),
                },
                decide::SERVICE => {
                    match services.iter().find(|s| same(s.metadata.namespace.as_ref(), &s.metadata.name)) {
                        Some(s) => publish(recorder, &**s, &problem).await,
                        None => Ok(()),
                    }
                }
                decide::NODE => match nodes.iter().find(|n| n.metadata.name == source.name) {
                    Some(n) => publish(recorder, &**n, &problem).await,
                    None => Ok(()),
                },
                _ => Ok(()),
            };
            match published {
                Ok(()) => {
                    memory.reported.insert((source, problem));
                }
                Err(e) => tracing::debug!(error = %e, "cannot record a DNS name problem"),
            }
        }
    }
}

/// A reflector callback that wakes the rounds.
fn poke<K>(wake: &Arc<Notify>) -> impl Fn(corral_runtime::Change<K>) + Send + Sync + use<K> {
    let wake = wake.clone();
    move |_| wake.notify_one()
}

type SnapshotLists = (Vec<Arc<TaskSummary>>, Vec<Arc<Service>>, Vec<Arc<Node>>, Vec<Arc<DnsRecord>>);

async fn publish(
    recorder: &Recorder,
    object: &impl corral_api::ApiObject,
    problem: &Problem,
) -> corral_runtime::Result<()> {
    recorder.publish(object, EventType::Warning, &problem.reason, &problem.message).await
}

/// The changes that bring the zone from `applied` to `wanted`, updating `applied`.
fn diff(applied: &mut HashMap<Source, Vec<Record>>, wanted: &BTreeMap<Source, Vec<Record>>) -> Vec<Change> {
    let mut changes = Vec::new();
    applied.retain(|source, _| {
        let keep = wanted.contains_key(source);
        if !keep {
            changes.push(Change::Remove(source.clone()));
        }
        keep
    });
    for (source, records) in wanted {
        if applied.get(source) != Some(records) {
            applied.insert(source.clone(), records.clone());
            changes.push(Change::Set(source.clone(), records.clone()));
        }
    }
    changes
}

/// The status a `DnsRecord` should have.
fn status_of(want: &UserStatus, generation: Option<i64>, old: Option<&DnsRecordStatus>) -> DnsRecordStatus {
    let (status, reason, message) = match &want.problem {
        None => ("True", "Served".to_string(), format!("served as {}", want.served.join(", "))),
        Some(p) => ("False", p.reason.clone(), p.message.clone()),
    };
    let old_condition = old.and_then(|o| o.conditions.iter().find(|c| c.type_ == SERVED_CONDITION));
    let last_transition_time = match old_condition {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(corral_api::meta::now_timestamp()),
    };
    DnsRecordStatus {
        served: want.served.clone(),
        conditions: vec![Condition {
            type_: SERVED_CONDITION.into(),
            status: status.into(),
            reason: Some(reason),
            message: Some(message),
            last_transition_time,
        }],
        observed_generation: generation,
    }
}

/// Whether `old` already says what `new` does (the transition time aside).
fn same_status(old: Option<&DnsRecordStatus>, new: &DnsRecordStatus) -> bool {
    let Some(old) = old else { return false };
    let strip = |s: &DnsRecordStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = None;
        }
        s
    };
    strip(old) == strip(new)
}

/// Writes the status of each `DnsRecord` whose status says otherwise. A conflict
/// means a newer object is on its way: its event brings another round.
async fn write_statuses(api: &Api<DnsRecord>, plan: &Plan, records: &[Arc<DnsRecord>]) {
    for r in records {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let Some(want) = plan.user.get(&(ns.clone(), r.metadata.name.clone())) else { continue };
        let status = status_of(want, r.metadata.generation, r.status.as_ref());
        if same_status(r.status.as_ref(), &status) {
            continue;
        }
        let mut updated = (**r).clone();
        updated.status = Some(status);
        match api.in_namespace(&ns).update_status(&updated).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() || e.is_not_found() => {}
            Err(e) => tracing::warn!(error = %e, record = %r.metadata.name, "cannot write a DnsRecord's status"),
        }
    }
}

/// Starts a readiness probe for every running instance of a service with a readiness
/// check that has not passed it yet; forgets tasks that no longer run.
fn probe_readiness(
    tasks: &[Arc<TaskSummary>],
    services: &[Arc<Service>],
    nodes: &[Arc<Node>],
    ready: &Arc<Mutex<HashSet<String>>>,
    probing: &Arc<Mutex<HashSet<String>>>,
    wake: &Arc<Notify>,
    shutdown: &CancellationToken,
) {
    let with_check: HashMap<(String, String), &Arc<Service>> = services
        .iter()
        .filter(|s| s.spec.readiness_check.is_some())
        .map(|s| ((s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone()), s))
        .collect();
    {
        let running: HashSet<String> =
            tasks.iter().filter(|t| decide::is_running(t)).map(|t| decide::task_key(t)).collect();
        ready.lock().retain(|k| running.contains(k));
    }
    if with_check.is_empty() {
        return;
    }
    let addresses: HashMap<&str, IpAddr> =
        nodes.iter().filter_map(|n| Some((n.metadata.name.as_str(), decide::node_address(n)?))).collect();
    let ready_now = ready.lock().clone();
    for t in tasks {
        let Some(svc_name) = t.metadata.labels.get(SERVICE_LABEL) else { continue };
        let ns = t.metadata.namespace.clone().unwrap_or_default();
        let Some(svc) = with_check.get(&(ns, svc_name.clone())) else { continue };
        if !decide::awaits_readiness(t, svc, &ready_now) {
            continue;
        }
        let Some(check) = svc.spec.readiness_check.clone() else { continue };
        let key = decide::task_key(t);
        if !probing.lock().insert(key.clone()) {
            continue;
        }
        let host = t
            .spec
            .node_name
            .as_deref()
            .and_then(|n| addresses.get(n).copied())
            .map(|ip| ip.to_string())
            .or_else(|| t.status.as_ref().and_then(|s| s.host_ip.clone()))
            .unwrap_or_else(|| "127.0.0.1".into());
        let port = t.status.as_ref().and_then(|s| s.ports.get(&check.port_name).copied());
        let (ready, probing, wake, stop) = (ready.clone(), probing.clone(), wake.clone(), shutdown.clone());
        tokio::spawn(async move {
            let interval = Duration::from_secs(u64::from(check.interval_seconds.max(1)));
            let timeout = Duration::from_secs(u64::from(check.timeout_seconds.max(1)));
            let passed = match port {
                Some(port) => {
                    crate::services::readiness::check(
                        &host,
                        port,
                        &check.path,
                        &check.http_status_codes_for_ready,
                        timeout,
                    )
                    .await
                }
                None => false,
            };
            if passed {
                ready.lock().insert(key.clone());
                wake.notify_one();
            } else {
                // Tried again on a round after the interval.
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(interval) => wake.notify_one(),
                }
            }
            probing.lock().remove(&key);
        });
    }
}

/// A `BTreeSet` of the names a plan serves, for tests and `corral dns records`.
pub fn served_names(plan: &Plan) -> BTreeSet<String> {
    plan.records.values().flatten().map(|r| r.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_dns::RecordData;

    fn rec(name: &str, last: u8) -> Record {
        Record { name: name.into(), ttl: 5, data: RecordData::A([10, 0, 0, last].into()) }
    }

    #[test]
    fn only_sources_whose_records_changed_reach_the_zone() {
        let a = Source::new("Task", "ns", "a");
        let b = Source::new("Task", "ns", "b");
        let mut applied = HashMap::new();
        let first: BTreeMap<Source, Vec<Record>> =
            [(a.clone(), vec![rec("a.", 1)]), (b.clone(), vec![rec("b.", 2)])].into();
        assert_eq!(diff(&mut applied, &first).len(), 2);
        assert!(diff(&mut applied, &first).is_empty(), "nothing changed");
        let second: BTreeMap<Source, Vec<Record>> = [(a.clone(), vec![rec("a.", 3)])].into();
        let changes = diff(&mut applied, &second);
        assert_eq!(changes, vec![Change::Remove(b), Change::Set(a, vec![rec("a.", 3)])]);
    }

    #[test]
    fn a_dns_record_status_is_rewritten_only_when_what_it_says_changes() {
        let served = UserStatus { served: vec!["www.shop.corral.".into()], problem: None };
        let first = status_of(&served, Some(1), None);
        assert_eq!(first.conditions[0].status, "True");
        assert!(same_status(Some(&first), &status_of(&served, Some(1), Some(&first))));
        let taken =
            UserStatus { served: vec![], problem: Some(Problem { reason: "NameTaken".into(), message: "x".into() }) };
        let second = status_of(&taken, Some(1), Some(&first));
        assert!(!same_status(Some(&first), &second));
        assert_eq!(second.conditions[0].reason.as_deref(), Some("NameTaken"));
    }
}
