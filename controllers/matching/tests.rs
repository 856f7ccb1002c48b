use std::collections::{BTreeMap, BTreeSet};

use corral_api::kinds::node::{PortRange, Resources};
use corral_api::kinds::service::{Constraint, Refusal};
use corral_api::kinds::task::TaskPort;
use proptest::prelude::*;

use super::*;

fn res(cpus: f64, mem: u64) -> Resources {
    Resources { cpus, mem, disk: 0 }
}

/// An offer of role `*` on node `name`, with ports 31000-31009 and `hostname` set.
fn offer(name: &str, cpus: f64, mem: u64) -> OfferView {
    OfferView {
        name: format!("{name}-offer"),
        node: name.into(),
        role: "*".into(),
        attributes: BTreeMap::from([("hostname".to_string(), name.to_string())]),
        resources: res(cpus, mem),
        ports: vec![PortRange { begin: 31000, end: 31009 }],
    }
}

fn in_zone(mut o: OfferView, zone: &str) -> OfferView {
    o.attributes.insert("zone".into(), zone.into());
    o
}

fn demand(count: u32, cpus: f64, mem: u64) -> Demand {
    Demand { key: "default/web".into(), count, resources: res(cpus, mem), role: "*".into(), ..Default::default() }
}

fn constrained(count: u32, constraint: &str) -> Demand {
    Demand { constraints: vec![c(constraint)], ..demand(count, 0.1, 16) }
}

fn c(s: &str) -> Constraint {
    Constraint(s.split(' ').map(String::from).collect())
}

fn zone(z: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("zone".to_string(), z.to_string())])
}

fn port(host_port: Option<u16>) -> TaskPort {
    TaskPort { name: "http".into(), host_port, protocol: None }
}

/// The nodes of the offers the tasks of demand `d` went to, sorted.
fn placements(m: &Matching, d: usize) -> Vec<String> {
    let mut out: Vec<String> = m
        .accepts
        .iter()
        .flat_map(|a| {
            a.launches.iter().filter(|l| l.demand == d).map(|_| a.offer.trim_end_matches("-offer").to_string())
        })
        .collect();
    out.sort();
    out
}

fn waiting(m: &Matching, d: usize) -> Option<&Unplaced> {
    m.waiting.iter().find(|w| w.demand == d)
}

fn refusal(reason: &str, offers: u32, nodes: u32) -> Refusal {
    Refusal { reason: reason.into(), offers, nodes }
}

#[test]
fn unique_hostname_places_one_per_node_and_says_why_the_rest_wait() {
    // (offers, live tasks on, wanted) → (nodes placed on, waiting, refusals)
    let mut bare = offer("n3", 4.0, 1024);
    bare.attributes.clear(); // hostname falls back to the node's name
    let on = |h: &str| BTreeMap::from([("hostname".to_string(), h.to_string())]);
    type Row<'a> = (Vec<OfferView>, Vec<BTreeMap<String, String>>, u32, Vec<&'a str>, u32, Vec<Refusal>);
    let table: Vec<Row<'_>> = vec![
        (
            vec![offer("n1", 4.0, 1024), offer("n2", 4.0, 1024)],
            vec![],
            3,
            vec!["n1", "n2"],
            1,
            // Both offers had room for more; the constraint alone kept them out.
            vec![refusal("hostname UNIQUE", 2, 2)],
        ),
        (
            vec![offer("n1", 4.0, 1024), offer("n2", 4.0, 1024), bare.clone()],
            vec![on("n1"), on("n3")],
            2,
            vec!["n2"],
            1,
            vec![refusal("hostname UNIQUE", 3, 3)],
        ),
        (vec![offer("n1", 4.0, 1024), bare], vec![], 2, vec!["n1", "n3"], 0, vec![]),
    ];
    for (offers, placed, count, want, short, refusals) in table {
        let d = Demand { placed, ..constrained(count, "hostname UNIQUE") };
        let m = match_offers(&offers, &[d]);
        assert_eq!(placements(&m, 0), want);
        match waiting(&m, 0) {
            None => assert_eq!(short, 0),
            Some(w) => {
                assert_eq!((w.instances, w.offers_examined), (short, offers.len() as u32));
                assert_eq!(w.refusals, refusals);
            }
        }
    }
}

