use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use corral_api::kinds::dns_record::{DnsRecord, DnsRecordSpec, DnsRecordType};
use corral_api::kinds::node::{Node, NodeSpec, NodeStatus};
use corral_api::kinds::service::{SERVICE_LABEL, Service, ServiceSpec};
use corral_api::kinds::task::{TaskPhase, TaskPort, TaskSummary, TaskSummaryStatus};
use corral_dns::{Source, Zone};
use proptest::prelude::*;

use super::super::decide::{self, Snapshot};
use super::*;

/// A cluster as lists, read the way the controller reads its caches.
#[derive(Clone, Debug, Default)]
struct World {
    tasks: Vec<Arc<TaskSummary>>,
    services: Vec<Arc<Service>>,
    nodes: Vec<Arc<Node>>,
    records: Vec<Arc<DnsRecord>>,
}

fn key_of(ns: Option<&String>, name: &str) -> Key {
    (ns.cloned().unwrap_or_default(), name.to_string())
}

impl View for World {
    fn tasks(&self) -> Vec<Arc<TaskSummary>> {
        self.tasks.clone()
    }
    fn task(&self, key: &Key) -> Option<Arc<TaskSummary>> {
        self.tasks.iter().find(|t| key_of(t.metadata.namespace.as_ref(), &t.metadata.name) == *key).cloned()
    }
    fn instances(&self, ns: &str, name: &str) -> Vec<Arc<TaskSummary>> {
        self.tasks
            .iter()
            .filter(|t| {
                t.metadata.namespace.as_deref() == Some(ns)
                    && t.metadata.labels.get(SERVICE_LABEL).map(String::as_str) == Some(name)
            })
            .cloned()
            .collect()
    }
    fn services(&self) -> Vec<Arc<Service>> {
        self.services.clone()
    }
    fn service(&self, key: &Key) -> Option<Arc<Service>> {
        self.services.iter().find(|s| key_of(s.metadata.namespace.as_ref(), &s.metadata.name) == *key).cloned()
    }
    fn tasks_on(&self, name: &str) -> Vec<Arc<TaskSummary>> {
        self.tasks.iter().filter(|t| t.spec.node_name.as_deref() == Some(name)).cloned().collect()
    }
    fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.clone()
    }
    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.iter().find(|n| n.metadata.name == name).cloned()
    }
    fn records(&self) -> Vec<Arc<DnsRecord>> {
        self.records.clone()
    }
}

impl World {
    fn plan(&self, ready: &HashSet<String>) -> decide::Plan {
        decide::decide(&Snapshot {
            tasks: &self.tasks,
            services: &self.services,
            nodes: &self.nodes,
            records: &self.records,
            ready,
            leader: Some([10, 9, 9, 9].into()),
            ttl: 5,
        })
    }

    /// What the reflectors' callbacks mark going from `self` to `next`.
    fn dirty_to(&self, next: &World) -> Dirty {
        let mut d = Dirty::default();
        let tasks = |w: &World| -> BTreeMap<Key, Arc<TaskSummary>> {
            w.tasks.iter().map(|t| (key_of(t.metadata.namespace.as_ref(), &t.metadata.name), t.clone())).collect()
        };
        let (before, after) = (tasks(self), tasks(next));
        for (k, t) in &before {
            match after.get(k) {
                Some(n) if same_answers(t, n) => {}
                Some(n) => {
                    d.task(t);
                    d.task(n);
                }
                None => d.task(t),
            }
        }
        for (k, t) in &after {
            if !before.contains_key(k) {
                d.task(t);
            }
        }
        for s in self.services.iter().chain(&next.services) {
            let k = key_of(s.metadata.namespace.as_ref(), &s.metadata.name);
            if self.service(&k) != next.service(&k) {
                d.services.insert(k);
            }
        }
        for n in self.nodes.iter().chain(&next.nodes) {
            if self.node(&n.metadata.name) != next.node(&n.metadata.name) {
                d.nodes.insert(n.metadata.name.clone());
            }
        }
        d.records = self.records != next.records;
        d
    }
}

fn node(name: &str, addr: Option<&str>, heartbeat: u8) -> Arc<Node> {
    let mut n = Node::new(name, NodeSpec::default());
    n.status = Some(NodeStatus { address: addr.map(str::to_string), ..Default::default() });
    // A heartbeat changes the object, not its address.
    n.metadata.resource_version = Some(heartbeat.to_string());
    Arc::new(n)
}

/// One task of a generated world: node, phase, service, kill, port name.
type TaskGen = (usize, usize, usize, bool, usize);

fn task(i: usize, (node, phase, svc, kill, port): TaskGen) -> Arc<TaskSummary> {
    let mut t = TaskSummary::default();
    t.metadata.name = format!("t{i}");
    t.metadata.namespace = Some("a".into());
    t.spec.node_name = Some(["n0", "n1", "gone"][node].into());
    t.spec.kill = kill;
    if let Some(svc) = [Some("s0"), Some("s1"), Some("Bad_svc"), None][svc] {
        t.metadata.labels.insert(SERVICE_LABEL.into(), svc.into());
    }
    let port = ["http", "Bad_Port", "dns"][port];
    t.spec.ports.push(TaskPort { name: port.into(), host_port: None, protocol: None });
    let mut status = TaskSummaryStatus {
        phase: [TaskPhase::Running, TaskPhase::Staging, TaskPhase::Finished][phase],
        ..Default::default()
    };
    status.ports.insert(port.into(), 31000 + i as u16);
    t.status = Some(status);
    Arc::new(t)
}

