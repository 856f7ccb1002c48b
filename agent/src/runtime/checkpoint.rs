//! The files through which the agent and the shims agree on a task's fate: the launch
//! checkpoint, the shim's lock, `started.json` and `exit.json`. Everything here is plain
//! blocking code, usable from the shim (no tokio) and from `spawn_blocking`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ExitInfo, LaunchSpec, Started};
use crate::error::{Error, Result};
use crate::layout::{TaskDir, write_atomic};

/// `launch.json`: what to run and how the shim must run it. Self-contained, so that a
/// shim (or a later agent) needs nothing else to act on it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct LaunchRecord {
    /// The task as the agent asked for it.
    pub spec: LaunchSpec,
    /// The runc binary.
    pub runc: PathBuf,
    /// runc's state root (`--root`).
    pub runc_root: PathBuf,
    /// Size at which a log file is rotated.
    pub log_max_bytes: u64,
    /// Rotated log files kept.
    pub log_max_files: usize,
    /// When the checkpoint was written.
    pub created_at: String,
}

/// `exit.json`: the end of a task, plus whether it never ran at all.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct ExitRecord {
    #[serde(flatten)]
    pub info: ExitInfo,
    /// The task was never started (the launch was interrupted by a restart); recovery
    /// reports this as [`super::Recovered::Interrupted`].
    #[serde(default)]
    pub interrupted: bool,
}

impl ExitRecord {
    /// The end of a task that never ran, now, with `message` saying why.
    pub fn not_run(message: String, interrupted: bool) -> Self {
        let info = ExitInfo {
            exit_code: None,
            signal: None,
            oom_killed: false,
            finished_at: corral_api::meta::now_timestamp(),
            message: Some(message),
        };
        ExitRecord { info, interrupted }
    }
}

/// `shim.json`: which process supervises the task.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct ShimRecord {
    pub pid: i32,
    pub started_at: String,
}

/// The one line a shim writes on its stdout to the agent that spawned it.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ShimReport {
    Started(Started),
    Failed(String),
}

/// The lock a shim holds for its whole life; free means no shim runs.
pub(crate) fn lock_path(dir: &TaskDir) -> PathBuf {
    dir.0.join("shim.lock")
}

/// An open `shim.lock`. Locks belong to the open file, so each holder opens its own.
pub(crate) struct TaskLock(File);

impl TaskLock {
    /// Opens (creating) the lock file without locking it.
    pub fn open(dir: &TaskDir) -> Result<Self> {
        let path = lock_path(dir);
        // std opens with O_CLOEXEC, so neither runc nor the task inherits the lock.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        Ok(TaskLock(f))
    }

    /// Takes the lock if nobody holds it.
    pub fn try_lock(&self) -> Result<bool> {
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(false)
        } else {
            Err(Error::Runtime(format!("cannot lock shim.lock: {e}")))
        }
    }
}

/// Reads a JSON checkpoint; `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Json { what: path.display().to_string(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// Writes a JSON checkpoint atomically and durably.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|source| Error::Json { what: path.display().to_string(), source })?;
    write_atomic(path, &bytes)
}

/// Writes a JSON file atomically, without waiting for the disk: for what only matters
/// while the machine is up (after a reboot no shim or container survives anyway).
pub(crate) fn write_json_volatile<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|source| Error::Json { what: path.display().to_string(), source })?;
    crate::layout::write_replace(path, &bytes)
}

/// The launch checkpoint of a task.
pub(crate) fn read_launch(dir: &TaskDir) -> Result<LaunchRecord> {
    read_json(&dir.launch())?
        .ok_or_else(|| Error::Runtime(format!("task {} has no launch checkpoint", dir.0.display())))
}

/// The exit record of a task, if it ended.
pub(crate) fn read_exit(dir: &TaskDir) -> Result<Option<ExitRecord>> {
    read_json(&dir.exit())
}

/// Records how a task ended; never overwrites an existing record, so the first
/// account (the shim's, which saw the real status) wins.
pub(crate) fn write_exit_once(dir: &TaskDir, record: &ExitRecord) -> Result<()> {
    if dir.exit().exists() {
        return Ok(());
    }
    write_json(&dir.exit(), record)
}
