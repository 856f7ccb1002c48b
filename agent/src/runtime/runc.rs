//! Blocking calls to runc, shared by the shim and the agent (via `spawn_blocking`).

use std::path::Path;
use std::process::{Command, Stdio};

use super::checkpoint::LaunchRecord;

/// A runc command for the task's state root.
pub(crate) fn command(rec: &LaunchRecord) -> Command {
    let mut c = Command::new(&rec.runc);
    c.arg("--root").arg(&rec.runc_root).stdin(Stdio::null());
    c
}

/// runc's view of a container: `created`, `running`, `paused`, `stopped`, or `None`
/// when runc does not know it.
pub(crate) fn state(rec: &LaunchRecord) -> Option<String> {
    let out = command(rec).arg("state").arg(&rec.spec.uid).stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["status"].as_str().map(str::to_owned)
}

/// `runc kill [--all] <uid> <signal>`; errors (the container is gone) are ignored.
pub(crate) fn kill(rec: &LaunchRecord, signal: &str, all: bool) {
    let mut c = command(rec);
    c.arg("kill");
    if all {
        c.arg("--all");
    }
    let _ = c.arg(&rec.spec.uid).arg(signal).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// `runc delete --force <uid>`, which also kills what runs and removes the cgroups.
pub(crate) fn delete(rec: &LaunchRecord) {
    let _ = command(rec)
        .args(["delete", "--force"])
        .arg(&rec.spec.uid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last error message runc wrote to its JSON log file.
pub(crate) fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["level"] == "error" || v["level"] == "fatal").then(|| v["msg"].as_str().map(str::to_owned)).flatten()
    })
}
