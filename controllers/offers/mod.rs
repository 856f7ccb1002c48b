//! The offers controller: the first level of two-level scheduling. It turns nodes'
//! free resources into [`Offer`]s for registered [`Framework`]s, in weighted DRF
//! order ([`decide::decide`]), takes them back when they expire, when their node is
//! lost, when their framework goes, or when tasks took the resources; records a
//! decline's filter; judges each framework's liveness from its lease in
//! `corral-frameworks` and kills the tasks of one gone longer than its failover
//! timeout; and writes each framework's share to its status.
//!
//! Allocation is a round over the whole cluster, not a reconcile per object: any
//! change of a node, task, framework, lease or offer wakes the loop in this file,
//! which waits a moment for more changes to arrive, then runs one round.
//!
//! Offers are objects in the store, labelled `corral.dev/framework=NAME`, so a
//! framework lists and watches its own with the API it already uses, resumes after
//! a disconnect, and is refused by RBAC what it may not see.

pub mod decide;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use corral_api::Resource;
use corral_api::allocation::{add, dominant_share};
use corral_api::kinds::framework::{
    FRAMEWORK_LEASE_NAMESPACE, Framework, FrameworkPhase, FrameworkStatus, Offer, OfferSpec,
};
use corral_api::kinds::node::{Node, NodePhase, Resources};
use corral_api::kinds::task::{Task, TaskSummary};
use corral_api::kinds::{Lease, Quota, Volume};
use corral_api::transaction::{Operation, Target, Transaction};
use corral_client::{Api, Client, ListParams, TransactParams};
use corral_runtime::{Cache, CancellationToken, Change, ObjectRef, Reflector, Runnable};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use self::decide::{FrameworkState, Held, NodeState, OfferState, Plan, Snapshot};
use crate::node_lifecycle::decide::Observed;
use crate::rounds::{kill_task, poke, radix36};
use crate::shared_tasks::{BY_FRAMEWORK, BY_NODE, SharedTasks};

/// The controller's name, in logs and metrics.
pub const NAME: &str = "offers";

/// Most offers one framework holds at once, by default: more nodes than a framework
/// packing tasks onto offers needs for thousands of tasks a round, and a tenth of
/// the writes a 10,000-node cluster would cost otherwise.
pub const MAX_OFFERS: usize = 1000;

/// Label on every offer: the framework it is made to.
pub const FRAMEWORK_LABEL: &str = "corral.dev/framework";

/// Settings of the offers controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long an offer stands before it is rescinded.
    pub offer_ttl: Duration,
    /// How long to gather changes before a round.
    pub settle: Duration,
    /// Most offers one framework holds at once (see [`decide::Snapshot::max_offers`]).
    pub max_offers: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config { offer_ttl: Duration::from_secs(30), settle: Duration::from_millis(50), max_offers: Some(MAX_OFFERS) }
    }
}

/// The offers controller, for a [`corral_runtime::Manager`].
pub struct Offers {
    config: Config,
    counts: Arc<Counts>,
    tasks: Arc<SharedTasks>,
}

/// What the offers controller counts, besides its rounds.
struct Counts {
    /// How long each round takes.
    rounds: Histogram,
    made: Counter,
    rescinded: Family<Vec<(&'static str, &'static str)>, Counter>,
    declined: Counter,
}

impl Default for Counts {
    fn default() -> Self {
        // 0.5 ms to ~16 s.
        Counts {
            rounds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            made: Default::default(),
            rescinded: Default::default(),
            declined: Default::default(),
        }
    }
}

impl Offers {
    /// The controller with `config`.
    pub fn new(config: Config) -> Self {
        Offers { config, counts: Arc::default(), tasks: Arc::default() }
    }

    /// Shares `tasks` with the other controllers of its set, instead of a copy of
    /// its own.
    pub(crate) fn sharing(mut self, tasks: Arc<SharedTasks>) -> Self {
        self.tasks = tasks;
        self
    }
}

/// The caches a round reads.
struct Caches {
    nodes: Cache<Node>,
    tasks: Cache<TaskSummary>,
    frameworks: Cache<Framework>,
    offers: Cache<Offer>,
    leases: Cache<Lease>,
    quotas: Cache<Quota>,
    /// Volumes, indexed by the node they are bound to: their size is reserved there.
    volumes: Cache<Volume>,
}

