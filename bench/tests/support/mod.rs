//! Running the real `corral-bench` binary from a test, with the `corral` cargo built
//! beside it (`cargo test --workspace` builds both) as the executable under test.

use std::path::PathBuf;
use std::process::Command;

/// Runs `corral-bench ARGS`; whether it succeeded, its stdout and its stderr.
pub fn run(args: &[&str]) -> (bool, String, String) {
    let corral = PathBuf::from(env!("CARGO_BIN_EXE_corral-bench")).with_file_name("corral");
    assert!(
        corral.is_file(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        corral.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_corral-bench"))
        .args(args)
        .env("CORRAL_BIN", &corral)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run corral-bench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `corral-bench ARGS`, checks it succeeded and returns what it printed.
#[allow(dead_code)] // not every test file uses both
pub fn bench(args: &[&str]) -> String {
    let (ok, stdout, stderr) = run(args);
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    stdout
}
