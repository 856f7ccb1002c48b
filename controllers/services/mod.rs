//! The services controller: the built-in `services` framework, keeping every
//! [`Service`] at its instances with Marathon's semantics.
//!
//! Like the allocator, it works in rounds over all services rather than per object:
//! offers are shared by every service waiting, and a fair round hands them out
//! across services ([`matching::match_offers`]). A round:
//!
//! 1. for each service, [`decide::decide`] turns its spec, last status, tasks and the
//!    clock into tasks to launch, kill and forget, and the status to write;
//! 2. the services' launches are matched to the outstanding offers made to the
//!    `services` framework, every accept carrying all the tasks placed on its offer
//!    (tasks of many services in one write); offers nothing fits are declined;
//! 3. kills, deletions and statuses are written — a status at most twice a second
//!    per service, with why instances wait: what turned down how many offers.
//!
//! The framework registers itself (`Framework/services`), renews its lease in
//! `corral-frameworks`, and suppresses offers while no service waits for a place.
//! What it wrote but does not yet see in its caches (tasks just launched, killed or
//! deleted) is remembered until it does, so a round never launches twice.
//!
//! A service with volume templates (`spec.volumes`) has numbered instances: each
//! task carries its instance's index (label `corral.dev/instance`), and instance
//! `i` mounts the volumes `SERVICE-TEMPLATE-i`, made here before it is first
//! placed (owned by the service when their reclaim policy is `Delete`). An instance
//! is placed only once no task of its index is left running (a volume takes one
//! task at a time), on its volumes' node once they are bound, with their size added
//! to the disk it asks while they are not; its deployments kill, then start.

mod changes;
pub mod decide;
pub mod readiness;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use corral_api::kinds::framework::{DEFAULT_ROLE, Framework, Offer, OfferAccept};
use corral_api::kinds::node::Node;
use corral_api::kinds::service::{
    INSTANCE_LABEL, REVISION_LABEL, SERVICE_LABEL, SERVICES_FRAMEWORK, Service, ServiceSpec, ServiceStatus,
    instance_volume_name,
};
use corral_api::kinds::task::VolumeMount;
use corral_api::kinds::task::{Task, TaskPhase, TaskSummary};
use corral_api::kinds::volume::{VOLUME_SERVICE_LABEL, Volume, VolumeSpec};
use corral_api::{ApiObject, Resource};
use corral_client::{Api, Client, DeleteParams, ListParams};
use corral_runtime::{Cache, CancellationToken, ObjectRef, Recorder, Reflector, Runnable};
use futures::StreamExt;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use self::decide::events::happenings;
use self::decide::{Input, TaskView};
use crate::happenings::Queue;
use crate::matching::{self, Demand, OfferView};
use crate::offers::FRAMEWORK_LABEL;
use crate::registration::{self, Registration};
use crate::rounds::{decline, kill_task, radix36};
use crate::shared_tasks::{BY_SERVICE, SharedTasks};

/// The controller's name, in logs and metrics.
pub const NAME: &str = "services";

/// How long a declined node is refused: short, so that a service applied a moment
/// later is not kept waiting.
const REFUSE_SECONDS: u64 = 1;
/// Least time between two status writes of one service.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// The same for a service that still has tasks to place: while a large load is
/// placed, round after round would otherwise write every service's status (only
/// its counts moving), a thousand writes a round competing with the placements.
const STATUS_EVERY_PLACING: Duration = Duration::from_secs(2);
/// How soon a status held back behind an earlier round's writes is tried again.
const STATUS_RETRY: Duration = Duration::from_millis(50);
/// How long a service's last refusals stand for rounds without offers.
const REFUSALS_KEPT: Duration = Duration::from_secs(30);
/// Most writes in flight at once.
const IN_FLIGHT: usize = 64;
/// Most accepts in flight at once: each carries up to hundreds of tasks, which
/// the server decodes, checks and commits in one transaction; more at once only
/// holds more of them in memory, as the store commits them one after another.
const ACCEPTS_IN_FLIGHT: usize = 8;
/// Tasks one round places at most ([`matching::share`]): about a second of accepts on
/// a busy control plane, so that a service applied meanwhile waits for that round
/// only, not for every task of a large load before it.
const ROUND_LAUNCHES: u32 = 10_000;
/// The component named in its Events.
const COMPONENT: &str = "services-controller";

/// Settings of the services controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long to gather changes before a round.
    pub settle: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { settle: Duration::from_millis(20) }
    }
}

/// The services controller, for a [`corral_runtime::Manager`].
pub struct Services {
    config: Config,
    counts: Arc<Counts>,
    tasks: Arc<SharedTasks>,
}

/// What the services controller counts, besides its rounds.
struct Counts {
    /// How long each round takes.
    rounds: Histogram,
    launched: Counter,
    refused: Counter,
    killed: Counter,
}

impl Default for Counts {
    fn default() -> Self {
        // 0.5 ms to ~16 s.
        Counts {
            rounds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            launched: Default::default(),
            refused: Default::default(),
            killed: Default::default(),
        }
    }
}

impl Services {
    /// The controller with `config`.
    pub fn new(config: Config) -> Self {
        Services { config, counts: Arc::default(), tasks: Arc::default() }
    }

    /// Shares `tasks` with the other controllers of its set, instead of a copy of
    /// its own.
    pub(crate) fn sharing(mut self, tasks: Arc<SharedTasks>) -> Self {
        self.tasks = tasks;
        self
    }
}

struct Caches {
    services: Cache<Service>,
    tasks: Cache<TaskSummary>,
    offers: Cache<Offer>,
    nodes: Cache<Node>,
    /// The volumes services made from their templates.
    volumes: Cache<Volume>,
}

