//! `corral bench store` runs end to end (against a real etcd) and prints every figure
//! the store issue asks for. Tiny sizes: this checks the benchmark works, it measures
//! nothing and asserts no timing.

use std::process::Command;

#[test]
fn bench_store_runs_and_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args([
            "bench",
            "store",
            "--seconds",
            "1",
            "--objects",
            "300",
            "--watchers",
            "5",
            "--clients",
            "1,4",
            "--rate",
            "50",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run corral bench store");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
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
        "events to one watcher",
        "durable create throughput corral/etcd at   4 clients",
    ] {
        assert!(stdout.contains(figure), "{figure:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("errors)"), "operations failed during the bench:\n{stdout}");
}

/// `corral bench agent` runs end to end (real runc, a real agent process) and prints
/// every figure the agent issue asks for.
#[test]
fn bench_agent_runs_and_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["bench", "agent", "--tasks", "3", "--native", "2"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run corral bench agent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
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
