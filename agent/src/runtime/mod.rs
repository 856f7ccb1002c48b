//! The container runtime layer: runs each task as a runc container or a native process
//! under a per-task shim that outlives the agent, and re-adopts tasks after a restart.
//!
//! The protocol, through files in the task's directory (see [`crate::layout`]):
//! - The agent writes `launch.json` durably before anything else; a task with a
//!   checkpoint is never launched again.
//! - The shim (`corral __shim <task-dir>`) holds `shim.lock` for its whole life, writes
//!   `shim.json`, starts the task, writes `started.json`, and when the task has ended,
//!   `exit.json`. A free lock means no shim runs.
//! - After a restart, [`Runtime::recover`] takes the lock of every task without a live
//!   shim while it decides; a shim that starts late then gives up, so an interrupted
//!   launch is never completed behind the agent's back.

pub(crate) mod beneath;
mod bundle;
mod cgroups;
mod checkpoint;
mod log_writer;
mod prepare;
mod process;
mod recovery;
pub mod resolv;
mod runc;
mod shim;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

pub use bundle::SANDBOX_IN_CONTAINER;
pub use shim::shim_main;

use checkpoint::{LaunchRecord, ShimRecord, ShimReport, TaskLock};
use prepare::prepare;
use process::{container_exec, native_exec, wait_for_exit};
use recovery::{no_start, recover_one, settle};

use crate::blocking;
use crate::error::{Error, Result};
use crate::layout::{Layout, TaskDir, check_uid};

/// First argument that makes the `corral` binary run as a task's shim.
pub const SHIM_ARG: &str = "__shim";

/// How often kill() and recover() look at a task's files while waiting.
const POLL: Duration = Duration::from_millis(50);
/// How long wait() trusts a pid to be the lock holder before looking again.
const SHIM_RECHECK: Duration = Duration::from_secs(2);

/// Settings of the runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The agent's work dir.
    pub layout: Layout,
    /// The runc binary.
    pub runc: PathBuf,
    /// The executable run as `<shim_exe> __shim <task-dir>`: the `corral` binary.
    pub shim_exe: PathBuf,
    /// A log file is rotated when it would exceed this size.
    pub log_max_bytes: u64,
    /// Rotated log files kept per stream (`stdout.1` … `stdout.N`).
    pub log_max_files: usize,
}

/// A host directory mounted into a task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Mount {
    /// Host directory, e.g. a volume.
    pub source: PathBuf,
    /// Absolute path in the container; for native tasks, a path relative to the
    /// sandbox (where a symlink to `source` is made).
    pub destination: String,
    /// Mount read-only (containers only; a native task sees the host permissions).
    pub read_only: bool,
}

/// What to run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LaunchSpec {
    /// The task's uid: directory name, runc container id and cgroup name.
    pub uid: String,
    /// `namespace/name`, for logs.
    pub name: String,
    /// The image's rootfs (read-only, shared) for a container; `None` for a native process.
    pub rootfs: Option<PathBuf>,
    /// The final argv.
    pub argv: Vec<String>,
    /// The final environment.
    pub env: Vec<(String, String)>,
    /// Working directory: absolute in a container, relative to the sandbox for a
    /// native process.
    pub cwd: Option<String>,
    /// uid and gid to run as; default root.
    pub user: Option<(u32, u32)>,
    /// CPU limit in cores; 0 = none.
    pub cpus: f64,
    /// Memory limit in MiB, swap included; 0 = none.
    pub mem_mib: u64,
    /// Host directories to mount.
    pub mounts: Vec<Mount>,
}

/// A task that runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Started {
    /// Host pid of the container's init or the native process.
    pub pid: i32,
    /// The runc container id, for containers.
    pub container_id: Option<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
}

/// How a task ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExitInfo {
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when it was killed.
    pub signal: Option<i32>,
    /// Whether the OOM killer struck in its memory cgroup.
    pub oom_killed: bool,
    /// When the end was recorded (RFC 3339).
    pub finished_at: String,
    /// Why, when the status alone does not say (failed start, lost supervisor).
    pub message: Option<String>,
}