struct Apis {
    client: Client,
    services: Api<Service>,
    tasks: Api<Task>,
    frameworks: Api<Framework>,
    /// Events to record.
    events: Queue<Service>,
}

/// A task launched but not yet seen in the cache.
#[derive(Clone)]
struct Pending {
    view: TaskView,
    /// The revision the accept created it at, once answered: a cache at that
    /// revision or past it without the task saw it go. Never forgotten by time, as
    /// other writes are: a cache far behind (a re-list of 100,000 tasks under load)
    /// would otherwise make the service launch it again.
    created: Option<u64>,
    /// The instance it runs, for a service with volume templates.
    instance: Option<u32>,
}

/// What one service decided when it was last decided.
struct Decided {
    svc: Arc<Service>,
    plan: decide::Plan,
    /// What it waits to have placed, each with the instance it is for (services
    /// with volume templates place each instance on its own).
    demands: Vec<(Demand, Option<u32>)>,
    /// Volumes of its instances to make before they can be placed.
    create: Vec<Volume>,
    /// When its plan runs out by the clock (a backoff ends, a task goes unreachable).
    wake: Option<Instant>,
}

/// What the loop remembers between rounds.
#[derive(Default)]
struct Memory {
    /// Every service's last decision, by `namespace/name`: a service is decided
    /// again only when something it reads changed (see [`changes`]).
    decided: BTreeMap<String, Decided>,
    /// Services to decide again next round whatever else changes: they launched,
    /// killed or deleted tasks, or an accept of theirs was refused.
    again: HashSet<String>,
    /// Services whose status write was held back (at most one per `STATUS_EVERY`,
    /// and none while the last round's are still being written).
    status_held: HashSet<String>,
    /// The status writes of an earlier round, still going: a round does not wait
    /// for them (a thousand services placing write a thousand statuses a round),
    /// it holds its own back until they are done.
    status_writes: StatusWrites,
    /// Every service is decided on the first round.
    started: bool,
    /// Tasks launched, by service key, until the cache has them.
    launched: HashMap<String, Vec<Pending>>,
    /// Tasks asked to die or go (by task key: their service's key, and when), until
    /// the cache shows it.
    killed: HashMap<String, (String, Instant)>,
    deleted: HashMap<String, (String, Instant)>,
    /// Offers accepted or declined, until the cache drops them.
    used: HashMap<String, Instant>,
    /// When what is kept only for a while was last swept.
    swept: Option<Instant>,
    /// When each service's status was last written.
    written: HashMap<String, Instant>,
    /// The status last computed for each service, by uid.
    statuses: HashMap<String, ServiceStatus>,
    /// Each waiting service's last round with offers, and when.
    refusals: HashMap<String, (matching::Unplaced, Instant)>,
    /// Readiness results by task key.
    ready: Arc<Mutex<HashMap<String, bool>>>,
    /// Task names: a prefix unique to this run, and a counter.
    prefix: String,
    next: u64,
    /// The framework's registration.
    registration: Registration,
}

/// The status writes of a round, stopped if the controller stops first: a
/// successor elected meanwhile writes its own.
#[derive(Default)]
struct StatusWrites(Option<tokio::task::JoinHandle<()>>);

impl StatusWrites {
    fn going(&self) -> bool {
        self.0.as_ref().is_some_and(|w| !w.is_finished())
    }
}

impl Drop for StatusWrites {
    fn drop(&mut self) {
        if let Some(w) = &self.0 {
            w.abort();
        }
    }
}

/// How long a write may stay unseen before it is forgotten (a lost response, a task
/// deleted at once): after that the caches are the truth again.
const UNSEEN: Duration = Duration::from_secs(30);
/// How often what is remembered only for a while is swept.
const SWEEP: Duration = Duration::from_secs(1);

#[async_trait]
impl Runnable for Services {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        // Rounds, not reconciles of one object: metrics of their own.
        registry.register(
            "corral_services_round_duration_seconds",
            "Rounds over every service and how long each took",
            self.counts.rounds.clone(),
        );
        registry.register(
            "corral_services_tasks_launched",
            "Tasks launched by accepting offers",
            self.counts.launched.clone(),
        );
        registry.register(
            "corral_services_accepts_refused",
            "Accepts the server refused (the offer no longer fitted)",
            self.counts.refused.clone(),
        );
        registry.register(
            "corral_services_tasks_killed",
            "Tasks killed: scaled down, replaced or rolled",
            self.counts.killed.clone(),
        );
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        let wake = Arc::new(Notify::new());
        let services = Reflector::new(Api::<Service>::all(client.clone()), ListParams::default());
        let changed = changes::Shared::default();
        // The cluster's tasks, as much as deciding needs of them, shared.
        let (tasks, _subscription) = self.tasks.subscribe(&client, Arc::new(changes::on_task(&changed, &wake)));
        let offers = Reflector::new(
            Api::<Offer>::all(client.clone()),
            ListParams {
                label_selector: Some(format!("{FRAMEWORK_LABEL}={SERVICES_FRAMEWORK}")),
                ..Default::default()
            },
        );
        let nodes = Reflector::new(Api::<Node>::all(client.clone()), ListParams::default());
        let volumes = Reflector::new(
            Api::<Volume>::all(client.clone()),
            ListParams { label_selector: Some(VOLUME_SERVICE_LABEL.to_string()), ..Default::default() },
        );
        let caches = Caches {
            services: services.cache(),
            tasks,
            offers: offers.cache(),
            nodes: nodes.cache(),
            volumes: volumes.cache(),
        };
        let (events, recording) = Queue::new(Recorder::new(client.clone(), COMPONENT));
        let apis = Apis {
            client: client.clone(),
            services: Api::all(client.clone()),
            tasks: Api::all(client.clone()),
            frameworks: Api::all(client.clone()),
            events,
        };
        let reflectors = futures::future::join3(
            services.run(shutdown.clone(), changes::on_service(&changed, &wake)),
            offers.run(shutdown.clone(), changes::on_offer(&changed, &wake)),
            futures::future::join(
                nodes.run(shutdown.clone(), changes::on_node(&changed, &wake)),
                volumes.run(shutdown.clone(), changes::on_volume(&changed, &wake)),
            ),
        );
        let lease = registration::renew_lease(client.clone(), SERVICES_FRAMEWORK);
        let rounds = self.rounds(apis, caches, changed, wake, shutdown.clone());
        tokio::select! {
            _ = reflectors => {}
            _ = lease => {}
            _ = rounds => {}
            _ = recording => {}
        }
        Ok(())
    }
}

