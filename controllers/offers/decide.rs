//! The allocator: which offers to make and which to take back, as a pure function of
//! the cluster's nodes, the frameworks, the outstanding offers and the clock.
//!
//! Free resources of a node, for a role: its capacity, minus what tasks and
//! outstanding offers hold, minus what is reserved for *other* roles (a role's own
//! tasks use its reservation first, then the shared pool). Ports are shared by all
//! roles. Unschedulable and unreachable nodes offer nothing.
//!
//! Order, as Mesos' hierarchical allocator: roles below their quota guarantee first;
//! then by weighted dominant share — a role's largest fraction of any one resource of
//! the cluster, divided by its weight — lowest first; within a role, frameworks the
//! same way. Resources offered count as allocated until they are accepted, declined or
//! rescinded, so two frameworks are never offered the same resources. A role never
//! gets past its quota limit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use corral_api::allocation::{Free, add, covers, dominant_share, min, sub};
use corral_api::kinds::framework::{DEFAULT_ROLE, FRAMEWORK_LEASE_NAMESPACE, FrameworkPhase};
use corral_api::kinds::node::{PortRange, Resources};
use corral_api::kinds::task::TaskSummary;

/// Smallest offer worth making: a hundredth of a core, or 32 MiB (as Mesos).
const MIN_CPUS: f64 = 0.01;
const MIN_MEM: u64 = 32;

/// What one node's live tasks hold: what the allocator subtracts from its capacity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Held {
    /// By the role their resources were taken for.
    pub by_role: BTreeMap<String, Resources>,
    /// By framework: resources, and how many tasks.
    pub by_framework: BTreeMap<String, (Resources, u64)>,
    /// Host ports.
    pub ports: BTreeSet<u16>,
}

impl Held {
    /// What the live tasks among `tasks` (one node's) hold: ended ones hold nothing.
    pub fn of<'a>(tasks: impl IntoIterator<Item = &'a TaskSummary>) -> Held {
        let mut held = Held::default();
        for t in tasks {
            if !holds_anything(t) {
                continue;
            }
            // A node carries hundreds of tasks of a few roles and frameworks: a key
            // is cloned once per node, not once per task.
            let role = t.spec.role.as_deref().unwrap_or(DEFAULT_ROLE);
            match held.by_role.get_mut(role) {
                Some(e) => *e = add(e, &t.spec.resources),
                None => {
                    held.by_role.insert(role.to_string(), t.spec.resources);
                }
            }
            if let Some(fw) = &t.spec.framework {
                match held.by_framework.get_mut(fw) {
                    Some(e) => *e = (add(&e.0, &t.spec.resources), e.1 + 1),
                    None => {
                        held.by_framework.insert(fw.clone(), (t.spec.resources, 1));
                    }
                }
            }
            held.ports.extend(t.spec.ports.iter().filter_map(|p| p.host_port));
        }
        held
    }
}

/// Whether task `t` holds resources of its node: every task until it has ended.
fn holds_anything(t: &TaskSummary) -> bool {
    !t.status.as_ref().is_some_and(|s| s.phase.is_terminal())
}

/// Whether a change of a task from `before` to `after` can change what its node
/// has free. Most changes of a task do not (it starts, its health changes): those
/// need no recount of the node, nor a round of offers.
pub fn changes_holds(before: &TaskSummary, after: &TaskSummary) -> bool {
    match (holds_anything(before), holds_anything(after)) {
        (false, false) => false,
        (true, true) => {
            let (a, b) = (&before.spec, &after.spec);
            a.node_name != b.node_name
                || a.role != b.role
                || a.framework != b.framework
                || a.resources != b.resources
                || !a.ports.iter().map(|p| p.host_port).eq(b.ports.iter().map(|p| p.host_port))
        }
        _ => true,
    }
}

