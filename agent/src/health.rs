//! Health checks of running tasks, with Marathon's semantics.
//!
//! Each check of a task runs every `intervalSeconds`, bounded by `timeoutSeconds`:
//! an HTTP `GET` healthy on 2xx/3xx, a TCP connect, or a command run inside the task
//! healthy on exit 0. During `gracePeriodSeconds` after the checks start, failures do
//! not count; the first success ends the grace period. After `maxConsecutiveFailures`
//! failures in a row the task is reported failed, to be killed with reason
//! `HealthCheckFailed`. A task is healthy only when all its checks are.

use crate::error::error_chain;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds::task::{HealthCheck, TaskHealth};
use futures::future::BoxFuture;
use tokio::time::Instant;

/// Runs a command inside a task (`runc exec` for containers, a process in the task's
/// cgroups and sandbox for native tasks).
pub trait CommandRunner: Send + Sync + 'static {
    /// Runs `argv` and returns its exit code; gives up (an error) after `timeout`.
    fn run(&self, argv: Vec<String>, timeout: Duration) -> BoxFuture<'static, crate::Result<i32>>;
}

/// What a task's checks concluded, handed to the `on_update` of [`spawn`].
#[derive(Clone, Debug, PartialEq)]
pub struct HealthUpdate {
    /// The task's health, for `status.health`.
    pub health: TaskHealth,
    /// A check failed `maxConsecutiveFailures` times in a row: kill the task with
    /// reason `HealthCheckFailed`. No update follows.
    pub failed: bool,
}