impl Services {
    async fn rounds(
        &self,
        apis: Apis,
        caches: Caches,
        changed: changes::Shared,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        caches.services.wait_synced().await;
        caches.tasks.wait_synced().await;
        caches.offers.wait_synced().await;
        caches.nodes.wait_synced().await;
        caches.volumes.wait_synced().await;
        let started = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let mut memory = Memory { prefix: radix36(started.as_secs() % 46_656), ..Default::default() };
        loop {
            let started = Instant::now();
            let next = round(&apis, &caches, &mut memory, &changed, wake.clone(), &self.counts).await;
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

/// One round: the services whose inputs changed decide again, what waits is matched
/// to the offers, and the writes are made. Returns when the next is due by the clock.
async fn round(
    apis: &Apis,
    caches: &Caches,
    memory: &mut Memory,
    changed: &changes::Shared,
    wake: Arc<Notify>,
    counts: &Counts,
) -> Option<Instant> {
    let now = Instant::now();
    let wall = SystemTime::now();
    let dirty = take_changes(caches, memory, changed, now);
    let mut due: Vec<Instant> = Vec::new();

    // 1. The services whose inputs changed decide again; the others keep their plan.
    let service_res = Service::resource();
    let mut decided_now: Vec<String> = Vec::new();
    for key in dirty {
        let (ns, name) = key.split_once('/').unwrap_or(("", key.as_str()));
        match caches.services.get(&ObjectRef::namespaced(service_res.clone(), ns, name)) {
            Some(svc) if svc.metadata.deletion_timestamp.is_none() => {
                let decided = decide_service(caches, memory, svc, now, wall);
                memory.decided.insert(key.clone(), decided);
                decided_now.push(key);
            }
            _ => {
                memory.decided.remove(&key);
            }
        }
    }
    start_readiness_checks(caches, memory, &decided_now, changed, wake);

    // The framework takes resources for the roles its services ask for, and only
    // those: an offer of a role no service wants would only be declined.
    let mut roles: BTreeSet<String> = BTreeSet::new();
    let mut demands: Vec<Demand> = Vec::new();
    let mut instances: Vec<Option<u32>> = Vec::new();
    let mut to_create: Vec<Volume> = Vec::new();
    for d in memory.decided.values() {
        roles.insert(d.svc.spec.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_string()));
        due.extend(d.wake);
        for (demand, instance) in &d.demands {
            demands.push(demand.clone());
            instances.push(*instance);
        }
        to_create.extend(d.create.iter().cloned());
    }
    // Instances' volumes, made before they are placed; their arrival in the cache
    // has the service decide again.
    for v in to_create {
        let api: Api<Volume> =
            Api::namespaced(apis.client.clone(), v.metadata.namespace.as_deref().unwrap_or_default());
        match api.create(&v).await {
            Ok(_) => tracing::info!(volume = %v.metadata.name, "instance volume made"),
            Err(e) if e.is_conflict() => {}
            Err(e) => tracing::warn!(error = %e, volume = %v.metadata.name, "cannot make an instance's volume"),
        }
    }
    // The framework asks for offers only while some service waits.
    if roles.is_empty() {
        roles.insert(DEFAULT_ROLE.to_string());
    }
    memory.registration.ensure(&apis.frameworks, SERVICES_FRAMEWORK, !demands.is_empty(), &roles).await;

    // 2. Offers matched to what waits, a bounded share of it.
    let held_back = matching::share(&mut demands, ROUND_LAUNCHES);
    let offers: Vec<OfferView> = matching::open_offers(&caches.offers.list(), &memory.used);
    // With nothing waiting, every offer still held is declined.
    let matching = matching::match_offers(&offers, &demands);
    let by_name: HashMap<&str, &OfferView> = offers.iter().map(|o| (o.name.as_str(), o)).collect();
    let mut accepts = Vec::new();
    for a in &matching.accepts {
        let Some(offer) = by_name.get(a.offer.as_str()) else { continue };
        let mut tasks = Vec::new();
        for l in &a.launches {
            let d = &demands[l.demand];
            let instance = instances[l.demand];
            let Some(Decided { svc, plan, .. }) = memory.decided.get(&d.key) else { continue };
            memory.next += 1;
            let name = format!("{}-{}{}", svc.metadata.name, memory.prefix, radix36(memory.next));
            memory.launched.entry(d.key.clone()).or_default().push(Pending {
                view: TaskView {
                    name: name.clone(),
                    revision: plan.revision,
                    node: Some(offer.node.clone()),
                    phase: TaskPhase::Staging,
                    healthy: None,
                    has_health_checks: !svc.spec.template.health_checks.is_empty(),
                    ready: svc.spec.readiness_check.is_none(),
                    killing: false,
                    created: wall,
                    started: None,
                    finished: None,
                },
                created: None,
                instance,
            });
            // What it launched changes what it decides: its plan is spent.
            memory.again.insert(d.key.clone());
            tasks.push(Launch {
                svc: svc.clone(),
                revision: plan.revision,
                host_ports: l.host_ports.clone(),
                name,
                instance,
            });
        }
        memory.used.insert(a.offer.clone(), now);
        accepts.push((a.offer.clone(), tasks));
    }
    // When the round placed all it was allowed and held some back, what it held back
    // may fit the offers it did not use: they are kept for the next round, which
    // comes at once. When something fell short, the offers are spent for now: they
    // are declined as ever, and no round follows merely because of the bound (that
    // would go round and round while the cluster is full).
    let more = held_back && matching.waiting.is_empty();
    let unused = if more { Vec::new() } else { matching.unused.clone() };
    let declined = unused.len();
    for name in &unused {
        memory.used.insert(name.clone(), now);
    }
    let client = &apis.client;
    // Each accept's tasks are made as it is sent: a round may place a hundred
    // thousand, and only the accepts in flight need theirs at once.
    let accepting = futures::stream::iter(accepts)
        .map(|(offer, launches): (String, Vec<Launch>)| async move {
            let tasks =
                launches.iter().map(|l| new_task(&l.svc, l.revision, &l.host_ports, &l.name, l.instance)).collect();
            drop(launches);
            let accept = OfferAccept { framework: SERVICES_FRAMEWORK.to_string(), tasks };
            match client.accept_offer_as::<CreatedTask>(&offer, &accept).await {
                Ok(created) => Ok(created.into_iter().map(Created::from).collect::<Vec<_>>()),
                Err(e) => {
                    tracing::debug!(error = %e, %offer, "an accept was refused; the tasks wait for the next offer");
                    Err(accept.tasks)
                }
            }
        })
        .buffer_unordered(ACCEPTS_IN_FLIGHT)
        .collect::<Vec<_>>();
    // The offers nothing fits are handed back while the others are accepted.
    let declining = futures::stream::iter(unused)
        .map(|offer| async move { decline(client, SERVICES_FRAMEWORK, &offer, REFUSE_SECONDS).await })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>();
    let (launched, _) = futures::join!(accepting, declining);
    for created in launched.iter().filter_map(|r| r.as_ref().ok()) {
        counts.launched.inc_by(created.len() as u64);
        for t in created {
            if let Some(p) = memory.launched.get_mut(&t.service).into_iter().flatten().find(|p| p.view.name == t.name) {
                p.created = Some(t.revision);
            }
        }
    }
    let (accepted, placed) =
        launched.iter().filter_map(|r| r.as_ref().ok()).fold((0, 0), |(a, t), c| (a + 1, t + c.len()));
    tracing::debug!(
        decided = decided_now.len(),
        waiting = demands.len(),
        offers = offers.len(),
        accepted,
        placed,
        refused = launched.len() - accepted,
        declined,
        held_back,
        took_ms = now.elapsed().as_millis() as u64,
        "services round: offers matched"
    );
    for refused in launched.into_iter().filter_map(Result::err) {
        counts.refused.inc();
        forget_refused(memory, &refused);
    }
    // 3. Kills and deletions of the services decided now; statuses of those, of the
    // ones waiting (why they wait changes with every round of offers) and of those
    // whose write was held back.
    let mut waiting: HashMap<&str, &matching::Unplaced> = HashMap::new();
    for u in &matching.waiting {
        waiting.insert(demands[u.demand].key.as_str(), u);
    }
    let mut kills = Vec::new();
    let mut deletes = Vec::new();
    let mut statuses = Vec::new();
    let writing = memory.status_writes.going();
    let mut touched: BTreeSet<String> = decided_now.iter().cloned().collect();
    touched.extend(demands.iter().map(|d| d.key.clone()));
    touched.extend(std::mem::take(&mut memory.status_held));
    for key in &decided_now {
        let Some(Decided { svc, plan, .. }) = memory.decided.get(key) else { continue };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        for name in &plan.kill {
            let tkey = format!("{ns}/{name}");
            if let Some(t) = caches.tasks.get(&ObjectRef::namespaced(Task::resource(), &ns, name)) {
                memory.killed.insert(tkey, (key.clone(), now));
                kills.push(t);
            }
        }
        for name in &plan.delete {
            memory.deleted.insert(format!("{ns}/{name}"), (key.clone(), now));
            deletes.push((ns.clone(), name.clone()));
        }
        if !plan.kill.is_empty() || !plan.delete.is_empty() {
            memory.again.insert(key.clone());
        }
    }
    for key in touched {
        let Some(Decided { svc, plan, .. }) = memory.decided.get(&key) else { continue };
        let mut status = plan.status.clone();
        let short = waiting.get(key.as_str()).map(|u| {
            // A round between offers (declined nodes are refused for a moment)
            // examines none; the last round that did still says why.
            let u = match memory.refusals.get(&key) {
                Some((last, at)) if u.offers_examined == 0 && now.duration_since(*at) < REFUSALS_KEPT => {
                    matching::Unplaced { instances: u.instances, ..last.clone() }
                }
                _ => (*u).clone(),
            };
            if u.offers_examined > 0 {
                memory.refusals.insert(key.clone(), (u.clone(), now));
            }
            u
        });
        let shortfall = short.as_ref().map(|u| matching::Shortfall {
            instances: u.instances,
            offers_examined: u.offers_examined,
            refusals: &u.refusals,
            offers_in_round: offers.len(),
        });
        decide::placement(&mut status, plan.launch, shortfall, wall);
        memory.statuses.insert(svc.metadata.uid.clone().unwrap_or_default(), status.clone());
        if svc.status.as_ref() == Some(&status) {
            continue;
        }
        let every = if plan.launch > 0 { STATUS_EVERY_PLACING } else { STATUS_EVERY };
        if let Some(at) = memory.written.get(&key).filter(|at| now.duration_since(**at) < every) {
            due.push(*at + every);
            memory.status_held.insert(key);
            continue;
        }
        if writing {
            due.push(now + STATUS_RETRY);
            memory.status_held.insert(key);
            continue;
        }
        memory.written.insert(key, now);
        apis.events.push(svc, happenings(svc.status.as_ref(), &status));
        let mut updated = (**svc).clone();
        updated.status = Some(status);
        statuses.push(updated);
    }
    counts.killed.inc_by(kills.len() as u64);
    let tasks_api = &apis.tasks;
    futures::stream::iter(kills)
        .for_each_concurrent(IN_FLIGHT, |t| async move {
            if let Err(e) = kill_task(tasks_api, &t.metadata).await {
                tracing::debug!(error = %e, task = %t.metadata.name, "cannot kill a task");
            }
        })
        .await;
    futures::stream::iter(deletes)
        .for_each_concurrent(IN_FLIGHT, |(ns, name)| async move {
            match tasks_api.in_namespace(&ns).delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::debug!(error = %e, task = %name, "cannot delete an ended task"),
            }
        })
        .await;
    if !statuses.is_empty() {
        let services_api = apis.services.clone();
        memory.status_writes = StatusWrites(Some(tokio::spawn(async move {
            futures::stream::iter(statuses)
                .for_each_concurrent(IN_FLIGHT, |s| {
                    let api = services_api.in_namespace(s.metadata.namespace.as_deref().unwrap_or_default());
                    async move {
                        if let Err(e) = api.update_status(&s).await {
                            tracing::debug!(error = %e, service = %s.metadata.name, "cannot write a service's status");
                        }
                    }
                })
                .await;
        })));
    }
    if more || !memory.again.is_empty() {
        due.push(now + Duration::from_millis(10));
    } else if !memory.used.is_empty() || !memory.launched.is_empty() {
        due.push(now + SWEEP);
    }
    due.into_iter().filter(|d| *d > now).min()
}

/// Forgets the tasks of a refused accept: they were never created, and their
/// services must launch them again on the next offers.
fn forget_refused(memory: &mut Memory, refused: &[Task]) {
    for t in refused {
        let Some(key) = service_of(t) else { continue };
        if let Some(list) = memory.launched.get_mut(&key) {
            list.retain(|p| p.view.name != t.metadata.name);
            if list.is_empty() {
                memory.launched.remove(&key);
            }
        }
        memory.again.insert(key);
    }
}

/// One service decides, from its spec, its tasks (cached, and launched but not yet
/// seen) and its last computed status.
fn decide_service(caches: &Caches, memory: &Memory, svc: Arc<Service>, now: Instant, wall: SystemTime) -> Decided {
    let key = service_key(&svc);
    let cached = caches.tasks.by_index(BY_SERVICE, &key);
    let mut tasks: Vec<TaskView> = Vec::with_capacity(cached.len());
    // A busy service is decided again at every change of one of its hundreds of
    // tasks: what most rounds need not look up (nothing killed, deleted or
    // launched of late, no readiness check) costs nothing per task.
    let remembered = !memory.deleted.is_empty() || !memory.killed.is_empty();
    let ready = svc.spec.readiness_check.is_some().then(|| memory.ready.lock());
    for t in &cached {
        let mut view = view_of(t, &svc, ready.as_deref());
        if remembered {
            let tkey = task_key(t);
            if memory.deleted.contains_key(&tkey) {
                continue;
            }
            view.killing |= memory.killed.contains_key(&tkey);
        }
        tasks.push(view);
    }
    drop(ready);
    if let Some(launched) = memory.launched.get(&key) {
        let seen: HashSet<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        let fresh: Vec<TaskView> =
            launched.iter().filter(|p| !seen.contains(p.view.name.as_str())).map(|p| p.view.clone()).collect();
        tasks.extend(fresh);
    }
    // The status last computed, not the one last seen: a write held back (or not
    // yet back in the cache) must not make the next round number the same template
    // afresh.
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let status = memory.statuses.get(&uid).cloned().or_else(|| svc.status.clone()).unwrap_or_default();
    // Instances with volumes roll out kill-then-start: the volume takes one task.
    let no_surge = (!svc.spec.volumes.is_empty()).then(|| no_surge(&svc.spec));
    let spec = no_surge.as_ref().unwrap_or(&svc.spec);
    let input = Input { spec, generation: svc.metadata.generation.unwrap_or(0), status: &status, tasks };
    let plan = decide::decide(&input, wall);
    let wake = plan.wake_at.map(|at| now + at.duration_since(wall).unwrap_or_default());
    let demand = (plan.launch > 0).then(|| {
        // Only constraints read where the others run.
        let placed = if svc.spec.constraints.is_empty() {
            Vec::new()
        } else {
            let node_res = Node::resource();
            input
                .tasks
                .iter()
                .filter(|t| !t.killing && !t.phase.is_terminal())
                .filter_map(|t| t.node.as_ref())
                .filter_map(|n| caches.nodes.get(&ObjectRef::cluster(node_res.clone(), n)))
                .map(|n| {
                    let mut a = n.spec.attributes.clone();
                    a.entry(matching::HOSTNAME.to_string()).or_insert_with(|| n.metadata.name.clone());
                    a
                })
                .collect()
        };
        Demand {
            key: key.clone(),
            count: plan.launch,
            resources: svc.spec.template.resources,
            ports: svc.spec.template.ports.clone(),
            role: svc.spec.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_string()),
            constraints: svc.spec.constraints.clone(),
            placed,
            node: None,
        }
    });
    let (demands, create) = match demand {
        Some(d) if !svc.spec.volumes.is_empty() => instance_demands(caches, memory, &svc, &cached, d, plan.launch),
        Some(d) => (vec![(d, None)], Vec::new()),
        None => (Vec::new(), Vec::new()),
    };
    Decided { svc, plan, demands, create, wake }
}