#[test]
fn cluster_without_value_sticks_to_the_first_choice() {
    let offers = vec![
        in_zone(offer("n1", 4.0, 1024), "a"),
        in_zone(offer("n2", 4.0, 1024), "b"),
        in_zone(offer("n3", 4.0, 1024), "a"),
    ];
    // (live tasks in, constraint) → nodes placed on
    let table: Vec<(Vec<&str>, &str, Vec<&str>)> = vec![
        (vec![], "zone CLUSTER", vec!["n1", "n1", "n3"]),
        (vec!["b"], "zone CLUSTER", vec!["n2", "n2", "n2"]),
        (vec![], "zone CLUSTER b", vec!["n2", "n2", "n2"]),
        // Live tasks that already disagree leave nowhere to go.
        (vec!["a", "b"], "zone CLUSTER", vec![]),
    ];
    for (live, constraint, want) in table {
        let d = Demand { placed: live.iter().map(|z| zone(z)).collect(), ..constrained(3, constraint) };
        let m = match_offers(&offers, &[d]);
        assert_eq!(placements(&m, 0), want, "{live:?} {constraint}");
    }
}

#[test]
fn group_by_spreads_evenly() {
    let offers = vec![
        in_zone(offer("a1", 4.0, 1024), "a"),
        in_zone(offer("a2", 4.0, 1024), "a"),
        in_zone(offer("a3", 4.0, 1024), "a"),
        in_zone(offer("b1", 4.0, 1024), "b"),
        in_zone(offer("c1", 4.0, 1024), "c"),
    ];
    let per_zone = |m: &Matching| -> BTreeMap<char, u32> {
        let mut z = BTreeMap::new();
        for p in placements(m, 0) {
            *z.entry(p.chars().next().unwrap_or('?')).or_insert(0) += 1;
        }
        z
    };
    // (live tasks in, constraint, wanted) → tasks per zone, waiting
    type Row<'a> = (Vec<&'a str>, &'a str, u32, Vec<(char, u32)>, u32);
    let table: Vec<Row<'_>> = vec![
        // Offers in zone a come first; the tasks still go one per zone in turn.
        (vec![], "zone GROUP_BY", 6, vec![('a', 2), ('b', 2), ('c', 2)], 0),
        (vec!["a", "a"], "zone GROUP_BY", 4, vec![('b', 2), ('c', 2)], 0),
        (vec!["a"], "zone GROUP_BY", 4, vec![('a', 1), ('b', 2), ('c', 1)], 0),
        // Five zones assumed, three seen: one task each, then wait for the others.
        (vec![], "zone GROUP_BY 5", 6, vec![('a', 1), ('b', 1), ('c', 1)], 3),
        (vec![], "zone GROUP_BY 2", 4, vec![('a', 2), ('b', 1), ('c', 1)], 0),
        (vec![], "zone GROUP_BY x", 1, vec![], 1),
    ];
    for (live, constraint, count, want, short) in table {
        let d = Demand { placed: live.iter().map(|z| zone(z)).collect(), ..constrained(count, constraint) };
        let m = match_offers(&offers, &[d]);
        assert_eq!(per_zone(&m), want.into_iter().collect(), "{live:?} {constraint} {count}");
        assert_eq!(waiting(&m, 0).map_or(0, |w| w.instances), short, "{constraint}");
    }

    let d = constrained(6, "zone GROUP_BY 5");
    let w = match_offers(&offers, &[d]).waiting;
    assert_eq!(w[0].refusals, vec![refusal("zone GROUP_BY 5", 5, 5)]);
    let d = constrained(1, "zone GROUP_BY x");
    let w = match_offers(&offers, &[d]).waiting;
    assert_eq!(w[0].refusals, vec![refusal("zone GROUP_BY x (not a number)", 5, 5)]);
}

#[test]
fn like_and_unlike_use_full_regex_match() {
    let offers = vec![
        in_zone(offer("n1", 4.0, 1024), "us-east-1"),
        in_zone(offer("n2", 4.0, 1024), "us-east-10"),
        in_zone(offer("n3", 4.0, 1024), "eu-west-1"),
        offer("n4", 4.0, 1024), // no zone
    ];
    // constraint → nodes placed on (one task per node, as many as fit)
    let table: Vec<(&str, Vec<&str>)> = vec![
        ("zone LIKE us-east", vec![]),
        ("zone LIKE us-east-1", vec!["n1"]),
        ("zone LIKE us-east-.*", vec!["n1", "n2"]),
        ("zone LIKE .*-1", vec!["n1", "n3"]),
        ("zone LIKE us-east-1|eu-west-1", vec!["n1", "n3"]),
        ("zone UNLIKE us-east-1", vec!["n2", "n3", "n4"]),
        ("zone UNLIKE us-.*", vec!["n3", "n4"]),
        ("hostname LIKE n[13]", vec!["n1", "n3"]),
        ("zone LIKE [", vec![]),
        ("zone LIKE a)|(b", vec![]),
    ];
    for (constraint, want) in table {
        let d = Demand { constraints: vec![c(constraint), c("hostname UNIQUE")], ..demand(4, 0.1, 16) };
        let m = match_offers(&offers, &[d]);
        assert_eq!(placements(&m, 0), want, "{constraint}");
    }
    let m = match_offers(&offers, &[constrained(1, "zone LIKE [")]);
    assert_eq!(m.waiting[0].refusals, vec![refusal("zone LIKE [ (invalid regular expression)", 4, 4)]);
}

