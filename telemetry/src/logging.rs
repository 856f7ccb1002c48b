//! Structured logs through `tracing`, filtered by `RUST_LOG`.

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` or, when it is unset or
/// invalid, by `default` (e.g. `info`). Colours only for a person at a terminal.
/// Calling it again does nothing.
pub fn init(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}
