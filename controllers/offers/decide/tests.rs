use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use corral_api::kinds::node::{PortRange, Resources};
use proptest::prelude::*;

use super::*;

const TTL: Duration = Duration::from_secs(30);

fn res(cpus: f64, mem: u64) -> Resources {
    Resources { cpus, mem, disk: 0 }
}

fn node(name: &str, cpus: f64, mem: u64) -> NodeState {
    NodeState {
        name: name.into(),
        capacity: res(cpus, mem),
        port_ranges: vec![PortRange { begin: 31000, end: 31009 }],
        reservations: BTreeMap::new(),
        allocated: BTreeMap::new(),
        used_ports: BTreeSet::new(),
        offerable: true,
    }
}

fn framework(name: &str, role: &str, weight: f64) -> FrameworkState {
    FrameworkState {
        name: name.into(),
        roles: vec![role.into()],
        weight,
        suppressed: false,
        filters: BTreeMap::new(),
        allocated: Resources::default(),
    }
}

fn offered<'a>(plan: &'a Plan, node: &str) -> Vec<&'a Offer> {
    plan.offer.iter().filter(|o| o.node == node).collect()
}

#[test]
fn a_node_offers_its_capacity_less_its_tasks_and_other_roles_reservations() {
    let now = Instant::now();
    let mut n = node("n1", 4.0, 4096);
    n.reservations.insert("ads".into(), res(1.0, 1024));
    n.allocated.insert("web".into(), res(1.0, 512));
    n.used_ports.insert(31003);
    let s = Snapshot {
        nodes: vec![n],
        frameworks: vec![framework("marathon", "web", 1.0), framework("ads-fw", "ads", 1.0)],
        ..Default::default()
    };
    let plan = decide(&s, now, TTL);
    let by_fw: BTreeMap<&str, &Offer> = plan.offer.iter().map(|o| (o.framework.as_str(), o)).collect();
    // The shared pool: 4 - 1 reserved - 1 used = 2 cpus, 4096 - 1024 - 512 = 2560 MiB.
    // "web" already holds a quarter of the cpus and "ads" nothing, so "ads-fw" goes
    // first and takes the pool and its reservation; nothing is left for "web".
    assert_eq!(by_fw["ads-fw"].resources, res(3.0, 3584));
    assert!(!by_fw.contains_key("marathon"), "{plan:?}");
    assert_eq!(
        by_fw["ads-fw"].ports,
        vec![PortRange { begin: 31000, end: 31002 }, PortRange { begin: 31004, end: 31009 }]
    );
    assert_eq!(by_fw["ads-fw"].expires, now + TTL);
}

#[test]
fn a_role_never_gets_another_roles_reservation() {
    let mut n = node("n1", 2.0, 2048);
    n.reservations.insert("ads".into(), res(1.0, 1024));
    let s = Snapshot { nodes: vec![n], frameworks: vec![framework("marathon", "web", 1.0)], ..Default::default() };
    let plan = decide(&s, Instant::now(), TTL);
    assert_eq!(plan.offer.len(), 1);
    assert_eq!(plan.offer[0].resources, res(1.0, 1024));
}

#[test]
fn unschedulable_nodes_suppressed_frameworks_and_declined_nodes_get_nothing() {
    let now = Instant::now();
    let mut down = node("down", 2.0, 2048);
    down.offerable = false;
    let mut picky = framework("picky", "web", 1.0);
    picky.filters.insert("n1".into(), now + Duration::from_secs(5));
    picky.filters.insert("n2".into(), now - Duration::from_secs(1));
    let mut quiet = framework("quiet", "web", 1.0);
    quiet.suppressed = true;
    let s = Snapshot {
        nodes: vec![down, node("n1", 2.0, 2048), node("n2", 2.0, 2048)],
        frameworks: vec![picky, quiet],
        ..Default::default()
    };
    let plan = decide(&s, now, TTL);
    assert!(offered(&plan, "down").is_empty());
    assert!(offered(&plan, "n1").is_empty(), "declined for five more seconds");
    let n2 = offered(&plan, "n2");
    assert_eq!((n2.len(), n2[0].framework.as_str()), (1, "picky"), "the filter on n2 has lapsed");
}

