//! Offers matched to what the built-in frameworks wait to place (services'
//! instances, job runs' attempts): which tasks to launch on which offer, and, for
//! each demand left short, why the offers turned it down — the answer to "why is my
//! deployment stuck waiting?".
//!
//! A pure function of the round's offers and the services' demands, as Marathon's
//! offer matcher:
//!
//! - An offer serves a demand when it is of the demand's role, has the cpus, memory,
//!   disk and host ports of one more task left, and meets every constraint (Marathon
//!   semantics, see [`Demand::constraints`]). An offer carries as many tasks, of as
//!   many services, as fit.
//! - Fairness: the demands take turns, one task each per pass, so that one big
//!   service does not starve the small ones; and a service moves on through the
//!   offers from one task to the next, so its tasks spread over the nodes instead of
//!   filling the first one.
//! - Constraints count the service's live tasks ([`Demand::placed`]) and the tasks
//!   placed earlier in the same round.
//!
//! # Complexity
//!
//! An offer only ever loses resources and ports during a round, and a service's
//! counts per value only grow, so an offer that turns a service down keeps turning it
//! down — except under `GROUP_BY`, which admits a value again once the others caught
//! up. So each service goes through the offers lazily, once, from the first, keeping
//! only those worth coming back to (those it launched on, those `GROUP_BY` put off),
//! and later passes go round that short list. Under `GROUP_BY` it does so per value
//! of the field, from an index of the offers by value shared by all services, so
//! that it never wades through the offers of values it may not use yet. A service
//! costs about one look at each offer it had to pass over, plus a few steps per task;
//! services left short cost one more look at every offer, to say why.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use corral_api::kinds::node::{PortRange, Resources};
use corral_api::kinds::service::{Constraint, Refusal};
use corral_api::kinds::task::TaskPort;
use regex::Regex;

/// The field naming a node in constraints; an offer without such an attribute
/// answers with its node's name.
pub const HOSTNAME: &str = "hostname";

/// Slack for sums of fractional cpus, so that ten tasks of 0.1 fill an offer of 1.0.
const CPU_EPSILON: f64 = 1e-9;

/// An offer as the matcher sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OfferView {
    /// The offer's name, to accept or decline it by.
    pub name: String,
    /// The node it is on.
    pub node: String,
    /// The role whose resources it holds.
    pub role: String,
    /// The node's attributes, read by constraints; `hostname` defaults to `node`.
    pub attributes: BTreeMap<String, String>,
    /// The resources offered.
    pub resources: Resources,
    /// The host ports offered.
    pub ports: Vec<PortRange>,
}

/// The offers of `cache` still open to a framework: not being withdrawn, not
/// declined, and not already `used` (accepted or declined by it in an earlier round,
/// their end not yet seen).
pub fn open_offers(
    cache: &[std::sync::Arc<corral_api::kinds::framework::Offer>],
    used: &HashMap<String, std::time::Instant>,
) -> Vec<OfferView> {
    cache
        .iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none() && !used.contains_key(&o.metadata.name))
        .filter(|o| o.status.as_ref().is_none_or(|s| s.declined_for_seconds.is_none()))
        .map(|o| OfferView::of(o))
        .collect()
}

impl OfferView {
    /// What matching reads of `offer`.
    pub fn of(offer: &corral_api::kinds::framework::Offer) -> Self {
        OfferView {
            name: offer.metadata.name.clone(),
            node: offer.spec.node.clone(),
            role: offer.spec.role.clone(),
            attributes: offer.spec.attributes.clone(),
            resources: offer.spec.resources,
            ports: offer.spec.ports.clone(),
        }
    }
}

/// A service waiting for new tasks to be placed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Demand {
    /// `namespace/name` of the service; not read by the matcher, kept for the caller.
    pub key: String,
    /// How many new tasks it wants now.
    pub count: u32,
    /// What each task needs.
    pub resources: Resources,
    /// The template's ports, in order: a `host_port` of `None` (or `Some(0)`, as
    /// Marathon writes it) is picked from the offer's ports, `Some(p)` needs `p`
    /// among them.
    pub ports: Vec<TaskPort>,
    /// Only offers of this role serve it.
    pub role: String,
    /// Constraints every new task must meet, on a node attribute or `hostname`:
    ///
    /// - `UNIQUE`: no two tasks of the service on one value;
    /// - `CLUSTER v`: the value is `v`; `CLUSTER`: every task on the value of the
    ///   existing ones (nothing fits if they already disagree), the first placement
    ///   choosing it;
    /// - `GROUP_BY [n]`: only on a value with the fewest tasks among the values known
    ///   — those of live tasks, and those of this round's offers that could take a
    ///   task of the service at the start of the round (other roles, nodes too small,
    ///   nodes failing another constraint are no place to spread to) — and, with `n`,
    ///   as if `n` values existed, the unknown ones with no task;
    /// - `LIKE re` / `UNLIKE re`: the value matches / does not match the regular
    ///   expression in full;
    /// - `MAX_PER n`: fewer than `n` tasks on the value;
    /// - `IS v`: the value is `v`.
    ///
    /// A node without the field fails every operator but `UNLIKE`: it cannot be
    /// shown to meet a constraint on a value it does not have, while it plainly does
    /// not match the expression. A constraint that cannot be understood (an invalid
    /// regular expression or number, a missing value, an unknown operator) refuses
    /// every offer, with a reason saying what is wrong.
    pub constraints: Vec<Constraint>,
    /// The attributes of the nodes of the service's live tasks, one entry per task,
    /// with `hostname` set to the node's name; constraints count them. An entry
    /// lacking a constraint's field is not counted by it.
    pub placed: Vec<BTreeMap<String, String>>,
    /// Only offers of this node serve it: an instance whose volumes are bound there.
    pub node: Option<String>,
}

