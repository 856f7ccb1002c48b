//! The `corral` command line: running the system (`up`, `server`, `controllers`,
//! `agent`) and talking to it (`apply`, `get`, `describe`, `delete`, `diff`, `explain`,
//! `api-resources`, `logs`, `image`, `scale`, `restart`, `rollout`, `job`), and `convert`.
//!
//! Exit codes: 0 success, 1 error; `diff` exits 1 when there are differences and 2
//! on error. Errors go to stderr as `error: ...`.

/// `println!` that returns the write error instead of panicking, so that a closed
/// pipe (`corral get cm | head -1`) ends the command quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` that returns the write error instead of panicking; see `outln!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

pub mod args;
pub mod manifest;
pub mod output;

mod admin;
mod agent;
mod apply;
mod auth;
mod bench;
mod connection;
mod controllers;
mod convert;
mod delete;
mod describe;
mod diff;
mod explain;
mod follow;
mod get;
mod image;
mod job;
mod logs;
mod rollout;
mod serve;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use corral_api::KindInfo;
use tokio::sync::OnceCell;

use args::{Cli, Command};
use corral_client::Client;

/// Entry point of the `corral` binary.
pub fn main() -> ExitCode {
    // The per-task shim is this binary too; it must not start a runtime or parse
    // the CLI, so it is dispatched before anything else.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == corral_agent::runtime::SHIM_ARG) {
        return ExitCode::from(corral_agent::runtime::shim_main(&argv[2..]));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and are not failures.
            let failed = e.use_stderr();
            let _ = e.print();
            return if failed { ExitCode::from(usage_error_code()) } else { ExitCode::SUCCESS };
        }
    };
    let serving =
        matches!(cli.command, Command::Up(_) | Command::Server(_) | Command::Agent(_) | Command::Controllers(_));
    corral_telemetry::logging::init(if serving { "info" } else { "warn" });
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let is_diff = matches!(cli.command, Command::Diff(_));
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(if is_diff { 2 } else { 1 })
        }
    }
}

/// `diff` reserves 1 for "there are differences", so its errors, usage errors
/// included, exit 2.
fn usage_error_code() -> u8 {
    if std::env::args_os().skip(1).any(|a| a == "diff") { 2 } else { 1 }
}

/// Whether stdout was closed by its reader: not worth an error message.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|c| c.downcast_ref::<std::io::Error>()).any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Prints an error chain as one `error: ...` line. Client errors already carry their
/// root cause in their message, so the chain stops there.
pub(crate) fn report(e: &anyhow::Error) {
    eprintln!("error: {}", error_text(e));
}

pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        parts.push(cause.to_string());
        if cause.downcast_ref::<corral_client::Error>().is_some() {
            break;
        }
    }
    parts.join(": ")
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let conn = connection::resolve(&cli)?;
    let ctx = || Ctx::new(&conn);
    match cli.command {
        Command::Up(a) => serve::run(a, serve::Role::Everything, cli.kubeconfig.clone()).await.map(|()| 0),
        Command::Server(a) => serve::run(a, serve::Role::ControlPlane, None).await.map(|()| 0),
        Command::Controllers(a) => controllers::run(&conn, a).await.map(|()| 0),
        Command::Apply(a) => apply::run(&ctx()?, a).await,
        Command::Get(a) => get::run(&ctx()?, a).await,
        Command::Describe(a) => describe::run(&ctx()?, a).await,
        Command::Delete(a) => delete::run(&ctx()?, a).await,
        Command::Diff(a) => diff::run(&ctx()?, a).await,
        Command::Explain(a) => explain::run(&ctx()?, a).await,
        Command::ApiResources => get::api_resources(&ctx()?).await,
        Command::Agent(a) => agent::run(&conn, a).await.map(|()| 0),
        Command::Image(c) => image::run(c, &conn).await,
        Command::Admin(c) => admin::run(&conn, c).await,
        Command::Logs(a) => logs::run(&ctx()?, a).await,
        Command::Token(c) => auth::token(&ctx()?, c).await,
        Command::Auth(c) => auth::auth(&ctx()?, c).await,
        Command::Convert(c) => convert::run(c),
        Command::Scale(a) => rollout::scale(&ctx()?, a).await,
        Command::Restart(a) => rollout::restart(&ctx()?, a).await,
        Command::Rollout(c) => rollout::run(&ctx()?, c).await,
        Command::Job(c) => job::run(&ctx()?, c).await,
        Command::Bench { args } => Ok(bench::run(&args)),
    }
}

/// What every client command needs: the client and the served kinds, fetched once.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    kinds: OnceCell<Vec<Arc<KindInfo>>>,
}

impl Ctx {
    fn new(conn: &corral_client::Config) -> anyhow::Result<Self> {
        Ok(Ctx { client: Client::from_config(conn)?, kinds: OnceCell::new() })
    }

    /// Every served kind (`GET /kinds`), fetched on first use.
    pub(crate) async fn kinds(&self) -> anyhow::Result<&[Arc<KindInfo>]> {
        let kinds = self.kinds.get_or_try_init(|| self.client.kinds()).await?;
        Ok(kinds)
    }

    /// The kind a user means: plural, singular, short name or Kind, any case.
    pub(crate) async fn resolve(&self, name: &str) -> anyhow::Result<KindInfo> {
        let kinds = self.kinds().await?;
        kinds.iter().find(|k| k.matches_name(name)).map(|k| (**k).clone()).ok_or_else(|| {
            anyhow::anyhow!(
                "the server does not serve a kind called {name:?}; run `corral api-resources` to list the kinds it serves"
            )
        })
    }

    /// The kind of a manifest: exact `apiVersion` and `kind`.
    pub(crate) async fn by_kind(&self, api_version: &str, kind: &str) -> anyhow::Result<Option<KindInfo>> {
        let kinds = self.kinds().await?;
        Ok(kinds.iter().find(|k| k.api_version() == api_version && k.kind == kind).map(|k| (**k).clone()))
    }
}

/// The `NAME` of `NAME` or `KIND/NAME` as a user names an object of kind `K`
/// (`word` is how errors name the kind).
pub(crate) fn name_of<'a, K: corral_api::Resource>(target: &'a str, word: &str) -> anyhow::Result<&'a str> {
    let name = match target.split_once('/') {
        None => target,
        Some((kind, name)) if K::kind_info().matches_name(kind) => name,
        Some(_) => anyhow::bail!("{target:?} is not a {word}: give it as NAME or {word}/NAME"),
    };
    if name.is_empty() || name.contains('/') {
        anyhow::bail!("{target:?}: give the {word} as NAME or {word}/NAME");
    }
    Ok(name)
}

/// Lowercase kind, as used in `kind/name`.
pub(crate) fn kind_word(kind: &KindInfo) -> String {
    kind.kind.to_ascii_lowercase()
}