/// `spec` with no surge for a deployment: nothing over `instances`, and, where
/// the minimum health capacity would then leave no room, one instance may stop
/// before its replacement starts.
fn no_surge(spec: &ServiceSpec) -> ServiceSpec {
    let mut spec = spec.clone();
    let n = f64::from(spec.instances.max(1));
    let us = &mut spec.upgrade_strategy;
    us.maximum_over_capacity = 0.0;
    us.minimum_health_capacity = us.minimum_health_capacity.min((n - 1.0) / n);
    spec
}

/// The demands of a service with volume templates, one per instance to place (at
/// most `launch`): the lowest indices no task holds, each on its volumes' node once
/// they are bound; and the volumes to make first.
fn instance_demands(
    caches: &Caches,
    memory: &Memory,
    svc: &Service,
    cached: &[Arc<TaskSummary>],
    base: Demand,
    launch: u32,
) -> (Vec<(Demand, Option<u32>)>, Vec<Volume>) {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    // Indices still held: by a task that has not ended (killed ones too, until they
    // have), or launched and not yet seen.
    let mut held: HashSet<u32> = cached
        .iter()
        .filter(|t| !t.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .filter_map(|t| t.metadata.labels.get(INSTANCE_LABEL).and_then(|i| i.parse().ok()))
        .collect();
    let seen: HashSet<&str> = cached.iter().map(|t| t.metadata.name.as_str()).collect();
    if let Some(launched) = memory.launched.get(&base.key) {
        held.extend(launched.iter().filter(|p| !seen.contains(p.view.name.as_str())).filter_map(|p| p.instance));
    }
    let res = Volume::resource();
    let (mut demands, mut create) = (Vec::new(), Vec::new());
    for i in (0..svc.spec.instances).filter(|i| !held.contains(i)).take(launch as usize) {
        let (mut node, mut disk, mut ready): (Option<String>, u64, bool) = (None, 0, true);
        for t in &svc.spec.volumes {
            let name = instance_volume_name(&svc.metadata.name, &t.name, i);
            match caches.volumes.get(&ObjectRef::namespaced(res.clone(), ns, &name)) {
                None => {
                    create.push(instance_volume(svc, t, &name));
                    ready = false;
                }
                Some(v) if v.metadata.deletion_timestamp.is_some() => ready = false,
                Some(v) => match v.spec.node_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) if node.as_deref().is_some_and(|m| m != n) => {
                        tracing::warn!(volume = %name, "an instance's volumes are bound to different nodes; it cannot be placed");
                        ready = false;
                    }
                    Some(n) => node = Some(n.to_string()),
                    None => disk += v.spec.size,
                },
            }
        }
        if ready {
            let mut d = Demand { count: 1, node, ..base.clone() };
            d.resources.disk += disk;
            demands.push((d, Some(i)));
        }
    }
    (demands, create)
}

