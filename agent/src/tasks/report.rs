//! What the agent writes to a task's object: its status, its end, the agent's finalizer,
//! and Events.

use corral_api::kinds::task::{AGENT_FINALIZER, Task, TaskPhase, TaskStatus};
use corral_runtime::{Action, EventType};

use super::TaskContext;
use super::state::{End, KillReason};
use crate::error::Result;
use crate::runtime::Started;

/// Maps how a task ended (and why the agent killed it, if it did) to its final status.
pub(super) fn apply_end(st: &mut TaskStatus, end: &End, kill: Option<&KillReason>) {
    match end {
        End::NotStarted(message) => {
            st.phase = TaskPhase::Failed;
            st.reason = Some("LaunchFailed".into());
            st.message = Some(message.clone());
            st.finish_time = Some(corral_api::meta::now_timestamp());
        }
        End::Interrupted(reason) => {
            st.phase = TaskPhase::Failed;
            st.reason = Some("LaunchInterrupted".into());
            st.message = Some(reason.clone());
            st.finish_time = Some(corral_api::meta::now_timestamp());
        }
        End::Exited(info) => {
            st.exit_code = info.exit_code;
            st.signal = info.signal;
            st.finish_time = Some(info.finished_at.clone());
            let (phase, reason, message) = match (kill, info) {
                (Some(KillReason::AlreadyTerminal), _) => {
                    // Keep what was recorded (e.g. LOST); only the exit details are new.
                    (st.phase, st.reason.clone().unwrap_or_default(), st.message.clone().unwrap_or_default())
                }
                (_, i) if i.oom_killed => {
                    (TaskPhase::Failed, "OOMKilled".to_string(), "killed by the kernel: over its memory limit".into())
                }
                (Some(KillReason::HealthCheckFailed(m)), _) => {
                    (TaskPhase::Failed, "HealthCheckFailed".into(), format!("killed after failing health checks: {m}"))
                }
                (Some(KillReason::Deleted), _) => {
                    (TaskPhase::Killed, "Killed".into(), "killed: the task was deleted".into())
                }
                (Some(KillReason::Requested), _) => (TaskPhase::Killed, "Killed".into(), "killed on request".into()),
                (None, i) if i.exit_code == Some(0) => {
                    (TaskPhase::Finished, "Completed".into(), "exited with code 0".into())
                }
                (None, i) if i.exit_code.is_some() => {
                    (TaskPhase::Failed, "Error".into(), format!("exited with code {}", i.exit_code.unwrap_or_default()))
                }
                (None, i) if i.signal.is_some() => {
                    (TaskPhase::Failed, "Signaled".into(), format!("killed by signal {}", i.signal.unwrap_or_default()))
                }
                (None, i) => (
                    TaskPhase::Failed,
                    "ExecutorLost".into(),
                    i.message.clone().unwrap_or_else(|| "the task's supervisor vanished".into()),
                ),
            };
            st.phase = phase;
            st.reason = Some(reason).filter(|r| !r.is_empty());
            st.message = Some(match &info.message {
                Some(m) if !message.contains(m.as_str()) && !m.is_empty() => format!("{message} ({m})"),
                _ => message,
            })
            .filter(|m| !m.is_empty());
        }
    }
}

/// Sets what a running task reports: `RUNNING` (unless already terminal), when and
/// where it started.
pub(super) fn running_status(st: &mut TaskStatus, started: &Started, address: &str) {
    if !st.phase.is_terminal() {
        st.phase = TaskPhase::Running;
    }
    st.start_time = Some(started.started_at.clone());
    st.container_id = started.container_id.clone();
    st.host_ip = Some(address.to_string());
}

/// Writes a task's finalizers retry on a conflict this many times: each conflict
/// follows someone else's write, so the loop ends.
const WRITE_ATTEMPTS: usize = 4;

/// Removes the agent's finalizer, once nothing of the task runs here.
pub(super) async fn drop_finalizer(ctx: &TaskContext, task: Task) -> Result<Task> {
    change_finalizers(ctx, task, |t| {
        let had = t.metadata.finalizers.iter().any(|f| f == AGENT_FINALIZER);
        t.metadata.finalizers.retain(|f| f != AGENT_FINALIZER);
        had
    })
    .await
}

