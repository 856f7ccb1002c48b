//! Judging `/metrics` with Prometheus' own `promtool` (Debian's `prometheus` package,
//! installed by scripts/setup.sh).

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on `text`; panics with its report if it objects.
pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/setup.sh");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    // Strict: parse errors and lint findings (naming, missing HELP) both fail.
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool rejected /metrics:\n{report}\n---\n{text}");
}
