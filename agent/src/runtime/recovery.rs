//! Deciding the fate of a task whose shim is gone: after an agent restart, when a
//! shim died, or when one never started. The caller holds the task's lock, so no shim
//! can start the task while the decision is made, and every decision is written to
//! `exit.json` so that later looks agree.

use std::time::Duration;

use super::checkpoint::{self, ExitRecord, LaunchRecord, TaskLock};
use super::{ExitInfo, POLL, Recovered, Started, cgroups, runc};
use crate::error::{Error, Result};
use crate::layout::TaskDir;

/// How long recover() waits for a live shim that has not started its task yet.
const RECOVER_START_WAIT: Duration = Duration::from_secs(60);

/// The end of a task whose lock the caller holds: its `exit.json`, or, when its shim
/// died without writing one, a verdict (written, so every later look agrees).
pub(crate) fn settle(dir: &TaskDir, rec: &LaunchRecord) -> Result<ExitRecord> {
    if let Some(r) = checkpoint::read_exit(dir)? {
        return Ok(r);
    }
    let ran = dir.started().exists();
    // Without a supervisor nobody would report the task's end: stop it. A `created`
    // container (shim killed between create and start) is deleted, never started.
    let running = if rec.spec.rootfs.is_some() {
        let running = matches!(runc::state(rec).as_deref(), Some("running" | "paused"));
        runc::delete(rec);
        running
    } else {
        let running = !cgroups::pids(&rec.spec.uid).is_empty();
        cgroups::kill_all(&rec.spec.uid, Duration::from_secs(5), || {});
        running
    };
    let record = if ran || running {
        tracing::warn!(uid = %rec.spec.uid, "the task's shim was lost; task stopped");
        ExitRecord {
            info: ExitInfo {
                exit_code: None,
                signal: running.then_some(libc::SIGKILL),
                oom_killed: false,
                finished_at: corral_api::meta::now_timestamp(),
                message: Some("shim lost".into()),
            },
            interrupted: false,
        }
    } else {
        ExitRecord::not_run("launch interrupted by a restart".into(), true)
    };
    checkpoint::write_exit_once(dir, &record)?;
    Ok(checkpoint::read_exit(dir)?.unwrap_or(record))
}

/// Settles a launch whose shim exited without a report: the task never started, and
/// the lock, held while recording that, keeps any other shim from starting it later.
pub(crate) fn no_start(dir: &TaskDir, why: String) -> Result<ExitRecord> {
    let lock = TaskLock::open(dir)?;
    let record = ExitRecord::not_run(why, true);
    if lock.try_lock()? && !dir.started().exists() {
        checkpoint::write_exit_once(dir, &record)?;
    }
    Ok(checkpoint::read_exit(dir)?.unwrap_or(record))
}

fn recovered(r: ExitRecord) -> Recovered {
    if r.interrupted {
        Recovered::Interrupted { reason: r.info.message.unwrap_or_else(|| "launch interrupted".into()) }
    } else {
        Recovered::Exited(r.info)
    }
}

pub(crate) fn recover_one(dir: &TaskDir) -> Result<Recovered> {
    let rec = checkpoint::read_launch(dir)?;
    let lock = TaskLock::open(dir)?;
    let deadline = std::time::Instant::now() + RECOVER_START_WAIT;
    loop {
        // Holding the lock while deciding keeps a late shim from starting the task.
        if lock.try_lock()? {
            return Ok(recovered(settle(dir, &rec)?));
        }
        // exit.json first: the shim writes it while still holding the lock.
        if let Some(r) = checkpoint::read_exit(dir)? {
            return Ok(recovered(r));
        }
        if let Some(s) = checkpoint::read_json::<Started>(&dir.started())? {
            return Ok(Recovered::Running(s));
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Runtime(format!("the shim of {} has not started its task", rec.spec.uid)));
        }
        std::thread::sleep(POLL);
    }
}
