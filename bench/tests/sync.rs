//! `corral-bench sync` runs end to end at a tiny size — a real bare git repository of
//! 20 manifests, a `corral server` it starts itself, one round of each measurement —
//! and prints every figure and the summary line. It checks the benchmark works; it
//! measures nothing and asserts no timing.
//!
//! The `corral` executable under test is the one cargo builds beside `corral-bench`
//! (`cargo test --workspace` builds both).

use std::path::PathBuf;
use std::process::Command;

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
    let corral = PathBuf::from(env!("CARGO_BIN_EXE_corral-bench")).with_file_name("corral");
    assert!(
        corral.is_file(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        corral.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_corral-bench"))
        .args(["sync", "--manifests", "20", "--rounds", "1", "--interval", "1", "--timeout", "120"])
        .env("CORRAL_BIN", &corral)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run corral-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
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
