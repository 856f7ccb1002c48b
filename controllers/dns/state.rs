//! What the zone holds for each object, brought up to date round by round from the
//! objects that changed since the last round.
//!
//! A round decides again only what is marked [`Dirty`] — a task that changed and
//! the service it belongs to, a service, a node — with the functions
//! [`decide::decide`] is made of, so that a busy cluster's round costs its changes,
//! not its size (a round over 100,000 tasks took a core's worth of time in rounds
//! 10 ms apart). Everything is decided again on the first round; a node whose
//! address changes has its tasks decided again with it, since they answer with it.
//! `DnsRecord`s are few: they are decided again whenever anything changed, since a
//! name of Corral's appearing or going may take or free one of theirs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use corral_api::kinds::dns_record::DnsRecord;
use corral_api::kinds::node::Node;
use corral_api::kinds::service::{SERVICE_LABEL, Service};
use corral_api::kinds::task::TaskSummary;
use corral_dns::{Change, Record, Source, Zone};

use super::decide::{self, Decision, Problem, UserStatus};

/// `(namespace, name)` of a namespaced object.
pub type Key = (String, String);

/// Where a round reads the objects (the controller's caches, or a test's lists).
pub trait View {
    /// Every task.
    fn tasks(&self) -> Vec<Arc<TaskSummary>>;
    /// One task.
    fn task(&self, key: &Key) -> Option<Arc<TaskSummary>>;
    /// The tasks labelled as instances of service `name` in namespace `ns`.
    fn instances(&self, ns: &str, name: &str) -> Vec<Arc<TaskSummary>>;
    /// Every service.
    fn services(&self) -> Vec<Arc<Service>>;
    /// One service.
    fn service(&self, key: &Key) -> Option<Arc<Service>>;
    /// The tasks bound to node `name`.
    fn tasks_on(&self, name: &str) -> Vec<Arc<TaskSummary>>;
    /// Every node.
    fn nodes(&self) -> Vec<Arc<Node>>;
    /// One node.
    fn node(&self, name: &str) -> Option<Arc<Node>>;
    /// Every `DnsRecord`.
    fn records(&self) -> Vec<Arc<DnsRecord>>;
}

/// What changed since the last round.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Decide everything again.
    pub all: bool,
    /// Tasks that changed.
    pub tasks: HashSet<Key>,
    /// Services that changed, or one of whose instances did.
    pub services: HashSet<Key>,
    /// Nodes that changed.
    pub nodes: HashSet<String>,
    /// Whether a `DnsRecord` changed.
    pub records: bool,
}

impl Dirty {
    /// Marks task `t` (a state of it) and, if it runs in that state, the service it
    /// is an instance of. A service answers only with running instances, so a task
    /// that is placed, staged or starting changes nothing of its service's records;
    /// marking the service for those would decide every instance of a service again
    /// for each of its tasks placed. A task leaving `RUNNING` is marked through its
    /// previous state.
    pub fn task(&mut self, t: &TaskSummary) {
        let ns = t.metadata.namespace.clone().unwrap_or_default();
        if decide::is_running(t)
            && let Some(svc) = t.metadata.labels.get(SERVICE_LABEL)
        {
            self.services.insert((ns.clone(), svc.clone()));
        }
        self.tasks.insert((ns, t.metadata.name.clone()));
    }

    /// Whether nothing is marked.
    pub fn is_empty(&self) -> bool {
        !self.all && !self.records && self.tasks.is_empty() && self.services.is_empty() && self.nodes.is_empty()
    }
}

/// Whether two states of a task answer the same in DNS (so a change between them
/// needs no round): the task's phase, place, ports, health and exit.
pub fn same_answers(a: &TaskSummary, b: &TaskSummary) -> bool {
    let healthy = |t: &TaskSummary| t.status.as_ref().and_then(|s| s.health.as_ref()).map(|h| h.healthy);
    let (sa, sb) = (a.status.as_ref(), b.status.as_ref());
    a.spec.node_name == b.spec.node_name
        && a.spec.ports == b.spec.ports
        && a.spec.kill == b.spec.kill
        && a.spec.health_checks.is_empty() == b.spec.health_checks.is_empty()
        && a.metadata.is_deleting() == b.metadata.is_deleting()
        && a.metadata.labels.get(SERVICE_LABEL) == b.metadata.labels.get(SERVICE_LABEL)
        && decide::is_running(a) == decide::is_running(b)
        && sa.map(|s| (&s.host_ip, &s.ports)) == sb.map(|s| (&s.host_ip, &s.ports))
        && healthy(a) == healthy(b)
}