/// Index of volumes by the node they are bound to.
const VOLUMES_BY_NODE: &str = "node";

/// Nodes whose tasks changed since the last round, gathered by the tasks'
/// reflector: only their holdings are counted again.
type TouchedNodes = Arc<parking_lot::Mutex<HashSet<String>>>;

/// What the loop remembers between rounds.
#[derive(Default)]
struct Memory {
    /// What each node's live tasks hold, by node: kept up to date from the nodes
    /// whose tasks changed (on the first round, the tasks' first list touched every
    /// node that has any), so that a round does not walk every task of the cluster.
    held: HashMap<String, Held>,
    /// Declined nodes: (framework, node) → refused until.
    filters: HashMap<(String, String), Instant>,
    /// Each framework's lease as last seen, on this controller's clock.
    leases: HashMap<String, Observed>,
    /// The framework statuses last written.
    written: HashMap<String, (FrameworkStatus, Instant)>,
    /// Offers already asked to go (their deletion may take a moment to be seen).
    rescinded: HashSet<String>,
    /// The frameworks of the last round, and when tasks were last read for the
    /// frameworks they name.
    frameworks: Option<BTreeSet<String>>,
    scanned: Option<Instant>,
    /// Offer names: a prefix unique to this run, and a counter.
    prefix: String,
    next: u64,
}

#[async_trait]
impl Runnable for Offers {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        // Rounds, not reconciles of one object: metrics of their own.
        registry.register(
            "corral_offers_round_duration_seconds",
            "Allocation rounds and how long each took",
            self.counts.rounds.clone(),
        );
        registry.register("corral_offers_made", "Offers made to frameworks", self.counts.made.clone());
        registry.register(
            "corral_offers_rescinded",
            "Offers taken back, by reason (Expired, NodeLost, FrameworkGone, ResourcesTaken)",
            self.counts.rescinded.clone(),
        );
        registry.register("corral_offers_declined", "Offers declined by their framework", self.counts.declined.clone());
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        let wake = Arc::new(Notify::new());
        let nodes = Reflector::new(Api::<Node>::all(client.clone()), ListParams::default());
        let frameworks = Reflector::new(Api::<Framework>::all(client.clone()), ListParams::default());
        let offers = Reflector::new(Api::<Offer>::all(client.clone()), ListParams::default());
        let leases =
            Reflector::new(Api::<Lease>::namespaced(client.clone(), FRAMEWORK_LEASE_NAMESPACE), ListParams::default());
        let quotas = Reflector::new(Api::<Quota>::all(client.clone()), ListParams::default());
        let volumes = Reflector::new(Api::<Volume>::all(client.clone()), ListParams::default()).index(
            VOLUMES_BY_NODE,
            Arc::new(|v: &Volume| v.spec.node_name.clone().into_iter().filter(|n| !n.is_empty()).collect()),
        );
        let touched = TouchedNodes::default();
        let on_task = {
            let (touched, wake) = (touched.clone(), wake.clone());
            move |c: Change<TaskSummary>| {
                let mut t = touched.lock();
                if let Change::Applied { previous: Some(p), object } = &c {
                    if !decide::changes_holds(p, object) {
                        return;
                    }
                    t.extend(p.spec.node_name.clone());
                }
                t.extend(c.object().spec.node_name.clone());
                drop(t);
                wake.notify_one();
            }
        };
        // Every task of the cluster, as much as placement needs of it, shared.
        let (tasks, _subscription) = self.tasks.subscribe(&client, Arc::new(on_task));
        let caches = Caches {
            nodes: nodes.cache(),
            tasks,
            frameworks: frameworks.cache(),
            offers: offers.cache(),
            leases: leases.cache(),
            quotas: quotas.cache(),
            volumes: volumes.cache(),
        };
        let reflectors = futures::future::join3(
            futures::future::join3(
                nodes.run(shutdown.clone(), poke(&wake)),
                frameworks.run(shutdown.clone(), poke(&wake)),
                quotas.run(shutdown.clone(), poke(&wake)),
            ),
            offers.run(shutdown.clone(), poke(&wake)),
            futures::future::join(
                leases.run(shutdown.clone(), poke(&wake)),
                volumes.run(shutdown.clone(), poke(&wake)),
            ),
        );
        let rounds = self.rounds(client, caches, touched, wake, shutdown.clone());
        tokio::select! {
            _ = reflectors => {}
            _ = rounds => {}
        }
        Ok(())
    }
}