#[test]
fn max_per_caps_each_value() {
    let offers = vec![
        in_zone(offer("n1", 4.0, 1024), "a"),
        in_zone(offer("n2", 4.0, 1024), "a"),
        in_zone(offer("n3", 4.0, 1024), "b"),
    ];
    // (live tasks in, constraint) → nodes placed on (5 wanted), refusals
    type Row<'a> = (Vec<&'a str>, &'a str, Vec<&'a str>, Vec<Refusal>);
    let table: Vec<Row<'_>> = vec![
        (vec![], "zone MAX_PER 2", vec!["n1", "n2", "n3", "n3"], vec![refusal("zone MAX_PER 2", 3, 3)]),
        (vec!["b"], "zone MAX_PER 2", vec!["n1", "n2", "n3"], vec![refusal("zone MAX_PER 2", 3, 3)]),
        (vec![], "hostname MAX_PER 1", vec!["n1", "n2", "n3"], vec![refusal("hostname MAX_PER 1", 3, 3)]),
        (vec![], "zone MAX_PER 0", vec![], vec![refusal("zone MAX_PER 0", 3, 3)]),
        (vec![], "zone MAX_PER", vec![], vec![refusal("zone MAX_PER (needs a value)", 3, 3)]),
    ];
    for (live, constraint, want, refusals) in table {
        let d = Demand { placed: live.iter().map(|z| zone(z)).collect(), ..constrained(5, constraint) };
        let m = match_offers(&offers, &[d]);
        assert_eq!(placements(&m, 0), want, "{live:?} {constraint}");
        assert_eq!(m.waiting[0].refusals, refusals, "{live:?} {constraint}");
    }
}

#[test]
fn is_requires_equality() {
    let offers = vec![
        in_zone(offer("n1", 4.0, 1024), "a"),
        in_zone(offer("n2", 4.0, 1024), "ab"),
        offer("n3", 4.0, 1024), // no zone
    ];
    let table: Vec<(&str, Vec<&str>)> = vec![
        ("zone IS a", vec!["n1"]),
        ("zone IS ab", vec!["n2"]),
        ("zone IS A", vec![]),
        ("zone IS", vec![]),
        ("hostname IS n3", vec!["n3"]),
    ];
    for (constraint, want) in table {
        let m = match_offers(&offers, &[constrained(1, constraint)]);
        assert_eq!(placements(&m, 0), want, "{constraint}");
    }
    let m = match_offers(&offers, &[constrained(3, "zone IS a")]);
    assert_eq!(placements(&m, 0), vec!["n1", "n1", "n1"]);
}

#[test]
fn many_tasks_share_one_offer_until_it_is_full() {
    // (offer cpus, mem; task cpus, mem; wanted) → placed, first refusal
    type Row<'a> = (f64, u64, f64, u64, u32, usize, Option<&'a str>);
    let table: Vec<Row<'_>> = vec![
        (4.0, 4096, 1.0, 512, 5, 4, Some("insufficient cpus")),
        (4.0, 1024, 0.5, 512, 5, 2, Some("insufficient mem")),
        // Float sums: ten tenths fill a core exactly.
        (1.0, 4096, 0.1, 0, 11, 10, Some("insufficient cpus")),
        (4.0, 4096, 1.0, 512, 3, 3, None),
    ];
    for (ocpus, omem, tcpus, tmem, count, placed, reason) in table {
        let m = match_offers(&[offer("n1", ocpus, omem)], &[demand(count, tcpus, tmem)]);
        let launched = m.accepts.first().map_or(0, |a| a.launches.len());
        assert_eq!(launched, placed, "{ocpus} {omem} {tcpus} {tmem}");
        assert_eq!(m.accepts.len(), usize::from(placed > 0));
        assert_eq!(waiting(&m, 0).map(|w| w.refusals[0].reason.as_str()), reason);
    }

    let mut small = offer("n1", 4.0, 4096);
    small.resources.disk = 100;
    let d = Demand { resources: Resources { cpus: 1.0, mem: 1, disk: 60 }, ..demand(2, 1.0, 1) };
    let m = match_offers(&[small], &[d]);
    assert_eq!(m.waiting[0].refusals, vec![refusal("insufficient disk", 1, 1)]);

    // Two services on one offer: both carried by one accept.
    let m = match_offers(&[offer("n1", 4.0, 4096)], &[demand(2, 1.0, 512), demand(2, 1.0, 512)]);
    let demands: Vec<usize> = m.accepts[0].launches.iter().map(|l| l.demand).collect();
    assert_eq!(demands, vec![0, 1, 0, 1]);
    assert!(m.unused.is_empty() && m.waiting.is_empty());
}

