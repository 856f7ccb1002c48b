//! Resource arithmetic shared by the allocator that makes offers and the server that
//! checks accepts against them, so that both count a node's free resources the same.
//!
//! A node's resources for a role: its capacity, minus what its live tasks hold,
//! minus what is reserved for *other* roles. A role's own tasks use its reservation
//! first, then the shared pool. Ports are shared by all roles.

use std::collections::{BTreeMap, BTreeSet};

use crate::kinds::node::{PortRange, Resources};

/// What a node has left: the shared pool, what is left of each role's reservation,
/// and the free ports.
#[derive(Clone, Debug, PartialEq)]
pub struct Free {
    /// Resources no role reserved, not in use.
    pub shared: Resources,
    /// What is left of each role's reservation.
    pub reserved: BTreeMap<String, Resources>,
    /// Free host ports, as sorted, merged ranges.
    pub ports: Vec<PortRange>,
}

impl Free {
    /// A node of `capacity` with `reservations` by role and `port_ranges`, whose live
    /// tasks hold `allocated` (by role) and `used_ports`.
    pub fn new(
        capacity: &Resources,
        reservations: &BTreeMap<String, Resources>,
        port_ranges: &[PortRange],
        allocated: &BTreeMap<String, Resources>,
        used_ports: &BTreeSet<u16>,
    ) -> Free {
        let reserved_total = reservations.values().fold(Resources::default(), |t, r| add(&t, r));
        let mut shared = sub(capacity, &reserved_total);
        let mut reserved = reservations.clone();
        for (role, used) in allocated {
            let overflow = match reserved.get_mut(role) {
                Some(r) => {
                    let inside = min(r, used);
                    *r = sub(r, &inside);
                    sub(used, &inside)
                }
                None => *used,
            };
            shared = sub(&shared, &overflow);
        }
        let ports = minus_ranges(port_ranges, &self::port_ranges(used_ports.iter().copied()));
        Free { shared, reserved, ports }
    }

    /// What `role` may still take: the shared pool and what is left of its reservation.
    pub fn free_for(&self, role: &str) -> Resources {
        self.reserved.get(role).map_or(self.shared, |r| add(&self.shared, r))
    }

    /// Takes `r` for `role` (its reservation first) and `ports`; false, taking
    /// nothing, if they are not all free.
    pub fn take(&mut self, role: &str, r: &Resources, ports: &[PortRange]) -> bool {
        if !covers(&self.free_for(role), r) || !ports.iter().all(|p| contains(&self.ports, p)) {
            return false;
        }
        let from_reservation = self.reserved.get(role).map_or_else(Resources::default, |res| min(res, r));
        if let Some(res) = self.reserved.get_mut(role) {
            *res = sub(res, &from_reservation);
        }
        self.shared = sub(&self.shared, &sub(r, &from_reservation));
        self.ports = minus_ranges(&self.ports, ports);
        true
    }
}

/// `a + b`.
pub fn add(a: &Resources, b: &Resources) -> Resources {
    Resources { cpus: round(a.cpus + b.cpus), mem: a.mem + b.mem, disk: a.disk + b.disk }
}

/// `a - b`, never below zero.
pub fn sub(a: &Resources, b: &Resources) -> Resources {
    Resources {
        cpus: round((a.cpus - b.cpus).max(0.0)),
        mem: a.mem.saturating_sub(b.mem),
        disk: a.disk.saturating_sub(b.disk),
    }
}

/// The smaller of each resource.
pub fn min(a: &Resources, b: &Resources) -> Resources {
    Resources { cpus: a.cpus.min(b.cpus), mem: a.mem.min(b.mem), disk: a.disk.min(b.disk) }
}

/// Whether `a` holds at least `b` of everything.
pub fn covers(a: &Resources, b: &Resources) -> bool {
    a.cpus + 1e-9 >= b.cpus && a.mem >= b.mem && a.disk >= b.disk
}

/// CPU to a thousandth of a core, so that sums of fractions do not drift.
fn round(cpus: f64) -> f64 {
    (cpus * 1000.0).round() / 1000.0
}