/// What a round found.
#[derive(Debug, Default)]
pub struct Round {
    /// What to hand to [`Zone::apply`], at once.
    pub changes: Vec<Change>,
    /// Problems that were not there before, each with its object.
    pub new_problems: Vec<(Source, Problem)>,
    /// Every `DnsRecord`'s status, when they were decided again.
    pub user: Option<BTreeMap<Key, UserStatus>>,
    /// Running instances of services with a readiness check that have not passed it.
    pub awaiting_readiness: Vec<(Arc<Service>, Arc<TaskSummary>)>,
    /// Tasks (`NAMESPACE/NAME`) counted ready that no longer run.
    pub no_longer_running: Vec<String>,
}

/// What the rounds remember besides the zone itself (which they compare with, rather
/// than keep a copy of what it holds).
#[derive(Debug, Default)]
pub struct State {
    problems: HashMap<Source, BTreeSet<Problem>>,
    addresses: HashMap<String, IpAddr>,
    user_sources: BTreeSet<Source>,
}

impl State {
    /// Decides what `dirty` marks (everything if the zone was never filled) and
    /// returns the changes; `zone` must hold what every earlier round returned.
    pub fn round(
        &mut self,
        view: &dyn View,
        mut dirty: Dirty,
        ready: &HashSet<String>,
        zone: &Zone,
        leader: Option<IpAddr>,
        ttl: u32,
    ) -> Round {
        if !dirty.all {
            // A node's address is its tasks' address: they are decided again with it.
            let nodes: Vec<String> = dirty.nodes.iter().cloned().collect();
            for name in nodes {
                let address = view.node(&name).and_then(|n| decide::node_address(&n));
                if address == self.addresses.get(&name).copied() {
                    continue;
                }
                match address {
                    Some(ip) => self.addresses.insert(name.clone(), ip),
                    None => self.addresses.remove(&name),
                };
                for t in view.tasks_on(&name) {
                    dirty.task(&t);
                }
            }
        }
        let mut round = Round::default();
        let decided = if dirty.all {
            self.decide_all(view, zone, ready, leader, ttl, &mut round)
        } else {
            self.decide_marked(view, &dirty, ready, ttl, &mut round)
        };

        // Corral's names that change this round, for the `DnsRecord`s' collisions.
        let mut changed: HashSet<Source> = HashSet::new();
        let mut new_names: HashMap<String, Source> = HashMap::new();
        for (source, d) in decided {
            let old = self.problems.get(&source);
            for p in &d.problems {
                if old.is_none_or(|o| !o.contains(p)) {
                    round.new_problems.push((source.clone(), p.clone()));
                }
            }
            if d.problems.is_empty() {
                self.problems.remove(&source);
            } else {
                self.problems.insert(source.clone(), d.problems);
            }
            if let Some(change) = change_of(zone, &source, d.records) {
                if let Change::Set(_, records) = &change {
                    for r in records {
                        new_names.entry(corral_dns::zone::normalize(&r.name)).or_insert_with(|| source.clone());
                    }
                }
                round.changes.push(change);
                changed.insert(source);
            }
        }

        if dirty.all || dirty.records || !round.changes.is_empty() {
            let holder = |name: &str| {
                let name = corral_dns::zone::normalize(name);
                new_names.get(&name).cloned().or_else(|| {
                    zone.holders(&name).into_iter().find(|s| s.kind != decide::DNS_RECORD && !changed.contains(s))
                })
            };
            let (served, statuses) = decide::user_records(&view.records(), &holder, ttl);
            let gone: Vec<Source> = self.user_sources.iter().filter(|s| !served.contains_key(s)).cloned().collect();
            for source in gone {
                round.changes.extend(change_of(zone, &source, Vec::new()));
                self.user_sources.remove(&source);
            }
            for (source, records) in served {
                round.changes.extend(change_of(zone, &source, records));
                self.user_sources.insert(source);
            }
            round.user = Some(statuses);
        }
        round
    }

