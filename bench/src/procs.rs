//! Processes under test: a `corral server` and an `etcd`, each on its own loopback
//! port and temp data dir, killed when dropped.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// The administrator's token of the last `corral server` started (from the
/// `admin.conf` it writes); `None` for a server that writes none (an older build, run
/// through `CORRAL_BIN`, for a side-by-side figure).
static TOKEN: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

/// Headers every bench client sends: the administrator's token, when there is one.
pub fn auth_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = TOKEN.read().ok().and_then(|t| t.clone())
        && let Ok(v) = format!("Bearer {t}").parse()
    {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    headers
}

/// The administrator's token of the last server started, if any.
pub fn admin_token() -> Option<String> {
    TOKEN.read().ok().and_then(|t| t.clone())
}

/// A child process killed on drop.
pub struct Proc {
    child: Child,
    /// Where it serves clients.
    pub addr: SocketAddr,
}

impl Proc {
    /// Resident set size of the process, in bytes, from `/proc`.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(&self.child.id().to_string())
    }

    /// CPU time the process has used so far (user and system), from `/proc`: what a
    /// workload costs it, whatever else the machine is doing.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time_of(&self.child.id().to_string())
    }

    /// How the process ended, if it has: a long benchmark checks this so that a
    /// server that died is reported as such, not as a run of failed requests.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of process `pid` (a number, or `self`), in bytes, from `/proc`.
pub fn rss_of(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kb * 1024)
}

/// The median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// CPU time this process has used so far (user and system): what the load
/// generators themselves cost, on a machine they share with the server.
pub fn own_cpu_time() -> anyhow::Result<Duration> {
    cpu_time_of("self")
}

/// CPU time of process `pid` (a number or `self`), from `/proc/<pid>/stat`.
pub fn cpu_time_of(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (in parentheses, which may hold spaces):
    // utime and stime are the 12th and 13th of them, in clock ticks.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("no command name in /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).context("short /proc stat")?.iter().filter_map(|f| f.parse::<u64>().ok()).sum();
    // SAFETY: sysconf(3) reads a configuration value; no memory is involved.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|h| *h > 0).unwrap_or(100);
    Ok(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `corral server` on a fresh data dir.
pub async fn start_corral(data_dir: &Path) -> anyhow::Result<Proc> {
    start_corral_with(data_dir, &[]).await
}

/// Starts `corral server` on a fresh data dir, passing it `extra` arguments after the
/// listen address and data dir (e.g. `--compaction-retain 1000`).
pub async fn start_corral_with(data_dir: &Path, extra: &[String]) -> anyhow::Result<Proc> {
    start_corral_exe(&corral_exe()?, data_dir, extra).await
}

/// Starts `exe server` (another build of corral) on a fresh data dir, with `extra`
/// arguments.
pub async fn start_corral_exe(exe: &Path, data_dir: &Path, extra: &[String]) -> anyhow::Result<Proc> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let listen = addr.to_string();
    let own: [&OsStr; 5] =
        ["server".as_ref(), "--listen".as_ref(), listen.as_ref(), "--data-dir".as_ref(), data_dir.as_os_str()];
    let proc = spawn(exe, own.into_iter().chain(extra.iter().map(OsStr::new)), addr)
        .with_context(|| format!("starting {} server", exe.display()))?;
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await
            && r.status().is_success()
        {
            let token = corral_client::Config::from_kubeconfig(&data_dir.join("admin.conf")).ok().and_then(|c| c.token);
            if let Ok(mut t) = TOKEN.write() {
                *t = token;
            }
            return Ok(proc);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("corral server on {addr} did not become healthy")
}

/// Starts `corral agent` as node `bench` of the server at `url`, working in `work`.
pub fn start_agent(url: &str, work: &Path) -> anyhow::Result<Proc> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let listen = addr.to_string();
    // An administrator may join a node directly (no join token needed).
    let token = admin_token().unwrap_or_default();
    let args: [&OsStr; 11] = [
        "--server".as_ref(),
        url.as_ref(),
        "--token".as_ref(),
        token.as_ref(),
        "agent".as_ref(),
        "--name".as_ref(),
        "bench".as_ref(),
        "--listen".as_ref(),
        listen.as_ref(),
        "--work-dir".as_ref(),
        work.as_os_str(),
    ];
    spawn_self(args, addr).context("starting corral agent")
}

/// The `corral` executable under test: `$CORRAL_BIN`, else the one beside this
/// benchmark (cargo builds both into the same directory).
pub fn corral_exe() -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("CORRAL_BIN") {
        return Ok(p.into());
    }
    let me = std::env::current_exe().context("locating the corral-bench executable")?;
    let corral = me.with_file_name("corral");
    if !corral.is_file() {
        bail!(
            "{} not found: build it first (`cargo build --release` builds it beside corral-bench), or set CORRAL_BIN",
            corral.display()
        );
    }
    Ok(corral)
}