/// Instance volume `name` of template `t` of `svc`: labelled with the service,
/// and owned by it when its data goes with it (`Delete`).
fn instance_volume(svc: &Service, t: &corral_api::kinds::service::VolumeTemplate, name: &str) -> Volume {
    let spec = VolumeSpec { size: t.size, reclaim_policy: t.reclaim_policy, node_name: None, host_path: None };
    let mut v = Volume::namespaced(svc.metadata.namespace.clone().unwrap_or_default(), name.to_string(), spec);
    v.metadata.labels.insert(VOLUME_SERVICE_LABEL.to_string(), svc.metadata.name.clone());
    if t.reclaim_policy == corral_api::kinds::ReclaimPolicy::Delete {
        v.metadata.owner_references = corral_runtime::owner_reference(svc, false).into_iter().collect();
    }
    v
}

/// Takes the changes gathered since the last round: drops from the memory of its
/// own writes what the caches now show, sweeps what stayed unseen too long, and
/// returns the services to decide again.
fn take_changes(caches: &Caches, memory: &mut Memory, changed: &changes::Shared, now: Instant) -> BTreeSet<String> {
    let ch = std::mem::take(&mut *changed.lock());
    let mut dirty: BTreeSet<String> = ch.services.into_iter().collect();
    dirty.extend(std::mem::take(&mut memory.again));
    if ch.all || !memory.started {
        memory.started = true;
        dirty.extend(caches.services.list().iter().map(|s| service_key(s)));
    }
    for t in ch.tasks {
        if let Some(list) = memory.launched.get_mut(&t.service) {
            list.retain(|p| p.view.name != t.name);
        }
        if t.gone || t.going {
            memory.killed.remove(&t.key);
        }
        if t.gone {
            memory.deleted.remove(&t.key);
            memory.ready.lock().remove(&t.key);
        }
    }
    memory.launched.retain(|_, l| !l.is_empty());
    for o in ch.offers_gone {
        memory.used.remove(&o);
    }
    for (key, d) in &memory.decided {
        if d.wake.is_some_and(|at| at <= now) {
            dirty.insert(key.clone());
        }
    }
    if memory.swept.is_none_or(|at| now.duration_since(at) >= SWEEP) {
        memory.swept = Some(now);
        let seen_up_to = caches.tasks.revision();
        for (svc, list) in memory.launched.iter_mut() {
            let before = list.len();
            list.retain(|p| p.created.is_none_or(|at| seen_up_to < at));
            if list.len() != before {
                dirty.insert(svc.clone());
            }
        }
        memory.launched.retain(|_, l| !l.is_empty());
        for map in [&mut memory.killed, &mut memory.deleted] {
            map.retain(|_, (svc, at)| {
                let keep = now.duration_since(*at) < UNSEEN;
                if !keep {
                    dirty.insert(svc.clone());
                }
                keep
            });
        }
        memory.used.retain(|_, at| now.duration_since(*at) < UNSEEN);
        let services = caches.services.list();
        let uids: HashSet<&str> = services.iter().filter_map(|s| s.metadata.uid.as_deref()).collect();
        memory.statuses.retain(|uid, _| uids.contains(uid.as_str()));
        let keys: HashSet<String> = services.iter().map(|s| service_key(s)).collect();
        memory.written.retain(|key, _| keys.contains(key));
        memory.refusals.retain(|key, (_, at)| keys.contains(key) && now.duration_since(*at) < REFUSALS_KEPT);
    }
    dirty
}