/// One task to launch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    /// The demand it is for: an index into the `demands` given.
    pub demand: usize,
    /// Its host ports, one per port of the demand's template, in order.
    pub host_ports: Vec<u16>,
}

/// An offer to accept, with the tasks to launch on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accept {
    /// The offer's name.
    pub offer: String,
    /// The tasks, in the order they were placed; several may be of one demand.
    pub launches: Vec<Launch>,
}

/// A demand left short, and why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Unplaced {
    /// The demand: an index into the `demands` given.
    pub demand: usize,
    /// How many of its tasks found no place.
    pub instances: u32,
    /// How many offers were looked at for it: every offer of the round.
    pub offers_examined: u32,
    /// Why the offers turned it down, each offer counted once under the first
    /// reason that applies at the end of the round — its role, then cpus, mem, disk
    /// and ports, then the constraints in order — most offers first.
    pub refusals: Vec<Refusal>,
}

/// What to do with a round of offers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matching {
    /// The offers to accept, in the order given, each with every task to launch on it.
    pub accepts: Vec<Accept>,
    /// The offers nothing is launched on, in the order given: to decline.
    pub unused: Vec<String>,
    /// The demands left short, in the order given.
    pub waiting: Vec<Unplaced>,
}

/// Trims `demands` so that together they ask for at most `budget` tasks, fairly:
/// each keeps up to a common level, the demands above it share what is left one
/// task each, in order. Returns whether anything was held back (for a later round).
///
/// A round waits for every accept it sends, so a round that places a hundred
/// thousand tasks keeps a service applied meanwhile waiting until it ends; a
/// bounded round lets it in at the next one, with at least a share as large as the
/// largest service's.
pub fn share(demands: &mut [Demand], budget: u32) -> bool {
    let total: u64 = demands.iter().map(|d| u64::from(d.count)).sum();
    if total <= u64::from(budget) {
        return false;
    }
    // The highest level whose demands fit: a binary search over 0..=max count.
    let fits = |level: u32| demands.iter().map(|d| u64::from(d.count.min(level))).sum::<u64>() <= u64::from(budget);
    let (mut low, mut high) = (0u32, demands.iter().map(|d| d.count).max().unwrap_or(0));
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if fits(mid) { low = mid } else { high = mid - 1 }
    }
    let mut left = budget - demands.iter().map(|d| d.count.min(low)).sum::<u32>();
    for d in demands.iter_mut() {
        let extra = u32::from(d.count > low && left > 0);
        left -= extra;
        d.count = d.count.min(low) + extra;
    }
    true
}

/// Matches a round of `offers` to the `demands` of services waiting for placement.
///
/// # Guarantees
///
/// - No offer gives more cpus (within a billionth of a core), memory, disk or ports
///   than it has; no host port is given twice on one offer; every host port lies in
///   the offer's ranges.
/// - Every task meets its demand's role and constraints, counting the service's live
///   tasks and the tasks placed before it in the round.
/// - For every demand, its launches plus its unplaced instances make its `count`.
/// - The same input gives the same output.
pub fn match_offers(offers: &[OfferView], demands: &[Demand]) -> Matching {
    let (mut pool, layout) = Layout::new(offers, demands);
    let mut states: Vec<DemandState<'_>> = demands.iter().map(|d| DemandState::new(d, &pool, &layout)).collect();
    let mut launches: Vec<Vec<Launch>> = vec![Vec::new(); offers.len()];

    // Passes: every demand still short places one task in turn, until each is
    // satisfied or no offer can take another of its tasks.
    let mut active: Vec<usize> = (0..states.len()).filter(|&d| states[d].remaining > 0).collect();
    while !active.is_empty() {
        active.retain(|&d| {
            let state = &mut states[d];
            let Some(o) = state.next_offer(&pool, &layout) else { return false };
            let host_ports = state.spec.place(&mut pool[o], &layout);
            launches[o].push(Launch { demand: d, host_ports });
            state.remaining -= 1;
            state.remaining > 0
        });
    }

    let mut matching = Matching::default();
    for (view, launches) in offers.iter().zip(launches) {
        if launches.is_empty() {
            matching.unused.push(view.name.clone());
        } else {
            matching.accepts.push(Accept { offer: view.name.clone(), launches });
        }
    }

    let mut nodes = NodeTally::new(&layout);
    let examined = u32::try_from(offers.len()).unwrap_or(u32::MAX);
    for (d, state) in states.iter().enumerate().filter(|(_, s)| s.remaining > 0) {
        matching.waiting.push(Unplaced {
            demand: d,
            instances: state.remaining,
            offers_examined: examined,
            refusals: state.spec.refusals(&pool, &layout, &mut nodes),
        });
    }
    matching
}

