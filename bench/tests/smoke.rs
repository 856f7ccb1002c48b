//! `corral-bench store` runs end to end (against a real etcd) and prints every figure
//! the store issue asks for; `corral-bench agent` likewise against real runc. Tiny
//! sizes: this checks the benchmarks work, it measures nothing and asserts no timing.
//!
//! The `corral` executable under test is the one cargo builds beside `corral-bench`
//! (`cargo test --workspace` builds both).

mod support;

use std::path::PathBuf;

use support::bench;

#[test]
fn bench_store_runs_and_reports_every_figure() {
    let stdout =
        bench(&["store", "--seconds", "1", "--objects", "300", "--watchers", "5", "--clients", "1,4", "--rate", "50"]);
    for figure in [
        "corral create, 4 clients (HTTP/2)",
        "etcd put, 4 clients",
        "corral/etcd, 4 clients",
        "corral create at 50/s",
        "etcd put at 50/s",
        "corral get, 16 clients",
        "corral list of 1000 objects",
        "1 watchers",
        "5 watchers",
        "corral server RSS",
        "corral server CPU per create",
        "events to one watcher",
        "durable create throughput corral/etcd at   4 clients",
    ] {
        assert!(stdout.contains(figure), "{figure:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("errors)"), "operations failed during the bench:\n{stdout}");
}

/// `corral bench store --baseline` compares two builds (here the same one twice) and
/// prints a row per workload with a ratio and each side's CPU per operation.
#[test]
fn bench_store_baseline_compares_two_builds() {
    let corral = PathBuf::from(env!("CARGO_BIN_EXE_corral-bench")).with_file_name("corral");
    let corral = corral.to_str().expect("a UTF-8 path");
    let stdout = bench(&["store", "--baseline", corral, "--rounds", "1"]);
    for workload in ["create", "update", "get"] {
        let row = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(workload))
            .unwrap_or_else(|| panic!("no {workload} row in:\n{stdout}"));
        assert!(row.contains('(') && row.matches("µs").count() == 2, "incomplete {workload} row: {row}");
    }
}

/// `corral bench agent` runs end to end (real runc, a real agent process) and prints
/// every figure the agent issue asks for.
#[test]
fn bench_agent_runs_and_reports_every_figure() {
    let stdout = bench(&["agent", "--tasks", "3", "--native", "2"]);
    for figure in [
        "bare `runc run --detach`",
        "corral task, binding → RUNNING (runc)",
        "bare runc; target",
        "corral task, binding → RUNNING (native)",
        "agent with 3 running tasks",
        "3 shims (one per task)",
    ] {
        assert!(stdout.contains(figure), "missing {figure:?} in:\n{stdout}");
    }
}
