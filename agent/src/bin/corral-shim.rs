//! The shim alone, for tests of the agent crate (the `corral` binary is the shim in
//! production): `corral-shim [__shim] <task-dir>`.

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == corral_agent::runtime::SHIM_ARG) {
        args.remove(0);
    }
    std::process::ExitCode::from(corral_agent::runtime::shim_main(&args))
}