#[test]
fn a_service_spreads_over_offers_before_doubling_up() {
    let offers = vec![offer("n1", 4.0, 4096), offer("n2", 4.0, 4096), offer("n3", 4.0, 4096)];
    let m = match_offers(&offers, &[demand(4, 1.0, 512)]);
    let per_offer: Vec<usize> = m.accepts.iter().map(|a| a.launches.len()).collect();
    assert_eq!(per_offer, vec![2, 1, 1]);

    let m = match_offers(&offers, &[demand(2, 1.0, 512)]);
    assert_eq!(placements(&m, 0), vec!["n1", "n2"]);
    assert_eq!(m.unused, vec!["n3-offer"]);
}

#[test]
fn ports_are_picked_from_the_offer_and_never_twice() {
    let mut o = offer("n1", 8.0, 8192);
    o.ports = vec![PortRange { begin: 31010, end: 31010 }, PortRange { begin: 31000, end: 31002 }];
    // (template ports, wanted) → host ports per task
    type Row = (Vec<Option<u16>>, u32, Vec<Vec<u16>>);
    let table: Vec<Row> = vec![
        (vec![None, None], 3, vec![vec![31000, 31001], vec![31002, 31010]]),
        (vec![None], 5, vec![vec![31000], vec![31001], vec![31002], vec![31010]]),
        // A fixed port is taken first and picked ones go around it; it allows one task.
        (vec![None, Some(31000)], 3, vec![vec![31001, 31000]]),
        // Port 0 means "pick one", as Marathon.
        (vec![Some(0)], 1, vec![vec![31000]]),
        (vec![], 3, vec![vec![], vec![], vec![]]),
    ];
    for (ports, count, want) in table {
        let d = Demand { ports: ports.iter().map(|&p| port(p)).collect(), ..demand(count, 0.1, 16) };
        let m = match_offers(std::slice::from_ref(&o), &[d]);
        let got: Vec<Vec<u16>> =
            m.accepts.iter().flat_map(|a| a.launches.iter().map(|l| l.host_ports.clone())).collect();
        assert_eq!(got, want, "{ports:?}");
        let short = count as usize - want.len();
        assert_eq!(waiting(&m, 0).map_or(0, |w| w.instances as usize), short);
        if short > 0 {
            assert_eq!(m.waiting[0].refusals, vec![refusal("insufficient ports", 1, 1)]);
        }
    }

    // Ports are shared by the services on one offer.
    let d = |p| Demand { ports: vec![port(p)], ..demand(1, 0.1, 16) };
    let m = match_offers(std::slice::from_ref(&o), &[d(None), d(Some(31000)), d(None)]);
    let got: Vec<Vec<u16>> = m.accepts[0].launches.iter().map(|l| l.host_ports.clone()).collect();
    assert_eq!(got, vec![vec![31000], vec![31001]]);
    assert_eq!(m.waiting[0].demand, 1);
}