impl Offers {
    async fn rounds(
        &self,
        client: Client,
        caches: Caches,
        touched: TouchedNodes,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        caches.nodes.wait_synced().await;
        caches.tasks.wait_synced().await;
        caches.frameworks.wait_synced().await;
        caches.offers.wait_synced().await;
        caches.leases.wait_synced().await;
        caches.quotas.wait_synced().await;
        caches.volumes.wait_synced().await;
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut memory = Memory { prefix: radix36(started.as_millis() as u64), ..Default::default() };
        let ctx =
            Apis { client: client.clone(), frameworks: Api::all(client.clone()), tasks: Api::all(client.clone()) };
        loop {
            let started = Instant::now();
            let next = round(&self.config, &ctx, &caches, &touched, &mut memory, &self.counts).await;
            self.counts.rounds.observe(started.elapsed().as_secs_f64());
            let sleep = next.map_or(Duration::from_secs(5), |at| at.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => tokio::time::sleep(self.config.settle).await,
                _ = tokio::time::sleep(sleep.max(Duration::from_millis(10))) => {}
            }
        }
    }
}

struct Apis {
    client: Client,
    frameworks: Api<Framework>,
    tasks: Api<Task>,
}

fn reason_name(r: decide::RescindReason) -> &'static str {
    match r {
        decide::RescindReason::Expired => "Expired",
        decide::RescindReason::NodeLost => "NodeLost",
        decide::RescindReason::FrameworkGone => "FrameworkGone",
        decide::RescindReason::ResourcesTaken => "ResourcesTaken",
    }
}

/// Least time between two status writes of one framework (its share moves with
/// every task) unless its phase changes.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// How often every task is read for frameworks that no longer exist.
const RESCAN: Duration = Duration::from_secs(30);

/// Most writes a round has in flight at once.
const IN_FLIGHT: usize = 64;

