//! Shared by the `api_*` integration tests: the test kit's control plane (a real
//! server on 127.0.0.1:0 with a real sled store in a temporary directory, and the
//! built-in controllers), driven over HTTP with reqwest.

#![allow(dead_code)] // each test binary uses a different subset

use corral_testkit::{Options, PATIENCE};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Base path of namespaced ConfigMaps in `default`.
pub const CMS: &str = "/apis/corral.dev/v1/namespaces/default/configmaps";

/// A running control plane and an HTTP client for it.
pub struct TestServer {
    inner: corral_testkit::TestServer,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Client without proxies, sending the administrator's token.
    pub client: reqwest::Client,
}

impl TestServer {
    /// Starts a control plane with default settings in a fresh directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a control plane after letting the test adjust its settings.
    pub async fn start_with(adjust: impl FnOnce(&mut Options)) -> Self {
        let inner = corral_testkit::TestServer::start_with(adjust).await;
        // These tests write native tasks (none runs: there is no agent); the
        // restricted default has tests of its own (security_*.rs, agent_security.rs).
        inner.set_task_security("default", "privileged").await;
        Self::wrap(inner)
    }

    fn wrap(inner: corral_testkit::TestServer) -> Self {
        let base = inner.base.clone();
        let client = inner.http();
        TestServer { inner, base, client }
    }

    /// Stops the server gracefully and starts a new one on the same data, with
    /// default settings.
    pub async fn restart(self) -> Self {
        Self::wrap(self.inner.restart_with(|_| {}).await)
    }

    /// Stops the server gracefully, waits for `down`, and starts it again on the same
    /// data with the same settings.
    pub async fn restart_after(self, down: impl std::future::Future<Output = ()>) -> Self {
        Self::wrap(self.inner.restart_after(down).await)
    }

    /// Stops the server gracefully.
    pub async fn stop(self) {
        self.inner.stop().await;
    }

    /// A Corral client of the server, as the administrator.
    pub fn api(&self) -> corral_client::Client {
        self.inner.client()
    }

    /// The administrator's bearer token.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The test kit's server underneath.
    pub fn kit(&self) -> &corral_testkit::TestServer {
        &self.inner
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

    /// Registers node `name` as its agent would, Ready with `cpus`, `mem` MiB and
    /// host ports 31000-31099. No agent runs on it: without heartbeats the node
    /// lifecycle controller, if it runs, turns it Unreachable after its grace period.
    pub async fn register_node(&self, name: &str, cpus: f64, mem: u64) {
        const NODES: &str = "/apis/corral.dev/v1/nodes";
        let n = json!({"apiVersion": "corral.dev/v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"attributes": {"hostname": name}}});
        let (code, mut n) = self.post(NODES, &n).await;
        assert_eq!(code, StatusCode::CREATED, "{n}");
        n["status"] = json!({"phase": "Ready", "capacity": {"cpus": cpus, "mem": mem},
            "portRanges": [{"begin": 31000, "end": 31099}]});
        let (code, body) = self.put(&format!("{NODES}/{name}/status"), &n).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }

    /// GETs `path` until `pred` holds (within the test kit's patience); panics with
    /// the last answer otherwise.
    pub async fn wait_for(&self, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let found = corral_testkit::within_patience(async || {
            let (code, v) = self.get(path).await;
            if code == StatusCode::OK && pred(&v) {
                return Some(v);
            }
            last = v;
            None
        })
        .await;
        found.unwrap_or_else(|| panic!("waited in vain for {what}; last: {last:#}"))
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
            let chunk = tokio::time::timeout(PATIENCE, self.stream.next()).await.expect("watch event arrives");
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

/// The fields named by a `Status`'s causes (a 422), in order.
pub fn causes(body: &Value) -> Vec<String> {
    body["details"]["causes"]
        .as_array()
        .map(|c| c.iter().map(|c| c["field"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}
