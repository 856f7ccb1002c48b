//! `corral-bench services` runs end to end at a tiny size — a `corral server` it starts
//! itself, 50 hollow nodes, 5 services of 10 instances, a few small services — and
//! prints every figure and the summary line. It checks the benchmark works; it
//! measures nothing and asserts no timing.
//!
//! The `corral` executable under test is the one cargo builds beside `corral-bench`
//! (`cargo test --workspace` builds both).

mod support;

use support::run as bench;

const FIGURES: &[&str] = &[
    "hollow nodes Ready",
    "tasks RUNNING (on hollow nodes)",
    "small service (3) apply → task placed",
    "small service (3) apply → task RUNNING",
    "control plane peak RSS",
    "control plane CPU (utime+stime)",
    "hollow nodes' CPU from the load on",
];

#[test]
fn bench_services_places_and_runs_every_task() {
    let (ok, stdout, stderr) = bench(&[
        "services",
        "--nodes",
        "50",
        "--services",
        "5",
        "--instances",
        "10",
        "--probes",
        "3",
        "--timeout",
        "120",
    ]);
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    for figure in FIGURES.iter().chain(&["tasks placed (spec.nodeName set)", "placements/s"]) {
        assert!(stdout.contains(figure), "{figure:?} missing from:\n{stdout}");
    }
    assert!(stdout.contains("50/50 in"), "not every task placed and running:\n{stdout}");
    let summary = stdout.lines().find(|l| l.starts_with("summary: ")).expect("a summary line");
    assert!(summary.contains("mode=services") && summary.contains("result=ok"), "{summary}");
}

/// The same run with the tasks created bound (no scheduler): it needs nothing but the
/// API server and the hollow nodes, so it runs today.
#[test]
fn bench_services_bound_runs_every_task() {
    let (ok, stdout, stderr) = bench(&[
        "services",
        "--bound",
        "--nodes",
        "50",
        "--services",
        "5",
        "--instances",
        "10",
        "--probes",
        "3",
        "--timeout",
        "120",
    ]);
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    for figure in FIGURES.iter().chain(&["tasks bound (created with spec.nodeName)"]) {
        assert!(stdout.contains(figure), "{figure:?} missing from:\n{stdout}");
    }
    let summary = stdout.lines().find(|l| l.starts_with("summary: ")).expect("a summary line");
    assert!(
        summary.contains("mode=bound") && summary.contains("running=50 ") && summary.contains("result=ok"),
        "{summary}"
    );
}

/// Past its timeout the run says what it reached and fails (a timeout of 0: the
/// first wait is already too late, whatever the machine's speed).
#[test]
fn bench_services_stops_at_its_timeout_and_says_what_it_reached() {
    let (ok, stdout, stderr) =
        bench(&["services", "--bound", "--nodes", "50", "--services", "5", "--instances", "10", "--timeout", "0"]);
    assert!(!ok, "a run with no time should fail:\n{stdout}");
    assert!(stderr.contains("timed out") && stderr.contains("nodes Ready"), "{stderr}");
    assert!(stdout.contains("hollow nodes Ready"), "the table is printed even so:\n{stdout}");
    let summary = stdout.lines().find(|l| l.starts_with("summary: ")).expect("a summary line even so");
    assert!(summary.contains("result=incomplete"), "{summary}");
}
