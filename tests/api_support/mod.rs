//! Shared by the `api_*` integration tests: a real server on 127.0.0.1:0 with a real
//! sled store in a temporary directory, driven over HTTP with reqwest.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use corral::server::{RunningServer, ServerConfig};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Upper bound on waiting for one watch event: a guard against hanging forever, not a
/// timing assertion.
pub const EVENT_WAIT: Duration = Duration::from_secs(30);

/// Base path of namespaced ConfigMaps in `default`.
pub const CMS: &str = "/apis/corral.dev/v1/namespaces/default/configmaps";

/// A running server and a client for it.
pub struct TestServer {
    server: Option<RunningServer>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Client without proxies.
    pub client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with default settings in a fresh directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after letting the test adjust its configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, adjust).await
    }

    async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut cfg = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().join("data"),
            ..ServerConfig::default()
        };
        adjust(&mut cfg);
        let server = corral::server::start(cfg).await.expect("server starts");
        let base = format!("http://{}", server.addr());
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        TestServer { server: Some(server), base, client, dir }
    }

    /// Stops the server gracefully and starts a new one on the same data.
    pub async fn restart(mut self) -> Self {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, |_| {}).await
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }

    /// Full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional JSON body; returns the status and the body
    /// parsed as JSON (`Value::String` when it is not JSON).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        read(req.send().await.expect("request is answered")).await
    }

    /// Sends raw bytes with a content type.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let req = self.client.request(method, self.url(path)).header("content-type", content_type).body(body);
        read(req.send().await.expect("request is answered")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
        self.send_raw(reqwest::Method::PATCH, path, content_type, body.as_bytes().to_vec()).await
    }

    /// The store's current revision.
    pub async fn revision(&self) -> u64 {
        let (code, v) = self.get("/admin/revision").await;
        assert_eq!(code, StatusCode::OK, "{v}");
        v["revision"].as_u64().expect("revision is a number")
    }

    /// Opens a watch; panics unless it answers 200.
    pub async fn watch(&self, path_and_query: &str) -> Watch {
        let resp = self.client.get(self.url(path_and_query)).send().await.expect("watch is answered");
        assert_eq!(resp.status(), StatusCode::OK, "watch {path_and_query}");
        Watch { stream: resp.bytes_stream().boxed(), buf: Vec::new() }
    }
}

async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let code = resp.status();
    let bytes = resp.bytes().await.expect("body is read");
    let v =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (code, v)
}

/// An open watch stream, read event by event.
pub struct Watch {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Watch {
    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("each line is one JSON event"));
            }
            let chunk = tokio::time::timeout(EVENT_WAIT, self.stream.next()).await.expect("watch event arrives");
            match chunk {
                Some(c) => self.buf.extend_from_slice(&c.expect("watch stream reads")),
                None => {
                    assert!(self.buf.is_empty(), "stream ended mid-line");
                    return None;
                }
            }
        }
    }

    /// The next event that is not a bookmark.
    pub async fn next_change(&mut self) -> Value {
        loop {
            let ev = self.next().await.expect("stream stays open");
            if ev["type"] != "BOOKMARK" {
                return ev;
            }
        }
    }
}

/// A ConfigMap manifest in `default`.
pub fn cm(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "corral.dev/v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"data": data},
    })
}

/// `metadata.resourceVersion` of an object.
pub fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"].as_str().expect("resourceVersion").to_string()
}

/// Path of ConfigMap `name` in `default`.
pub fn cm_path(name: &str) -> String {
    format!("{CMS}/{name}")
}
