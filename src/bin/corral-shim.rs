//! `corral-shim <task-dir>`: the per-task supervisor the agent starts for each task.
//! The same code runs as `corral __shim`, but this small binary starts faster and
//! holds far less memory for as long as its task lives (one per running task), so the
//! agent uses it when it sits beside `corral`.

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == corral_agent::runtime::SHIM_ARG) {
        args.remove(0);
    }
    std::process::ExitCode::from(corral_agent::runtime::shim_main(&args))
}