/// One allocation round; returns when the next one is due by the clock (an offer's
/// expiry, a filter's end, a lease's lapse).
async fn round(
    config: &Config,
    apis: &Apis,
    caches: &Caches,
    touched: &TouchedNodes,
    memory: &mut Memory,
    counts: &Counts,
) -> Option<Instant> {
    let now = Instant::now();
    let wall = chrono::Utc::now();
    let mut due: Vec<Instant> = Vec::new();

    // What live tasks hold, counted again on the nodes whose tasks changed.
    let touched = std::mem::take(&mut *touched.lock());
    for node in touched {
        let held = Held::of(caches.tasks.by_index(BY_NODE, &node).iter().map(|t| &**t));
        if held == Held::default() {
            memory.held.remove(&node);
        } else {
            memory.held.insert(node, held);
        }
    }
    let mut by_framework: HashMap<String, (Resources, u64)> = HashMap::new();
    for h in memory.held.values() {
        for (fw, (r, n)) in &h.by_framework {
            let e = by_framework.entry(fw.clone()).or_default();
            *e = (add(&e.0, r), e.1 + n);
        }
    }

    // Declined offers: remember the filter, and take the offer back.
    let mut declined = Vec::new();
    let mut offers = Vec::new();
    let listed = caches.offers.list();
    // Forget rescinded offers once their deletion is seen.
    let present: HashSet<&str> = listed.iter().map(|o| o.metadata.name.as_str()).collect();
    memory.rescinded.retain(|n| present.contains(n.as_str()));
    for o in listed.iter() {
        if o.metadata.deletion_timestamp.is_some() || memory.rescinded.contains(&o.metadata.name) {
            continue;
        }
        if let Some(secs) = o.status.as_ref().and_then(|s| s.declined_for_seconds) {
            let until = now + Duration::from_secs(secs);
            memory.filters.insert((o.spec.framework.clone(), o.spec.node.clone()), until);
            declined.push(o.metadata.name.clone());
            continue;
        }
        let expires = chrono::DateTime::parse_from_rfc3339(&o.spec.expires)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or(wall);
        let left = (expires - wall).to_std().unwrap_or_default();
        offers.push(OfferState {
            name: o.metadata.name.clone(),
            offer: decide::Offer {
                framework: o.spec.framework.clone(),
                role: o.spec.role.clone(),
                node: o.spec.node.clone(),
                resources: o.spec.resources,
                ports: o.spec.ports.clone(),
                expires: now + left,
            },
        });
    }
    memory.filters.retain(|_, until| *until > now);
    due.extend(memory.filters.values().copied());

    // Frameworks: connected while their lease is renewed.
    let lease_res = Lease::resource();
    let mut frameworks = Vec::new();
    let mut phases: BTreeMap<String, (FrameworkPhase, String)> = BTreeMap::new();
    for f in caches.frameworks.list() {
        let name = f.metadata.name.clone();
        let lease = caches.leases.get(&ObjectRef::namespaced(lease_res.clone(), FRAMEWORK_LEASE_NAMESPACE, &name));
        let record = lease.as_ref().and_then(|l| l.metadata.resource_version.clone());
        let duration =
            Duration::from_secs(lease.as_ref().and_then(|l| l.spec.lease_duration_seconds).unwrap_or(15).max(1) as u64);
        let observed = Observed::update(memory.leases.get(&name), record, now);
        memory.leases.insert(name.clone(), observed.clone());
        let failover = Duration::from_secs(f.spec.failover_timeout_seconds);
        let since = observed.record.as_ref().map(|_| observed.since);
        let decide::Liveness { phase, message, until } = decide::liveness(&name, since, duration, failover, now);
        due.extend(until);
        frameworks.push(FrameworkState {
            allocated: by_framework.get(&name).map(|(r, _)| *r).unwrap_or_default(),
            name: name.clone(),
            roles: f.spec.roles.clone(),
            weight: f.spec.weight,
            suppressed: f.spec.suppressed || phase != FrameworkPhase::Connected,
            filters: memory
                .filters
                .iter()
                .filter(|((fw, _), _)| *fw == name)
                .map(|((_, node), until)| (node.clone(), *until))
                .collect(),
        });
        phases.insert(name, (phase, message));
    }
    let known: BTreeSet<String> = phases.keys().cloned().collect();
    memory.leases.retain(|n, _| known.contains(n));

    // Nodes, with what their live tasks hold. A round with no offer outstanding and
    // no framework asking for any has nothing to offer or rescind: it reads only the
    // cluster's capacity, for the shares, rather than every node's state — so that a
    // cluster whose tasks churn while no framework waits (its tasks all placed, say)
    // does not pay a pass over every node for each round.
    let wanted = !offers.is_empty() || frameworks.iter().any(|f| !f.suppressed);
    let mut nodes = Vec::new();
    let mut total = Resources::default();
    let listed_nodes = caches.nodes.list();
    for n in &listed_nodes {
        let Some(status) = n.status.as_ref() else { continue };
        let offerable = status.phase == NodePhase::Ready && !n.spec.unschedulable;
        if offerable {
            total = add(&total, &status.capacity);
        }
        if !wanted {
            continue;
        }
        let held = memory.held.get(&n.metadata.name);
        let mut allocated = held.map(|h| h.by_role.clone()).unwrap_or_default();
        // Bound volumes hold their size as disk, for the role `*`, used or not (as
        // the server's ledger counts them).
        let reserved: u64 =
            caches.volumes.by_index(VOLUMES_BY_NODE, &n.metadata.name).iter().map(|v| v.spec.size).sum();
        if reserved > 0 {
            allocated.entry(corral_api::kinds::framework::DEFAULT_ROLE.to_string()).or_default().disk += reserved;
        }
        let used_ports = held.map(|h| h.ports.clone()).unwrap_or_default();
        nodes.push(NodeState {
            name: n.metadata.name.clone(),
            capacity: status.capacity,
            port_ranges: status.port_ranges.clone(),
            reservations: n.spec.reservations.clone(),
            allocated,
            used_ports,
            offerable,
        });
    }

    let quotas = caches
        .quotas
        .list()
        .iter()
        .map(|q| (q.metadata.name.clone(), decide::Quota { guarantee: q.spec.guarantee, limit: q.spec.limit }))
        .collect();
    let snapshot = Snapshot { nodes, frameworks, quotas, offers, max_offers: config.max_offers };
    let plan = decide::decide(&snapshot, now, config.offer_ttl);
    due.extend(snapshot.offers.iter().map(|o| o.offer.expires));
    // What each framework is offered once the plan is applied: the offers it keeps,
    // and the new ones (counted before the writes, so none is counted twice).
    let rescinded: HashSet<&str> = plan.rescind.iter().map(|(n, _)| n.as_str()).collect();
    let mut offered: HashMap<String, Resources> = HashMap::new();
    let kept = snapshot.offers.iter().filter(|o| !rescinded.contains(o.name.as_str())).map(|o| &o.offer);
    for o in kept.chain(plan.offer.iter()) {
        let e = offered.entry(o.framework.clone()).or_default();
        *e = add(e, &o.resources);
    }
    counts.made.inc_by(plan.offer.len() as u64);
    counts.declined.inc_by(declined.len() as u64);
    for (_, reason) in &plan.rescind {
        counts.rescinded.get_or_create(&vec![("reason", reason_name(*reason))]).inc();
    }
    let declined_count = declined.len();
    // The attributes offers carry, of the nodes offered only.
    let offered_nodes: HashSet<&str> = plan.offer.iter().map(|o| o.node.as_str()).collect();
    let attributes: HashMap<String, BTreeMap<String, String>> = listed_nodes
        .iter()
        .filter(|n| offered_nodes.contains(n.metadata.name.as_str()))
        .map(|n| {
            let mut attrs = n.spec.attributes.clone();
            attrs.entry("hostname".to_string()).or_insert_with(|| n.metadata.name.clone());
            (n.metadata.name.clone(), attrs)
        })
        .collect();
    apply(apis, memory, &plan, declined, &attributes, wall, config.offer_ttl).await;
    tracing::debug!(
        nodes = listed_nodes.len(),
        outstanding = snapshot.offers.len(),
        made = plan.offer.len(),
        rescinded = plan.rescind.len(),
        declined = declined_count,
        took_ms = now.elapsed().as_millis() as u64,
        "offers round"
    );

    // Failover: kill the tasks of frameworks gone too long, or deleted. Finding
    // which frameworks tasks name reads every task: done on the first round, when a
    // framework went or is torn down, and every half minute otherwise (a task made
    // naming a framework that does not exist).
    let present: BTreeSet<String> = phases.keys().cloned().collect();
    let shrank = memory.frameworks.as_ref().is_none_or(|before| before.iter().any(|f| !present.contains(f)));
    let any_torn = phases.values().any(|(p, _)| *p == FrameworkPhase::TornDown);
    let stale = memory.scanned.is_none_or(|at| now.duration_since(at) >= RESCAN);
    let mut kill = Vec::new();
    if shrank || any_torn || stale {
        memory.scanned = Some(now);
        let named: BTreeSet<String> = caches.tasks.list().iter().filter_map(|t| t.spec.framework.clone()).collect();
        let by_phase: BTreeMap<String, FrameworkPhase> = phases.iter().map(|(n, (p, _))| (n.clone(), *p)).collect();
        for fw in decide::torn_down(named.iter().map(String::as_str), &by_phase) {
            for t in caches.tasks.by_index(BY_FRAMEWORK, &fw) {
                if !t.spec.kill && !t.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
                    kill.push(t);
                }
            }
        }
    }
    memory.frameworks = Some(present);
    if !kill.is_empty() {
        tracing::info!(tasks = kill.len(), "killing the tasks of frameworks gone longer than their failover timeout");
    }
    futures::stream::iter(kill)
        .for_each_concurrent(IN_FLIGHT, |t| async move {
            if let Err(e) = kill_task(&apis.tasks, &t.metadata).await {
                tracing::debug!(error = %e, task = %t.metadata.name, "cannot kill a task of a gone framework");
            }
        })
        .await;

    // Each framework's share, written when it changed.
    let tally = Tally { phases: &phases, held: &by_framework, offered: &offered, total: &total };
    due.extend(write_statuses(apis, caches, memory, tally, now).await);
    due.into_iter().filter(|d| *d > now).min()
}