#[test]
fn fixed_host_port_outside_the_offer_refuses_it() {
    let mut web = offer("n2", 4.0, 4096);
    web.ports = vec![PortRange { begin: 8000, end: 8100 }];
    let offers = vec![offer("n1", 4.0, 4096), web];
    // (template ports) → nodes placed on (2 wanted), refusals
    type Row<'a> = (Vec<Option<u16>>, Vec<&'a str>, Vec<Refusal>);
    let table: Vec<Row<'_>> = vec![
        (vec![Some(8080)], vec!["n2"], vec![refusal("insufficient ports", 2, 2)]),
        (vec![Some(31005)], vec!["n1"], vec![refusal("insufficient ports", 2, 2)]),
        (vec![Some(9000)], vec![], vec![refusal("insufficient ports", 2, 2)]),
        // The same fixed port twice in one template fits nowhere.
        (vec![Some(8080), Some(8080)], vec![], vec![refusal("insufficient ports", 2, 2)]),
        (vec![Some(8080), None], vec!["n2"], vec![refusal("insufficient ports", 2, 2)]),
    ];
    for (ports, want, refusals) in table {
        let d = Demand { ports: ports.iter().map(|&p| port(p)).collect(), ..demand(2, 0.1, 16) };
        let m = match_offers(&offers, &[d]);
        assert_eq!(placements(&m, 0), want, "{ports:?}");
        assert_eq!(m.waiting[0].refusals, refusals, "{ports:?}");
    }
}

#[test]
fn role_mismatch_is_reported() {
    let mut ads = offer("n2", 1.0, 4096);
    ads.role = "ads".into();
    let mut other = offer("n3", 4.0, 4096);
    other.role = "batch".into();
    let offers = vec![offer("n1", 4.0, 4096), offer("n4", 4.0, 4096), ads, other];
    let d = Demand { role: "ads".into(), ..demand(2, 1.0, 512) };
    let m = match_offers(&offers, &[d]);
    assert_eq!(placements(&m, 0), vec!["n2"]);
    assert_eq!(m.unused, vec!["n1-offer", "n4-offer", "n3-offer"]);
    let w = &m.waiting[0];
    assert_eq!((w.instances, w.offers_examined), (1, 4));
    assert_eq!(
        w.refusals,
        vec![
            refusal("role * offered, role ads needed", 2, 2),
            refusal("role batch offered, role ads needed", 1, 1),
            refusal("insufficient cpus", 1, 1),
        ]
    );
}

#[test]
fn small_services_are_not_starved_by_a_big_one() {
    // One offer with room for four tasks; a big service first in line.
    let offers = vec![offer("n1", 4.0, 4096)];
    let demands = vec![demand(100, 1.0, 512), demand(1, 1.0, 512), demand(2, 1.0, 512)];
    let m = match_offers(&offers, &demands);
    let per_demand = |d: usize| m.accepts[0].launches.iter().filter(|l| l.demand == d).count();
    assert_eq!((per_demand(0), per_demand(1), per_demand(2)), (2, 1, 1));
    let short: Vec<(usize, u32)> = m.waiting.iter().map(|w| (w.demand, w.instances)).collect();
    assert_eq!(short, vec![(0, 98), (2, 1)]);
}

#[test]
fn invalid_constraints_refuse_every_offer_with_a_reason() {
    let offers = vec![offer("n1", 4.0, 4096), offer("n2", 4.0, 4096)];
    let table = [
        ("zone UNLIKE (", "zone UNLIKE ( (invalid regular expression)"),
        ("zone LIKE", "zone LIKE (needs a value)"),
        ("zone NEAR a", "zone NEAR a (unknown operator)"),
        ("zone MAX_PER two", "zone MAX_PER two (not a number)"),
    ];
    for (constraint, reason) in table {
        let m = match_offers(&offers, &[constrained(1, constraint)]);
        assert!(m.accepts.is_empty(), "{constraint}");
        assert_eq!(m.waiting[0].refusals, vec![refusal(reason, 2, 2)]);
    }
}

#[test]
fn refusals_count_offers_and_distinct_nodes_most_offers_first() {
    // Two offers on n1 (as for two roles), each too small in cpus.
    let mut again = offer("n1", 0.5, 4096);
    again.name = "n1-second".into();
    let offers = vec![offer("n1", 0.5, 4096), again, offer("n2", 4.0, 128), offer("n3", 0.5, 64)];
    let m = match_offers(&offers, &[demand(1, 1.0, 512)]);
    assert!(m.accepts.is_empty());
    // n3 lacks both; cpus are checked first.
    assert_eq!(m.waiting[0].refusals, vec![refusal("insufficient cpus", 3, 2), refusal("insufficient mem", 1, 1)]);
}

#[test]
fn no_offers_leaves_every_demand_waiting() {
    let m = match_offers(&[], &[demand(2, 1.0, 1), demand(0, 1.0, 1)]);
    assert_eq!(
        m,
        Matching {
            accepts: vec![],
            unused: vec![],
            waiting: vec![Unplaced { demand: 0, instances: 2, offers_examined: 0, refusals: vec![] }],
        }
    );
}

