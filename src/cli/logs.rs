//! `corral logs [task/]TASK [-n NS] [-f] [--tail N] [--stderr]`: a task's log, from the agent
//! of its node through the API server, written to stdout as it arrives.

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::args::LogsArgs;
use corral_api::kinds::Task;
use corral_api::logs::{LogParams, LogStream};
use corral_client::Api;

pub(crate) async fn run(ctx: &super::Ctx, a: LogsArgs) -> anyhow::Result<u8> {
    let stream = if a.stderr { LogStream::Stderr } else { LogStream::Stdout };
    let params = LogParams { follow: a.follow, tail_lines: a.tail.map(|n| n as u64), stream };
    let task = super::name_of::<Task>(&a.task, "task")?;
    let mut stream = match ctx.client.logs(&a.namespace, task, &params).await {
        Ok(s) => s,
        // A task that never started makes the server's answer about its node (none
        // yet, gone, no agent) rather than about the task: the task's own account of
        // itself says more. Were the task itself missing, the server's error stands.
        Err(e) => return Err(never_started(ctx, &a.namespace, task).await.unwrap_or_else(|| e.into())),
    };
    let mut out = tokio::io::stdout();
    let mut written = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        written += chunk.len();
        out.write_all(&chunk).await?;
        // A follow is read by a person or a pipe waiting for each line.
        out.flush().await?;
    }
    // An empty log of a task that never ran is not "it printed nothing": say why.
    if written == 0
        && let Some(why) = never_started(ctx, &a.namespace, task).await
    {
        return Err(why);
    }
    Ok(0)
}

/// Why task `name` has no log, when it never started: its phase, reason and message.
/// `None` when it did start (or cannot be read: the caller's error stands).
async fn never_started(ctx: &super::Ctx, namespace: &str, name: &str) -> Option<anyhow::Error> {
    let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), namespace);
    let task = tasks.get(name).await.ok()?;
    let Some(status) = task.status else {
        let why = match task.spec.node_name {
            None => format!(
                "task {name:?} never started, so it has no log: it is not bound to a node yet (a scheduler, or \
                 spec.nodeName, places it)"
            ),
            Some(node) => format!(
                "task {name:?} never started, so it has no log: node {node:?} has not taken it up yet (its agent \
                 reports a phase once it does; `corral get node {node}` shows whether the node is Ready)"
            ),
        };
        return Some(anyhow::anyhow!(why));
    };
    if status.start_time.is_some() || status.phase == corral_api::kinds::task::TaskPhase::Running {
        return None;
    }
    let phase = serde_json::to_value(status.phase).ok()?.as_str().unwrap_or_default().to_string();
    let mut why = format!("task {name:?} never started, so it has no log: it is {phase}");
    if let Some(reason) = &status.reason {
        why.push_str(&format!(" ({reason})"));
    }
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        why.push_str(&format!(": {message}"));
    }
    if !status.phase.is_terminal() {
        why.push_str("; run the command again once it runs, or follow it with -f");
    } else {
        why.push_str(&format!("; `corral describe task {name} -n {namespace}` shows its events"));
    }
    Some(anyhow::anyhow!(why))
}
