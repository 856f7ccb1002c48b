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
//! short settle (or, when rounds grow long, as long as the last one took) a round
//! ([`state::State::round`]) decides again what changed since the last one — with the
//! functions [`decide::decide`] is made of — and hands the objects whose records
//! changed to [`Zone::apply`], in one atomic step. A round costs the changes, not the
//! cluster's size. A service whose instances keep changing is decided at most every
//! [`pacing::SERVICE_EVERY`] (its first change after a quiet spell at once); a task's
//! own name is never held back.
//!
//! Readiness: instances of a service with a readiness check are answered once the
//! check passed; this controller runs the check itself (as the services controller
//! does, with [`crate::services::readiness::check`]), since each server decides on its
//! own.

pub mod decide;
pub mod names;
pub mod pacing;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use corral_api::kinds::dns_record::{DnsRecord, DnsRecordStatus};
use corral_api::kinds::node::Node;
use corral_api::kinds::service::{Condition, Service};
use corral_api::kinds::task::TaskSummary;
use corral_client::{Api, Client, ListParams};
use corral_dns::{Change, Source, Zone};
use corral_runtime::{
    Cache, CancellationToken, Change as Observed, EventType, ObjectRef, Recorder, Reflector, Runnable,
};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use self::decide::{Plan, Problem, UserStatus};
use self::state::{Dirty, State};
use crate::shared_tasks::{BY_NODE, BY_SERVICE, OnTask, SharedTasks};

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
    /// How long to gather changes before a round, at least: after a round that took
    /// longer, the next waits as long as that one took.
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
    /// The copy of the tasks it reads: its own, unless it shares the process's.
    tasks: Arc<SharedTasks>,
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
        DnsRecords {
            config,
            zone,
            tasks: Arc::default(),
            counts: Arc::default(),
            filled: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Reads the tasks from `tasks`, the copy the built-in controllers of this
    /// process keep ([`crate::builtin_sharing`]), instead of a copy of its own.
    pub fn sharing(mut self, tasks: Arc<SharedTasks>) -> Self {
        self.tasks = tasks;
        self
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

/// The controller's copies of what it reads: what a round reads through
/// [`state::View`].
struct Caches {
    tasks: Cache<TaskSummary>,
    services: Cache<Service>,
    nodes: Cache<Node>,
    records: Cache<DnsRecord>,
}

impl state::View for Caches {
    fn tasks(&self) -> Vec<Arc<TaskSummary>> {
        self.tasks.list()
    }

    fn task(&self, (ns, name): &state::Key) -> Option<Arc<TaskSummary>> {
        self.tasks.get(&ObjectRef::namespaced(self.tasks.resource(), ns, name))
    }

    fn instances(&self, ns: &str, name: &str) -> Vec<Arc<TaskSummary>> {
        self.tasks.by_index(BY_SERVICE, &format!("{ns}/{name}"))
    }

    fn services(&self) -> Vec<Arc<Service>> {
        self.services.list()
    }

    fn service(&self, (ns, name): &state::Key) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::namespaced(self.services.resource(), ns, name))
    }

    fn tasks_on(&self, name: &str) -> Vec<Arc<TaskSummary>> {
        self.tasks.by_index(BY_NODE, name)
    }

    fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.list()
    }

    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(&ObjectRef::cluster(self.nodes.resource(), name))
    }

    fn records(&self) -> Vec<Arc<DnsRecord>> {
        self.records.list()
    }
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
            "Rounds deciding the DNS records of what changed and how long each took",
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
        // The first round decides everything.
        let dirty = Arc::new(Mutex::new(Dirty { all: true, ..Dirty::default() }));
        let services = Reflector::new(Api::<Service>::all(client.clone()), ListParams::default());
        let nodes = Reflector::new(Api::<Node>::all(client.clone()), ListParams::default());
        let records = Reflector::new(Api::<DnsRecord>::all(client.clone()), ListParams::default());
        let on_task = on_task(dirty.clone(), wake.clone());
        // A copy of its own starts with this subscription and ends with it.
        let (tasks, _subscription) = self.tasks.subscribe(&client, on_task);
        let caches = Caches { tasks, services: services.cache(), nodes: nodes.cache(), records: records.cache() };
        // Each callback marks what changed and wakes the rounds.
        let marker = || (dirty.clone(), wake.clone());
        let (on_service, on_node, on_record) = (marker(), marker(), marker());
        let reflectors = futures::future::join3(
            services.run(shutdown.clone(), move |c: Observed<Service>| {
                let o = c.object();
                on_service.0.lock().services.insert(key_of(o.metadata.namespace.as_deref(), &o.metadata.name));
                on_service.1.notify_one();
            }),
            nodes.run(shutdown.clone(), move |c: Observed<Node>| {
                // A heartbeat moves no address.
                if let Observed::Applied { object, previous: Some(previous) } = &c
                    && decide::node_address(previous) == decide::node_address(object)
                {
                    return;
                }
                on_node.0.lock().nodes.insert(c.object().metadata.name.clone());
                on_node.1.notify_one();
            }),
            records.run(shutdown.clone(), move |_: Observed<DnsRecord>| {
                on_record.0.lock().records = true;
                on_record.1.notify_one();
            }),
        );
        let rounds = self.rounds(client, caches, dirty.clone(), wake, shutdown.clone());
        tokio::select! {
            _ = reflectors => {}
            _ = rounds => {}
        }
        // What this server served goes with it.
        self.zone.apply(self.zone.records(None).into_iter().map(|(s, _)| Change::Remove(s)).collect::<Vec<_>>());
        Ok(())
    }
}

