//! The per-task shim: `corral __shim <task-dir>`. It starts the task (runc for a
//! container, a direct child for a native process), copies its output into rotated
//! logs, reaps it for the real exit status, and records the end in `exit.json`.
//!
//! It is deliberately not async: it lives as long as its task, a hundred of them run at
//! once, and it must keep working after the agent that spawned it is gone. Its
//! liveness is the `shim.lock` it holds for life.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::bundle::Bundle;
use super::cgroups::{self, Limits};
use super::checkpoint::{self, ExitRecord, LaunchRecord, ShimRecord, ShimReport, TaskLock};
use super::log_writer::{LogWriter, copy_to_log};
use super::{ExitInfo, Started, runc};
use crate::error::{Error, Result};
use crate::layout::TaskDir;

/// How long output may keep flowing after the task ended (a grandchild holding the pipe).
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// How long leftover processes of a native task get to die after SIGKILL.
const KILL_LEFTOVERS: Duration = Duration::from_secs(5);

/// Runs the shim for the task directory in `args[0]`; returns the process exit code.
pub fn shim_main(args: &[OsString]) -> u8 {
    let Some(dir) = args.first() else {
        eprintln!("corral shim: usage: corral __shim <task-dir>");
        return 2;
    };
    match run(&TaskDir(PathBuf::from(dir))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("corral shim: {e}");
            1
        }
    }
}

fn run(dir: &TaskDir) -> Result<u8> {
    // Its own session keeps the shim out of the agent's job control and signals, so it
    // survives the agent. Done here rather than between fork and exec in the agent,
    // which would force a full fork of the agent instead of a cheap spawn.
    // SAFETY: setsid takes no arguments; it fails only for a group leader, which a
    // freshly spawned shim is not (the error is then harmless).
    unsafe { libc::setsid() };
    let lock = TaskLock::open(dir)?;
    if !lock.try_lock()? {
        // Another shim supervises the task, or the agent is deciding its fate.
        eprintln!("corral shim: {} is locked; not starting", dir.0.display());
        return Ok(0);
    }
    if dir.exit().exists() || dir.started().exists() {
        eprintln!("corral shim: {} was already launched; not starting again", dir.0.display());
        return Ok(0);
    }
    // SAFETY: prctl with integer arguments. Orphans of the task (the container's init
    // once `runc run --detach` returns) become our children, so we see their status.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(Error::Runtime(format!("cannot become a subreaper: {}", std::io::Error::last_os_error())));
    }
    let me = ShimRecord { pid: std::process::id() as i32, started_at: corral_api::meta::now_timestamp() };
    checkpoint::write_json_volatile(&dir.shim(), &me)?;
    let rec = checkpoint::read_launch(dir)?;

    let mut reaper = Reaper::default();
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let logs_done = start_log_copiers(dir, &rec, out_r, err_r)?;

    let started = if rec.spec.rootfs.is_some() {
        start_container(dir, &rec, out_w, err_w, &mut reaper)
    } else {
        start_native(dir, &rec, out_w, err_w)
    };
    let pid = match started {
        Ok(pid) => pid,
        Err(message) => {
            if rec.spec.rootfs.is_some() {
                runc::delete(&rec);
            } else {
                cgroups::kill_all(&rec.spec.uid, KILL_LEFTOVERS, || reaper.reap_available());
            }
            checkpoint::write_exit_once(dir, &ExitRecord::not_run(message.clone(), false))?;
            report(&ShimReport::Failed(message));
            return Ok(1);
        }
    };
    let started = Started {
        pid,
        container_id: rec.spec.rootfs.is_some().then(|| rec.spec.uid.clone()),
        started_at: corral_api::meta::now_timestamp(),
    };
    // The task runs now: failing to record that must not leave it unsupervised.
    if let Err(e) = checkpoint::write_json_volatile(&dir.started(), &started) {
        eprintln!("corral shim: {e}");
    }
    report(&ShimReport::Started(started));

    reaper.keep_others = false;
    let status = reaper.wait_for(pid);
    let oom_killed = cgroups::oom_killed(&rec.spec.uid);
    // Whatever the main process left behind must not outlive the task.
    if rec.spec.rootfs.is_some() {
        runc::delete(&rec);
    } else {
        cgroups::kill_all(&rec.spec.uid, KILL_LEFTOVERS, || reaper.reap_available());
    }
    reaper.reap_available();
    let deadline = Instant::now() + LOG_DRAIN;
    for _ in 0..2 {
        if logs_done.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
            eprintln!("corral shim: task output still open after the end; not waiting for it");
            break;
        }
    }
    let info = exit_info(status, oom_killed);
    checkpoint::write_exit_once(dir, &ExitRecord { info, interrupted: false })?;
    drop(lock);
    Ok(0)
}