    /// What `dirty` marks, decided again.
    fn decide_marked(
        &self,
        view: &dyn View,
        dirty: &Dirty,
        ready: &HashSet<String>,
        ttl: u32,
        round: &mut Round,
    ) -> Vec<(Source, Decision)> {
        let mut decided = Vec::new();
        for name in &dirty.nodes {
            let d = view.node(name).map(|n| decide::node(&n, ttl)).unwrap_or_default();
            decided.push((Source::new(decide::NODE, "", name), d));
        }
        let address_of = |node: &str| self.addresses.get(node).copied();
        for key in &dirty.tasks {
            let t = view.task(key);
            let d = t.as_ref().map(|t| decide::task(t, &address_of, ttl)).unwrap_or_default();
            if !ready.is_empty() && t.as_ref().is_none_or(|t| !decide::is_running(t)) {
                let k = format!("{}/{}", key.0, key.1);
                if ready.contains(&k) {
                    round.no_longer_running.push(k);
                }
            }
            decided.push((Source::new(decide::TASK, &key.0, &key.1), d));
        }
        for key in &dirty.services {
            let d = match view.service(key) {
                Some(svc) => self.service(view, &svc, ready, ttl, round),
                None => Decision::default(),
            };
            decided.push((Source::new(decide::SERVICE, &key.0, &key.1), d));
        }
        decided
    }

    /// Every object decided again; what the zone holds of objects gone is removed.
    fn decide_all(
        &mut self,
        view: &dyn View,
        zone: &Zone,
        ready: &HashSet<String>,
        leader: Option<IpAddr>,
        ttl: u32,
        round: &mut Round,
    ) -> Vec<(Source, Decision)> {
        let mut decided = Vec::new();
        let nodes = view.nodes();
        self.addresses =
            nodes.iter().filter_map(|n| Some((n.metadata.name.clone(), decide::node_address(n)?))).collect();
        for n in &nodes {
            decided.push((Source::new(decide::NODE, "", &n.metadata.name), decide::node(n, ttl)));
        }
        let leader = leader.map(|ip| Decision { records: decide::leader(ip, ttl), problems: BTreeSet::new() });
        decided.push((decide::leader_source(), leader.unwrap_or_default()));
        let address_of = |node: &str| self.addresses.get(node).copied();
        let mut running = HashSet::new();
        for t in view.tasks() {
            let ns = t.metadata.namespace.as_deref().unwrap_or_default();
            if !ready.is_empty() && decide::is_running(&t) {
                running.insert(decide::task_key(&t));
            }
            decided.push((Source::new(decide::TASK, ns, &t.metadata.name), decide::task(&t, &address_of, ttl)));
        }
        round.no_longer_running = ready.iter().filter(|k| !running.contains(*k)).cloned().collect();
        for svc in view.services() {
            let d = self.service(view, &svc, ready, ttl, round);
            let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
            decided.push((Source::new(decide::SERVICE, ns, &svc.metadata.name), d));
        }
        let seen: HashSet<&Source> = decided.iter().map(|(s, _)| s).collect();
        let mut gone: Vec<Source> = zone.sources();
        gone.extend(self.problems.keys().cloned());
        gone.retain(|s| s.kind != decide::DNS_RECORD && !seen.contains(s));
        decided.extend(gone.into_iter().map(|s| (s, Decision::default())));
        decided
    }

    /// Whether `source` still has `problem`.
    pub fn has_problem(&self, source: &Source, problem: &Problem) -> bool {
        self.problems.get(source).is_some_and(|p| p.contains(problem))
    }

    fn service(
        &self,
        view: &dyn View,
        svc: &Arc<Service>,
        ready: &HashSet<String>,
        ttl: u32,
        round: &mut Round,
    ) -> Decision {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let instances = view.instances(ns, &svc.metadata.name);
        if svc.spec.readiness_check.is_some() {
            for t in &instances {
                if decide::awaits_readiness(t, svc, ready) {
                    round.awaiting_readiness.push((svc.clone(), t.clone()));
                }
            }
        }
        let address_of = |node: &str| self.addresses.get(node).copied();
        decide::service(svc, &instances, &address_of, ready, ttl)
    }
}

/// The change for the zone if `source` does not serve `records` yet.
fn change_of(zone: &Zone, source: &Source, records: Vec<Record>) -> Option<Change> {
    if zone.serves(source, &records) {
        return None;
    }
    Some(if records.is_empty() { Change::Remove(source.clone()) } else { Change::Set(source.clone(), records) })
}

#[cfg(test)]
mod tests;
