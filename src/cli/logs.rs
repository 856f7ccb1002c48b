//! `corral logs [task/]TASK [-n NS] [-f] [--tail N] [--stderr]`: a task's log, from the agent
//! of its node through the API server, written to stdout as it arrives.

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::args::LogsArgs;
use corral_api::kinds::Task;
use corral_api::logs::{LogParams, LogStream};

pub(crate) async fn run(ctx: &super::Ctx, a: LogsArgs) -> anyhow::Result<u8> {
    let stream = if a.stderr { LogStream::Stderr } else { LogStream::Stdout };
    let params = LogParams { follow: a.follow, tail_lines: a.tail.map(|n| n as u64), stream };
    let task = super::name_of::<Task>(&a.task, "task")?;
    let mut stream = ctx.client.logs(&a.namespace, task, &params).await?;
    let mut out = tokio::io::stdout();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).await?;
        // A follow is read by a person or a pipe waiting for each line.
        out.flush().await?;
    }
    Ok(0)
}