/// Keeps a task's checks running; dropping it stops them.
#[derive(Debug)]
pub struct HealthHandle {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HealthHandle {
    /// Whether the checks have stopped on their own (after reporting `failed`, or
    /// when there were none).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Starts the `checks` of one task, whose named ports are `ports` on `host`.
///
/// `on_update` is called when the task's health changes: the first time every check
/// has a result, then whenever the healthy flag or the failure count changes, so that
/// status writes stay few. The checks stop when the handle is dropped, or after an
/// update with `failed` set. Without checks, nothing runs and `on_update` is never
/// called.
///
/// Must be called within a Tokio runtime.
pub fn spawn(
    checks: Vec<HealthCheck>,
    ports: BTreeMap<String, u16>,
    host: IpAddr,
    runner: Arc<dyn CommandRunner>,
    on_update: impl Fn(HealthUpdate) + Send + Sync + 'static,
) -> HealthHandle {
    if checks.is_empty() {
        return HealthHandle { task: None };
    }
    let task = tokio::spawn(supervise(checks, ports, host, runner, on_update));
    HealthHandle { task: Some(task) }
}

/// One check's verdict.
type Outcome = Result<(), String>;

/// The state of one check, as far as counting goes.
#[derive(Clone, Debug, Default)]
struct CheckState {
    ran: bool,
    /// Passed at least once, which ends the grace period.
    passed_once: bool,
    failures: u32,
    /// Why the last run failed; `None` once it passed (healthy).
    message: Option<String>,
}

async fn supervise(
    checks: Vec<HealthCheck>,
    ports: BTreeMap<String, u16>,
    host: IpAddr,
    runner: Arc<dyn CommandRunner>,
    on_update: impl Fn(HealthUpdate) + Send + Sync + 'static,
) {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        // A health check talks to the task on this host, never through a proxy, and
        // judges a redirect by itself (3xx is healthy).
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let http = match http {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the health check HTTP client");
            return;
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Outcome)>(checks.len() * 2);
    // Dropping the set (when this task ends or is aborted) stops every check.
    let mut running = tokio::task::JoinSet::new();
    for (i, check) in checks.iter().enumerate() {
        let target = Target::resolve(check, &ports, host);
        let (tx, runner, http) = (tx.clone(), runner.clone(), http.clone());
        let interval = Duration::from_secs(check.interval().into());
        let timeout = Duration::from_secs(check.timeout().into());
        running.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            // A check slower than its interval is not run in a burst to catch up.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let outcome = target.probe(timeout, &http, runner.as_ref()).await;
                if tx.send((i, outcome)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut states = vec![CheckState::default(); checks.len()];
    let mut last: Option<(bool, u32)> = None;
    while let Some((i, outcome)) = rx.recv().await {
        let check = &checks[i];
        let state = &mut states[i];
        state.ran = true;
        match outcome {
            Ok(()) => {
                state.passed_once = true;
                state.failures = 0;
                state.message = None;
            }
            Err(message) => {
                // Failures in the grace period do not count, until a first success
                // shows the task is up.
                let in_grace =
                    !state.passed_once && started.elapsed() < Duration::from_secs(check.grace_period().into());
                if in_grace {
                    state.message = Some(format!("{message} (in the grace period)"));
                } else {
                    state.failures += 1;
                    state.message = Some(message);
                }
            }
        }
        if !states.iter().all(|s| s.ran) {
            continue;
        }
        let healthy = states.iter().all(|s| s.message.is_none());
        let failures = states.iter().map(|s| s.failures).max().unwrap_or(0);
        let failed = checks.iter().zip(&states).any(|(c, s)| s.failures >= c.max_failures());
        if last == Some((healthy, failures)) && !failed {
            continue;
        }
        last = Some((healthy, failures));
        let messages: Vec<&str> = states.iter().filter_map(|s| s.message.as_deref()).collect();
        let health = TaskHealth {
            healthy,
            consecutive_failures: failures,
            last_check_time: Some(corral_api::meta::now_timestamp()),
            message: (!messages.is_empty()).then(|| messages.join("; ")),
        };
        on_update(HealthUpdate { health, failed });
        if failed {
            return;
        }
    }
}

/// What one check probes, resolved once.
enum Target {
    Http(String),
    Tcp(SocketAddr),
    Command(Vec<String>),
    /// The check cannot run; it fails with this message every time.
    Broken(String),
}

impl Target {
    fn resolve(check: &HealthCheck, ports: &BTreeMap<String, u16>, host: IpAddr) -> Target {
        let port = |name: &Option<String>, number: Option<u16>, what: &str| -> Result<u16, String> {
            match (name, number) {
                (Some(n), _) => ports.get(n).copied().ok_or_else(|| {
                    let known: Vec<&str> = ports.keys().map(String::as_str).collect();
                    format!(
                        "{what} check names port {n:?}, which is not one of the task's ports ({})",
                        known.join(", ")
                    )
                }),
                (None, Some(p)) => Ok(p),
                (None, None) => Err(format!("{what} check names no port: set portName or port")),
            }
        };
        match (&check.command, &check.http, &check.tcp) {
            (Some(argv), None, None) if !argv.is_empty() => Target::Command(argv.clone()),
            (None, Some(h), None) => match port(&h.port_name, h.port, "http") {
                Ok(p) => {
                    let path = h.path.as_deref().unwrap_or("/");
                    let sep = if path.starts_with('/') { "" } else { "/" };
                    Target::Http(format!("http://{}{sep}{path}", SocketAddr::new(host, p)))
                }
                Err(m) => Target::Broken(m),
            },
            (None, None, Some(t)) => match port(&t.port_name, t.port, "tcp") {
                Ok(p) => Target::Tcp(SocketAddr::new(host, p)),
                Err(m) => Target::Broken(m),
            },
            _ => Target::Broken("a health check needs exactly one of command (non-empty), http and tcp".into()),
        }
    }

    async fn probe(&self, timeout: Duration, http: &reqwest::Client, runner: &dyn CommandRunner) -> Outcome {
        let late = || format!("{} timed out after {}s", self.describe(), timeout.as_secs());
        match self {
            Target::Http(url) => match tokio::time::timeout(timeout, http.get(url).send()).await {
                Err(_) => Err(late()),
                Ok(Err(e)) => Err(format!("{}: {}", self.describe(), error_chain(&e))),
                Ok(Ok(resp)) if resp.status().is_success() || resp.status().is_redirection() => Ok(()),
                Ok(Ok(resp)) => Err(format!("{} answered {}", self.describe(), resp.status())),
            },
            Target::Tcp(addr) => match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Err(_) => Err(late()),
                Ok(Err(e)) => Err(format!("{}: {e}", self.describe())),
                Ok(Ok(_)) => Ok(()),
            },
            Target::Command(argv) => {
                // The runner enforces the timeout; this bound only guards against a
                // runner that does not.
                let bound = timeout + Duration::from_secs(5);
                match tokio::time::timeout(bound, runner.run(argv.clone(), timeout)).await {
                    Err(_) => Err(late()),
                    Ok(Err(e)) => Err(format!("{}: {e}", self.describe())),
                    Ok(Ok(0)) => Ok(()),
                    Ok(Ok(code)) => Err(format!("{} exited with code {code}", self.describe())),
                }
            }
            Target::Broken(m) => Err(m.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Http(url) => format!("http check GET {url}"),
            Target::Tcp(addr) => format!("tcp check {addr}"),
            Target::Command(argv) => format!("command check {argv:?}"),
            Target::Broken(_) => "health check".into(),
        }
    }
}