#[test]
fn offers_are_rescinded_on_expiry_node_loss_framework_loss_and_when_tasks_take_the_resources() {
    let now = Instant::now();
    let offer = |name: &str, framework: &str, node: &str, r: Resources, expires: Instant| OfferState {
        name: name.into(),
        offer: Offer {
            framework: framework.into(),
            role: "web".into(),
            node: node.into(),
            resources: r,
            ports: vec![],
            expires,
        },
    };
    let mut lost = node("lost", 2.0, 2048);
    lost.offerable = false;
    let mut full = node("full", 2.0, 2048);
    // A task was placed there since the offer was made (by another framework).
    full.allocated.insert("other".into(), res(1.5, 512));
    let later = now + TTL;
    let s = Snapshot {
        nodes: vec![node("n1", 2.0, 2048), lost, full, node("n2", 2.0, 2048)],
        frameworks: vec![framework("fw", "web", 1.0)],
        offers: vec![
            offer("old", "fw", "n1", res(2.0, 2048), now),
            offer("on-lost", "fw", "lost", res(2.0, 2048), later),
            offer("taken", "fw", "full", res(2.0, 2048), later),
            offer("orphan", "gone", "n2", res(1.0, 1024), later),
            offer("fine", "fw", "n2", res(1.0, 1024), later),
        ],
        ..Default::default()
    };
    let plan = decide(&s, now, TTL);
    let rescinded: BTreeMap<&str, RescindReason> = plan.rescind.iter().map(|(n, r)| (n.as_str(), *r)).collect();
    assert_eq!(
        rescinded,
        BTreeMap::from([
            ("old", RescindReason::Expired),
            ("on-lost", RescindReason::NodeLost),
            ("taken", RescindReason::ResourcesTaken),
            ("orphan", RescindReason::FrameworkGone),
        ])
    );
    // "fine" stays, so fw gets no second offer on n2; n1 and full are offered afresh.
    assert!(offered(&plan, "n2").is_empty());
    assert_eq!(offered(&plan, "n1")[0].resources, res(2.0, 2048));
    assert_eq!(offered(&plan, "full")[0].resources, res(0.5, 1536));
}

/// Frameworks that accept every offer in full, until the cluster is full.
fn fill(mut s: Snapshot) -> BTreeMap<String, Resources> {
    let now = Instant::now();
    for _ in 0..10_000 {
        let plan = decide(&s, now, TTL);
        if plan.offer.is_empty() {
            break;
        }
        for o in plan.offer {
            let n = s.nodes.iter_mut().find(|n| n.name == o.node).expect("offered node exists");
            let e = n.allocated.entry(o.role.clone()).or_default();
            *e = add(e, &o.resources);
        }
    }
    let mut by_role: BTreeMap<String, Resources> = BTreeMap::new();
    for n in &s.nodes {
        for (role, r) in &n.allocated {
            let e = by_role.entry(role.clone()).or_default();
            *e = add(e, r);
        }
    }
    by_role
}

#[test]
fn weighted_drf_gives_a_framework_of_weight_three_three_times_the_share() {
    let nodes = (0..40).map(|i| node(&format!("n{i:02}"), 1.0, 1024)).collect();
    let s = Snapshot {
        nodes,
        frameworks: vec![framework("a", "ra", 1.0), framework("b", "rb", 3.0)],
        ..Default::default()
    };
    let got = fill(s);
    let (a, b) = (got["ra"].cpus, got["rb"].cpus);
    assert_eq!(a + b, 40.0);
    assert!((b / a - 3.0).abs() / 3.0 <= 0.05, "a {a}, b {b}");
}

