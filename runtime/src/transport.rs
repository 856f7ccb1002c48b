//! How a [`Client`](crate::client::Client) reaches the API server: over HTTP, or
//! in-process by handing requests straight to the server's router. Both go through the
//! same API semantics (validation, defaults, conflicts), so a controller behaves the
//! same inside `corral up` and as its own binary.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{Error, Result};

/// A response whose body arrives as a stream (watches never end).
pub struct Response {
    /// HTTP status.
    pub status: http::StatusCode,
    /// Body chunks as they arrive.
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl Response {
    /// Collects the whole body.
    pub async fn bytes(mut self) -> Result<Bytes> {
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = self.body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(buf.freeze())
    }
}

/// One request/response exchange with a Corral API server.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` (its URI is a path and query, e.g. `/apis/...`) and returns the
    /// response once its head has arrived.
    async fn send(&self, request: http::Request<Bytes>) -> Result<Response>;
}

/// The network transport: HTTP/1.1 or h2c to a server at a base URL.
pub struct HttpTransport {
    base: String,
    http: reqwest::Client,
}

impl HttpTransport {
    /// A transport to the server at `base` (e.g. `http://127.0.0.1:7070`).
    ///
    /// # Errors
    /// Fails if `base` is not an `http://` URL.
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(Error::Transport(format!("server URL {base:?} must start with http://")));
        }
        let http = reqwest::Client::builder().build().map_err(|e| Error::Transport(e.to_string()))?;
        Ok(HttpTransport { base, http })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, request: http::Request<Bytes>) -> Result<Response> {
        let (parts, body) = request.into_parts();
        let url = format!("{}{}", self.base, parts.uri);
        let resp = self
            .http
            .request(parts.method, &url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Transport(format!("{url}: {e}")))?;
        let status = resp.status();
        let body = resp.bytes_stream().map(|c| c.map_err(|e| Error::Transport(e.to_string()))).boxed();
        Ok(Response { status, body })
    }
}
