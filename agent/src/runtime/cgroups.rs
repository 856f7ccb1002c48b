//! cgroup v1 handling for tasks: the groups a native task runs in (runc makes its own
//! for containers, at the same place), OOM detection, and killing what is left.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The controllers a native task joins; `pids` also serves to list its processes.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// Enough for real services, low enough to stop a fork bomb.
pub(crate) const PIDS_MAX: i64 = 4096;
/// The CFS period; quotas are expressed per this many microseconds.
pub(crate) const CPU_PERIOD: u64 = 100_000;

/// The cgroup path (relative to each hierarchy) of a task; runc gets it as `cgroupsPath`.
pub(crate) fn relative_path(uid: &str) -> String {
    format!("/corral/{uid}")
}

fn dir(controller: &str, uid: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(controller).join("corral").join(uid)
}

/// Limits in the units the kernel takes.
pub(crate) struct Limits {
    pub memory_bytes: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<u64>,
}

impl Limits {
    /// From the spec's `cpus` and `mem_mib` (0 = unlimited).
    pub fn new(cpus: f64, mem_mib: u64) -> Self {
        let memory_bytes = (mem_mib > 0).then(|| i64::try_from(mem_mib.saturating_mul(1 << 20)).unwrap_or(i64::MAX));
        let cpu = cpus.is_finite() && cpus > 0.0;
        Limits {
            memory_bytes,
            // The kernel refuses quotas under 1ms.
            cpu_quota: cpu.then(|| ((cpus * CPU_PERIOD as f64) as i64).max(1000)),
            cpu_shares: cpu.then(|| ((cpus * 1024.0) as u64).max(2)),
        }
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::io("cannot write", path, e))
}

/// Creates a native task's cgroups with its limits and returns `cgroup.procs` of each,
/// open, for the child to join between fork and exec.
pub(crate) fn create(uid: &str, limits: &Limits) -> Result<Vec<OwnedFd>> {
    for controller in CONTROLLERS {
        let d = dir(controller, uid);
        std::fs::create_dir_all(&d).map_err(|e| Error::io("cannot create cgroup", &d, e))?;
        match controller {
            "memory" => {
                if let Some(bytes) = limits.memory_bytes {
                    // The limit first: memsw may never be below it. Equal values make
                    // the kernel OOM-kill instead of swapping.
                    write(&d.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    let memsw = d.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &bytes.to_string())?;
                    }
                }
            }
            "cpu" => {
                if let (Some(quota), Some(shares)) = (limits.cpu_quota, limits.cpu_shares) {
                    write(&d.join("cpu.cfs_period_us"), &CPU_PERIOD.to_string())?;
                    write(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
                    write(&d.join("cpu.shares"), &shares.to_string())?;
                }
            }
            _ => write(&d.join("pids.max"), &PIDS_MAX.to_string())?,
        }
    }
    open_procs(uid)
}

/// Opens `cgroup.procs` of an existing native task's cgroups, to run more in them.
pub(crate) fn open_procs(uid: &str) -> Result<Vec<OwnedFd>> {
    CONTROLLERS
        .iter()
        .map(|c| {
            let p = dir(c, uid).join("cgroup.procs");
            let f = std::fs::OpenOptions::new().write(true).open(&p).map_err(|e| Error::io("cannot open", &p, e))?;
            Ok(OwnedFd::from(f))
        })
        .collect()
}

/// Moves the calling process into the cgroups whose `cgroup.procs` are open in `procs`.
/// Only async-signal-safe calls: it runs between fork and exec.
pub(crate) fn join_self(procs: &[i32]) -> std::io::Result<()> {
    for &fd in procs {
        // cgroup v1 reads "0" as the writing process.
        // SAFETY: write(2) of a static buffer to a descriptor the parent keeps open.
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raw descriptors of open `cgroup.procs` files, for [`join_self`].
pub(crate) fn raw(procs: &[OwnedFd]) -> Vec<i32> {
    procs.iter().map(|f| f.as_raw_fd()).collect()
}

/// The processes in a native task's cgroup.
pub(crate) fn pids(uid: &str) -> Vec<i32> {
    let p = dir("pids", uid).join("cgroup.procs");
    std::fs::read_to_string(p).map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect()).unwrap_or_default()
}

/// Sends `signal` to every process of a native task; returns how many there were.
pub(crate) fn signal_all(uid: &str, signal: i32) -> usize {
    let pids = pids(uid);
    for &pid in &pids {
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(pid, signal) };
    }
    pids.len()
}

/// SIGKILLs a native task's processes until none is left, waiting at most `limit`.
/// `reap` lets the caller collect its own children, which would otherwise stay listed
/// as zombies.
pub(crate) fn kill_all(uid: &str, limit: Duration, mut reap: impl FnMut()) {
    let deadline = Instant::now() + limit;
    while signal_all(uid, libc::SIGKILL) > 0 && Instant::now() < deadline {
        reap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the kernel's OOM killer killed a process of the task's memory cgroup.
pub(crate) fn oom_killed(uid: &str) -> bool {
    let p = dir("memory", uid).join("memory.oom_control");
    std::fs::read_to_string(p).is_ok_and(|s| {
        s.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0)))
    })
}

/// Removes a task's cgroups (all hierarchies runc may have used); missing ones are fine.
pub(crate) fn remove(uid: &str) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(CGROUP_ROOT) else { return Ok(()) };
    for entry in entries.flatten() {
        let d = entry.path().join("corral").join(uid);
        if !d.exists() {
            continue;
        }
        // A cgroup is removed with rmdir; it fails while processes remain.
        if let Err(e) = std::fs::remove_dir(&d)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::io("cannot remove cgroup", &d, e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_spec() {
        let l = Limits::new(0.5, 16);
        assert_eq!(l.memory_bytes, Some(16 << 20));
        assert_eq!(l.cpu_quota, Some(50_000));
        assert_eq!(l.cpu_shares, Some(512));
        let none = Limits::new(0.0, 0);
        assert!(none.memory_bytes.is_none() && none.cpu_quota.is_none() && none.cpu_shares.is_none());
    }
}
