//! Processes the agent runs or watches itself: commands run inside a task, and waiting
//! for a process that is not our child.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use super::checkpoint::LaunchRecord;
use super::{POLL, cgroups};
use crate::error::{Error, Result};
use crate::layout::TaskDir;

/// Resolves when process `pid` has exited (a pidfd becomes readable then), or after
/// `limit`. Works for processes that are not our children.
pub(crate) async fn wait_for_exit(pid: i32, limit: Duration) {
    // SAFETY: pidfd_open takes integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        // Gone already (ESRCH), or no pidfd support: the caller re-checks the lock.
        tokio::time::sleep(POLL).await;
        return;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until dropped.
    match unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) } {
        Ok(afd) => {
            let _ = tokio::time::timeout(limit, afd.readable()).await;
        }
        Err(_) => tokio::time::sleep(POLL).await,
    }
}

/// `runc exec`: the process inherits the container's env, user and cwd from its config;
/// `tty` gives it a terminal of its own (runc relays it to this process's terminal).
pub(crate) fn container_exec(
    rec: &LaunchRecord,
    pid_file: &Path,
    argv: &[String],
    tty: bool,
) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(&rec.runc);
    c.arg("--root").arg(&rec.runc_root).arg("exec").arg("--pid-file").arg(pid_file);
    if tty {
        c.arg("--tty");
    }
    c.arg(&rec.spec.uid).args(argv);
    c
}

/// A command set up like the native task: its cgroups (`procs` open), sandbox, env,
/// user. `own_group` puts it in a process group of its own, so that a timeout can
/// kill whatever it started; an interactive exec stays in the caller's group, which
/// owns the terminal it reads.
pub(crate) fn native_exec(
    dir: &TaskDir,
    rec: &LaunchRecord,
    procs: &[OwnedFd],
    argv: &[String],
    own_group: bool,
) -> Result<tokio::process::Command> {
    let cwd = super::bundle::resolve_in_sandbox(&dir.sandbox(), rec.spec.cwd.as_deref()).map_err(Error::Invalid)?;
    let raw = cgroups::raw(procs);
    let mut c = tokio::process::Command::new(&argv[0]);
    c.args(&argv[1..]).env_clear().envs(rec.spec.env.iter().map(|(k, v)| (k, v)));
    if own_group {
        c.process_group(0);
    }
    if let Some((u, g)) = rec.spec.user {
        c.uid(u).gid(g);
    }
    // SAFETY: see `enter`.
    unsafe {
        c.pre_exec(enter(raw, cwd));
    }
    Ok(c)
}

/// The hook a task's process runs between fork and exec: it joins the task's cgroups
/// (`procs`, raw descriptors of their `cgroup.procs`) and enters `cwd`. The hook owns
/// `cwd`, so the directory stays the one resolved until exec closes it (O_CLOEXEC);
/// entering it by name could be redirected by a link swapped in since.
///
/// Safe to run after fork: it makes only async-signal-safe calls, write(2) and
/// fchdir(2), and allocates nothing. std runs it after setgid/setuid, so the task's
/// user must be able to enter its working directory.
pub(crate) fn enter(
    procs: Vec<i32>,
    cwd: std::os::fd::OwnedFd,
) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    move || {
        use std::os::fd::AsRawFd;
        cgroups::join_self(&procs)?;
        // SAFETY: fchdir(2) of a descriptor the closure owns and keeps open.
        if unsafe { libc::fchdir(cwd.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