/// The largest fraction of any one resource of `total` that `r` is.
pub fn dominant_share(r: &Resources, total: &Resources) -> f64 {
    let frac = |x: f64, t: f64| if t > 0.0 { x / t } else { 0.0 };
    frac(r.cpus, total.cpus).max(frac(r.mem as f64, total.mem as f64)).max(frac(r.disk as f64, total.disk as f64))
}

/// Whether every port of `p` lies in `ranges` (in any order, overlapping or not).
/// Steps from range to range, never port by port: an offer's ranges span thousands
/// of ports, and the allocator checks every offer of every node in every round.
pub fn contains(ranges: &[PortRange], p: &PortRange) -> bool {
    if p.begin > p.end {
        return true;
    }
    // u32: the port after 65535 is past the end, not 0.
    let mut from = u32::from(p.begin);
    // Each step either ends or moves `from` past the end of another range.
    for _ in 0..=ranges.len() {
        let Some(end) = ranges
            .iter()
            .filter(|r| u32::from(r.begin) <= from && from <= u32::from(r.end))
            .map(|r| u32::from(r.end))
            .max()
        else {
            return false;
        };
        if end >= u32::from(p.end) {
            return true;
        }
        from = end + 1;
    }
    false
}

/// `ranges` without the ports of `taken`, as sorted, merged ranges. Walks the
/// ranges on both sides, never the ports in them: an offer taken whole spans
/// thousands.
pub fn minus_ranges(ranges: &[PortRange], taken: &[PortRange]) -> Vec<PortRange> {
    let taken = merged(taken);
    let mut out: Vec<PortRange> = Vec::new();
    for r in merged(ranges) {
        // u32: the next free port after 65535 is past the end, not 0.
        let mut start = u32::from(r.begin);
        for t in taken.iter().filter(|t| t.end >= r.begin && t.begin <= r.end) {
            if u32::from(t.begin) > start {
                push_range(&mut out, start as u16, t.begin - 1);
            }
            start = start.max(u32::from(t.end) + 1);
        }
        if start <= u32::from(r.end) {
            push_range(&mut out, start as u16, r.end);
        }
    }
    out
}

/// `ranges` sorted and merged; empty ones (begin past end) left out.
fn merged(ranges: &[PortRange]) -> Vec<PortRange> {
    let mut sorted: Vec<PortRange> = ranges.iter().filter(|r| r.begin <= r.end).cloned().collect();
    sorted.sort_by_key(|r| r.begin);
    let mut out = Vec::with_capacity(sorted.len());
    for r in sorted {
        push_range(&mut out, r.begin, r.end);
    }
    out
}

/// Single ports as sorted, merged ranges.
pub fn port_ranges(ports: impl IntoIterator<Item = u16>) -> Vec<PortRange> {
    let set: BTreeSet<u16> = ports.into_iter().collect();
    let mut out = Vec::new();
    for p in set {
        push_range(&mut out, p, p);
    }
    out
}

/// `ranges` as a person writes them, e.g. `31000-32000,8080`; `none` when empty.
pub fn show_ports(ranges: &[PortRange]) -> String {
    if ranges.is_empty() {
        return "none".into();
    }
    ranges
        .iter()
        .map(|r| if r.begin == r.end { r.begin.to_string() } else { format!("{}-{}", r.begin, r.end) })
        .collect::<Vec<_>>()
        .join(",")
}