fn record(i: usize, name: usize) -> Arc<DnsRecord> {
    let name = ["www", "s0", "t0.a.task.corral.", "@", "Bad name"][name];
    let spec = DnsRecordSpec {
        name: name.into(),
        type_: DnsRecordType::A,
        values: vec!["192.0.2.1".into()],
        ..Default::default()
    };
    let mut r = DnsRecord::namespaced("a", format!("r{i}"), spec);
    r.metadata.creation_timestamp = Some(format!("2026-01-01T00:00:0{i}Z"));
    Arc::new(r)
}

prop_compose! {
    fn world()(
        addresses in proptest::collection::vec((0usize..3, any::<u8>()), 2),
        services in proptest::collection::vec(any::<bool>(), 2),
        tasks in proptest::collection::vec(proptest::option::of((0usize..3, 0usize..3, 0usize..4, any::<bool>(), 0usize..3)), 6),
        records in proptest::collection::vec(proptest::option::of(0usize..5), 3),
    ) -> World {
        let addr = [None, Some("10.0.0.1"), Some("10.0.0.2")];
        World {
            nodes: addresses.iter().enumerate().map(|(i, (a, hb))| node(&format!("n{i}"), addr[*a], *hb)).collect(),
            services: services
                .iter()
                .enumerate()
                .filter(|(_, present)| **present)
                .map(|(i, _)| {
                    Arc::new(Service::namespaced("a", format!("s{i}"), ServiceSpec { instances: 1, ..Default::default() }))
                })
                .collect(),
            tasks: tasks.iter().enumerate().filter_map(|(i, t)| Some(task(i, (*t)?))).collect(),
            records: records.iter().enumerate().filter_map(|(i, r)| Some(record(i, (*r)?))).collect(),
        }
    }
}

/// Every record of the zone, with its source.
fn zone_records(zone: &Zone) -> BTreeSet<(Source, corral_dns::Record)> {
    zone.records(None).into_iter().collect()
}

fn plan_records(plan: &decide::Plan) -> BTreeSet<(Source, corral_dns::Record)> {
    plan.records.iter().flat_map(|(s, rs)| rs.iter().map(move |r| (s.clone(), r.clone()))).collect()
}

proptest! {
    #[test]
    fn rounds_over_what_changed_serve_what_deciding_everything_serves(
        worlds in proptest::collection::vec(world(), 1..8),
    ) {
        let zone = Zone::new("corral.").unwrap();
        let mut state = State::default();
        let ready = HashSet::new();
        let mut before = World::default();
        let mut statuses = BTreeMap::new();
        let mut dirty = Dirty { all: true, ..Default::default() };
        for w in worlds {
            dirty = if dirty.all { dirty } else { before.dirty_to(&w) };
            let round = state.round(&w, std::mem::take(&mut dirty), &ready, &zone, Some([10, 9, 9, 9].into()), 5);
            zone.apply(round.changes);
            if let Some(user) = round.user {
                statuses = user;
            }
            let plan = w.plan(&ready);
            prop_assert_eq!(zone_records(&zone), plan_records(&plan));
            let problems: BTreeMap<Source, BTreeSet<decide::Problem>> =
                state.problems.iter().map(|(s, p)| (s.clone(), p.clone())).collect();
            prop_assert_eq!(&problems, &plan.problems);
            prop_assert_eq!(&statuses, &plan.user);
            before = w;
        }
    }
}

#[test]
fn a_task_status_change_that_answers_the_same_marks_nothing() {
    let t = task(0, (0, 0, 0, false, 0));
    let mut newer = (*t).clone();
    newer.metadata.resource_version = Some("9".into());
    assert!(same_answers(&t, &newer));
    let stopped = task(0, (0, 2, 0, false, 0));
    assert!(!same_answers(&t, &stopped));
}

#[test]
fn a_new_problem_is_returned_once() {
    let zone = Zone::new("corral.").unwrap();
    let mut state = State::default();
    let w = World { tasks: vec![task(0, (0, 0, 1, false, 1))], services: vec![], ..Default::default() };
    let mut w = w;
    w.nodes = vec![node("n0", Some("10.0.0.1"), 0)];
    w.services = vec![Arc::new(Service::namespaced("a", "s1", ServiceSpec { instances: 1, ..Default::default() }))];
    let ready = HashSet::new();
    let first = state.round(&w, Dirty { all: true, ..Default::default() }, &ready, &zone, None, 5);
    zone.apply(first.changes);
    assert_eq!(first.new_problems.len(), 1, "{:?}", first.new_problems);
    let (source, problem) = &first.new_problems[0];
    assert!(state.has_problem(source, problem), "kept while it lasts, for a report to be tried again");
    let mut dirty = Dirty::default();
    dirty.task(&w.tasks[0]);
    let second = state.round(&w, dirty, &ready, &zone, None, 5);
    assert!(second.new_problems.is_empty());
    assert!(second.changes.is_empty());
}

#[test]
fn only_a_running_state_of_a_task_marks_its_service() {
    let (staging, running, finished) =
        (task(0, (0, 1, 0, false, 0)), task(0, (0, 0, 0, false, 0)), task(0, (0, 2, 0, false, 0)));
    let service = ("a".to_string(), "s0".to_string());
    let mut placed = Dirty::default();
    placed.task(&staging);
    assert!(placed.tasks.contains(&("a".to_string(), "t0".to_string())), "the task itself is decided again");
    assert!(placed.services.is_empty(), "a task not yet running is none of its service's answers");
    for (from, to) in [(&staging, &running), (&running, &finished)] {
        let mut d = Dirty::default();
        d.task(from);
        d.task(to);
        assert!(d.services.contains(&service), "{:?} → {:?} changes the service's answers", phase(from), phase(to));
    }
}

fn phase(t: &TaskSummary) -> Option<TaskPhase> {
    t.status.as_ref().map(|s| s.phase)
}
