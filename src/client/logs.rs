//! Reading a task's log: one long `text/plain` response, passed on as it arrives.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::Client;
use super::error::{Error, Result};

/// Options of a log read.
#[derive(Clone, Debug, Default)]
pub struct LogParams {
    /// Keep streaming as the task writes, until it ends.
    pub follow: bool,
    /// Only the last N lines (`tailLines`).
    pub tail_lines: Option<usize>,
    /// The task's stderr instead of its stdout.
    pub stderr: bool,
}

/// The bytes of a log, in order, until the server ends the response.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

impl Client {
    /// The log of task `name` in `namespace`, proxied by the server from the task's
    /// node.
    ///
    /// # Errors
    /// The server's `Status` when the task does not exist (404), is not bound to a node
    /// yet (409) or its agent cannot be reached (502, 503); a broken connection later
    /// arrives as an error item.
    pub async fn logs(&self, namespace: &str, name: &str, params: &LogParams) -> Result<LogStream> {
        let mut url =
            self.url(&["apis", corral_api::GROUP, corral_api::VERSION, "namespaces", namespace, "tasks", name, "log"]);
        {
            let mut q = url.query_pairs_mut();
            if params.follow {
                q.append_pair("follow", "true");
            }
            if let Some(n) = params.tail_lines {
                q.append_pair("tailLines", &n.to_string());
            }
            if params.stderr {
                q.append_pair("stream", "stderr");
            }
        }
        let resp = self.send(self.http.get(url)).await?;
        let server = self.shown();
        Ok(Box::pin(
            resp.bytes_stream().map(move |r| r.map_err(|e| Error::Transport { server: server.clone(), source: e })),
        ))
    }
}
