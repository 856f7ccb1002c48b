//! The shim alone, for this crate's tests (the `corral-shim` binary of the root
//! package is the one the agent runs): `test-shim [__shim] <task-dir>`.

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == corral_agent::runtime::SHIM_ARG) {
        args.remove(0);
    }
    std::process::ExitCode::from(corral_agent::runtime::shim_main(&args))
}
