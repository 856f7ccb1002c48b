//! `corral bench …`: runs `corral-bench`, the benchmarks' own binary (kept out of
//! `corral` so that it stays lean), found beside this one.

use std::ffi::OsString;
use std::process::Command;

/// Runs `corral-bench ARGS`; its exit code is ours.
pub(crate) fn run(args: &[OsString]) -> u8 {
    let bench = std::env::current_exe().map(|me| me.with_file_name("corral-bench"));
    let bench = match bench {
        Ok(b) if b.is_file() => b,
        _ => {
            eprintln!(
                "error: corral-bench is not built beside corral; run `make bench` (or `cargo build --release -p corral-bench`)"
            );
            return 1;
        }
    };
    match Command::new(&bench).args(args).status() {
        Ok(status) => status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1),
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", bench.display());
            1
        }
    }
}
