//! Health checks of a running task, wired to the task controller.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use corral_api::kinds::task::Task;

use super::TaskContext;
use super::state::KillReason;
use crate::error::Result;
use crate::health::{self, CommandRunner, HealthUpdate};
use crate::runtime::Runtime;

/// Runs a health check command inside a task.
struct ExecInTask {
    runtime: Arc<Runtime>,
    uid: String,
}

impl CommandRunner for ExecInTask {
    fn run(&self, argv: Vec<String>, timeout: Duration) -> futures::future::BoxFuture<'static, Result<i32>> {
        let (runtime, uid) = (self.runtime.clone(), self.uid.clone());
        Box::pin(async move { runtime.exec(&uid, &argv, timeout).await })
    }
}

/// Starts the task's health checks, unless they run already or the task is being
/// killed or has ended; their verdicts update its health and wake its reconcile, and a
/// failure kills it.
pub(super) fn start_health_checks(ctx: &Arc<TaskContext>, task: &Task, uid: &str) {
    if ctx.is_closed() {
        return;
    }
    let ports = {
        let local = ctx.local.lock();
        match local.get(uid) {
            Some(l) if l.state.wants_checks() => l.state.ports().cloned().unwrap_or_default(),
            _ => return,
        }
    };
    let host: IpAddr = ctx.address.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let runner = Arc::new(ExecInTask { runtime: ctx.runtime.clone(), uid: uid.to_string() });
    let weak = Arc::downgrade(ctx);
    let (uid_cb, grace) = (uid.to_string(), Duration::from_secs(task.spec.kill_grace_period().into()));
    let handle = health::spawn(task.spec.health_checks.clone(), ports, host, runner, move |update: HealthUpdate| {
        let Some(ctx) = weak.upgrade() else { return };
        if let Some(l) = ctx.local.lock().get_mut(&uid_cb) {
            l.state.set_health(update.health.clone());
        }
        if update.failed {
            let msg = update.health.message.clone().unwrap_or_else(|| "unhealthy".into());
            ctx.kill(&uid_cb, KillReason::HealthCheckFailed(msg), grace);
        }
        ctx.wake(&uid_cb);
    });
    // Killed or ended meanwhile: the handle is dropped, which stops the checks.
    if let Some(l) = ctx.local.lock().get_mut(uid) {
        l.state.attach_checks(handle);
    }
}