/// The callback marking the tasks that changed (and their services).
fn on_task(dirty: Arc<Mutex<Dirty>>, wake: Arc<Notify>) -> OnTask {
    Arc::new(move |c: Observed<TaskSummary>| {
        match c {
            // Most task updates change nothing DNS answers (a status detail, a
            // heartbeat of its health): no round for those.
            Observed::Applied { object, previous: Some(previous) } => {
                if state::same_answers(&previous, &object) {
                    return;
                }
                let mut d = dirty.lock();
                d.task(&previous);
                d.task(&object);
            }
            Observed::Applied { object, previous: None } | Observed::Deleted(object) => dirty.lock().task(&object),
        }
        wake.notify_one();
    })
}

fn key_of(ns: Option<&str>, name: &str) -> state::Key {
    (ns.unwrap_or_default().to_string(), name.to_string())
}

impl DnsRecords {
    async fn rounds(
        &self,
        client: Client,
        caches: Caches,
        dirty: Arc<Mutex<Dirty>>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
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
        let mut state = State::default();
        let mut unreported: Vec<(Source, Problem)> = Vec::new();
        let mut pacing = pacing::Pacing::default();
        loop {
            let started = Instant::now();
            let mut marked = std::mem::take(&mut *dirty.lock());
            let held_until = pacing.pace(&mut marked, started, pacing::SERVICE_EVERY);
            if !marked.is_empty() {
                let ready_now = ready.lock().clone();
                let round = state.round(&caches, marked, &ready_now, &self.zone, self.config.leader, self.config.ttl);
                if !round.changes.is_empty() {
                    self.counts.changes.inc_by(round.changes.len() as u64);
                    self.zone.apply(round.changes);
                }
                self.counts.records.set(i64::try_from(self.zone.len()).unwrap_or(i64::MAX));
                self.counts.rounds.observe(started.elapsed().as_secs_f64());
                self.filled.send_if_modified(|f| !std::mem::replace(f, true));
                if !round.no_longer_running.is_empty() {
                    let mut ready = ready.lock();
                    for k in &round.no_longer_running {
                        ready.remove(k);
                    }
                }
                // Reports and statuses after the zone: they never hold an answer back.
                // Problems whose Event could not be written are tried again next
                // round, while they last.
                unreported.retain(|(source, problem)| state.has_problem(source, problem));
                unreported.extend(round.new_problems);
                unreported = self.report(&recorder, &caches, unreported).await;
                if let Some(user) = &round.user {
                    write_statuses(&dns_records, user, &caches.records.list()).await;
                }
                let probes =
                    Probes { ready: &ready, probing: &probing, dirty: &dirty, wake: &wake, shutdown: &shutdown };
                probe_readiness(&round.awaiting_readiness, &caches, &probes);
            }
            let took = started.elapsed();
            // Services held back are decided when their time comes, changes or not.
            let held = async {
                match held_until {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // Under a storm of changes a round is as long as it is busy: waiting
                // at least as long again keeps the rounds to half a core and lets the
                // next one take in more at once, at the cost of that much delay.
                _ = wake.notified() => tokio::time::sleep(self.config.settle.max(took)).await,
                _ = held => {}
            }
        }
    }

    /// Reports each problem as a Warning Event on its object; returns those whose
    /// Event could not be written.
    async fn report(
        &self,
        recorder: &Recorder,
        caches: &Caches,
        problems: Vec<(Source, Problem)>,
    ) -> Vec<(Source, Problem)> {
        use state::View;
        let mut failed = Vec::new();
        for (source, problem) in problems {
            self.counts.name_errors.inc();
            tracing::warn!(object = %source, reason = problem.reason.as_str(), "{}", problem.message);
            let key = (source.namespace.clone(), source.name.clone());
            let published = match source.kind.as_str() {
                decide::TASK => match caches.task(&key) {
                    Some(t) => publish(recorder, &*t, &problem).await,
                    None => Ok(()),
                },
                decide::SERVICE => match caches.service(&key) {
                    Some(s) => publish(recorder, &*s, &problem).await,
                    None => Ok(()),
                },
                decide::NODE => match caches.node(&source.name) {
                    Some(n) => publish(recorder, &*n, &problem).await,
                    None => Ok(()),
                },
                _ => Ok(()),
            };
            if let Err(e) = published {
                tracing::debug!(error = %e, "cannot record a DNS name problem");
                failed.push((source, problem));
            }
        }
        failed
    }
}

async fn publish(
    recorder: &Recorder,
    object: &impl corral_api::ApiObject,
    problem: &Problem,
) -> corral_runtime::Result<()> {
    recorder.publish(object, EventType::Warning, &problem.reason, &problem.message).await
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
async fn write_statuses(api: &Api<DnsRecord>, user: &BTreeMap<state::Key, UserStatus>, records: &[Arc<DnsRecord>]) {
    for r in records {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let Some(want) = user.get(&(ns.clone(), r.metadata.name.clone())) else { continue };
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

/// What readiness probes share with the rounds.
struct Probes<'a> {
    /// Tasks (`NAMESPACE/NAME`) that passed their service's readiness check.
    ready: &'a Arc<Mutex<HashSet<String>>>,
    /// Tasks being probed now.
    probing: &'a Arc<Mutex<HashSet<String>>>,
    dirty: &'a Arc<Mutex<Dirty>>,
    wake: &'a Arc<Notify>,
    shutdown: &'a CancellationToken,
}

/// Starts a readiness probe for each instance awaiting one (and not probed now). A
/// pass marks the instance ready; either way its service is decided again, at once
/// after a pass, after the check's interval after a failure (to probe again).
fn probe_readiness(awaiting: &[(Arc<Service>, Arc<TaskSummary>)], caches: &Caches, p: &Probes<'_>) {
    use state::View;
    for (svc, t) in awaiting {
        let Some(check) = svc.spec.readiness_check.clone() else { continue };
        let key = decide::task_key(t);
        if !p.probing.lock().insert(key.clone()) {
            continue;
        }
        let host = t
            .spec
            .node_name
            .as_deref()
            .and_then(|n| caches.node(n))
            .and_then(|n| decide::node_address(&n))
            .map(|ip| ip.to_string())
            .or_else(|| t.status.as_ref().and_then(|s| s.host_ip.clone()))
            .unwrap_or_else(|| "127.0.0.1".into());
        let port = t.status.as_ref().and_then(|s| s.ports.get(&check.port_name).copied());
        let service = key_of(svc.metadata.namespace.as_deref(), &svc.metadata.name);
        let (ready, probing, dirty, wake, stop) =
            (p.ready.clone(), p.probing.clone(), p.dirty.clone(), p.wake.clone(), p.shutdown.clone());
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
            } else {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(interval) => {}
                }
            }
            // No longer probing before the round that may probe it again.
            probing.lock().remove(&key);
            dirty.lock().services.insert(service);
            wake.notify_one();
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