/// Checks the readiness of running tasks of the wanted revision not yet ready, in
/// the background; a result makes the service decide again.
fn start_readiness_checks(
    caches: &Caches,
    memory: &Memory,
    keys: &[String],
    changed: &changes::Shared,
    wake: Arc<Notify>,
) {
    for service in keys {
        let Some(Decided { svc, plan, .. }) = memory.decided.get(service) else { continue };
        let Some(check) = svc.spec.readiness_check.clone() else { continue };
        for t in caches.tasks.by_index(BY_SERVICE, service) {
            let key = task_key(&t);
            let status = t.status.clone().unwrap_or_default();
            if status.phase != TaskPhase::Running
                || revision_of(&t) != plan.revision
                || memory.ready.lock().get(&key).copied() == Some(true)
            {
                continue;
            }
            let (Some(host), Some(port)) = (status.host_ip.clone(), status.ports.get(&check.port_name).copied()) else {
                continue;
            };
            // One check in flight per task: a `false` entry marks it.
            if memory.ready.lock().insert(key.clone(), false).is_some() {
                continue;
            }
            let (ready, wake, check) = (memory.ready.clone(), wake.clone(), check.clone());
            let (changed, service) = (changed.clone(), service.clone());
            tokio::spawn(async move {
                let timeout = Duration::from_secs(u64::from(check.timeout_seconds.max(1)));
                let ok = readiness::check(&host, port, &check.path, &check.http_status_codes_for_ready, timeout).await;
                if ok {
                    ready.lock().insert(key, true);
                } else {
                    tokio::time::sleep(Duration::from_secs(u64::from(check.interval_seconds.max(1)))).await;
                    ready.lock().remove(&key);
                }
                changed.lock().services.insert(service);
                wake.notify_one();
            });
        }
    }
}

