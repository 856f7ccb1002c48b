//! `corral exec TASK [-i] [-t] -- CMD...`: runs a command inside a running task, on
//! the task's node, as `runc exec` would (containers) or in the task's sandbox,
//! cgroups, environment and user (native tasks).
//!
//! It acts on the node's agent work dir directly, as `corral image` does, rather than
//! through the API server: the agent's HTTP API has no authentication of its callers
//! (it serves logs), and running commands in tasks must not be open to whoever reaches
//! it. Here the gate is the operating system's: the work dir, runc's state and the
//! cgroups are root's.

use corral_agent::layout::Layout;
use corral_agent::runtime::{Runtime, RuntimeConfig};
use corral_api::kinds::Task;
use corral_api::kinds::task::TaskPhase;
use corral_client::Api;

use super::args::ExecArgs;

pub(crate) async fn run(ctx: &super::Ctx, a: ExecArgs) -> anyhow::Result<u8> {
    let name = super::name_of::<Task>(&a.task, "task")?;
    let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), &a.namespace);
    let task = tasks.get(name).await?;
    let phase = task.status.as_ref().map(|s| s.phase);
    if phase != Some(TaskPhase::Running) {
        let shown = phase.and_then(|p| serde_json::to_value(p).ok()).and_then(|v| v.as_str().map(str::to_string));
        anyhow::bail!(
            "task {name:?} is {}, not RUNNING: there is nothing to exec in",
            shown.unwrap_or_else(|| "not started".to_string())
        );
    }
    let uid = task.metadata.uid.clone().unwrap_or_default();
    let node = task.spec.node_name.clone().unwrap_or_default();
    // Checked before anything is made there: a wrong --work-dir must not grow one.
    let dir = a.work_dir.join("tasks").join(&uid);
    if !dir.is_dir() {
        anyhow::bail!(
            "task {name:?} runs on node {node:?}, and its agent's work dir is not {} (no tasks/{uid} there): run \
             `corral exec` on node {node:?}, with --work-dir set to its agent's work dir",
            a.work_dir.display()
        );
    }
    let layout = Layout::new(&a.work_dir)?;
    let runtime = Runtime::new(RuntimeConfig {
        layout,
        runc: a.runc.clone(),
        shim_exe: std::env::current_exe()?,
        log_max_bytes: 0,
        log_max_files: 0,
    })?;
    let tty = a.tty && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if a.tty && !tty {
        eprintln!("corral exec: stdin is not a terminal; running without -t");
    }
    let code = runtime.exec_attached(&uid, &a.command, a.stdin || tty, tty).await?;
    // The command's own exit code, as kubectl exec and docker exec pass it on.
    Ok(u8::try_from(code).unwrap_or(1))
}