/// The round's offers arranged for the demands: by role (a demand only ever walks
/// its own role's), by value of the fields `GROUP_BY` spreads over, and by node.
struct Layout<'o> {
    /// Role names, by number.
    roles: Vec<&'o str>,
    ids: HashMap<&'o str, u32>,
    /// Per role: its offers, in the order given.
    by_role: Vec<Vec<usize>>,
    /// Per role: its offers and their distinct nodes, which a demand of another
    /// role counts as refusals without looking at them.
    role_refusals: Vec<(u32, u32)>,
    indexes: Vec<Index<'o>>,
    /// Per offer: a number for its node.
    node_of: Vec<usize>,
    nodes: usize,
}

impl<'o> Layout<'o> {
    fn new(offers: &'o [OfferView], demands: &[Demand]) -> (Vec<Pool<'o>>, Self) {
        let mut ids: HashMap<&'o str, u32> = HashMap::new();
        let mut roles: Vec<&'o str> = Vec::new();
        let mut by_role: Vec<Vec<usize>> = Vec::new();
        let mut node_ids: HashMap<&'o str, usize> = HashMap::new();
        let mut node_of = Vec::with_capacity(offers.len());
        let mut pool = Vec::with_capacity(offers.len());
        for (o, view) in offers.iter().enumerate() {
            let next = u32::try_from(roles.len()).unwrap_or(u32::MAX);
            let role = *ids.entry(view.role.as_str()).or_insert_with(|| {
                roles.push(view.role.as_str());
                by_role.push(Vec::new());
                next
            });
            by_role[role as usize].push(o);
            let next = node_ids.len();
            node_of.push(*node_ids.entry(view.node.as_str()).or_insert(next));
            pool.push(Pool::new(view, role));
        }
        let role_refusals = by_role
            .iter()
            .map(|offers| {
                let mut nodes: Vec<usize> = offers.iter().map(|&o| node_of[o]).collect();
                nodes.sort_unstable();
                nodes.dedup();
                (u32::try_from(offers.len()).unwrap_or(u32::MAX), u32::try_from(nodes.len()).unwrap_or(u32::MAX))
            })
            .collect();
        let spread: BTreeSet<(u32, &str)> = demands
            .iter()
            .filter_map(|d| Some((*ids.get(d.role.as_str())?, d)))
            .flat_map(|(role, d)| {
                d.constraints.iter().filter(|c| c.operator() == "GROUP_BY").map(move |c| (role, c.field()))
            })
            .collect();
        let indexes =
            spread.into_iter().map(|(role, field)| Index::new(role, field, &by_role[role as usize], &pool)).collect();
        let layout = Layout { roles, ids, by_role, role_refusals, indexes, node_of, nodes: node_ids.len() };
        (pool, layout)
    }

    /// The offers of a role.
    fn own(&self, role: Option<u32>) -> &[usize] {
        role.and_then(|r| self.by_role.get(r as usize)).map_or(&[], Vec::as_slice)
    }

    /// The index of a role's offers by a field, if a `GROUP_BY` asked for it.
    fn index(&self, role: u32, field: &str) -> Option<usize> {
        self.indexes.iter().position(|i| i.role == role && i.field == field)
    }
}

/// Counts the distinct nodes behind each refusal without sorting: per node, the
/// tally that last counted it.
struct NodeTally {
    last: Vec<u64>,
    tallies: u64,
}

impl NodeTally {
    fn new(layout: &Layout<'_>) -> Self {
        NodeTally { last: vec![0; layout.nodes], tallies: 0 }
    }

    /// A new tally, never seen by any node.
    fn start(&mut self) -> u64 {
        self.tallies += 1;
        self.tallies
    }

    /// Whether the node is new to the tally.
    fn first_for(&mut self, tally: u64, node: usize) -> bool {
        let new = self.last[node] != tally;
        self.last[node] = tally;
        new
    }
}

/// One role's offers by value of one field, values in order, offers in the order
/// given; shared by every demand of the role spreading over the field with `GROUP_BY`.
struct Index<'o> {
    role: u32,
    field: String,
    values: Vec<(&'o str, Vec<usize>)>,
}