/// A node as the allocator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeState {
    /// The node's name.
    pub name: String,
    /// Total resources.
    pub capacity: Resources,
    /// Host ports tasks may use.
    pub port_ranges: Vec<PortRange>,
    /// Resources reserved for a role.
    pub reservations: BTreeMap<String, Resources>,
    /// What the node's non-terminal tasks hold, by the role of their framework.
    pub allocated: BTreeMap<String, Resources>,
    /// Host ports the node's non-terminal tasks hold.
    pub used_ports: BTreeSet<u16>,
    /// Ready and schedulable.
    pub offerable: bool,
}

/// A framework as the allocator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameworkState {
    /// The framework's name.
    pub name: String,
    /// The roles it takes resources for; offers name one of them.
    pub roles: Vec<String>,
    /// Its weight: a framework of weight 3 is entitled to three times the share of
    /// one of weight 1.
    pub weight: f64,
    /// Nothing to launch: it receives no offers.
    pub suppressed: bool,
    /// Nodes it declined, and until when it refuses them.
    pub filters: BTreeMap<String, Instant>,
    /// What its live tasks hold: its share among the frameworks of a role.
    pub allocated: Resources,
}

/// Guarantee and limit of a role.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quota {
    /// Served before roles that have reached theirs.
    pub guarantee: Resources,
    /// Never allocated beyond; `None`: no limit.
    pub limit: Option<Resources>,
}

/// An offer that has been made and is not yet accepted, declined or rescinded.
#[derive(Clone, Debug, PartialEq)]
pub struct OfferState {
    /// The offer's name.
    pub name: String,
    /// The offer.
    pub offer: Offer,
}

/// Everything the allocator looks at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Every node.
    pub nodes: Vec<NodeState>,
    /// Every registered framework.
    pub frameworks: Vec<FrameworkState>,
    /// Quotas by role.
    pub quotas: BTreeMap<String, Quota>,
    /// Outstanding offers.
    pub offers: Vec<OfferState>,
    /// Most offers one framework holds at once; `None`: no limit. On a large
    /// cluster a framework that needs a few nodes is not sent all of them (each offer
    /// is an object, written and then declined); the nodes it declines make room
    /// for others.
    pub max_offers: Option<usize>,
}

/// Why an offer is taken back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RescindReason {
    /// Its time ran out.
    Expired,
    /// The node is gone, unreachable or unschedulable.
    NodeLost,
    /// The framework is gone or suppressed.
    FrameworkGone,
    /// Tasks took the resources since.
    ResourcesTaken,
}

/// An offer: resources of one node, for one framework and role, for a while.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// To whom.
    pub framework: String,
    /// For which of its roles.
    pub role: String,
    /// On which node.
    pub node: String,
    /// What it holds: the node's free resources for that role, when made.
    pub resources: Resources,
    /// Host ports it holds.
    pub ports: Vec<PortRange>,
    /// When it lapses.
    pub expires: Instant,
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Offers to take back, by name.
    pub rescind: Vec<(String, RescindReason)>,
    /// Offers to make.
    pub offer: Vec<Offer>,
}

