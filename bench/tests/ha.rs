//! `corral-bench ha` runs end to end at a tiny size — a 3-member etcd cluster on
//! loopback, two `corral server`s on it, a second of each throughput run, one round of
//! each failover — and prints every figure and the summary. It checks the benchmark
//! works; it measures nothing and asserts no timing. It takes about a minute: the
//! controller-manager failover waits out a 15 s lease.
//!
//! The `corral` executable under test is the one cargo builds beside `corral-bench`
//! (`cargo test --workspace` builds both); etcd is Debian's (scripts/setup.sh).

mod support;

const FIGURES: &[&str] = &[
    "round 1: etcd put, 2 clients",
    "round 1: corral create, 2 clients",
    "round 1: corral create, 4 clients",
    "corral/etcd throughput, 2 clients",
    "corral/etcd throughput, 4 clients",
    "etcd leader killed:",
    "API server killed:",
    "round 1: write unavailability",
    "write unavailability ",
    "write gap, surviving server's clients",
    "writes errored (outcome unknown)",
    "acknowledged writes missing",
    "clients that did not recover",
    "round 1: controller-manager failover",
    "controller-manager failover, median",
    "\nsummary\n",
    "corral/etcd write throughput at   4 clients",
    "write unavailability, etcd leader killed:",
    "write unavailability, API server killed:",
    "controller-manager failover: median",
];

#[test]
fn bench_ha_prints_every_figure() {
    let stdout = support::bench(&[
        "ha",
        "--seconds",
        "1",
        "--rounds",
        "1",
        "--clients",
        "2,4",
        "--writers",
        "4",
        "--failovers",
        "1",
        "--timeout",
        "120",
    ]);
    for figure in FIGURES {
        assert!(stdout.contains(figure), "{figure:?} missing from:\n{stdout}");
    }
}