impl<'o> Index<'o> {
    fn new(role: u32, field: &str, offers: &[usize], pool: &[Pool<'o>]) -> Self {
        let mut by_value: BTreeMap<&'o str, Vec<usize>> = BTreeMap::new();
        for &o in offers {
            if let Some(v) = pool[o].value(field) {
                by_value.entry(v).or_default().push(o);
            }
        }
        Index { role, field: field.to_owned(), values: by_value.into_iter().collect() }
    }

    /// Where a value is among the index's values.
    fn position(&self, value: &str) -> Option<usize> {
        self.values.binary_search_by(|(v, _)| (*v).cmp(value)).ok()
    }
}

/// An offer and what is left of it in this round.
struct Pool<'a> {
    view: &'a OfferView,
    /// The role, as a number: compared for every demand and offer.
    role: u32,
    hostname: &'a str,
    left: Resources,
    ports: Ports,
}

impl<'a> Pool<'a> {
    fn new(view: &'a OfferView, role: u32) -> Self {
        let hostname = view.attributes.get(HOSTNAME).map_or(view.node.as_str(), String::as_str);
        Pool { view, role, hostname, left: view.resources, ports: Ports::new(&view.ports) }
    }

    /// The value of a constraint's field on this offer's node.
    fn value(&self, field: &str) -> Option<&'a str> {
        if field == HOSTNAME { Some(self.hostname) } else { self.view.attributes.get(field).map(String::as_str) }
    }
}

/// The host ports of an offer, and which are taken.
struct Ports {
    /// Sorted, merged, inclusive.
    ranges: Vec<(u16, u16)>,
    used: HashSet<u16>,
    free: u32,
    /// Every port of the ranges below this one (range index, port) is used: ports
    /// are only ever taken during a round, so the lowest free one only moves up.
    lowest: (usize, u32),
}

impl Ports {
    fn new(ranges: &[PortRange]) -> Self {
        let mut sorted: Vec<(u16, u16)> =
            ranges.iter().filter(|r| r.begin <= r.end).map(|r| (r.begin, r.end)).collect();
        sorted.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(sorted.len());
        for (begin, end) in sorted {
            match merged.last_mut() {
                // Overlapping or adjacent: counting a port twice would promise it twice.
                Some(last) if u32::from(begin) <= u32::from(last.1) + 1 => last.1 = last.1.max(end),
                _ => merged.push((begin, end)),
            }
        }
        let free = merged.iter().map(|&(b, e)| u32::from(e) - u32::from(b) + 1).sum();
        let lowest = (0, merged.first().map_or(0, |r| u32::from(r.0)));
        Ports { ranges: merged, used: HashSet::new(), free, lowest }
    }

    fn is_free(&self, port: u16) -> bool {
        let i = self.ranges.partition_point(|r| r.0 <= port);
        i > 0 && port <= self.ranges[i - 1].1 && !self.used.contains(&port)
    }

    /// Whether a task with these fixed ports (distinct) and this many picked ones fits.
    fn can_take(&self, fixed: &[u16], picked: u32) -> bool {
        let fixed_count = u32::try_from(fixed.len()).unwrap_or(u32::MAX);
        fixed.iter().all(|&p| self.is_free(p)) && self.free >= fixed_count.saturating_add(picked)
    }

    /// Takes a task's ports, which [`Ports::can_take`] said fit: its fixed ones, then
    /// the lowest free ones for the rest, in the template's order.
    fn take(&mut self, template: &[Option<u16>]) -> Vec<u16> {
        for &port in template.iter().flatten() {
            self.used.insert(port);
            self.free -= 1;
        }
        template.iter().map(|p| p.unwrap_or_else(|| self.take_lowest())).collect()
    }

    fn take_lowest(&mut self) -> u16 {
        loop {
            let (i, port) = self.lowest;
            let &(_, end) = self.ranges.get(i).expect("can_take counted enough free ports");
            if port > u32::from(end) {
                self.lowest = (i + 1, self.ranges.get(i + 1).map_or(0, |r| u32::from(r.0)));
                continue;
            }
            self.lowest.1 = port + 1;
            // In range: no larger than `end`, a u16.
            let port = port as u16;
            if self.used.insert(port) {
                self.free -= 1;
                return port;
            }
        }
    }
}

/// What a constraint asks, understood once per round.
enum Rule {
    Unique,
    /// `CLUSTER` without a value: wherever the others are.
    ClusterFirst,
    ClusterOn(String),
    /// With the number of values to assume.
    GroupBy(u32),
    Like(Regex),
    Unlike(Regex),
    MaxPer(u32),
    Is(String),
    /// Refuses everything; the reason says why.
    Invalid,
}

/// A constraint of one demand, with the service's tasks counted per value.
struct Compiled {
    field: String,
    rule: Rule,
    /// How a refusal by it reads.
    reason: String,
    /// Tasks per value, for the rules that count; values without tasks are left out.
    counts: BTreeMap<String, u32>,
    spread: Spread,
}

/// What `GROUP_BY` knows of the values, to find the smallest count without a scan of
/// them (a service may spread over thousands of hostnames).
#[derive(Default)]
struct Spread {
    /// How many values have each count above zero.
    levels: BTreeMap<u32, u32>,
    /// Known values without a task: seen in offers, or assumed.
    zeros: u32,
    /// The [`Index`] of the field, and which of its values were seen, to tell whether
    /// a value getting its first task was one of the `zeros`.
    seen: Option<(usize, Vec<bool>)>,
}

