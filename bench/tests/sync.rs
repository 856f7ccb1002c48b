//! `corral-bench sync` runs end to end at a tiny size — a real bare git repository of
//! 20 manifests, a `corral server` it starts itself, one round of each measurement —
//! and prints every figure and the summary line. It checks the benchmark works; it
//! measures nothing and asserts no timing.
//!
//! The `corral` executable under test is the one cargo builds beside `corral-bench`
//! (`cargo test --workspace` builds both).

mod support;

const FIGURES: &[&str] = &[
    "create → status applied (Ready True)",
    "trigger → lastHandledRequest",
    "object writes over the 1 resyncs",
    "3. commit → cluster by interval (1 s)",
    "4. commit → cluster by webhook",
    "push end → change seen by a watch",
    "peak RSS",
];

#[test]
fn bench_sync_measures_a_first_sync_a_resync_and_both_ways_a_commit_arrives() {
    let stdout = support::bench(&["sync", "--manifests", "20", "--rounds", "1", "--interval", "1", "--timeout", "120"]);
    for figure in FIGURES {
        assert!(stdout.contains(figure), "{figure:?} missing from:\n{stdout}");
    }
    let summary = stdout.lines().find(|l| l.starts_with("SUMMARY sync ")).expect("a SUMMARY line");
    for field in
        ["manifests=20", "first_sync_s=", "resync_p50_s=", "interval_p50_s=", "webhook_p50_s=", "peak_rss_mib="]
    {
        assert!(summary.contains(field), "{field:?} missing from {summary}");
    }
}
