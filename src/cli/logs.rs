//! `corral logs [task/]TASK [-n NS] [-f] [--tail N] [--stderr]`: a task's log, from the agent
//! of its node through the API server, written to stdout as it arrives.

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::args::LogsArgs;
use corral_api::Resource as _;
use corral_api::kinds::Task;
use corral_api::logs::{LogParams, LogStream};

pub(crate) async fn run(ctx: &super::Ctx, a: LogsArgs) -> anyhow::Result<u8> {
    let stream = if a.stderr { LogStream::Stderr } else { LogStream::Stdout };
    let params = LogParams { follow: a.follow, tail_lines: a.tail.map(|n| n as u64), stream };
    let task = task_name(&a.task)?;
    let mut stream = ctx.client.logs(&a.namespace, task, &params).await?;
    let mut out = tokio::io::stdout();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).await?;
        // A follow is read by a person or a pipe waiting for each line.
        out.flush().await?;
    }
    Ok(0)
}

/// The task's name, given as `NAME` or `task/NAME` (as `corral get tasks -o name`
/// prints it).
fn task_name(given: &str) -> anyhow::Result<&str> {
    match given.split_once('/') {
        None => Ok(given),
        Some((kind, name)) if !name.is_empty() && !name.contains('/') && Task::kind_info().matches_name(kind) => {
            Ok(name)
        }
        Some(_) => anyhow::bail!("{given:?}: give the task as NAME or task/NAME; only tasks have logs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_named_alone_or_as_task_slash_name() {
        assert_eq!(task_name("web-1").unwrap(), "web-1");
        assert_eq!(task_name("task/web-1").unwrap(), "web-1");
        assert_eq!(task_name("tasks/web-1").unwrap(), "web-1");
        assert!(task_name("service/web").is_err());
        assert!(task_name("task/").is_err());
    }
}