/// Translates a wait status.
fn exit_info(status: Option<i32>, oom_killed: bool) -> ExitInfo {
    let finished_at = corral_api::meta::now_timestamp();
    match status {
        Some(s) if libc::WIFEXITED(s) => {
            ExitInfo { exit_code: Some(libc::WEXITSTATUS(s)), signal: None, oom_killed, finished_at, message: None }
        }
        Some(s) if libc::WIFSIGNALED(s) => ExitInfo {
            exit_code: None,
            signal: Some(libc::WTERMSIG(s)),
            oom_killed,
            finished_at,
            message: oom_killed.then(|| "killed by the OOM killer (memory limit reached)".to_string()),
        },
        _ => ExitInfo {
            exit_code: None,
            signal: None,
            oom_killed,
            finished_at,
            message: Some("the shim lost track of the task's process".into()),
        },
    }
}

/// Tells the agent that spawned us how the start went. The agent may be gone: errors
/// (EPIPE; Rust ignores SIGPIPE) do not matter. Afterwards stdout points nowhere, so
/// the agent's end of the pipe sees EOF and nothing blocks on it.
fn report(r: &ShimReport) {
    if let Ok(line) = serde_json::to_string(r) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        // SAFETY: dup2 onto stdout, which we own.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1) };
    }
}

fn pipe() -> Result<(File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own. CLOEXEC keeps them out of
    // everything but the one child they are handed to as stdio.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::Runtime(format!("cannot create a pipe: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: freshly created, owned by nobody else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn start_log_copiers(dir: &TaskDir, rec: &LaunchRecord, out: File, err: File) -> Result<mpsc::Receiver<()>> {
    let (tx, rx) = mpsc::channel();
    for (name, src) in [("stdout", out), ("stderr", err)] {
        let path = dir.logs().join(name);
        let log = LogWriter::open(path.clone(), rec.log_max_bytes, rec.log_max_files)
            .map_err(|e| Error::io("cannot open log", &path, e))?;
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("log-{name}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                copy_to_log(src, log);
                let _ = tx.send(());
            })
            .map_err(|e| Error::Runtime(format!("cannot start a log thread: {e}")))?;
    }
    Ok(rx)
}

/// `runc run --detach`: create and start in one step. Returns the container init's pid.
fn start_container(
    dir: &TaskDir,
    rec: &LaunchRecord,
    out: OwnedFd,
    err: OwnedFd,
    reaper: &mut Reaper,
) -> std::result::Result<i32, String> {
    let b = Bundle::of(dir);
    let _ = std::fs::remove_file(b.pid_file());
    let _ = std::fs::remove_file(b.runc_log());
    let mut cmd = runc::command(rec);
    cmd.arg("--log")
        .arg(b.runc_log())
        .args(["--log-format", "json", "run", "--detach", "--bundle"])
        .arg(&b.0)
        .arg("--pid-file")
        .arg(b.pid_file())
        .arg(&rec.spec.uid)
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", rec.runc.display()))?;
    // Our copies of the pipes' write ends must go, or the logs never see EOF.
    drop(cmd);
    let status = reaper.wait_for(child.id() as i32);
    match status {
        Some(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => {}
        _ => {
            let why =
                runc::last_error(&b.runc_log()).unwrap_or_else(|| format!("runc failed (wait status {status:?})"));
            return Err(format!("cannot start the container: {why}"));
        }
    }
    std::fs::read_to_string(b.pid_file())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| "runc started the container but wrote no pid file".to_string())
}

/// Spawns a native task in its own cgroups, process group, user and sandbox.
fn start_native(dir: &TaskDir, rec: &LaunchRecord, out: OwnedFd, err: OwnedFd) -> std::result::Result<i32, String> {
    let spec = &rec.spec;
    let procs = cgroups::create(&spec.uid, &Limits::new(spec.cpus, spec.mem_mib))
        .map_err(|e| format!("cannot set up cgroups: {e}"))?;
    let raw = cgroups::raw(&procs);
    let cwd = super::bundle::resolve_in_sandbox(&dir.sandbox(), spec.cwd.as_deref())?;
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    if let Some((uid, gid)) = spec.user {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: see `process::enter`.
    unsafe {
        cmd.pre_exec(super::process::enter(raw, cwd));
    }
    let child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", spec.argv[0]))?;
    drop(cmd);
    drop(procs);
    Ok(child.id() as i32)
}

/// Collects children's statuses with `waitpid(-1)`. While `keep_others`, it keeps those
/// not asked for yet: the container's init may end before runc told us its pid. Later,
/// the task's orphans are reaped and forgotten, so a long-lived shim does not grow.
struct Reaper {
    exited: HashMap<i32, i32>,
    keep_others: bool,
}

impl Default for Reaper {
    fn default() -> Self {
        Reaper { exited: HashMap::new(), keep_others: true }
    }
}

impl Reaper {
    /// The wait status of `pid`, blocking; `None` if it is not (or no longer) our child.
    fn wait_for(&mut self, pid: i32) -> Option<i32> {
        loop {
            if let Some(s) = self.exited.remove(&pid) {
                return Some(s);
            }
            let mut status = 0;
            // SAFETY: waitpid writes the status into our local.
            let r = unsafe { libc::waitpid(-1, &mut status, 0) };
            if r == pid {
                return Some(status);
            } else if r > 0 {
                if self.keep_others {
                    self.exited.insert(r, status);
                }
            } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return None;
            }
        }
    }

    /// Reaps whatever has exited, without blocking; the statuses are of no interest.
    fn reap_available(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: as above.
            if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
                return;
            }
        }
    }
}