/// The `RUST_LOG` of the processes the bench starts (default `warn`).
pub const SERVER_LOG_ENV: &str = "CORRAL_BENCH_SERVER_LOG";

/// Runs `corral` with `args`, serving at `addr`, logging warnings to stderr.
fn spawn_self<'a>(args: impl IntoIterator<Item = &'a OsStr>, addr: SocketAddr) -> anyhow::Result<Proc> {
    spawn(&corral_exe()?, args, addr)
}

fn spawn<'a>(exe: &Path, args: impl IntoIterator<Item = &'a OsStr>, addr: SocketAddr) -> anyhow::Result<Proc> {
    // Quiet by default, so that the figures are not drowned; a run being studied
    // asks for more (e.g. `corral_controllers::jobs=debug`).
    let log = std::env::var(SERVER_LOG_ENV).unwrap_or_else(|_| "warn".to_string());
    let child =
        Command::new(exe).args(args).env("RUST_LOG", log).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?;
    Ok(Proc { child, addr })
}

/// The first line of `etcd --version` (e.g. `etcd Version: 3.5.16`).
pub fn etcd_version() -> anyhow::Result<String> {
    let version = Command::new("etcd")
        .arg("--version")
        .output()
        .context("running etcd --version: is etcd-server installed? (scripts/setup.sh installs it)")?;
    Ok(String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or("etcd").to_string())
}

/// Starts Debian's `etcd` with its default durability (WAL fsync per commit).
///
/// Ready means that *this* etcd answers: a port free a moment ago may be taken by
/// another etcd started at the same moment (tests run in parallel). Then ours exits,
/// and the other one would answer on the port. So each etcd is named uniquely, ready
/// is its own member answering, and a start that lost its ports is tried again on
/// fresh ones.
pub async fn start_etcd(data_dir: &Path) -> anyhow::Result<(Proc, String)> {
    let version = etcd_version()?;
    for _ in 0..5 {
        let client = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let peer = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        if let Some(proc) = try_start_etcd(data_dir, client, peer).await? {
            return Ok((proc, version));
        }
    }
    bail!("etcd did not start on five pairs of free loopback ports")
}

/// One start of etcd on `client` and `peer`: `None` when it lost them to another
/// process.
async fn try_start_etcd(data_dir: &Path, client: SocketAddr, peer: SocketAddr) -> anyhow::Result<Option<Proc>> {
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!("bench-{}-{}", std::process::id(), STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let child = Command::new("etcd")
        .args(["--name", &name, "--data-dir"])
        .arg(data_dir)
        .args(["--listen-client-urls", &format!("http://{client}")])
        .args(["--advertise-client-urls", &format!("http://{client}")])
        .args(["--listen-peer-urls", &format!("http://{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
        .args(["--initial-cluster", &format!("{name}=http://{peer}")])
        .args(["--logger", "zap", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd")?;
    let mut proc = Proc { child, addr: client };
    let lost = |proc: Proc| {
        drop(proc); // killed, if it still runs
        // What it may have begun to write, so that the next start begins afresh.
        let _ = std::fs::remove_dir_all(data_dir.join("member"));
        Ok(None)
    };
    for _ in 0..200 {
        if proc.exit_status().is_some() {
            return lost(proc);
        }
        if let Ok(mut c) = etcd_client::Client::connect([format!("http://{client}")], None).await
            && let Ok(members) = c.member_list().await
        {
            if members.members().iter().any(|m| m.name() == name) {
                return Ok(Some(proc));
            }
            return lost(proc);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("etcd on {client} did not become ready")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The race a parallel test run meets: the client port picked for a new etcd is
    /// taken by another etcd first. The new one must not take the other's answers for
    /// its own.
    #[tokio::test]
    async fn an_etcd_whose_port_another_etcd_holds_is_not_taken_for_ready() {
        let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (first, _version) = start_etcd(first_dir.path()).await.expect("the first etcd");
        let peer = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let second = try_start_etcd(second_dir.path(), first.addr, peer).await.expect("etcd runs");
        assert!(second.is_none(), "the second etcd reported ready on the first one's port");
        let (third, _version) = start_etcd(second_dir.path()).await.expect("a start on fresh ports");
        assert_ne!(third.addr, first.addr);
    }
}