/// A constraint's verdict on one offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admit {
    Yes,
    /// Not for as long as the round lasts.
    No,
    /// Not now; maybe once other values caught up (`GROUP_BY`).
    Later,
}

impl Compiled {
    fn new(constraint: &Constraint) -> Self {
        let display = constraint.to_string();
        let number = |n: &str| n.trim().parse::<u32>().map_err(|_| "not a number");
        let (rule, problem) = match (constraint.operator(), constraint.value()) {
            ("UNIQUE", _) => (Rule::Unique, None),
            ("CLUSTER", None | Some("")) => (Rule::ClusterFirst, None),
            ("CLUSTER", Some(v)) => (Rule::ClusterOn(v.to_owned()), None),
            ("GROUP_BY", None | Some("")) => (Rule::GroupBy(0), None),
            ("GROUP_BY", Some(n)) => number(n).map_or_else(|e| (Rule::Invalid, Some(e)), |n| (Rule::GroupBy(n), None)),
            ("MAX_PER", Some(n)) => number(n).map_or_else(|e| (Rule::Invalid, Some(e)), |n| (Rule::MaxPer(n), None)),
            ("LIKE", Some(re)) => full_match(re).map_or_else(|e| (Rule::Invalid, Some(e)), |re| (Rule::Like(re), None)),
            ("UNLIKE", Some(re)) => {
                full_match(re).map_or_else(|e| (Rule::Invalid, Some(e)), |re| (Rule::Unlike(re), None))
            }
            ("IS", Some(v)) => (Rule::Is(v.to_owned()), None),
            ("LIKE" | "UNLIKE" | "MAX_PER" | "IS", None) => (Rule::Invalid, Some("needs a value")),
            _ => (Rule::Invalid, Some("unknown operator")),
        };
        let reason = match problem {
            None => display,
            Some(problem) => format!("{display} ({problem})"),
        };
        Compiled {
            field: constraint.field().to_owned(),
            rule,
            reason,
            counts: BTreeMap::new(),
            spread: Spread::default(),
        }
    }

    /// Whether it counts the service's tasks per value.
    fn counts_tasks(&self) -> bool {
        matches!(self.rule, Rule::Unique | Rule::ClusterFirst | Rule::GroupBy(_) | Rule::MaxPer(_))
    }

    fn count(&self, value: &str) -> u32 {
        self.counts.get(value).copied().unwrap_or(0)
    }

    /// `GROUP_BY`: the fewest tasks on any value.
    fn min(&self) -> u32 {
        if self.spread.zeros > 0 { 0 } else { self.spread.levels.first_key_value().map_or(0, |(&count, _)| count) }
    }

    fn admits(&self, value: Option<&str>) -> Admit {
        let Some(v) = value else {
            return if matches!(self.rule, Rule::Unlike(_)) { Admit::Yes } else { Admit::No };
        };
        let ok = match &self.rule {
            Rule::Unique => self.count(v) == 0,
            Rule::ClusterFirst => self.counts.is_empty() || (self.counts.len() == 1 && self.count(v) > 0),
            Rule::ClusterOn(w) | Rule::Is(w) => v == w,
            Rule::GroupBy(_) => return if self.count(v) <= self.min() { Admit::Yes } else { Admit::Later },
            Rule::Like(re) => re.is_match(v),
            Rule::Unlike(re) => !re.is_match(v),
            Rule::MaxPer(n) => self.count(v) < *n,
            Rule::Invalid => false,
        };
        if ok { Admit::Yes } else { Admit::No }
    }

    /// Whether it could admit the value before any task is counted: the value is
    /// there for the counting rules, and meets the others.
    fn admits_at_start(&self, value: Option<&str>) -> bool {
        if self.counts_tasks() { value.is_some() } else { self.admits(value) == Admit::Yes }
    }

    /// Counts one more task on `value`.
    fn bump(&mut self, value: &str, layout: &Layout<'_>) {
        let spreads = matches!(self.rule, Rule::GroupBy(_));
        match self.counts.get_mut(value) {
            Some(count) => {
                let before = *count;
                *count += 1;
                if spreads {
                    leave_level(&mut self.spread.levels, before);
                    *self.spread.levels.entry(before + 1).or_insert(0) += 1;
                }
            }
            None => {
                self.counts.insert(value.to_owned(), 1);
                if spreads {
                    *self.spread.levels.entry(1).or_insert(0) += 1;
                    let seen =
                        self.spread.seen.as_ref().is_some_and(|(index, seen)| {
                            layout.indexes[*index].position(value).is_some_and(|p| seen[p])
                        });
                    if seen {
                        self.spread.zeros = self.spread.zeros.saturating_sub(1);
                    }
                }
            }
        }
    }
}

fn leave_level(levels: &mut BTreeMap<u32, u32>, level: u32) {
    if let Some(n) = levels.get_mut(&level) {
        *n -= 1;
        if *n == 0 {
            levels.remove(&level);
        }
    }
}