fn push_range(out: &mut Vec<PortRange>, begin: u16, end: u16) {
    match out.last_mut() {
        Some(last) if u32::from(last.end) + 1 >= u32::from(begin) => last.end = last.end.max(end),
        _ => out.push(PortRange { begin, end }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cpus: f64, mem: u64) -> Resources {
        Resources { cpus, mem, disk: 0 }
    }

    #[test]
    fn a_role_uses_its_reservation_first_and_others_never_see_it() {
        let reservations = BTreeMap::from([("ads".to_string(), r(2.0, 1024))]);
        let allocated = BTreeMap::from([("ads".to_string(), r(3.0, 512))]);
        let f = Free::new(&r(8.0, 4096), &reservations, &[], &allocated, &BTreeSet::new());
        // ads took its 2 reserved cpus and 1 of the shared 6.
        assert_eq!(f.free_for("*"), r(5.0, 3072));
        assert_eq!(f.free_for("ads"), r(5.0, 3584));
    }

    #[test]
    fn take_refuses_what_is_not_free_and_takes_nothing_then() {
        let ranges = [PortRange { begin: 100, end: 110 }];
        let mut f = Free::new(&r(1.0, 100), &BTreeMap::new(), &ranges, &BTreeMap::new(), &BTreeSet::from([105]));
        assert!(!f.take("*", &r(0.5, 10), &port_ranges([105])), "a used port");
        assert!(!f.take("*", &r(1.5, 10), &[]), "too many cpus");
        assert_eq!(f.shared, r(1.0, 100));
        assert!(f.take("*", &r(0.5, 10), &port_ranges([100, 101])));
        assert_eq!(f.ports, vec![PortRange { begin: 102, end: 104 }, PortRange { begin: 106, end: 110 }]);
        assert_eq!(f.shared, r(0.5, 90));
    }

    fn ports_of(ranges: &[PortRange]) -> BTreeSet<u16> {
        ranges.iter().flat_map(|r| r.begin..=r.end).collect()
    }

    #[test]
    fn ranges_reach_the_last_port_and_cover_across_their_joins() {
        let top = [PortRange { begin: 65_530, end: 65_535 }];
        assert!(contains(&top, &PortRange { begin: 65_535, end: 65_535 }));
        assert_eq!(
            minus_ranges(&top, &[PortRange { begin: 65_535, end: 65_535 }]),
            [PortRange { begin: 65_530, end: 65_534 }]
        );
        let joined = [PortRange { begin: 20, end: 30 }, PortRange { begin: 10, end: 19 }];
        assert!(contains(&joined, &PortRange { begin: 12, end: 28 }), "two ranges end to end");
        assert!(!contains(&joined, &PortRange { begin: 12, end: 31 }));
        assert!(!contains(&[], &PortRange { begin: 1, end: 1 }));
    }

    proptest::proptest! {
        #[test]
        fn range_arithmetic_agrees_with_sets_of_ports(
            ranges in proptest::collection::vec((65_400u16.., 0u16..40), 0..5),
            taken in proptest::collection::vec((65_400u16.., 0u16..20), 0..5),
            asked in (65_400u16.., 0u16..40),
        ) {
            let to_ranges = |v: Vec<(u16, u16)>| -> Vec<PortRange> {
                v.into_iter().map(|(b, len)| PortRange { begin: b, end: b.saturating_add(len) }).collect()
            };
            let (ranges, taken) = (to_ranges(ranges), to_ranges(taken));
            let have = ports_of(&ranges);
            let out = minus_ranges(&ranges, &taken);
            let want: BTreeSet<u16> = have.difference(&ports_of(&taken)).copied().collect();
            proptest::prop_assert_eq!(ports_of(&out), want);
            for w in out.windows(2) {
                proptest::prop_assert!(u32::from(w[0].end) + 1 < u32::from(w[1].begin), "{:?}", out);
            }
            let asked = PortRange { begin: asked.0, end: asked.0.saturating_add(asked.1) };
            let all_in = (asked.begin..=asked.end).all(|p| have.contains(&p));
            proptest::prop_assert_eq!(contains(&ranges, &asked), all_in);
        }

        #[test]
        fn minus_ranges_leaves_exactly_the_single_ports_not_taken(
            ranges in proptest::collection::vec((65_400u16.., 0u16..40), 0..4),
            taken in proptest::collection::vec(65_400u16.., 0..30),
        ) {
            let ranges: Vec<PortRange> =
                ranges.into_iter().map(|(b, len)| PortRange { begin: b, end: b.saturating_add(len) }).collect();
            let out = minus_ranges(&ranges, &port_ranges(taken.iter().copied()));
            let want: BTreeSet<u16> = ranges
                .iter()
                .flat_map(|r| r.begin..=r.end)
                .filter(|p| !taken.contains(p))
                .collect();
            let got: BTreeSet<u16> = out.iter().flat_map(|r| r.begin..=r.end).collect();
            proptest::prop_assert_eq!(got, want);
            // Sorted and merged: each range starts past the end of the one before, with a gap.
            for w in out.windows(2) {
                proptest::prop_assert!(u32::from(w[0].end) + 1 < u32::from(w[1].begin), "{:?}", out);
            }
        }
    }
}
