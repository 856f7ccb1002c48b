//! Background work on a launched task: watching for its end, killing it, cleaning up
//! after it.

use std::sync::Arc;
use std::time::Duration;

use super::TaskContext;
use super::state::{End, KillReason, Local, TaskState};
use crate::layout::Layout;
use crate::runtime::ExitInfo;

impl TaskContext {
    /// Waits for the task's end in the background, then wakes its reconcile.
    pub(super) fn watch_exit(self: &Arc<Self>, uid: &str) {
        {
            let mut local = self.local.lock();
            let l = local.entry(uid.to_string()).or_insert_with(|| Local::new(TaskState::found_launched()));
            if !l.state.watch() {
                return;
            }
        }
        let me = self.clone();
        let uid = uid.to_string();
        tokio::spawn(async move {
            let ended = match me.runtime.wait(&uid).await {
                Ok(info) => End::Exited(info),
                // It did run: its end is unknown, not an interrupted launch.
                Err(e) => End::Exited(ExitInfo {
                    exit_code: None,
                    signal: None,
                    oom_killed: false,
                    finished_at: corral_api::meta::now_timestamp(),
                    message: Some(format!("the agent lost track of the task: {e}")),
                }),
            };
            tracing::info!(uid, ?ended, "task ended");
            if let Some(l) = me.local.lock().get_mut(&uid) {
                l.state.ended(ended);
            }
            me.metrics.running.set(me.running_count() as i64);
            me.wake(&uid);
        });
    }

    /// Kills the task in the background (SIGTERM, SIGKILL after `grace`), once: the
    /// first reason stands, and is recorded on disk before the signal goes out.
    /// Returns whether this call issued the kill (the caller records it as an Event).
    pub(super) fn kill(&self, uid: &str, reason: KillReason, grace: Duration) -> bool {
        if self.is_closed() {
            return false;
        }
        {
            let mut local = self.local.lock();
            let l = local.entry(uid.to_string()).or_insert_with(|| Local::new(TaskState::found_launched()));
            if !l.state.kill(reason.clone()) {
                return false;
            }
        }
        tracing::info!(uid, ?reason, grace_s = grace.as_secs(), "killing task");
        // A restarted agent must still know why the task ended.
        if let Ok(bytes) = serde_json::to_vec(&reason)
            && let Err(e) = crate::layout::write_replace(&kill_reason_path(&self.layout, uid), &bytes)
        {
            tracing::warn!(uid, error = %e, "cannot record why the task is killed");
        }
        let runtime = self.runtime.clone();
        let uid = uid.to_string();
        tokio::spawn(async move {
            if let Err(e) = runtime.kill(&uid, grace).await {
                tracing::warn!(uid, error = %e, "cannot kill task");
            }
        });
        true
    }
}

fn kill_reason_path(layout: &Layout, uid: &str) -> std::path::PathBuf {
    layout.task(uid).join("kill.json")
}

/// Why the agent killed the task, as recorded before the signal went out.
pub(super) fn read_kill_reason(layout: &Layout, uid: &str) -> Option<KillReason> {
    let bytes = std::fs::read(kill_reason_path(layout, uid)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// After the task's end, once: removes what the runtime left (container, overlay,
/// cgroups) and the task's image lease, and frees its ports.
pub(super) async fn cleanup(ctx: &TaskContext, uid: &str) {
    // Without a record (dropped with a deleted task's), cleaning again is harmless.
    if let Some(l) = ctx.local.lock().get_mut(uid)
        && !l.state.clean_up()
    {
        return;
    }
    if let Err(e) = ctx.runtime.cleanup(uid).await {
        tracing::warn!(uid, error = %e, "cannot clean up after the task");
    }
    if let Err(e) = ctx.images.release_all(uid).await {
        tracing::warn!(uid, error = %e, "cannot release the task's image lease");
    }
}
