use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use corral_api::kinds::dns_record::{DnsRecord, DnsRecordSpec, DnsRecordType, SrvTarget};
use corral_api::kinds::node::{Node, NodeSpec, NodeStatus};
use corral_api::kinds::service::{ReadinessCheck, SERVICE_LABEL, Service, ServiceSpec};
use corral_api::kinds::task::{TaskHealth, TaskPhase, TaskPort, TaskSummary, TaskSummaryStatus};
use corral_dns::{Record, RecordData, Source};

use super::*;

fn node(name: &str, addr: Option<&str>) -> Arc<Node> {
    let mut n = Node::new(name, NodeSpec::default());
    n.status = Some(NodeStatus { address: addr.map(str::to_string), ..Default::default() });
    Arc::new(n)
}

fn task(ns: &str, name: &str, node: &str, phase: TaskPhase) -> TaskSummary {
    let mut t = TaskSummary::default();
    t.metadata.name = name.into();
    t.metadata.namespace = Some(ns.into());
    t.spec.node_name = Some(node.into());
    t.status = Some(TaskSummaryStatus { phase, ..Default::default() });
    t
}

fn instance(ns: &str, svc: &str, name: &str, node: &str) -> TaskSummary {
    let mut t = task(ns, name, node, TaskPhase::Running);
    t.metadata.labels.insert(SERVICE_LABEL.into(), svc.into());
    t
}

fn with_port(mut t: TaskSummary, port: &str, host: u16, proto: Option<&str>) -> TaskSummary {
    t.spec.ports.push(TaskPort { name: port.into(), host_port: None, protocol: proto.map(str::to_string) });
    t.status.get_or_insert_with(Default::default).ports.insert(port.into(), host);
    t
}

fn service(ns: &str, name: &str) -> Arc<Service> {
    Arc::new(Service::namespaced(ns, name, ServiceSpec { instances: 1, ..Default::default() }))
}

fn user(ns: &str, name: &str, spec: DnsRecordSpec, created: &str) -> Arc<DnsRecord> {
    let mut r = DnsRecord::namespaced(ns, name, spec);
    r.metadata.creation_timestamp = Some(created.into());
    Arc::new(r)
}

