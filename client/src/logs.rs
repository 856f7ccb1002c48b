//! Reading a task's log: one long `text/plain` response, passed on as it arrives.

use std::pin::Pin;

use bytes::Bytes;
use corral_api::logs::{LogParams, LogStream};
use futures::Stream;
use http::Method;

use crate::client::{Client, PathQuery};
use crate::error::Result;

/// The bytes of a log, in order, until the server ends the response.
pub type LogBytes = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

impl Client {
    /// The log of task `name` in `namespace`, proxied by the server from the task's
    /// node.
    ///
    /// # Errors
    /// The server's `Status` when the task does not exist (404), is not bound to a node
    /// yet (409) or its agent cannot be reached (502, 503); a broken connection later
    /// arrives as an error item.
    pub async fn logs(&self, namespace: &str, name: &str, params: &LogParams) -> Result<LogBytes> {
        let tail = params.tail_lines.map(|n| n.to_string());
        let path = PathQuery::new(format!(
            "/apis/{}/{}/namespaces/{namespace}/tasks/{name}/log",
            corral_api::GROUP,
            corral_api::VERSION
        ))
        .param_opt("follow", params.follow.then_some("true"))
        .param_opt("tailLines", tail.as_deref())
        .param_opt("stream", (params.stream == LogStream::Stderr).then_some("stderr"));
        let resp = self.check(self.send(Method::GET, path.into_text(), None).await?).await?;
        Ok(resp.body)
    }
}