#[test]
fn a_quota_limit_caps_a_role_and_a_guarantee_is_served_first() {
    let nodes = (0..10).map(|i| node(&format!("n{i}"), 1.0, 1024)).collect();
    let s = Snapshot {
        nodes,
        // "big" weighs far more, yet "small" is guaranteed 4 nodes' worth first.
        frameworks: vec![framework("big", "rbig", 100.0), framework("small", "rsmall", 1.0)],
        quotas: BTreeMap::from([
            ("rsmall".into(), Quota { guarantee: res(4.0, 4096), limit: None }),
            ("rbig".into(), Quota { guarantee: Resources::default(), limit: Some(res(5.0, 5120)) }),
        ]),
        ..Default::default()
    };
    let got = fill(s);
    assert_eq!(got["rbig"], res(5.0, 5120), "capped by its limit");
    assert_eq!(got["rsmall"], res(5.0, 5120), "its guarantee, then what big may not take");
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    let roles = ["r1", "r2", "r3"];
    let node = (
        1u32..=8,
        1u64..=8,
        0u32..=4,
        proptest::collection::vec((0usize..3, 0u32..=4, 0u64..=4), 0..3),
        any::<bool>(),
        proptest::collection::btree_set(31000u16..31010, 0..4),
    );
    let nodes = proptest::collection::vec(node, 1..6);
    let fw = (proptest::collection::btree_set(0usize..3, 1..3), 1u32..=4, any::<bool>());
    let fws = proptest::collection::vec(fw, 1..4);
    let offers = proptest::collection::vec((0usize..6, 0usize..4, 0usize..3, 0u32..=8, 0u64..=8, 0u64..3), 0..6);
    let quotas = proptest::collection::vec((0usize..3, 0u32..=4, proptest::option::of(0u32..=8)), 0..3);
    (nodes, fws, offers, quotas).prop_map(move |(nodes, fws, offers, quotas)| {
        let t0 = Instant::now();
        let nodes: Vec<NodeState> = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (cpus, gib, reserved, used, offerable, ports))| {
                let mut n = node_state(i, cpus as f64, gib * 1024);
                if reserved > 0 {
                    n.reservations.insert(roles[i % 3].into(), res(reserved as f64 / 4.0, reserved as u64 * 256));
                }
                for (role, c, g) in used {
                    n.allocated.insert(roles[role].into(), res(c as f64 / 2.0, g * 256));
                }
                n.offerable = offerable || i == 0;
                n.used_ports = ports;
                n
            })
            .collect();
        let frameworks = fws
            .into_iter()
            .enumerate()
            .map(|(i, (rs, w, suppressed))| FrameworkState {
                name: format!("f{i}"),
                roles: rs.into_iter().map(|r| roles[r].to_string()).collect(),
                weight: w as f64,
                suppressed,
                filters: BTreeMap::new(),
                allocated: Resources::default(),
            })
            .collect::<Vec<_>>();
        let offers = offers
            .into_iter()
            .enumerate()
            .map(|(i, (n, f, r, c, g, secs))| OfferState {
                name: format!("o{i}"),
                offer: Offer {
                    framework: format!("f{f}"),
                    role: roles[r].into(),
                    node: format!("n{n}"),
                    resources: res(c as f64 / 4.0, g * 256),
                    ports: vec![PortRange { begin: 31000 + i as u16, end: 31000 + i as u16 }],
                    expires: t0 + Duration::from_secs(secs),
                },
            })
            .collect();
        let quotas = quotas
            .into_iter()
            .map(|(r, g, l)| {
                let limit = l.map(|l| res(l as f64, l as u64 * 1024));
                (roles[r].to_string(), Quota { guarantee: res(g as f64, g as u64 * 1024), limit })
            })
            .collect();
        Snapshot { nodes, frameworks, quotas, offers, max_offers: None }
    })
}

fn node_state(i: usize, cpus: f64, mem: u64) -> NodeState {
    node(&format!("n{i}"), cpus, mem)
}

proptest! {
    /// Whatever the cluster, the offers that stay and the new ones fit every node
    /// together with its tasks — no resource or port is promised twice, no role gets
    /// another's reservation — and nobody gets what they must not.
    #[test]
    fn never_oversubscribes((mut s, cap) in (arb_snapshot(), proptest::option::of(1usize..4))) {
        s.max_offers = cap;
        let now = Instant::now() + Duration::from_secs(1);
        let plan = decide(&s, now, TTL);
        let rescinded: BTreeSet<&str> = plan.rescind.iter().map(|(n, _)| n.as_str()).collect();
        // No framework is made an offer that takes it past the cap.
        if let Some(cap) = cap {
            for f in &s.frameworks {
                let kept = s.offers.iter().filter(|o| o.offer.framework == f.name && !rescinded.contains(o.name.as_str())).count();
                let new = plan.offer.iter().filter(|o| o.framework == f.name).count();
                prop_assert!(new == 0 || kept + new <= cap, "{} holds {kept} + {new} offers, cap {cap}", f.name);
            }
        }
        for n in &s.nodes {
            let mut left = corral_api::allocation::Free::new(&n.capacity, &n.reservations, &n.port_ranges, &n.allocated, &n.used_ports);
            let kept = s.offers.iter().filter(|o| o.offer.node == n.name && !rescinded.contains(o.name.as_str()));
            for o in kept {
                prop_assert!(o.offer.expires > now);
                prop_assert!(left.take(&o.offer.role, &o.offer.resources, &o.offer.ports), "kept offer {} does not fit", o.name);
            }
            for o in offered(&plan, &n.name) {
                prop_assert!(n.offerable);
                prop_assert!(left.take(&o.role, &o.resources, &o.ports), "new offer on {} does not fit", n.name);
            }
        }
        for o in &plan.offer {
            let f = s.frameworks.iter().find(|f| f.name == o.framework).expect("offers go to known frameworks");
            prop_assert!(!f.suppressed && f.roles.contains(&o.role));
            prop_assert!(o.resources.cpus >= 0.01 || o.resources.mem >= 32);
        }
        // Quota limits hold for what is newly offered (tasks already running may be
        // over a limit lowered since; nothing is added to them then).
        for (role, q) in &s.quotas {
            let Some(limit) = &q.limit else { continue };
            let mut held = Resources::default();
            for n in &s.nodes {
                held = add(&held, &n.allocated.get(role).copied().unwrap_or_default());
            }
            for o in s.offers.iter().filter(|o| &o.offer.role == role && !rescinded.contains(o.name.as_str())) {
                held = add(&held, &o.offer.resources);
            }
            let new = plan.offer.iter().filter(|o| &o.role == role).fold(Resources::default(), |t, o| add(&t, &o.resources));
            // Per resource: a role already over its limit in one resource (its tasks
            // predate the limit) may still be offered another it has room for.
            prop_assert!(new.cpus <= 1e-9 || held.cpus + new.cpus <= limit.cpus + 1e-9, "role {role} over its cpu limit");
            prop_assert!(new.mem == 0 || held.mem + new.mem <= limit.mem, "role {role} over its mem limit");
            prop_assert!(new.disk == 0 || held.disk + new.disk <= limit.disk, "role {role} over its disk limit");
        }
    }
}