/// What [`Runtime::recover`] found of a task.
#[derive(Clone, Debug, PartialEq)]
pub enum Recovered {
    /// Still running under its shim.
    Running(Started),
    /// Ended (while the agent was away, or its supervisor was lost).
    Exited(ExitInfo),
    /// Never started: the launch was interrupted; it will not start later either.
    Interrupted {
        /// Why.
        reason: String,
    },
}

/// Launches, supervises (through shims), kills and cleans up tasks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Runtime {
    cfg: Arc<RuntimeConfig>,
    /// The cluster DNS containers resolve through (see [`resolv`]).
    cluster_dns: Option<std::net::IpAddr>,
}

/// `name` itself if it holds a `/`, else its first executable match on `PATH`.
fn find_executable(name: &std::path::Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec =
        |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if name.components().count() > 1 {
        return is_exec(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_exec(p))
}

impl Runtime {
    /// A runtime over `cfg.layout`; creates `tasks/` and runc's state root.
    pub fn new(mut cfg: RuntimeConfig) -> Result<Self> {
        for d in [cfg.layout.tasks(), runc_root(&cfg.layout)] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io("cannot create", &d, e))?;
        }
        // Looked up once: a PATH search per launch and per exec is time on every start.
        cfg.runc = find_executable(&cfg.runc).ok_or_else(|| {
            Error::Runtime(format!("{} not found (scripts/setup.sh installs runc)", cfg.runc.display()))
        })?;
        Ok(Runtime { cfg: Arc::new(cfg), cluster_dns: None })
    }

    /// Gives container tasks a resolv.conf naming the cluster DNS at `nameserver`
    /// (port 53), with their namespace's search domains; `None`: the host's.
    pub fn with_cluster_dns(mut self, nameserver: Option<std::net::IpAddr>) -> Self {
        self.cluster_dns = nameserver;
        self
    }

    fn dir(&self, uid: &str) -> Result<TaskDir> {
        Ok(TaskDir(self.cfg.layout.task(check_uid(uid)?)))
    }

    /// Whether a launch checkpoint exists for `uid`: the task must never be launched again.
    pub fn launched(&self, uid: &str) -> bool {
        self.dir(uid).is_ok_and(|d| d.launch().exists())
    }

    /// Launches a task: writes the checkpoint durably first, prepares the bundle (or the
    /// sandbox), spawns the shim and returns once the task runs.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad spec or a uid launched before; [`Error::Runtime`]
    /// with runc's error or the exec error when the task could not start (the failure
    /// is then also recorded in `exit.json`).
    pub async fn launch(&self, spec: LaunchSpec) -> Result<Started> {
        let dir = self.dir(&spec.uid)?;
        bundle::validate(&spec)?;
        if dir.launch().exists() {
            return Err(Error::Invalid(format!("task {} was already launched", spec.uid)));
        }
        let rec = LaunchRecord {
            spec,
            runc: self.cfg.runc.clone(),
            runc_root: runc_root(&self.cfg.layout),
            log_max_bytes: self.cfg.log_max_bytes,
            log_max_files: self.cfg.log_max_files,
            created_at: corral_api::meta::now_timestamp(),
        };
        tracing::info!(uid = %rec.spec.uid, name = %rec.spec.name, "launching task");
        let (d, r) = (dir.clone(), rec.clone());
        let resolv =
            self.cluster_dns.filter(|_| rec.spec.rootfs.is_some()).map(|ip| resolv::content(ip, &rec.spec.name));
        blocking::run("preparing a task's bundle", move || {
            if let Some(text) = resolv {
                resolv::write(&d, &text)?;
            }
            prepare(&d, &r)
        })
        .await?;
        let mut child = match self.spawn_shim(&dir) {
            Ok(child) => child,
            Err(e) => {
                let d = dir.clone();
                let record = blocking::run("recording a launch that failed", move || {
                    no_start(&d, format!("cannot start the shim: {e}"))
                })
                .await?;
                return Err(Error::Runtime(record.info.message.unwrap_or_default()));
            }
        };
        self.await_start(&dir, &mut child).await
    }

    fn spawn_shim(&self, dir: &TaskDir) -> Result<tokio::process::Child> {
        let shim_log = dir.0.join("shim.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&shim_log)
            .map_err(|e| Error::io("cannot open", &shim_log, e))?;
        let mut cmd = tokio::process::Command::new(&self.cfg.shim_exe);
        // The shim makes itself a session leader first thing; no pre_exec hook here, so
        // the spawn stays a cheap posix_spawn rather than a fork of the whole agent.
        cmd.arg(SHIM_ARG).arg(&dir.0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        cmd.spawn().map_err(|e| Error::io("cannot start the shim", self.cfg.shim_exe.clone(), e))
    }

    /// Reads the shim's one-line report.
    async fn await_start(&self, dir: &TaskDir, child: &mut tokio::process::Child) -> Result<Started> {
        let stdout = child.stdout.take().ok_or_else(|| Error::Runtime("shim stdout not captured".into()))?;
        let line = tokio::io::BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .map_err(|e| Error::io("cannot read from the shim of", dir.0.clone(), e))?;
        // The shim lives on; tokio reaps it (the caller drops the handle) when it exits.
        match line.as_deref().map(serde_json::from_str::<ShimReport>) {
            Some(Ok(ShimReport::Started(s))) => Ok(s),
            Some(Ok(ShimReport::Failed(msg))) => Err(Error::Runtime(msg)),
            Some(Err(e)) => Err(Error::Json { what: "the shim's report".into(), source: e }),
            None => {
                let d = dir.clone();
                let why =
                    format!("the shim exited without starting the task; see {}", dir.0.join("shim.log").display());
                let record = blocking::run("recording a launch that failed", move || no_start(&d, why)).await?;
                Err(Error::Runtime(record.info.message.unwrap_or_default()))
            }
        }
    }

    /// Every task with a launch checkpoint, and what became of it. Tasks whose shim
    /// is gone are settled for good (their `exit.json` written); nothing is relaunched.
    pub async fn recover(&self) -> Result<Vec<(String, Recovered)>> {
        let tasks = self.cfg.layout.tasks();
        let entries = std::fs::read_dir(&tasks).map_err(|e| Error::io("cannot list", &tasks, e))?;
        let mut uids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|u| check_uid(u).is_ok())
            .collect();
        uids.sort();
        let mut found = Vec::new();
        for uid in uids {
            let dir = self.dir(&uid)?;
            if !dir.launch().exists() {
                continue;
            }
            match blocking::run("recovering a task", move || recover_one(&dir)).await {
                Ok(r) => found.push((uid, r)),
                Err(e) => tracing::warn!(%uid, error = %e, "cannot recover task"),
            }
        }
        Ok(found)
    }

    /// Resolves when the task has ended, with how it ended. Works for any task with a
    /// checkpoint, whoever spawned its shim; costs no thread while it waits. Call it
    /// after [`Runtime::launch`] returned (or after [`Runtime::recover`]): a task with no
    /// live shim is settled for good, so waiting before its shim took over would
    /// settle it as interrupted.
    pub async fn wait(&self, uid: &str) -> Result<ExitInfo> {
        let dir = self.dir(uid)?;
        let d = dir.clone();
        let rec = blocking::run("reading a task's checkpoint", move || checkpoint::read_launch(&d)).await?;
        let lock = TaskLock::open(&dir)?;
        loop {
            // The shim holds the lock until after it wrote exit.json.
            if lock.try_lock()? {
                return blocking::run("settling a task's end", move || {
                    let _held = lock;
                    Ok(settle(&dir, &rec)?.info)
                })
                .await;
            }
            let shim = checkpoint::read_json::<ShimRecord>(&dir.shim()).ok().flatten();
            match shim {
                // The holder may also be another agent call, and then the recorded shim
                // pid may be stale or reused: hence the bounded wait and the re-check.
                Some(shim) => wait_for_exit(shim.pid, SHIM_RECHECK).await,
                // A shim that took the lock and has not written shim.json yet.
                None => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Stops a task: SIGTERM, then SIGKILL to all its processes if it has not ended
    /// after `grace`. Returns once the signals are sent (the end is seen by
    /// [`Runtime::wait`]); fine if it already ended.
    ///
    /// A container's SIGTERM goes to its init only, as with `docker stop` (an init that
    /// installed no handler ignores it, so such a task gets SIGKILL after the grace);
    /// a native task's goes to every process of its cgroup.
    pub async fn kill(&self, uid: &str, grace: Duration) -> Result<()> {
        let dir = self.dir(uid)?;
        let d = dir.clone();
        let rec = blocking::run("reading a task's checkpoint", move || checkpoint::read_launch(&d)).await?;
        if dir.exit().exists() {
            return Ok(());
        }
        let r = rec.clone();
        blocking::run("signalling a task", move || {
            signal(&r, libc::SIGTERM, false);
            Ok(())
        })
        .await?;
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if dir.exit().exists() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        if !dir.exit().exists() {
            tracing::info!(%uid, "task outlived its grace period; killing it");
            blocking::run("signalling a task", move || {
                signal(&rec, libc::SIGKILL, true);
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Runs `argv` inside the task (`runc exec` for a container; for a native task in
    /// its sandbox, cgroups, environment and user) and returns its exit code (128 +
    /// signal when killed).
    ///
    /// # Errors
    /// [`Error::Runtime`] when it cannot start or outlives `timeout` (it is then killed).
    pub async fn exec(&self, uid: &str, argv: &[String], timeout: Duration) -> Result<i32> {
        let dir = self.dir(uid)?;
        let d = dir.clone();
        let rec = blocking::run("reading a task's checkpoint", move || checkpoint::read_launch(&d)).await?;
        if argv.is_empty() || argv.iter().any(|a| a.contains('\0')) {
            return Err(Error::Invalid("exec argv must be non-empty and free of NUL bytes".into()));
        }
        // Otherwise runc's own failure would pass for the command's exit code.
        if dir.exit().exists() {
            return Err(Error::Runtime(format!("task {uid} has ended; nothing to exec in")));
        }
        let mut procs = Vec::new();
        let (mut cmd, pid_file) = if rec.spec.rootfs.is_some() {
            let p = dir.bundle().join(format!("exec-{}.pid", unique()));
            (container_exec(&rec, &p, argv, false), Some(p))
        } else {
            procs = cgroups::open_procs(&rec.spec.uid)?;
            (native_exec(&dir, &rec, &procs, argv, true)?, None)
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Error::Runtime(format!("cannot exec {:?}: {e}", argv[0])))?;
        drop(procs);
        let outcome = tokio::time::timeout(timeout, child.wait()).await;
        let result = match outcome {
            Ok(Ok(status)) => {
                use std::os::unix::process::ExitStatusExt;
                Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
            }
            Ok(Err(e)) => Err(Error::Runtime(format!("cannot wait for exec {:?}: {e}", argv[0]))),
            Err(_) => {
                // runc exec does not take its process down with it; kill that first.
                if let Some(pid) = pid_file.as_deref().and_then(read_pid) {
                    // SAFETY: kill(2) has no memory effects.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                } else if let Some(pid) = child.id().filter(|_| pid_file.is_none()) {
                    // SAFETY: as above; the native exec leads its own process group.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                let _ = child.kill().await;
                Err(Error::Runtime(format!("exec {:?} timed out after {timeout:?}", argv[0])))
            }
        };
        if let Some(p) = pid_file {
            let _ = std::fs::remove_file(p);
        }
        result
    }

    /// Runs `argv` inside the running task `uid` with this process's standard input,
    /// output and error (input only when `stdin`), as `corral exec` does on the task's
    /// node: `runc exec` for a container (`tty`: with a terminal of its own), the
    /// sandbox, cgroups, environment and user for a native task. Returns its exit code
    /// (128 + signal when killed). Needs what the agent needs: access to its work dir
    /// and runc's state, and to the task's cgroups.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty `argv` or a task that never launched here;
    /// [`Error::Runtime`] when it has ended or the command cannot start.
    pub async fn exec_attached(&self, uid: &str, argv: &[String], stdin: bool, tty: bool) -> Result<i32> {
        use std::os::unix::process::ExitStatusExt;
        let dir = self.dir(uid)?;
        if !dir.launch().exists() {
            return Err(Error::Invalid(format!(
                "task {uid} was not launched from the work dir {}",
                self.cfg.layout.root().display()
            )));
        }
        if argv.is_empty() || argv.iter().any(|a| a.contains('\0')) {
            return Err(Error::Invalid("the command must be non-empty and free of NUL bytes".into()));
        }
        if dir.exit().exists() {
            return Err(Error::Runtime(format!("task {uid} has ended; nothing to exec in")));
        }
        let d = dir.clone();
        let rec = blocking::run("reading a task's checkpoint", move || checkpoint::read_launch(&d)).await?;
        let mut procs = Vec::new();
        let (mut cmd, pid_file) = if rec.spec.rootfs.is_some() {
            let p = dir.bundle().join(format!("exec-{}.pid", unique()));
            (container_exec(&rec, &p, argv, tty), Some(p))
        } else {
            procs = cgroups::open_procs(&rec.spec.uid)?;
            (native_exec(&dir, &rec, &procs, argv, false)?, None)
        };
        if !stdin {
            cmd.stdin(Stdio::null());
        }
        let mut child = cmd.spawn().map_err(|e| Error::Runtime(format!("cannot exec {:?}: {e}", argv[0])))?;
        drop(procs);
        let status = child.wait().await.map_err(|e| Error::Runtime(format!("cannot wait for {:?}: {e}", argv[0])));
        if let Some(p) = pid_file {
            let _ = std::fs::remove_file(p);
        }
        let status = status?;
        Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// After the end: removes runc's state, the overlay rootfs and its layers, and the
    /// cgroups. Logs, sandbox and checkpoints stay.
    pub async fn cleanup(&self, uid: &str) -> Result<()> {
        let dir = self.dir(uid)?;
        blocking::run("cleaning up after a task", move || {
            let rec = checkpoint::read_launch(&dir)?;
            if rec.spec.rootfs.is_some() {
                runc::delete(&rec);
            } else {
                // Nothing may outlive the task, even when its shim was lost.
                cgroups::kill_all(&rec.spec.uid, Duration::from_secs(5), || {});
            }
            bundle::destroy(&dir)?;
            cgroups::remove(&rec.spec.uid)
        })
        .await
    }

    /// Removes the task's whole directory. Only for ended tasks.
    ///
    /// # Errors
    /// [`Error::Invalid`] while the task's shim still runs.
    pub async fn remove(&self, uid: &str) -> Result<()> {
        let dir = self.dir(uid)?;
        if dir.0.join("shim.lock").exists() {
            let d = dir.clone();
            let free = blocking::run("checking a task's shim lock", move || TaskLock::open(&d)?.try_lock()).await?;
            if !free {
                return Err(Error::Invalid(format!("task {uid} still runs; it cannot be removed")));
            }
        }
        if dir.launch().exists() {
            self.cleanup(uid).await?;
        }
        blocking::run("removing a task's directory", move || {
            if bundle::is_mount_point(&dir.bundle().join("rootfs")) {
                return Err(Error::Runtime(format!("{} is still mounted", dir.bundle().join("rootfs").display())));
            }
            match std::fs::remove_dir_all(&dir.0) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("cannot remove", &dir.0, e)),
                _ => Ok(()),
            }
        })
        .await
    }
}

fn runc_root(layout: &Layout) -> PathBuf {
    layout.root().join("runc")
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A name unique within this process and across restarts, for temporary files.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Signals a task: a container via runc (`all`: every process, else its init), a
/// native task through its cgroup.
fn signal(rec: &LaunchRecord, sig: i32, all: bool) {
    if rec.spec.rootfs.is_some() {
        let name = if sig == libc::SIGKILL { "KILL" } else { "TERM" };
        runc::kill(rec, name, all);
    } else {
        cgroups::signal_all(&rec.spec.uid, sig);
    }
}