/// What decide reads of task `t`; `ready` holds the readiness checks' results
/// when `svc` has one.
fn view_of(t: &TaskSummary, svc: &Service, ready: Option<&HashMap<String, bool>>) -> TaskView {
    let status = t.status.as_ref();
    let time = |s: Option<&String>| s.and_then(|s| crate::rounds::parse_rfc3339(s));
    TaskView {
        name: t.metadata.name.clone(),
        revision: revision_of(t),
        node: t.spec.node_name.clone(),
        phase: status.map(|s| s.phase).unwrap_or_default(),
        healthy: status.and_then(|s| s.health.as_ref()).map(|h| h.healthy),
        has_health_checks: !t.spec.health_checks.is_empty(),
        ready: svc.spec.readiness_check.is_none() || ready.is_some_and(|r| r.get(&task_key(t)).copied() == Some(true)),
        killing: t.spec.kill || t.metadata.deletion_timestamp.is_some(),
        created: time(t.metadata.creation_timestamp.as_ref()).unwrap_or(SystemTime::UNIX_EPOCH),
        started: time(status.and_then(|s| s.start_time.as_ref())),
        finished: time(status.and_then(|s| s.finish_time.as_ref())),
    }
}

/// A task to launch on an accepted offer, made when its accept is sent.
struct Launch {
    svc: Arc<Service>,
    revision: u64,
    host_ports: Vec<u16>,
    name: String,
    instance: Option<u32>,
}

fn new_task(svc: &Service, revision: u64, host_ports: &[u16], name: &str, instance: Option<u32>) -> Task {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let mut spec = svc.spec.template.clone();
    for (p, hp) in spec.ports.iter_mut().zip(host_ports) {
        p.host_port = Some(*hp);
    }
    if let Some(i) = instance {
        spec.volume_mounts.extend(svc.spec.volumes.iter().map(|t| VolumeMount {
            volume: instance_volume_name(&svc.metadata.name, &t.name, i),
            mount_path: t.mount_path.clone(),
            read_only: t.read_only,
        }));
    }
    let mut task = Task::namespaced(ns, name.to_string(), spec);
    task.metadata.labels = svc.spec.task_labels.clone();
    if let Some(i) = instance {
        task.metadata.labels.insert(INSTANCE_LABEL.to_string(), i.to_string());
    }
    task.metadata.labels.insert(SERVICE_LABEL.to_string(), svc.metadata.name.clone());
    task.metadata.labels.insert(REVISION_LABEL.to_string(), revision.to_string());
    task.metadata.owner_references = corral_runtime::owner_reference(svc, true).into_iter().collect();
    task
}