#[test]
fn frameworks_of_one_role_are_ranked_by_what_their_tasks_hold() {
    let mut busy = node("n0", 2.0, 2048);
    busy.allocated.insert("*".into(), res(2.0, 2048));
    let mut aa = framework("aa", "*", 1.0);
    aa.allocated = res(2.0, 2048);
    let s = Snapshot {
        nodes: vec![busy, node("n1", 1.0, 1024)],
        frameworks: vec![aa, framework("bb", "*", 1.0)],
        ..Default::default()
    };
    let plan = decide(&s, Instant::now(), Duration::from_secs(30));
    let offers = offered(&plan, "n1");
    assert_eq!(offers.len(), 1, "{plan:?}");
    assert_eq!(offers[0].framework, "bb", "aa's tasks hold the other node: bb is further from its share");
}

#[test]
fn a_framework_is_connected_while_its_lease_is_renewed_then_disconnected_then_torn_down() {
    use corral_api::kinds::framework::FrameworkPhase::*;
    let t0 = Instant::now();
    let (lease, failover) = (Duration::from_secs(15), Duration::from_secs(60));
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(liveness("fw", None, lease, failover, at(100)).phase, Pending);
    let c = liveness("fw", Some(t0), lease, failover, at(10));
    assert_eq!((c.phase, c.until), (Connected, Some(at(15))));
    let d = liveness("fw", Some(t0), lease, failover, at(15));
    assert_eq!((d.phase, d.until), (Disconnected, Some(at(75))));
    assert!(d.message.contains("killed after 60 s"), "{}", d.message);
    assert_eq!(liveness("fw", Some(t0), lease, failover, at(75)).phase, TornDown);
}

#[test]
fn tasks_of_deleted_or_torn_down_frameworks_are_to_be_killed() {
    use corral_api::kinds::framework::FrameworkPhase::*;
    let phases = BTreeMap::from([
        ("up".to_string(), Connected),
        ("away".to_string(), Disconnected),
        ("gone".to_string(), TornDown),
    ]);
    let kill = torn_down(["up", "away", "gone", "deleted"], &phases);
    assert_eq!(kill, BTreeSet::from(["gone".to_string(), "deleted".to_string()]));
}