#[test]
fn thousands_of_services_over_thousands_of_offers_all_place() {
    // A scaled-down version of the busy cluster the matcher is built for (1,000
    // services of 100 tasks over 10,000 offers); no timing asserted, but a matcher
    // re-scanning every offer per task would make this test crawl.
    let offers: Vec<OfferView> =
        (0..2000).map(|i| in_zone(offer(&format!("n{i}"), 8.0, 16384), ["a", "b", "c"][i % 3])).collect();
    let demands: Vec<Demand> = (0..200)
        .map(|i| match i % 4 {
            0 => constrained(50, "hostname UNIQUE"),
            1 => constrained(50, "zone GROUP_BY"),
            _ => demand(50, 0.25, 256),
        })
        .collect();
    let m = match_offers(&offers, &demands);
    assert!(m.waiting.is_empty(), "{:?}", m.waiting.first());
    assert_eq!(m.accepts.iter().map(|a| a.launches.len()).sum::<usize>(), 200 * 50);
}

fn arb_offer() -> impl Strategy<Value = OfferView> {
    (
        0..6usize,
        prop::sample::select(vec!["*", "*", "ads"]),
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        any::<bool>(),
        0.0..4.0f64,
        0..2048u64,
        0..512u64,
        prop::collection::vec((31000..31012u16, 0..4u16), 0..3),
    )
        .prop_map(|(node, role, zone, hostname, cpus, mem, disk, ports)| {
            let node = format!("n{node}");
            let mut attributes = BTreeMap::new();
            if let Some(z) = zone {
                attributes.insert("zone".to_string(), z.to_string());
            }
            if hostname {
                attributes.insert("hostname".to_string(), node.clone());
            }
            OfferView {
                name: String::new(),
                node,
                role: role.into(),
                attributes,
                resources: Resources { cpus, mem, disk },
                ports: ports.into_iter().map(|(b, len)| PortRange { begin: b, end: b + len }).collect(),
            }
        })
}

fn arb_demand() -> impl Strategy<Value = Demand> {
    let constraints = vec![
        "hostname UNIQUE",
        "zone UNIQUE",
        "zone CLUSTER",
        "zone CLUSTER b",
        "zone GROUP_BY",
        "zone GROUP_BY 3",
        "zone LIKE [ab]",
        "zone UNLIKE a",
        "zone MAX_PER 2",
        "hostname MAX_PER 2",
        "zone IS b",
    ];
    (
        0..8u32,
        prop::sample::select(vec!["*", "*", "ads"]),
        0.0..1.5f64,
        0..768u64,
        0..200u64,
        prop::collection::vec(prop::option::of(prop::option::of(31000..31014u16)), 0..3),
        prop::collection::vec(prop::sample::select(constraints), 0..3),
        prop::collection::vec((0..6usize, prop::option::of(prop::sample::select(vec!["a", "b", "c"]))), 0..3),
    )
        .prop_map(|(count, role, cpus, mem, disk, ports, constraints, placed)| Demand {
            key: String::new(),
            count,
            resources: Resources { cpus, mem, disk },
            ports: ports.into_iter().flatten().map(port).collect(),
            role: role.into(),
            constraints: constraints.into_iter().map(c).collect(),
            placed: placed
                .into_iter()
                .map(|(node, zone)| {
                    let mut a = BTreeMap::from([("hostname".to_string(), format!("n{node}"))]);
                    if let Some(z) = zone {
                        a.insert("zone".to_string(), z.to_string());
                    }
                    a
                })
                .collect(),
            node: None,
        })
}

fn arb_round() -> impl Strategy<Value = (Vec<OfferView>, Vec<Demand>)> {
    (prop::collection::vec(arb_offer(), 0..8), prop::collection::vec(arb_demand(), 0..5)).prop_map(|(mut offers, d)| {
        for (i, o) in offers.iter_mut().enumerate() {
            o.name = format!("offer-{i}");
        }
        (offers, d)
    })
}

fn value_of(o: &OfferView, field: &str) -> Option<String> {
    if field == "hostname" {
        Some(o.attributes.get("hostname").unwrap_or(&o.node).clone())
    } else {
        o.attributes.get(field).cloned()
    }
}