/// Decides at `now` which offers to rescind and which to make, each new one valid
/// for `ttl`.
pub fn decide(s: &Snapshot, now: Instant, ttl: Duration) -> Plan {
    let mut plan = Plan::default();
    let nodes: BTreeMap<&str, &NodeState> = s.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let frameworks: BTreeMap<&str, &FrameworkState> = s.frameworks.iter().map(|f| (f.name.as_str(), f)).collect();

    // What each node has left, with every offer that stays counted in.
    let mut left: BTreeMap<&str, Free> = nodes
        .iter()
        .map(|(name, n)| (*name, Free::new(&n.capacity, &n.reservations, &n.port_ranges, &n.allocated, &n.used_ports)))
        .collect();
    let mut kept: Vec<&Offer> = Vec::new();
    let mut offers: Vec<&OfferState> = s.offers.iter().collect();
    offers.sort_by(|a, b| a.offer.expires.cmp(&b.offer.expires).then_with(|| a.name.cmp(&b.name)));
    for state in offers {
        let o = &state.offer;
        let reason = match (nodes.get(o.node.as_str()), frameworks.get(o.framework.as_str())) {
            _ if o.expires <= now => Some(RescindReason::Expired),
            (None, _) => Some(RescindReason::NodeLost),
            (Some(n), _) if !n.offerable => Some(RescindReason::NodeLost),
            (_, None) => Some(RescindReason::FrameworkGone),
            (_, Some(f)) if f.suppressed || !f.roles.contains(&o.role) => Some(RescindReason::FrameworkGone),
            _ => None,
        };
        let reason = reason.or_else(|| {
            let l = left.get_mut(o.node.as_str())?;
            (!l.take(&o.role, &o.resources, &o.ports)).then_some(RescindReason::ResourcesTaken)
        });
        match reason {
            Some(r) => plan.rescind.push((state.name.clone(), r)),
            None => kept.push(o),
        }
    }

    // Each role's allocation across the cluster, offers included.
    let total = s.nodes.iter().filter(|n| n.offerable).fold(Resources::default(), |t, n| add(&t, &n.capacity));
    let mut by_role: BTreeMap<String, Resources> = BTreeMap::new();
    let mut by_framework: BTreeMap<&str, Resources> =
        s.frameworks.iter().map(|f| (f.name.as_str(), f.allocated)).collect();
    for n in &s.nodes {
        for (role, r) in &n.allocated {
            let e = by_role.entry(role.clone()).or_default();
            *e = add(e, r);
        }
    }
    let mut holds: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    let mut holding: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &kept {
        *holding.entry(o.framework.as_str()).or_default() += 1;
        let e = by_role.entry(o.role.clone()).or_default();
        *e = add(e, &o.resources);
        let e = by_framework.entry(o.framework.as_str()).or_default();
        *e = add(e, &o.resources);
        holds.insert((o.framework.as_str(), o.role.as_str(), o.node.as_str()));
    }
    let role_weight = |role: &str| {
        s.frameworks.iter().filter(|f| f.roles.iter().any(|r| r == role)).map(|f| f.weight).fold(0.0, f64::max)
    };

    // Node after node, the most deserving candidate takes what the node has left for
    // its role; then the next node, with the shares updated. Every pass offers at
    // least one thing or ends the loop, and each (framework, role, node) is offered
    // at most once, so it ends.
    loop {
        let mut offered = false;
        for node in s.nodes.iter().filter(|n| n.offerable) {
            let Some(l) = left.get(node.name.as_str()) else { continue };
            let mut best: Option<(Rank, &FrameworkState, &str, Resources)> = None;
            for f in s.frameworks.iter().filter(|f| !f.suppressed && f.weight > 0.0) {
                if f.filters.get(&node.name).is_some_and(|until| *until > now) {
                    continue;
                }
                if s.max_offers.is_some_and(|m| holding.get(f.name.as_str()).copied().unwrap_or(0) >= m) {
                    continue;
                }
                for role in &f.roles {
                    // One offer per framework, role and node: a framework of two
                    // roles gets a node's reservation for one beside the shared pool
                    // for the other.
                    if holds.contains(&(f.name.as_str(), role.as_str(), node.name.as_str())) {
                        continue;
                    }
                    let allocated = by_role.get(role).copied().unwrap_or_default();
                    let quota = s.quotas.get(role);
                    let mut give = l.free_for(role);
                    if let Some(limit) = quota.and_then(|q| q.limit.as_ref()) {
                        give = min(&give, &sub(limit, &allocated));
                    }
                    if !worth_offering(&give) {
                        continue;
                    }
                    let rank = Rank {
                        satisfied: quota.is_none_or(|q| covers(&allocated, &q.guarantee)),
                        role_share: dominant_share(&allocated, &total) / role_weight(role).max(f64::MIN_POSITIVE),
                        framework_share: dominant_share(
                            &by_framework.get(f.name.as_str()).copied().unwrap_or_default(),
                            &total,
                        ) / f.weight,
                    };
                    let better = match &best {
                        None => true,
                        Some((b, bf, brole, _)) => rank.before(b, (&f.name, role), (&bf.name, brole)),
                    };
                    if better {
                        best = Some((rank, f, role, give));
                    }
                }
            }
            let Some((_, f, role, give)) = best else { continue };
            let l = left.get_mut(node.name.as_str()).expect("every node has its left-over");
            let ports = l.ports.clone();
            let taken = l.take(role, &give, &ports);
            debug_assert!(taken, "an offer of what is free always fits");
            let e = by_role.entry(role.to_string()).or_default();
            *e = add(e, &give);
            let e = by_framework.entry(f.name.as_str()).or_default();
            *e = add(e, &give);
            holds.insert((f.name.as_str(), role, node.name.as_str()));
            *holding.entry(f.name.as_str()).or_default() += 1;
            plan.offer.push(Offer {
                framework: f.name.clone(),
                role: role.to_string(),
                node: node.name.clone(),
                resources: give,
                ports,
                expires: now + ttl,
            });
            offered = true;
        }
        if !offered {
            break;
        }
    }
    plan
}