fn spec(name: &str, type_: DnsRecordType, values: &[&str]) -> DnsRecordSpec {
    DnsRecordSpec {
        name: name.into(),
        type_,
        values: values.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

#[derive(Default)]
struct World {
    tasks: Vec<Arc<TaskSummary>>,
    services: Vec<Arc<Service>>,
    nodes: Vec<Arc<Node>>,
    records: Vec<Arc<DnsRecord>>,
    ready: HashSet<String>,
    leader: Option<IpAddr>,
}

impl World {
    fn two_nodes() -> Self {
        World { nodes: vec![node("n1", Some("10.0.0.1")), node("n2", Some("10.0.0.2"))], ..Default::default() }
    }

    fn task(mut self, t: TaskSummary) -> Self {
        self.tasks.push(Arc::new(t));
        self
    }

    fn decide(&self) -> Plan {
        decide(&Snapshot {
            tasks: &self.tasks,
            services: &self.services,
            nodes: &self.nodes,
            records: &self.records,
            ready: &self.ready,
            leader: self.leader,
            ttl: 5,
        })
    }
}

fn a(name: &str, ip: [u8; 4]) -> Record {
    Record { name: name.into(), ttl: 5, data: RecordData::A(ip.into()) }
}

fn served(plan: &Plan, kind: &str, ns: &str, name: &str) -> Vec<Record> {
    plan.records.get(&Source::new(kind, ns, name)).cloned().unwrap_or_default()
}

#[test]
fn every_node_with_an_address_has_a_name_and_one_without_has_none() {
    let mut w = World::two_nodes();
    w.nodes.push(node("n3", None));
    let plan = w.decide();
    assert_eq!(served(&plan, NODE, "", "n1"), vec![a("n1.node.corral.", [10, 0, 0, 1])]);
    assert_eq!(served(&plan, NODE, "", "n3"), vec![]);
}

#[test]
fn an_ipv6_node_gets_an_aaaa_record() {
    let w = World { nodes: vec![node("v6", Some("fd00::1"))], ..Default::default() };
    let plan = w.decide();
    assert_eq!(served(&plan, NODE, "", "v6")[0].data, RecordData::Aaaa("fd00::1".parse().unwrap()));
}

#[test]
fn only_running_tasks_have_names() {
    let table = [
        (TaskPhase::Staging, false),
        (TaskPhase::Starting, false),
        (TaskPhase::Running, true),
        (TaskPhase::Finished, false),
        (TaskPhase::Failed, false),
        (TaskPhase::Killed, false),
        (TaskPhase::Lost, false),
    ];
    for (phase, named) in table {
        let plan = World::two_nodes().task(task("shop", "t1", "n2", phase)).decide();
        let want = if named { vec![a("t1.shop.task.corral.", [10, 0, 0, 2])] } else { vec![] };
        assert_eq!(served(&plan, TASK, "shop", "t1"), want, "{phase:?}");
    }
}

#[test]
fn a_task_on_an_unknown_node_uses_the_address_its_agent_reported() {
    let mut t = task("shop", "t1", "gone", TaskPhase::Running);
    t.status.as_mut().unwrap().host_ip = Some("10.9.9.9".into());
    let plan = World::default().task(t).decide();
    assert_eq!(served(&plan, TASK, "shop", "t1"), vec![a("t1.shop.task.corral.", [10, 9, 9, 9])]);
}

#[test]
fn a_service_answers_with_the_host_of_each_running_instance_once() {
    let mut w = World::two_nodes()
        .task(instance("shop", "web", "web-a", "n1"))
        .task(instance("shop", "web", "web-b", "n2"))
        .task(instance("shop", "web", "web-c", "n2"))
        .task({
            let mut t = instance("shop", "web", "web-d", "n1");
            t.status.as_mut().unwrap().phase = TaskPhase::Staging;
            t
        })
        .task(instance("other", "web", "web-e", "n1"));
    w.services.push(service("shop", "web"));
    let plan = w.decide();
    assert_eq!(
        served(&plan, SERVICE, "shop", "web"),
        vec![a("web.shop.corral.", [10, 0, 0, 1]), a("web.shop.corral.", [10, 0, 0, 2])]
    );
}

#[test]
fn instances_on_their_way_out_or_unhealthy_are_not_answered() {
    let healthy = |ok: bool| {
        let mut t = instance("shop", "web", "web-h", "n1");
        t.spec.health_checks = serde_json::from_str("[{}]").unwrap();
        t.status.as_mut().unwrap().health = Some(TaskHealth { healthy: ok, ..Default::default() });
        t
    };
    let killed = {
        let mut t = instance("shop", "web", "web-k", "n1");
        t.spec.kill = true;
        t
    };
    let deleting = {
        let mut t = instance("shop", "web", "web-d", "n1");
        t.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        t
    };
    let unchecked = {
        let mut t = instance("shop", "web", "web-u", "n1");
        t.spec.health_checks = serde_json::from_str("[{}]").unwrap();
        t
    };
    for (t, answered) in
        [(healthy(true), true), (healthy(false), false), (killed, false), (deleting, false), (unchecked, false)]
    {
        let name = t.metadata.name.clone();
        let mut w = World::two_nodes().task(t);
        w.services.push(service("shop", "web"));
        let plan = w.decide();
        assert_eq!(!served(&plan, SERVICE, "shop", "web").is_empty(), answered, "{name}");
        assert!(!served(&plan, TASK, "shop", &name).is_empty(), "{name} keeps its own name while it runs");
    }
}

#[test]
fn with_a_readiness_check_only_ready_instances_are_answered() {
    let mut w =
        World::two_nodes().task(instance("shop", "web", "web-a", "n1")).task(instance("shop", "web", "web-b", "n2"));
    let mut svc = Service::namespaced("shop", "web", ServiceSpec::default());
    svc.spec.readiness_check = Some(ReadinessCheck {
        port_name: "http".into(),
        path: "/".into(),
        http_status_codes_for_ready: vec![200],
        interval_seconds: 1,
        timeout_seconds: 1,
    });
    let svc = Arc::new(svc);
    w.services.push(svc.clone());
    w.ready.insert("shop/web-b".into());
    let plan = w.decide();
    assert_eq!(served(&plan, SERVICE, "shop", "web"), vec![a("web.shop.corral.", [10, 0, 0, 2])]);
    assert!(awaits_readiness(&w.tasks[0], &svc, &w.ready));
    assert!(!awaits_readiness(&w.tasks[1], &svc, &w.ready));
}

#[test]
fn srv_records_point_at_each_instance_host_port_and_task_name() {
    let mut w = World::two_nodes()
        .task(with_port(
            with_port(instance("shop", "web", "web-a", "n1"), "http", 31000, None),
            "dns",
            31001,
            Some("udp"),
        ))
        .task(with_port(instance("shop", "web", "web-b", "n2"), "http", 31005, None));
    w.services.push(service("shop", "web"));
    let plan = w.decide();
    let srv: Vec<(String, String)> = served(&plan, SERVICE, "shop", "web")
        .into_iter()
        .filter(|r| matches!(r.data, RecordData::Srv { .. }))
        .map(|r| (r.name, r.data.to_string()))
        .collect();
    assert_eq!(
        srv,
        vec![
            ("_dns._udp.web.shop.corral.".into(), "0 10 31001 web-a.shop.task.corral.".into()),
            ("_http._tcp.web.shop.corral.".into(), "0 10 31000 web-a.shop.task.corral.".into()),
            ("_http._tcp.web.shop.corral.".into(), "0 10 31005 web-b.shop.task.corral.".into()),
        ]
    );
}

#[test]
fn a_port_name_that_cannot_be_a_label_is_reported_on_the_service_and_the_rest_is_served() {
    let long = "p".repeat(63);
    let mut w = World::two_nodes().task(with_port(
        with_port(instance("shop", "web", "web-a", "n1"), &long, 1, None),
        "ok",
        2,
        None,
    ));
    w.services.push(service("shop", "web"));
    let plan = w.decide();
    let problems = &plan.problems[&Source::new(SERVICE, "shop", "web")];
    assert_eq!(problems.len(), 1);
    let p = problems.iter().next().unwrap();
    assert_eq!(p.reason, "InvalidName");
    assert!(p.message.contains("at most 63"), "{}", p.message);
    let records = served(&plan, SERVICE, "shop", "web");
    assert!(records.iter().any(|r| r.name == "_ok._tcp.web.shop.corral."));
    assert!(records.iter().all(|r| !r.name.contains(&long)), "never cut short, never served");
}

#[test]
fn a_service_in_a_reserved_namespace_is_reported_not_served() {
    let mut w = World::two_nodes().task(instance("node", "n1", "x", "n1"));
    w.services.push(service("node", "n1"));
    let plan = w.decide();
    assert!(served(&plan, SERVICE, "node", "n1").is_empty());
    assert_eq!(plan.problems[&Source::new(SERVICE, "node", "n1")].iter().next().unwrap().reason, "NameReserved");
    assert_eq!(served(&plan, NODE, "", "n1"), vec![a("n1.node.corral.", [10, 0, 0, 1])], "the node keeps its name");
}

#[test]
fn the_leader_name_points_at_the_control_plane() {
    let w = World { leader: Some("127.0.0.1".parse().unwrap()), ..Default::default() };
    assert_eq!(served(&w.decide(), SERVER, "", "leader"), vec![a("leader.corral.", [127, 0, 0, 1])]);
}

#[test]
fn dns_records_of_every_type_are_served_with_their_ttl() {
    let mut srv = spec("_db._tcp", DnsRecordType::Srv, &[]);
    srv.srv = vec![SrvTarget { priority: 1, weight: 2, port: 5432, target: "db-1".into() }];
    let mut ttl = spec("www", DnsRecordType::A, &["192.0.2.1", "192.0.2.2"]);
    ttl.ttl = Some(60);
    let table: Vec<(DnsRecordSpec, &str, Vec<String>)> = vec![
        (ttl, "www.shop.corral.", vec!["192.0.2.1".into(), "192.0.2.2".into()]),
        (spec("v6", DnsRecordType::Aaaa, &["2001:db8::1"]), "v6.shop.corral.", vec!["2001:db8::1".into()]),
        (spec("alias", DnsRecordType::Cname, &["example.com."]), "alias.shop.corral.", vec!["example.com.".into()]),
        (spec("@", DnsRecordType::Txt, &["hello"]), "shop.corral.", vec!["\"hello\"".into()]),
        (srv, "_db._tcp.shop.corral.", vec!["1 2 5432 db-1.shop.corral.".into()]),
        (spec("global.corral.", DnsRecordType::A, &["192.0.2.9"]), "global.corral.", vec!["192.0.2.9".into()]),
    ];
    for (i, (spec, name, data)) in table.into_iter().enumerate() {
        let want_ttl = spec.ttl.unwrap_or(5);
        let w = World { records: vec![user("shop", "r", spec, "2026-01-01T00:00:00Z")], ..Default::default() };
        let plan = w.decide();
        let got = served(&plan, DNS_RECORD, "shop", "r");
        assert_eq!(got.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), data, "case {i}");
        assert!(got.iter().all(|r| r.name == name && r.ttl == want_ttl), "case {i}: {got:?}");
        assert_eq!(plan.user[&("shop".into(), "r".into())], UserStatus { served: vec![name.into()], problem: None });
    }
}

#[test]
fn invalid_dns_records_say_why_and_serve_nothing() {
    let mut srv_in_values = spec("x", DnsRecordType::Srv, &["a"]);
    srv_in_values.srv = vec![];
    let table: Vec<(DnsRecordSpec, &str, &str)> = vec![
        (spec("x", DnsRecordType::A, &["not-an-ip"]), "InvalidValue", "spec.values[0]"),
        (spec("x", DnsRecordType::A, &[]), "InvalidValue", "spec.values is empty"),
        (spec("x", DnsRecordType::Aaaa, &["10.0.0.1"]), "InvalidValue", "IPv6"),
        (spec("x", DnsRecordType::Cname, &["a.", "b."]), "InvalidValue", "exactly one"),
        (spec("x", DnsRecordType::Txt, &[&"t".repeat(256)]), "InvalidValue", "255"),
        (srv_in_values, "InvalidValue", "spec.srv"),
        (spec(&"a".repeat(64), DnsRecordType::A, &["10.0.0.1"]), "InvalidName", "at most 63"),
        (spec("UPPER", DnsRecordType::A, &["10.0.0.1"]), "InvalidName", "lowercase"),
        (spec("x.task.corral.", DnsRecordType::A, &["10.0.0.1"]), "NameReserved", "task.corral."),
        (spec("example.com.", DnsRecordType::A, &["10.0.0.1"]), "NameReserved", "outside"),
    ];
    for (i, (spec, reason, says)) in table.into_iter().enumerate() {
        let w = World { records: vec![user("shop", "r", spec, "2026-01-01T00:00:00Z")], ..Default::default() };
        let plan = w.decide();
        assert!(served(&plan, DNS_RECORD, "shop", "r").is_empty(), "case {i}");
        let status = &plan.user[&("shop".into(), "r".into())];
        let problem = status.problem.as_ref().expect("a problem");
        assert_eq!(problem.reason, reason, "case {i}: {}", problem.message);
        assert!(problem.message.contains(says), "case {i}: {}", problem.message);
    }
}

#[test]
fn a_dns_record_cannot_take_a_name_corral_serves() {
    let mut w = World::two_nodes().task(instance("shop", "web", "web-a", "n1"));
    w.services.push(service("shop", "web"));
    w.records.push(user("shop", "mine", spec("web", DnsRecordType::A, &["192.0.2.1"]), "2020-01-01T00:00:00Z"));
    let plan = w.decide();
    assert!(served(&plan, DNS_RECORD, "shop", "mine").is_empty());
    let p = plan.user[&("shop".into(), "mine".into())].problem.clone().expect("taken");
    assert_eq!(p.reason, "NameTaken");
    assert!(p.message.contains("Service shop/web"), "{}", p.message);
}

#[test]
fn of_two_dns_records_with_one_name_the_older_wins_whatever_the_order_seen() {
    let old = user("b", "first", spec("x.corral.", DnsRecordType::A, &["192.0.2.1"]), "2026-01-01T00:00:00Z");
    let new = user("a", "second", spec("x.corral.", DnsRecordType::A, &["192.0.2.2"]), "2026-01-02T00:00:00Z");
    for records in [vec![old.clone(), new.clone()], vec![new.clone(), old.clone()]] {
        let plan = World { records, ..Default::default() }.decide();
        assert_eq!(served(&plan, DNS_RECORD, "b", "first").len(), 1);
        assert!(served(&plan, DNS_RECORD, "a", "second").is_empty());
        let p = plan.user[&("a".into(), "second".into())].problem.clone().expect("taken");
        assert!(p.message.contains("DnsRecord b/first"), "{}", p.message);
    }
}

#[test]
fn scaling_down_removes_the_instance_from_the_answer() {
    let base = || {
        let mut w = World::two_nodes();
        w.services.push(service("shop", "web"));
        w
    };
    let three = base()
        .task(instance("shop", "web", "a", "n1"))
        .task(instance("shop", "web", "b", "n2"))
        .task(instance("shop", "web", "c", "n2"));
    let one = base().task(instance("shop", "web", "a", "n1"));
    assert_eq!(served(&three.decide(), SERVICE, "shop", "web").len(), 2);
    let plan = one.decide();
    assert_eq!(served(&plan, SERVICE, "shop", "web"), vec![a("web.shop.corral.", [10, 0, 0, 1])]);
    assert!(!plan.records.contains_key(&Source::new(TASK, "shop", "b")));
}

#[test]
fn a_service_without_instances_serves_nothing() {
    let mut w = World::two_nodes();
    w.services.push(service("shop", "web"));
    let plan = w.decide();
    assert!(!plan.records.contains_key(&Source::new(SERVICE, "shop", "web")));
    assert!(plan.problems.is_empty());
}

#[test]
fn the_decision_is_the_same_whatever_the_order_of_the_snapshot() {
    let mut w = World::two_nodes()
        .task(with_port(instance("shop", "web", "a", "n1"), "http", 1, None))
        .task(with_port(instance("shop", "web", "b", "n2"), "http", 2, None));
    w.services.push(service("shop", "web"));
    let first = w.decide();
    w.tasks.reverse();
    w.nodes.reverse();
    assert_eq!(w.decide(), first);
    let names: BTreeMap<_, _> = first.records.iter().map(|(s, r)| (s.to_string(), r.len())).collect();
    assert_eq!(names.len(), 5, "{names:?}");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn name() -> impl Strategy<Value = String> {
        // Mostly valid labels, sometimes too long, upper-case or with odd characters.
        prop_oneof![
            4 => "[a-z][a-z0-9-]{0,20}[a-z0-9]",
            1 => "[a-z]{60,70}",
            1 => "[A-Za-z_.]{1,8}",
        ]
    }

    proptest! {
        #[test]
        fn served_names_are_valid_whole_and_the_same_whatever_the_order(
            // Task names are unique in a namespace, as the store keeps them.
            tasks in proptest::collection::btree_map(name(), (name(), 0usize..3, any::<bool>()), 0..24),
            ports in proptest::collection::vec(name(), 0..3),
            records in proptest::collection::btree_map(name(), name(), 0..6),
        ) {
            let mut w = World::two_nodes();
            for (task_name, (svc, node, running)) in &tasks {
                let node = ["n1", "n2", "gone"][*node];
                let phase = if *running { TaskPhase::Running } else { TaskPhase::Staging };
                let mut t = task("ns", task_name, node, phase);
                t.metadata.labels.insert(SERVICE_LABEL.into(), svc.clone());
                for (i, p) in ports.iter().enumerate() {
                    t = with_port(t, p, 31000 + i as u16, None);
                }
                w.tasks.push(Arc::new(t));
                w.services.push(service("ns", svc));
            }
            for (i, (obj, dns_name)) in records.iter().enumerate() {
                let created = format!("2026-01-01T00:00:{:02}Z", i % 60);
                w.records.push(user("ns", obj, spec(dns_name, DnsRecordType::A, &["192.0.2.1"]), &created));
            }
            let plan = w.decide();
            for records in plan.records.values() {
                for r in records {
                    let bare = r.name.trim_end_matches('.');
                    prop_assert!(bare.len() <= 253, "{}", r.name);
                    prop_assert!(bare.split('.').all(|l| !l.is_empty() && l.len() <= 63), "{}", r.name);
                    prop_assert!(r.name.ends_with(".corral."), "{}", r.name);
                    prop_assert!(
                        bare.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_'),
                        "{}", r.name
                    );
                }
            }
            // A service's records come sorted and each once, as the zone compares them.
            for (s, records) in &plan.records {
                if s.kind == SERVICE {
                    prop_assert!(records.windows(2).all(|w| w[0] < w[1]), "{records:?}");
                }
            }
            // A name is held by one DnsRecord at most, never by one and Corral too.
            let mut holders: BTreeMap<&str, BTreeSet<&Source>> = BTreeMap::new();
            for (s, records) in &plan.records {
                for r in records {
                    holders.entry(r.name.as_str()).or_default().insert(s);
                }
            }
            for (n, sources) in &holders {
                let users = sources.iter().filter(|s| s.kind == DNS_RECORD).count();
                prop_assert!(users == 0 || sources.len() == 1, "{n}: {sources:?}");
            }
            let mut reversed = World { leader: w.leader, ..World::two_nodes() };
            reversed.tasks = w.tasks.iter().rev().cloned().collect();
            reversed.services = w.services.iter().rev().cloned().collect();
            reversed.records = w.records.iter().rev().cloned().collect();
            prop_assert_eq!(reversed.decide(), plan);
        }
    }
}