/// A regular expression that must match a whole value, as Marathon's `LIKE`.
fn full_match(pattern: &str) -> Result<Regex, &'static str> {
    const INVALID: &str = "invalid regular expression";
    // Checked alone first: wrapped, an unbalanced `a)|(b` would parse as something else.
    Regex::new(pattern).map_err(|_| INVALID)?;
    Regex::new(&format!("^(?:{pattern})$")).map_err(|_| INVALID)
}

/// Why an offer cannot take a task, in the order reasons are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reason<'o> {
    /// The offer's role.
    Role(&'o str),
    Cpus,
    Mem,
    Disk,
    Ports,
    /// The demand is pinned to another node.
    Node,
    /// The demand's constraint of that index.
    Constraint(usize),
}

/// A refusal, and whether it may lift later in the round.
struct Refused<'o> {
    reason: Reason<'o>,
    later: bool,
}

impl<'o> Refused<'o> {
    fn no(reason: Reason<'o>) -> Self {
        Refused { reason, later: false }
    }
}

/// A demand, understood once per round.
struct Spec<'a> {
    demand: &'a Demand,
    /// The number of its role among the offers' roles; `None` if no offer has it.
    role: Option<u32>,
    need: Resources,
    /// Per template port: fixed, or `None` to pick one.
    ports: Vec<Option<u16>>,
    fixed: Vec<u16>,
    picked: u32,
    /// Two template ports ask for the same host port: no offer can take it.
    ports_clash: bool,
    rules: Vec<Compiled>,
}

impl<'a> Spec<'a> {
    fn new(demand: &'a Demand, pool: &[Pool<'_>], layout: &Layout<'_>) -> Self {
        // A NaN or negative need would slip through comparisons or grow the offer.
        let cpus = if demand.resources.cpus.is_nan() { f64::INFINITY } else { demand.resources.cpus.max(0.0) };
        let need = Resources { cpus, ..demand.resources };
        let ports: Vec<Option<u16>> = demand.ports.iter().map(|p| p.host_port.filter(|&p| p != 0)).collect();
        let mut fixed: Vec<u16> = ports.iter().flatten().copied().collect();
        let picked = u32::try_from(ports.len() - fixed.len()).unwrap_or(u32::MAX);
        fixed.sort_unstable();
        let before = fixed.len();
        fixed.dedup();
        let ports_clash = fixed.len() != before;