async fn apply(
    apis: &Apis,
    memory: &mut Memory,
    plan: &Plan,
    declined: Vec<String>,
    attributes: &HashMap<String, BTreeMap<String, String>>,
    wall: chrono::DateTime<chrono::Utc>,
    ttl: Duration,
) {
    let rescind: Vec<String> = plan.rescind.iter().map(|(n, _)| n.clone()).chain(declined).collect();
    for (name, reason) in &plan.rescind {
        tracing::debug!(offer = %name, ?reason, "rescinding an offer");
    }
    memory.rescinded.extend(rescind.iter().cloned());
    // A round makes and takes back up to `max_offers` offers: in one transaction
    // each way rather than a request per offer. A rescind finding its offer gone
    // (accepted meanwhile) is no error: a transaction's delete says `Absent`.
    let offer = Offer::shared_kind_info();
    let deletes: Vec<Operation> = rescind
        .into_iter()
        .map(|name| {
            Operation::delete(Target {
                api_version: offer.api_version(),
                kind: offer.kind.clone(),
                name,
                ..Default::default()
            })
        })
        .collect();
    transact(apis, deletes, "rescind offers").await;
    let expires = (wall + chrono::Duration::from_std(ttl).unwrap_or_default())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut objects = Vec::with_capacity(plan.offer.len());
    for o in &plan.offer {
        memory.next += 1;
        // Short and unique: node and framework are in the spec and labels.
        let name = format!("{}-{}", memory.prefix, radix36(memory.next));
        let mut offer = Offer::new(
            name,
            OfferSpec {
                framework: o.framework.clone(),
                role: o.role.clone(),
                node: o.node.clone(),
                attributes: attributes.get(&o.node).cloned().unwrap_or_default(),
                resources: o.resources,
                ports: o.ports.clone(),
                expires: expires.clone(),
            },
        );
        offer.metadata.labels.insert(FRAMEWORK_LABEL.to_string(), o.framework.clone());
        objects.push(offer);
    }
    let creates = objects
        .iter()
        .filter_map(|o| match serde_json::to_value(o) {
            Ok(v) => Some(Operation::create(v)),
            Err(e) => {
                tracing::warn!(error = %e, offer = %o.metadata.name, "cannot encode an offer");
                None
            }
        })
        .collect();
    transact(apis, creates, "make offers").await;
}