/// Adds the agent's finalizer if missing: from then on, deleting the task waits until
/// the agent has stopped it.
pub(super) async fn ensure_finalizer(ctx: &TaskContext, task: Task) -> Result<Task> {
    change_finalizers(ctx, task, |t| {
        if t.metadata.finalizers.iter().any(|f| f == AGENT_FINALIZER) || t.metadata.deletion_timestamp.is_some() {
            return false;
        }
        t.metadata.finalizers.push(AGENT_FINALIZER.into());
        true
    })
    .await
}

/// Applies `change` (which says whether it changed anything) to the task and writes it.
/// A conflict means someone else wrote the task meanwhile (a label, a status): the
/// change is made again on the fresh object, which carries their write, so nothing of
/// theirs is lost and no conflict reaches the reconcile (which would log it).
async fn change_finalizers(ctx: &TaskContext, mut task: Task, change: impl Fn(&mut Task) -> bool) -> Result<Task> {
    for _ in 1..WRITE_ATTEMPTS {
        if !change(&mut task) {
            return Ok(task);
        }
        match ctx.tasks.update(&task).await {
            Err(e) if e.is_conflict() => task = fresh(ctx, &task).await?,
            other => return Ok(other?),
        }
    }
    if !change(&mut task) {
        return Ok(task);
    }
    update(ctx, &task).await
}

/// Reports a task that could not start as `FAILED` with `reason`.
pub(super) async fn fail(
    ctx: &TaskContext,
    task: &Task,
    mut st: TaskStatus,
    reason: &str,
    message: &str,
) -> Result<Action> {
    tracing::warn!(task = %task.metadata.name, reason, message, "task failed to start");
    st.phase = TaskPhase::Failed;
    st.reason = Some(reason.into());
    st.message = Some(message.into());
    st.finish_time = Some(corral_api::meta::now_timestamp());
    report_end(ctx, task, st).await?;
    Ok(Action::await_change())
}

/// Writes a task's final status, counts it, and records it as an Event on the task.
pub(super) async fn report_end(ctx: &TaskContext, task: &Task, st: TaskStatus) -> Result<Task> {
    let (phase, reason) = (st.phase, st.reason.clone().unwrap_or_default());
    let message = st.message.clone().unwrap_or_else(|| format!("{phase:?}"));
    let task = write_status(ctx, task, st).await?;
    ctx.metrics.ended(phase);
    let ev = if phase == TaskPhase::Finished { EventType::Normal } else { EventType::Warning };
    let _ = ctx.recorder.publish(&task, ev, &reason, &message).await;
    Ok(task)
}

/// Records that the agent is stopping `task`, and why, as an Event (`Killing`, as the
/// kubelet names it); its end is recorded when it has ended. Best effort.
pub(super) async fn record_kill(ctx: &TaskContext, task: &Task, why: &str, grace: std::time::Duration) {
    let message = format!("stopping the task: {why} (SIGTERM, then SIGKILL after {}s)", grace.as_secs());
    let _ = ctx.recorder.publish(task, EventType::Normal, "Killing", &message).await;
}

async fn update(ctx: &TaskContext, task: &Task) -> Result<Task> {
    Ok(ctx.tasks.update(task).await?)
}

/// The task as stored now (the agent's API spans every namespace; a get needs one).
async fn fresh(ctx: &TaskContext, task: &Task) -> Result<Task> {
    let ns = task.metadata.namespace.as_deref().unwrap_or("default");
    Ok(ctx.tasks.in_namespace(ns).get(&task.metadata.name).await?)
}

/// Writes the task's status, which is the agent's to write. A conflict caused by a
/// change elsewhere in the object (a finalizer, labels), or by this agent's own
/// earlier write that its cache had not yet seen, is no disagreement about the
/// status: the write is made again on the fresh revision. Only an end recorded there
/// meanwhile (the node lifecycle controller marking the task `LOST`) is a verdict this
/// write must not overwrite: then the conflict stands and the reconcile starts again
/// from it.
pub(super) async fn write_status(ctx: &TaskContext, task: &Task, status: TaskStatus) -> Result<Task> {
    let mut t = task.clone();
    t.status = Some(status);
    for _ in 1..WRITE_ATTEMPTS {
        match report(ctx, &t).await {
            Err(e) if e.is_conflict() => {
                let fresh = fresh(ctx, task).await?;
                // Ours may have been built from a copy older than a write of this
                // agent's own (a task that ended before the cache heard it was
                // RUNNING): what that write recorded and ours lacks is kept.
                if let (Some(ours), Some(theirs)) = (t.status.as_mut(), fresh.status.as_ref()) {
                    keep_start(ours, theirs);
                }
                if fresh.status == t.status {
                    return Ok(fresh);
                }
                let ended_meanwhile =
                    fresh.status.as_ref().is_some_and(|s| s.phase.is_terminal()) && fresh.status != task.status;
                if ended_meanwhile || fresh.metadata.uid != task.metadata.uid {
                    return Err(e.into());
                }
                t.metadata = fresh.metadata;
            }
            other => return Ok(other?),
        }
    }
    Ok(report(ctx, &t).await?)
}