        let mut rules: Vec<Compiled> = demand.constraints.iter().map(Compiled::new).collect();
        for rule in rules.iter_mut().filter(|r| r.counts_tasks()) {
            for value in demand.placed.iter().filter_map(|p| p.get(&rule.field)) {
                *rule.counts.entry(value.clone()).or_insert(0) += 1;
            }
        }
        let role = layout.ids.get(demand.role.as_str()).copied();
        let mut spec = Spec { demand, role, need, ports, fixed, picked, ports_clash, rules };
        spec.seed_spreads(pool, layout);
        spec
    }

    /// `GROUP_BY`: the values known at the start of the round — those of live tasks,
    /// and those of offers that could take a task then — and the assumed ones.
    fn seed_spreads(&mut self, pool: &[Pool<'_>], layout: &Layout<'_>) {
        for r in 0..self.rules.len() {
            let Rule::GroupBy(assumed) = self.rules[r].rule else { continue };
            let index = self.role.and_then(|role| layout.index(role, &self.rules[r].field));
            // One offer able to take a task is enough to know a value.
            let seen: Vec<bool> = index.map_or_else(Vec::new, |i| {
                let values = &layout.indexes[i].values;
                values.iter().map(|(_, offers)| offers.iter().any(|&o| self.could_take_at_start(&pool[o]))).collect()
            });
            let rule = &mut self.rules[r];
            let mut zeros = 0u32;
            if let Some(i) = index {
                for ((value, _), &seen) in layout.indexes[i].values.iter().zip(&seen) {
                    if seen && !rule.counts.contains_key(*value) {
                        zeros += 1;
                    }
                }
            }
            let known = u32::try_from(rule.counts.len()).unwrap_or(u32::MAX).saturating_add(zeros);
            zeros = zeros.saturating_add(assumed.saturating_sub(known));
            let mut levels = BTreeMap::new();
            for &count in rule.counts.values() {
                *levels.entry(count).or_insert(0) += 1;
            }
            rule.spread = Spread { levels, zeros, seen: index.map(|i| (i, seen)) };
        }
    }

    /// Whether the offer could take a task before any is counted.
    fn could_take_at_start(&self, o: &Pool<'_>) -> bool {
        self.fits(o).is_ok() && self.rules.iter().all(|r| r.admits_at_start(o.value(&r.field)))
    }

    /// Role, resources and ports: whether one more task fits on the offer.
    fn fits<'o>(&self, o: &Pool<'o>) -> Result<(), Refused<'o>> {
        if self.role != Some(o.role) {
            return Err(Refused::no(Reason::Role(&o.view.role)));
        }
        if self.demand.node.as_ref().is_some_and(|n| *n != o.view.node) {
            return Err(Refused::no(Reason::Node));
        }
        // NaN on either side refuses.
        let cpus_fit = self.need.cpus.partial_cmp(&(o.left.cpus + CPU_EPSILON)).is_some_and(Ordering::is_le);
        if !cpus_fit {
            return Err(Refused::no(Reason::Cpus));
        }
        if self.need.mem > o.left.mem {
            return Err(Refused::no(Reason::Mem));
        }
        if self.need.disk > o.left.disk {
            return Err(Refused::no(Reason::Disk));
        }
        if self.ports_clash || !o.ports.can_take(&self.fixed, self.picked) {
            return Err(Refused::no(Reason::Ports));
        }
        Ok(())
    }

    /// Whether the offer can take one more task now, or the first reason it cannot.
    fn judge<'o>(&self, o: &Pool<'o>) -> Result<(), Refused<'o>> {
        self.fits(o)?;
        for (i, rule) in self.rules.iter().enumerate() {
            match rule.admits(o.value(&rule.field)) {
                Admit::Yes => {}
                Admit::No => return Err(Refused::no(Reason::Constraint(i))),
                Admit::Later => return Err(Refused { reason: Reason::Constraint(i), later: true }),
            }
        }
        Ok(())
    }

    fn admit(&self, o: &Pool<'_>) -> Admit {
        match self.judge(o) {
            Ok(()) => Admit::Yes,
            Err(r) if r.later => Admit::Later,
            Err(_) => Admit::No,
        }
    }

    /// Places one task on the offer, which [`Spec::judge`] accepted; its host ports.
    fn place(&mut self, o: &mut Pool<'_>, layout: &Layout<'_>) -> Vec<u16> {
        o.left.cpus -= self.need.cpus;
        o.left.mem = o.left.mem.saturating_sub(self.need.mem);
        o.left.disk = o.left.disk.saturating_sub(self.need.disk);
        let host_ports = o.ports.take(&self.ports);
        for rule in self.rules.iter_mut().filter(|r| r.counts_tasks()) {
            if let Some(v) = o.value(&rule.field) {
                rule.bump(v, layout);
            }
        }
        host_ports
    }

    /// Why each offer turns the demand down now, most offers first.
    fn refusals(&self, pool: &[Pool<'_>], layout: &Layout<'_>, nodes: &mut NodeTally) -> Vec<Refusal> {
        // (reason, offers, nodes, tally): a handful of reasons, searched in place.
        let mut tally: Vec<(Reason<'_>, u32, u32, u64)> = Vec::new();
        for (r, (role, &(offers, on))) in layout.roles.iter().zip(&layout.role_refusals).enumerate() {
            if self.role != u32::try_from(r).ok() {
                tally.push((Reason::Role(role), offers, on, 0));
            }
        }
        for &o in layout.own(self.role) {
            let Err(refused) = self.judge(&pool[o]) else { continue };
            let i = match tally.iter().position(|t| t.0 == refused.reason) {
                Some(i) => i,
                None => {
                    tally.push((refused.reason, 0, 0, nodes.start()));
                    tally.len() - 1
                }
            };
            let entry = &mut tally[i];
            entry.1 += 1;
            if nodes.first_for(entry.3, layout.node_of[o]) {
                entry.2 += 1;
            }
        }
        // Most offers first; ties in the order reasons are checked in.
        tally.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        tally
            .into_iter()
            .map(|(reason, offers, nodes, _)| Refusal { reason: self.describe(reason), offers, nodes })
            .collect()
    }

    fn describe(&self, reason: Reason<'_>) -> String {
        match reason {
            Reason::Role(offered) => format!("role {offered} offered, role {} needed", self.demand.role),
            Reason::Cpus => "insufficient cpus".into(),
            Reason::Mem => "insufficient mem".into(),
            Reason::Disk => "insufficient disk".into(),
            Reason::Ports => "insufficient ports".into(),
            Reason::Node => match &self.demand.node {
                Some(n) => format!("not node {n}, where the instance's volumes are"),
                None => "another node".into(),
            },
            Reason::Constraint(i) => self.rules[i].reason.clone(),
        }
    }
}

/// Offers a demand comes back to, walked round from where it last placed a task.
#[derive(Default)]
struct Ring {
    /// Indices into the pool; [`GONE`] for offers that turned it down for good.
    offers: Vec<usize>,
    next: usize,
    gone: usize,
}

const GONE: usize = usize::MAX;

impl Ring {
    /// The first offer from `next` on that admits a task; offers refusing for good
    /// are dropped on the way.
    fn walk(&mut self, mut admit: impl FnMut(usize) -> Admit) -> Option<usize> {
        if self.gone * 2 > self.offers.len() {
            self.compact();
        }
        let len = self.offers.len();
        for step in 0..len {
            let i = (self.next + step) % len;
            let o = self.offers[i];
            if o == GONE {
                continue;
            }
            match admit(o) {
                Admit::Yes => {
                    self.next = i + 1;
                    return Some(o);
                }
                Admit::Later => {}
                Admit::No => {
                    self.offers[i] = GONE;
                    self.gone += 1;
                }
            }
        }
        None
    }

    fn compact(&mut self) {
        let before_next = self.offers.iter().take(self.next).filter(|&&o| o != GONE).count();
        self.offers.retain(|&o| o != GONE);
        self.next = before_next;
        self.gone = 0;
    }

    fn is_empty(&self) -> bool {
        self.offers.len() == self.gone
    }
}

/// A demand's way through a list of offers: first once along it, lazily, then round
/// the offers kept from it.
#[derive(Default)]
struct Lane {
    /// The next offer of the list to look at for the first time.
    scan: usize,
    kept: Ring,
}

impl Lane {
    fn next(&mut self, list: &[usize], mut admit: impl FnMut(usize) -> Admit) -> Option<usize> {
        while let Some(&o) = list.get(self.scan) {
            self.scan += 1;
            match admit(o) {
                Admit::Yes => {
                    self.kept.offers.push(o);
                    return Some(o);
                }
                Admit::Later => self.kept.offers.push(o),
                Admit::No => {}
            }
        }
        self.kept.walk(admit)
    }

    /// Nothing of the list is left to try.
    fn is_spent(&self, list: &[usize]) -> bool {
        self.scan >= list.len() && self.kept.is_empty()
    }
}

/// How a demand goes through the offers.
enum Lanes {
    /// Along all of them.
    One(Lane),
    /// Under its first `GROUP_BY`: value by value of the field, from the value after
    /// the last one placed on, skipping the values ahead of the others; each value's
    /// lane made when first walked.
    PerValue {
        /// The `GROUP_BY` rule.
        rule: usize,
        /// Its field's [`Index`].
        index: usize,
        lanes: HashMap<usize, Lane>,
        next: usize,
    },
}

/// A demand during the round.
struct DemandState<'a> {
    spec: Spec<'a>,
    remaining: u32,
    lanes: Lanes,
}