proptest! {
    /// Whatever the round, no offer gives more than it has, no host port twice, every
    /// constraint holds, and every wanted task is either launched or waiting.
    #[test]
    fn never_oversubscribes_and_accounts_for_every_task((offers, demands) in arb_round()) {
        let m = match_offers(&offers, &demands);
        prop_assert_eq!(&m, &match_offers(&offers, &demands), "deterministic");

        let by_name: BTreeMap<&str, &OfferView> = offers.iter().map(|o| (o.name.as_str(), o)).collect();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut launched = vec![0u32; demands.len()];
        // Per demand: the offers its new tasks went to.
        let mut where_to: Vec<Vec<&OfferView>> = vec![Vec::new(); demands.len()];
        for a in &m.accepts {
            let o = by_name[a.offer.as_str()];
            prop_assert!(seen.insert(o.name.as_str()), "offer accepted twice");
            prop_assert!(!a.launches.is_empty());
            let mut used = Resources::default();
            let mut ports = BTreeSet::new();
            for l in &a.launches {
                let d = &demands[l.demand];
                prop_assert_eq!(&d.role, &o.role);
                used.cpus += d.resources.cpus;
                used.mem += d.resources.mem;
                used.disk += d.resources.disk;
                prop_assert_eq!(l.host_ports.len(), d.ports.len());
                for (p, t) in l.host_ports.iter().zip(&d.ports) {
                    prop_assert!(ports.insert(*p), "port {} twice on {}", p, o.name);
                    prop_assert!(o.ports.iter().any(|r| r.begin <= *p && *p <= r.end), "port {} outside", p);
                    if let Some(fixed) = t.host_port.filter(|&f| f != 0) {
                        prop_assert_eq!(*p, fixed);
                    }
                }
                launched[l.demand] += 1;
                where_to[l.demand].push(o);
            }
            prop_assert!(used.cpus <= o.resources.cpus + 1e-6, "cpus over on {}", o.name);
            prop_assert!(used.mem <= o.resources.mem && used.disk <= o.resources.disk);
        }
        for u in &m.unused {
            prop_assert!(seen.insert(u.as_str()), "offer both accepted and unused");
        }
        prop_assert_eq!(seen.len(), offers.len());

        for (i, d) in demands.iter().enumerate() {
            let short = m.waiting.iter().find(|w| w.demand == i).map_or(0, |w| w.instances);
            prop_assert_eq!(launched[i] + short, d.count);
            if let Some(w) = m.waiting.iter().find(|w| w.demand == i) {
                prop_assert!(w.instances > 0);
                prop_assert_eq!(w.offers_examined as usize, offers.len());
                prop_assert_eq!(w.refusals.iter().map(|r| r.offers).sum::<u32>(), w.offers_examined);
                prop_assert!(w.refusals.windows(2).all(|p| p[0].offers >= p[1].offers));
            }
            for constraint in &d.constraints {
                let field = constraint.field();
                let old: Vec<&String> = d.placed.iter().filter_map(|p| p.get(field)).collect();
                let new: Vec<Option<String>> = where_to[i].iter().map(|o| value_of(o, field)).collect();
                if constraint.operator() != "UNLIKE" {
                    prop_assert!(new.iter().all(Option::is_some), "{} on a node without {}", constraint, field);
                }
                let new: Vec<String> = new.into_iter().flatten().collect();
                let count = |v: &String| old.iter().filter(|o| **o == v).count() + new.iter().filter(|n| *n == v).count();
                match (constraint.operator(), constraint.value()) {
                    ("UNIQUE", _) => prop_assert!(new.iter().all(|v| count(v) == 1), "{} broken", constraint),
                    ("CLUSTER", None) => {
                        let all: BTreeSet<&String> = old.iter().copied().chain(&new).collect();
                        prop_assert!(new.is_empty() || all.len() == 1, "{} broken", constraint);
                    }
                    ("CLUSTER" | "IS", Some(v)) => prop_assert!(new.iter().all(|n| n == v)),
                    ("LIKE", Some(_)) => prop_assert!(new.iter().all(|n| n == "a" || n == "b")),
                    ("UNLIKE", Some(_)) => prop_assert!(new.iter().all(|n| n != "a")),
                    ("MAX_PER", Some(n)) => {
                        let n: usize = n.parse().unwrap_or(0);
                        prop_assert!(new.iter().all(|v| count(v) <= n), "{} broken", constraint);
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn only_offers_neither_withdrawn_declined_nor_used_are_open() {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Instant;

    use corral_api::kinds::framework::{Offer, OfferSpec, OfferStatus};

    let offer = |name: &str| {
        let mut o = Offer::new(
            name,
            OfferSpec { framework: "jobs".into(), node: format!("node-{name}"), ..Default::default() },
        );
        o.metadata.name = name.into();
        o
    };
    let mut withdrawn = offer("withdrawn");
    withdrawn.metadata.deletion_timestamp = Some("2026-12-03T00:00:00Z".into());
    let mut declined = offer("declined");
    declined.status = Some(OfferStatus { declined_for_seconds: Some(1) });
    let cache: Vec<Arc<Offer>> =
        [offer("open"), offer("used"), withdrawn, declined].into_iter().map(Arc::new).collect();
    let used = HashMap::from([("used".to_string(), Instant::now())]);
    let open = open_offers(&cache, &used);
    assert_eq!(open.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["open"]);
    assert_eq!(open[0].node, "node-open");
}

#[test]
fn a_demand_pinned_to_a_node_takes_only_that_nodes_offers_and_says_why_it_waits() {
    let offers = [offer("n1", 8.0, 8192), offer("n2", 1.0, 256)];
    let pinned = Demand { node: Some("n2".into()), ..demand(1, 0.5, 64) };
    let m = match_offers(&offers, std::slice::from_ref(&pinned));
    assert_eq!(placements(&m, 0), ["n2"], "the roomier n1 is not its node");

    let elsewhere = Demand { node: Some("n3".into()), ..demand(1, 0.5, 64) };
    let m = match_offers(&offers, &[elsewhere]);
    assert_eq!(placements(&m, 0), Vec::<String>::new());
    let w = waiting(&m, 0).expect("it waits");
    assert_eq!(w.refusals, [refusal("not node n3, where the instance's volumes are", 2, 2)]);
}

fn counts(demands: &[Demand]) -> Vec<u32> {
    demands.iter().map(|d| d.count).collect()
}

#[test]
fn a_round_within_its_budget_keeps_every_demand() {
    let mut demands = vec![demand(100, 0.1, 16), demand(3, 0.1, 16)];
    assert!(!share(&mut demands, 103));
    assert_eq!(counts(&demands), [100, 3]);
}

#[test]
fn a_round_over_its_budget_shares_it_and_a_small_service_keeps_all_it_asks() {
    // A service applied while a thousand of a hundred wait is placed in the next
    // round, not after all of them.
    let mut demands: Vec<Demand> = (0..1000).map(|_| demand(100, 0.01, 16)).collect();
    demands.insert(500, demand(3, 0.01, 16));
    assert!(share(&mut demands, 10_000));
    assert_eq!(demands[500].count, 3);
    assert_eq!(demands.iter().map(|d| d.count).sum::<u32>(), 10_000);
    let big: BTreeSet<u32> = demands.iter().enumerate().filter(|(i, _)| *i != 500).map(|(_, d)| d.count).collect();
    assert_eq!(big, BTreeSet::from([9, 10]), "the large ones share the rest evenly");
}

#[test]
fn more_demands_than_the_budget_take_one_each_in_order() {
    let mut demands = vec![demand(5, 0.1, 16), demand(1, 0.1, 16), demand(7, 0.1, 16), demand(2, 0.1, 16)];
    assert!(share(&mut demands, 2));
    assert_eq!(counts(&demands), [1, 1, 0, 0]);
    let mut demands = vec![demand(5, 0.1, 16), demand(1, 0.1, 16), demand(7, 0.1, 16)];
    assert!(share(&mut demands, 8));
    assert_eq!(counts(&demands), [4, 1, 3], "level 3, and one left for the first above it");
}

proptest! {
    #[test]
    fn a_shared_budget_is_spent_whole_and_max_min_fair(
        asked in proptest::collection::vec(0u32..200, 0..40),
        budget in 0u32..3000,
    ) {
        let mut demands: Vec<Demand> = asked.iter().map(|&n| demand(n, 0.1, 16)).collect();
        let held_back = share(&mut demands, budget);
        let total: u32 = asked.iter().sum();
        prop_assert_eq!(held_back, total > budget);
        prop_assert_eq!(demands.iter().map(|d| d.count).sum::<u32>(), total.min(budget));
        for (d, &n) in demands.iter().zip(&asked) {
            prop_assert!(d.count <= n);
        }
        // Whoever was trimmed kept at least as much as anyone else, less one.
        let most = demands.iter().map(|d| d.count).max().unwrap_or(0);
        for (d, &n) in demands.iter().zip(&asked) {
            if d.count < n {
                prop_assert!(d.count + 1 >= most, "trimmed to {} while another kept {most}", d.count);
            }
        }
    }
}