/// Writes `t`'s status through the node's reporter, which sends the statuses written
/// meanwhile (tasks started or ended together) in one request; `t` as written.
async fn report(ctx: &TaskContext, t: &Task) -> corral_client::Result<Task> {
    ctx.reporter.write_task(t.clone()).await
}

/// Fills what `ours` lacks of a start `theirs` recorded: when, in which container, on
/// which address.
fn keep_start(ours: &mut TaskStatus, theirs: &TaskStatus) {
    if ours.start_time.is_none() {
        ours.start_time.clone_from(&theirs.start_time);
    }
    if ours.container_id.is_none() {
        ours.container_id.clone_from(&theirs.container_id);
    }
    if ours.host_ip.is_none() {
        ours.host_ip.clone_from(&theirs.host_ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_built_from_a_copy_older_than_running_keeps_the_start() {
        let running = TaskStatus {
            phase: TaskPhase::Running,
            start_time: Some("2026-12-04T18:00:00Z".into()),
            container_id: Some("c1".into()),
            host_ip: Some("127.0.0.1".into()),
            ..Default::default()
        };
        let mut end = TaskStatus { phase: TaskPhase::Failed, exit_code: Some(3), ..Default::default() };
        keep_start(&mut end, &running);
        assert_eq!(end.start_time, running.start_time);
        assert_eq!((end.container_id.as_deref(), end.host_ip.as_deref()), (Some("c1"), Some("127.0.0.1")));
        assert_eq!((end.phase, end.exit_code), (TaskPhase::Failed, Some(3)));

        let mut newer = TaskStatus { start_time: Some("2026-12-04T18:00:05Z".into()), ..Default::default() };
        keep_start(&mut newer, &running);
        assert_eq!(newer.start_time.as_deref(), Some("2026-12-04T18:00:05Z"), "ours is never replaced");
    }
    use crate::runtime::ExitInfo;

    fn exit(code: Option<i32>, signal: Option<i32>, oom: bool) -> End {
        End::Exited(ExitInfo {
            exit_code: code,
            signal,
            oom_killed: oom,
            finished_at: "2026-11-22T00:00:00Z".into(),
            message: None,
        })
    }

    fn end(e: End, kill: Option<KillReason>) -> TaskStatus {
        let mut st = TaskStatus { phase: TaskPhase::Running, ..Default::default() };
        apply_end(&mut st, &e, kill.as_ref());
        st
    }

    #[test]
    fn exits_map_to_phases_and_reasons() {
        let ok = end(exit(Some(0), None, false), None);
        assert_eq!((ok.phase, ok.reason.as_deref()), (TaskPhase::Finished, Some("Completed")));
        let bad = end(exit(Some(3), None, false), None);
        assert_eq!((bad.phase, bad.reason.as_deref(), bad.exit_code), (TaskPhase::Failed, Some("Error"), Some(3)));
        let oom = end(exit(None, Some(9), true), None);
        assert_eq!((oom.phase, oom.reason.as_deref()), (TaskPhase::Failed, Some("OOMKilled")));
        let killed = end(exit(None, Some(15), false), Some(KillReason::Deleted));
        assert_eq!((killed.phase, killed.signal), (TaskPhase::Killed, Some(15)));
        let health = end(exit(None, Some(9), false), Some(KillReason::HealthCheckFailed("x".into())));
        assert_eq!((health.phase, health.reason.as_deref()), (TaskPhase::Failed, Some("HealthCheckFailed")));
        let interrupted = end(End::Interrupted("restart".into()), None);
        assert_eq!(interrupted.reason.as_deref(), Some("LaunchInterrupted"));
    }

    #[test]
    fn a_lost_task_killed_afterwards_stays_lost() {
        let mut st =
            TaskStatus { phase: TaskPhase::Lost, reason: Some("NodeUnreachable".into()), ..Default::default() };
        apply_end(&mut st, &exit(None, Some(15), false), Some(&KillReason::AlreadyTerminal));
        assert_eq!((st.phase, st.reason.as_deref()), (TaskPhase::Lost, Some("NodeUnreachable")));
    }
}