impl<'a> DemandState<'a> {
    fn new(demand: &'a Demand, pool: &[Pool<'_>], layout: &Layout<'_>) -> Self {
        let spec = Spec::new(demand, pool, layout);
        let lanes = spec
            .rules
            .iter()
            .enumerate()
            .find_map(|(r, rule)| {
                let Rule::GroupBy(_) = rule.rule else { return None };
                let (index, _) = rule.spread.seen.as_ref()?;
                Some(Lanes::PerValue { rule: r, index: *index, lanes: HashMap::new(), next: 0 })
            })
            .unwrap_or_else(|| Lanes::One(Lane::default()));
        DemandState { spec, remaining: demand.count, lanes }
    }

    /// The offer to place the next task on, if any can take one.
    fn next_offer(&mut self, pool: &[Pool<'_>], layout: &Layout<'_>) -> Option<usize> {
        let spec = &self.spec;
        let admit = |o: usize| spec.admit(&pool[o]);
        match &mut self.lanes {
            Lanes::One(lane) => lane.next(layout.own(spec.role), admit),
            Lanes::PerValue { rule, index, lanes, next } => {
                let rule = &spec.rules[*rule];
                let min = rule.min();
                let values = &layout.indexes[*index].values;
                for step in 0..values.len() {
                    let v = (*next + step) % values.len();
                    let (value, list) = &values[v];
                    if rule.count(value) > min {
                        continue;
                    }
                    let lane = lanes.entry(v).or_default();
                    if lane.is_spent(list) {
                        continue;
                    }
                    if let Some(o) = lane.next(list, admit) {
                        *next = v + 1;
                        return Some(o);
                    }
                }
                None
            }
        }
    }
}

/// What the matcher said of a demand it left short in a round, as a status reports it.
#[derive(Clone, Copy, Debug)]
pub struct Shortfall<'a> {
    /// Instances left waiting.
    pub instances: u32,
    /// Offers looked at.
    pub offers_examined: u32,
    /// What turned them down.
    pub refusals: &'a [Refusal],
    /// Offers outstanding in the round, for every demand.
    pub offers_in_round: usize,
}

/// Why a demand's instances wait, in one line.
pub fn why(u: &Shortfall<'_>) -> String {
    if u.refusals.is_empty() {
        return if u.offers_in_round == 0 {
            format!(
                "{} instance(s) wait for offers: none is open to the framework now (it has just asked for them, \
                 or no node has free resources)",
                u.instances
            )
        } else {
            format!("{} instance(s) wait for the next offers", u.instances)
        };
    }
    let reasons: Vec<String> = u
        .refusals
        .iter()
        .map(|r| format!("{} (turned down {} offer(s) on {} node(s))", r.reason, r.offers, r.nodes))
        .collect();
    format!("{} instance(s) not placed: {}", u.instances, reasons.join("; "))
}

#[cfg(test)]
mod tests;