/// Where a candidate stands; lower is served first.
#[derive(Clone, Copy, Debug)]
struct Rank {
    satisfied: bool,
    role_share: f64,
    framework_share: f64,
}

impl Rank {
    fn before(&self, other: &Rank, me: (&str, &str), them: (&str, &str)) -> bool {
        let key = |r: &Rank| (r.satisfied, r.role_share, r.framework_share);
        match key(self).partial_cmp(&key(other)) {
            Some(std::cmp::Ordering::Less) => true,
            Some(std::cmp::Ordering::Greater) => false,
            // Ties by name, so that the plan is the same every time.
            _ => me < them,
        }
    }
}

/// A framework's liveness as judged from its lease, and when it next changes by
/// itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Liveness {
    /// Pending, Connected, Disconnected or TornDown.
    pub phase: FrameworkPhase,
    /// Why, for its status.
    pub message: String,
    /// When the phase runs out (the lease lapses, or the failover timeout ends).
    pub until: Option<Instant>,
}

/// Judges framework `name` at `now`: connected while its lease record changes within
/// `lease` of being first seen (`seen`: the record and since when, on this
/// controller's clock; `None` before any lease), disconnected after that, torn down
/// once `failover` more has passed.
pub fn liveness(name: &str, seen: Option<Instant>, lease: Duration, failover: Duration, now: Instant) -> Liveness {
    let Some(since) = seen else {
        return Liveness {
            phase: FrameworkPhase::Pending,
            message: format!("no lease {FRAMEWORK_LEASE_NAMESPACE}/{name} yet"),
            until: None,
        };
    };
    let (lapse, torn) = (since + lease, since + lease + failover);
    if now < lapse {
        return Liveness {
            phase: FrameworkPhase::Connected,
            message: "its lease is renewed".into(),
            until: Some(lapse),
        };
    }
    if now < torn {
        return Liveness {
            phase: FrameworkPhase::Disconnected,
            message: format!(
                "its lease has not been renewed for {} s; its tasks are killed after {} s",
                now.duration_since(since).as_secs(),
                failover.as_secs()
            ),
            until: Some(torn),
        };
    }
    Liveness {
        phase: FrameworkPhase::TornDown,
        message: format!("gone longer than its failover timeout ({} s): its tasks were killed", failover.as_secs()),
        until: None,
    }
}

/// Of the frameworks that tasks name, those whose tasks are to be killed: deleted
/// (not in `phases`), or torn down.
pub fn torn_down<'a>(
    named: impl IntoIterator<Item = &'a str>,
    phases: &BTreeMap<String, FrameworkPhase>,
) -> BTreeSet<String> {
    named
        .into_iter()
        .filter(|fw| phases.get(*fw).is_none_or(|p| *p == FrameworkPhase::TornDown))
        .map(str::to_string)
        .collect()
}

fn worth_offering(r: &Resources) -> bool {
    r.cpus >= MIN_CPUS || r.mem >= MIN_MEM
}

#[cfg(test)]
mod tests;