#[test]
fn a_node_holds_what_its_live_tasks_hold_by_role_framework_and_port() {
    use corral_api::kinds::task::{TaskPhase, TaskPort, TaskSummary, TaskSummarySpec, TaskSummaryStatus};
    let task = |framework: Option<&str>, role: Option<&str>, cpus: f64, port: Option<u16>, phase: Option<TaskPhase>| {
        TaskSummary {
            spec: TaskSummarySpec {
                framework: framework.map(str::to_string),
                role: role.map(str::to_string),
                resources: Resources { cpus, mem: 10, disk: 0 },
                ports: port
                    .map(|p| TaskPort { name: "http".into(), host_port: Some(p), ..Default::default() })
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
            status: phase.map(|phase| TaskSummaryStatus { phase, ..Default::default() }),
            ..Default::default()
        }
    };
    let tasks = [
        task(Some("services"), None, 0.5, Some(31000), Some(TaskPhase::Running)),
        task(Some("services"), None, 0.25, None, None),
        task(Some("jobs"), Some("batch"), 1.0, Some(31001), Some(TaskPhase::Staging)),
        // Ended: holds nothing, not even its port.
        task(Some("jobs"), Some("batch"), 2.0, Some(31002), Some(TaskPhase::Finished)),
        // Bound by hand: held for the default role, by no framework.
        task(None, None, 0.1, None, None),
    ];
    let held = Held::of(tasks.iter());
    assert_eq!(
        held.by_role,
        BTreeMap::from([
            ("*".to_string(), Resources { cpus: 0.85, mem: 30, disk: 0 }),
            ("batch".to_string(), Resources { cpus: 1.0, mem: 10, disk: 0 }),
        ])
    );
    assert_eq!(
        held.by_framework,
        BTreeMap::from([
            ("jobs".to_string(), (Resources { cpus: 1.0, mem: 10, disk: 0 }, 1)),
            ("services".to_string(), (Resources { cpus: 0.75, mem: 20, disk: 0 }, 2)),
        ])
    );
    assert_eq!(held.ports, BTreeSet::from([31000, 31001]));
    assert_eq!(Held::of([]), Held::default());
}

#[test]
fn only_changes_of_what_a_task_holds_call_for_a_recount() {
    use corral_api::kinds::task::{TaskHealth, TaskPhase, TaskPort, TaskSummary, TaskSummarySpec, TaskSummaryStatus};
    let staging = TaskSummary {
        spec: TaskSummarySpec {
            node_name: Some("a".into()),
            framework: Some("services".into()),
            resources: Resources { cpus: 0.5, mem: 64, disk: 0 },
            ports: vec![TaskPort { name: "http".into(), host_port: Some(31000), ..Default::default() }],
            ..Default::default()
        },
        status: Some(TaskSummaryStatus { phase: TaskPhase::Staging, ..Default::default() }),
        ..Default::default()
    };
    let with = |f: &dyn Fn(&mut TaskSummary)| {
        let mut t = staging.clone();
        f(&mut t);
        t
    };
    // It starts, turns healthy, is asked to die: it still holds the same.
    let running = with(&|t| {
        let s = t.status.as_mut().unwrap();
        s.phase = TaskPhase::Running;
        s.health = Some(TaskHealth { healthy: true, ..Default::default() });
    });
    assert!(!changes_holds(&staging, &running));
    assert!(!changes_holds(&running, &with(&|t| t.spec.kill = true)));
    // It ends, moves, changes role, framework, size or host port: it does not.
    assert!(changes_holds(&running, &with(&|t| t.status.as_mut().unwrap().phase = TaskPhase::Failed)));
    assert!(changes_holds(&staging, &with(&|t| t.spec.node_name = Some("b".into()))));
    assert!(changes_holds(&staging, &with(&|t| t.spec.role = Some("batch".into()))));
    assert!(changes_holds(&staging, &with(&|t| t.spec.framework = None)));
    assert!(changes_holds(&staging, &with(&|t| t.spec.resources.mem = 128)));
    assert!(changes_holds(&staging, &with(&|t| t.spec.ports[0].host_port = Some(31001))));
    // Two ended states hold the same: nothing.
    let failed = with(&|t| t.status.as_mut().unwrap().phase = TaskPhase::Failed);
    let killed = with(&|t| t.status.as_mut().unwrap().phase = TaskPhase::Killed);
    assert!(!changes_holds(&failed, &killed));
}

#[test]
fn a_framework_holds_no_more_offers_than_the_cap_and_others_get_the_rest() {
    let now = Instant::now();
    let nodes: Vec<NodeState> = (0..10).map(|i| node_state(i, 1.0, 1024)).collect();
    let held = OfferState {
        name: "o-held".into(),
        offer: Offer {
            framework: "big".into(),
            role: "*".into(),
            node: "n0".into(),
            resources: res(1.0, 1024),
            ports: vec![],
            expires: now + TTL,
        },
    };
    let s = Snapshot {
        nodes,
        frameworks: vec![framework("big", "*", 1.0), framework("small", "*", 1.0)],
        offers: vec![held],
        max_offers: Some(3),
        ..Default::default()
    };
    let plan = decide(&s, now, TTL);
    let count = |fw: &str| plan.offer.iter().filter(|o| o.framework == fw).count();
    // "big" holds one already: two more; "small" three; four nodes are left unoffered.
    assert_eq!((count("big"), count("small")), (2, 3), "{plan:?}");
    let unlimited = decide(&Snapshot { max_offers: None, ..s }, now, TTL);
    assert_eq!(unlimited.offer.len(), 9, "every node but the one offered already: {unlimited:?}");
}
