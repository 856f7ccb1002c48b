//! The `corral` command line: running the system (`up`, `server`, `controllers`,
//! `agent`) and talking to it (`apply`, `get`, `describe`, `delete`, `diff`, `explain`,
//! `edit`, `api-resources`, `logs`, `exec`, `image`, `scale`, `restart`, `rollout`, `job`, `version`, `dns`), and
//! `convert`.
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
pub use corral_client::manifests as manifest;
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
mod dns;
mod edit;
mod exec;
mod explain;
mod follow;
mod get;
mod image;
mod job;
mod logs;
mod rollout;
mod serve;
mod sync;
mod version;

use std::process::ExitCode;
use std::sync::Arc;

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
    let cli = match parse() {
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
    // hickory's server logs every TCP query at info: the cluster DNS's own lines say
    // what matters.
    corral_telemetry::logging::init(if serving { "info,hickory_server=warn,hickory_proto=warn" } else { "warn" });
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

/// The global connection options that each command which talks to no server hides
/// from its help (they are accepted, and ignored, so that `CORRAL_SERVER` in the
/// environment does not break them), by subcommand path.
const UNUSED_CONNECTION_OPTIONS: &[(&[&str], &[&str])] = &[
    // `up` writes --kubeconfig; it serves, it does not connect.
    (&["up"], &["server", "token", "certificate_authority"]),
    (&["server"], &["server", "token", "certificate_authority", "kubeconfig"]),
    (&["convert"], &["server", "token", "certificate_authority", "kubeconfig"]),
    // These act on the node's image store directly.
    (&["image", "import"], &["server", "token", "certificate_authority", "kubeconfig"]),
    (&["image", "ls"], &["server", "token", "certificate_authority", "kubeconfig"]),
    (&["image", "rm"], &["server", "token", "certificate_authority", "kubeconfig"]),
    // Offline: it writes a new store.
    (&["admin", "snapshot", "restore"], &["server", "token", "certificate_authority", "kubeconfig"]),
];

/// The command line, with the connection options shown only on commands that use them.
fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    // Global options reach the subcommands when the command is built: hide them after.
    cmd.build();
    for (path, unused) in UNUSED_CONNECTION_OPTIONS {
        cmd = hide_in(cmd, path, unused);
    }
    let matches = cmd.try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

/// `cmd` with the arguments `unused` hidden in its subcommand at `path`.
fn hide_in(cmd: clap::Command, path: &[&str], unused: &'static [&'static str]) -> clap::Command {
    let Some((first, rest)) = path.split_first() else {
        // `mut_args` keeps the arguments in place, which a built command's index of
        // them needs (`mut_arg` moves the argument to the end).
        return cmd.mut_args(|a| {
            let hide = unused.contains(&a.get_id().as_str()) || a.is_hide_set();
            a.hide(hide)
        });
    };
    cmd.mut_subcommand(*first, |c| hide_in(c, rest, unused))
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
    // Commands that connect to no server must not fail on a configuration file they
    // do not read (`up --kubeconfig FILE` writes FILE).
    let connects = !matches!(
        cli.command,
        Command::Up(_)
            | Command::Server(_)
            | Command::Convert(_)
            | Command::Bench { .. }
            | Command::Admin(args::AdminCommand::Migrate { .. })
    );
    let conn = if connects { connection::resolve(&cli)? } else { corral_client::Config::default() };
    let ctx = || Ctx::new(&conn);
    match cli.command {
        Command::Up(a) => serve::run(a, serve::Role::Everything, cli.kubeconfig.clone()).await.map(|()| 0),
        Command::Server(a) => serve::run(a, serve::Role::ControlPlane, None).await.map(|()| 0),
        Command::Controllers(a) => controllers::run(&conn, a).await.map(|()| 0),
        Command::Apply(a) => apply::run(&ctx()?, a).await,
        Command::Get(a) => get::run(&ctx()?, a).await,
        Command::Describe(a) => describe::run(&ctx()?, a).await,
        Command::Delete(a) => delete::run(&ctx()?, a).await,
        Command::Edit(a) => edit::run(&ctx()?, a).await,
        Command::Diff(a) => diff::run(&ctx()?, a).await,
        Command::Explain(a) => explain::run(&ctx()?, a).await,
        Command::ApiResources => get::api_resources(&ctx()?).await,
        Command::Agent(a) => agent::run(&conn, a).await.map(|()| 0),
        Command::Image(c) => image::run(c, &conn).await,
        Command::Admin(c) => admin::run(&conn, c).await,
        Command::Logs(a) => logs::run(&ctx()?, a).await,
        Command::Exec(a) => exec::run(&ctx()?, a).await,
        Command::Token(c) => auth::token(&ctx()?, c).await,
        Command::Auth(c) => auth::auth(&ctx()?, c).await,
        Command::Convert(c) => convert::run(c),
        Command::Scale(a) => rollout::scale(&ctx()?, a).await,
        Command::Restart(a) => rollout::restart(&ctx()?, a).await,
        Command::Rollout(c) => rollout::run(&ctx()?, c).await,
        Command::Job(c) => job::run(&ctx()?, c).await,
        Command::Bench { args } => Ok(bench::run(&args)),
        Command::Version(a) => version::run(&conn, a).await,
        Command::Dns(args::DnsCommand::Records(a)) => dns::records(&ctx()?.client, a).await,
        Command::Sync(a) => sync::run(&ctx()?, a).await,
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
            let hint = match closest_kind(kinds, name) {
                Some(k) => format!("did you mean {:?}? ", k.plural),
                None => String::new(),
            };
            anyhow::anyhow!(
                "the server does not serve a kind called {name:?}; {hint}run `corral api-resources` to list the kinds it serves"
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

/// The kind a mistyped `name` most likely meant: one of its names (plural, singular,
/// Kind, short names) within a small edit distance, or starting with `name`, as clap
/// suggests subcommands.
pub(crate) fn closest_kind<'a>(kinds: &'a [Arc<KindInfo>], name: &str) -> Option<&'a KindInfo> {
    let name = name.to_ascii_lowercase();
    // Short words are all within two edits of each other: allow one edit for them.
    let allowed = if name.chars().count() < 5 { 1 } else { 2 };
    kinds
        .iter()
        .filter_map(|k| {
            let names = [k.plural.clone(), k.singular.clone(), k.kind.to_ascii_lowercase()];
            let best = names
                .iter()
                .chain(k.short_names.iter())
                .map(|n| if name.len() >= 3 && n.starts_with(&name) { 0 } else { edit_distance(&name, n) })
                .min()?;
            (best <= allowed).then_some((best, k))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.plural.cmp(&b.1.plural)))
        .map(|(_, k)| &**k)
}

/// Levenshtein distance, with a swap of two neighbouring letters counting as one
/// edit (the commonest typo).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_a_swap_as_one_edit() {
        assert_eq!(edit_distance("task", "taks"), 1);
        assert_eq!(edit_distance("configmaps", "confgmaps"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("service", "service"), 0);
    }
}