/// A task an accept created, as read from the accept's answer: only what
/// [`Created`] keeps of it is decoded.
#[derive(serde::Deserialize)]
struct CreatedTask {
    metadata: CreatedMeta,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What a round keeps of a task it launched until all its accepts are answered:
/// whose it is, its name, and the revision that created it. A round may launch a
/// hundred thousand tasks; held decoded until the last answer, their metadata was
/// 52 MB of a 403 MB heap peak at 30,000 tasks (heaptrack).
struct Created {
    /// `NAMESPACE/SERVICE`.
    service: String,
    name: String,
    revision: u64,
}

impl From<CreatedTask> for Created {
    fn from(t: CreatedTask) -> Self {
        let CreatedMeta { name, namespace, resource_version, labels } = t.metadata;
        let service = service_labelled(namespace.as_deref(), &labels).unwrap_or_default();
        Created { service, name, revision: resource_version.and_then(|v| v.parse().ok()).unwrap_or(0) }
    }
}

/// `NAMESPACE/SERVICE` of a task a service launched (by its label).
pub(crate) fn service_of(t: &impl ApiObject) -> Option<String> {
    let meta = t.meta();
    service_labelled(meta.namespace.as_deref(), &meta.labels)
}

/// `NAMESPACE/SERVICE` named by a task's namespace and labels.
fn service_labelled(namespace: Option<&str>, labels: &BTreeMap<String, String>) -> Option<String> {
    let name = labels.get(SERVICE_LABEL)?;
    Some(format!("{}/{name}", namespace.unwrap_or_default()))
}

fn revision_of(t: &TaskSummary) -> u64 {
    t.metadata.labels.get(REVISION_LABEL).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn service_key(s: &Service) -> String {
    format!("{}/{}", s.metadata.namespace.as_deref().unwrap_or_default(), s.metadata.name)
}

fn task_key(t: &TaskSummary) -> String {
    format!("{}/{}", t.metadata.namespace.as_deref().unwrap_or_default(), t.metadata.name)
}

#[cfg(test)]
mod tests {
    use corral_api::kinds::ServiceSpec;

    use super::*;

    fn pending(name: &str) -> Pending {
        Pending {
            view: TaskView {
                name: name.into(),
                revision: 1,
                node: Some("n1".into()),
                phase: TaskPhase::Staging,
                healthy: None,
                has_health_checks: false,
                ready: true,
                killing: false,
                created: SystemTime::UNIX_EPOCH,
                started: None,
                finished: None,
            },
            created: None,
            instance: None,
        }
    }

    #[test]
    fn instances_with_volumes_roll_out_without_surge_one_stopping_before_its_replacement() {
        for (n, min) in [(1, 0.0), (2, 0.5), (4, 0.75)] {
            let spec = ServiceSpec { instances: n, ..Default::default() };
            let s = no_surge(&spec);
            assert_eq!(s.upgrade_strategy.maximum_over_capacity, 0.0, "{n}");
            assert!((s.upgrade_strategy.minimum_health_capacity - min).abs() < 1e-9, "{n}: {:?}", s.upgrade_strategy);
        }
        let mut lenient = ServiceSpec { instances: 4, ..Default::default() };
        lenient.upgrade_strategy.minimum_health_capacity = 0.5;
        assert_eq!(no_surge(&lenient).upgrade_strategy.minimum_health_capacity, 0.5, "a lower minimum stays");
    }

    #[test]
    fn a_refused_accepts_tasks_are_forgotten_and_their_service_decides_again() {
        let mut svc = Service::namespaced("prod", "web", ServiceSpec { instances: 2, ..Default::default() });
        svc.metadata.uid = Some("u1".into());
        let mut memory = Memory::default();
        memory.launched.insert("prod/web".into(), vec![pending("web-a"), pending("web-b")]);
        let refused = [new_task(&svc, 1, &[], "web-a", None)];
        forget_refused(&mut memory, &refused);
        let left: Vec<&str> = memory.launched["prod/web"].iter().map(|p| p.view.name.as_str()).collect();
        assert_eq!(left, ["web-b"], "the refused task no longer counts as launched");
        assert!(memory.again.contains("prod/web"));

        forget_refused(&mut memory, &[new_task(&svc, 1, &[], "web-b", None)]);
        assert!(!memory.launched.contains_key("prod/web"), "nothing pending is left behind");
    }

    #[test]
    fn an_accepts_answer_is_read_down_to_each_tasks_service_name_and_revision() {
        let mut svc = Service::namespaced("prod", "web", ServiceSpec { instances: 2, ..Default::default() });
        svc.metadata.uid = Some("u1".into());
        // As the server answers: the tasks as stored, with their revisions.
        let mut stored = new_task(&svc, 3, &[8080], "web-a", None);
        stored.metadata.resource_version = Some("42".into());
        stored.metadata.uid = Some("t1".into());
        let answer = serde_json::json!({"apiVersion": "corral.dev/v1", "kind": "TaskList", "items": [stored]});
        let items: Vec<CreatedTask> =
            serde_json::from_value(answer["items"].clone()).expect("a created task reads as CreatedTask");
        let created: Vec<Created> = items.into_iter().map(Created::from).collect();
        assert_eq!(created.len(), 1);
        assert_eq!(
            (created[0].service.as_str(), created[0].name.as_str(), created[0].revision),
            ("prod/web", "web-a", 42)
        );

        let mut memory = Memory::default();
        memory.launched.insert("prod/web".into(), vec![pending("web-a")]);
        let p =
            memory.launched.get_mut(&created[0].service).into_iter().flatten().find(|p| p.view.name == created[0].name);
        assert!(p.is_some(), "the key read from the answer finds the pending launch");
    }
}