/// Commits `operations` in one transaction, if there are any; a refusal is logged
/// (the next round decides again from what is stored).
async fn transact(apis: &Apis, operations: Vec<Operation>, what: &str) {
    if operations.is_empty() {
        return;
    }
    let count = operations.len();
    let txn = Transaction { operations };
    if let Err(e) = apis.client.transact(&txn, &TransactParams::default()).await {
        tracing::warn!(error = %e, count, "cannot {what}");
    }
}

/// What a round found about each framework, for its status.
struct Tally<'a> {
    phases: &'a BTreeMap<String, (FrameworkPhase, String)>,
    /// What its tasks bound to nodes hold, and how many they are.
    held: &'a HashMap<String, (Resources, u64)>,
    /// What it is offered.
    offered: &'a HashMap<String, Resources>,
    /// The cluster's offerable resources.
    total: &'a Resources,
}

async fn write_statuses(
    apis: &Apis,
    caches: &Caches,
    memory: &mut Memory,
    tally: Tally<'_>,
    now: Instant,
) -> Option<Instant> {
    let Tally { phases, held, offered, total } = tally;
    let mut writes = Vec::new();
    let mut next: Option<Instant> = None;
    for f in caches.frameworks.list() {
        let name = &f.metadata.name;
        let Some((phase, message)) = phases.get(name) else { continue };
        // Tasks bound to a node: one that is not holds nothing.
        let (allocated, tasks) = held.get(name).copied().unwrap_or_default();
        let offered = offered.get(name).copied().unwrap_or_default();
        let share = (dominant_share(&allocated, total) * 1000.0).round() / 1000.0;
        let status = FrameworkStatus {
            phase: *phase,
            allocated,
            offered,
            dominant_share: share,
            tasks,
            message: Some(message.clone()),
        };
        let current = f.status.clone().unwrap_or_default();
        if current == status {
            continue;
        }
        // The share moves with every task: written at most once a second unless the
        // phase changes.
        let last = memory.written.get(name).map(|(_, at)| *at);
        if let Some(at) = last.filter(|at| now.duration_since(*at) < STATUS_EVERY)
            && current.phase == status.phase
        {
            // Written once the second is up, even if nothing else changes by then.
            next = Some(next.map_or(at + STATUS_EVERY, |n| n.min(at + STATUS_EVERY)));
            continue;
        }
        memory.written.insert(name.clone(), (status.clone(), now));
        let mut updated = (*f).clone();
        updated.status = Some(status);
        writes.push(updated);
    }
    futures::stream::iter(writes)
        .for_each_concurrent(IN_FLIGHT, |f| async move {
            if let Err(e) = apis.frameworks.update_status(&f).await {
                tracing::debug!(error = %e, framework = %f.metadata.name, "cannot write a framework's status");
            }
        })
        .await;
    next
}
