//! Task logs through the API server: the real server proxies to a real agent HTTP API
//! serving log files from a temporary work dir.

mod api_support;

use std::path::PathBuf;

use api_support::TestServer;
use corral_agent::Layout;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A guard against hanging forever, not a timing assertion.
use corral_testkit::PATIENCE;

const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";

/// A real agent HTTP API on 127.0.0.1:0 over a temporary work dir.
struct Agent {
    layout: Layout,
    endpoint: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Agent {
    async fn start() -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path().join("work")).expect("layout");
        let router = corral_agent::http::router(corral_agent::http::AgentHttp {
            layout: layout.clone(),
            registry: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(corral_agent::http::serve(listener, router, async move {
            let _ = stopped.await;
        }));
        Agent { layout, endpoint, _dir: dir, _stop: stop }
    }

    fn logs(&self, uid: &str) -> PathBuf {
        let logs = self.layout.task(uid).join("logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        logs
    }

    fn append(&self, uid: &str, file: &str, text: &str) {
        use std::io::Write;
        let path = self.logs(uid).join(file);
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open log");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn exit(&self, uid: &str) {
        corral_agent::layout::write_atomic(&self.layout.task(uid).join("exit.json"), b"{\"exitCode\":0}")
            .expect("exit.json");
    }
}

/// Creates node `node` (with `endpoint` as its agent endpoint, if any) through the API.
/// Acts as the node itself: only a node sets its own agent endpoint.
async fn node(s: &TestServer, node: &str, endpoint: Option<&str>) {
    let http = corral_testkit::authorized_http(&s.kit().node_token(node).await);
    let resp = http
        .post(s.url("/apis/corral.dev/v1/nodes"))
        .json(&json!({"apiVersion":"corral.dev/v1","kind":"Node","metadata":{"name":node},"spec":{}}))
        .send()
        .await
        .expect("create node");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let mut obj: serde_json::Value = resp.json().await.expect("node");
    if let Some(e) = endpoint {
        obj["status"] = json!({"phase": "Ready", "agentEndpoint": e});
        let resp = http
            .put(s.url(&format!("/apis/corral.dev/v1/nodes/{node}/status")))
            .json(&obj)
            .send()
            .await
            .expect("node status");
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

/// Creates task `name` bound to `node` (unbound when `None`); returns its uid.
async fn task(s: &TestServer, name: &str, node: Option<&str>) -> String {
    let mut spec = json!({"command": ["/bin/echo", "hi"]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    let (code, obj) =
        s.post(TASKS, &json!({"apiVersion":"corral.dev/v1","kind":"Task","metadata":{"name":name},"spec":spec})).await;
    assert_eq!(code, StatusCode::CREATED, "{obj}");
    obj["metadata"]["uid"].as_str().expect("uid").to_string()
}

async fn text(s: &TestServer, path: &str) -> (StatusCode, String) {
    let resp = s.client.get(s.url(path)).send().await.expect("answered");
    let code = resp.status();
    let body = tokio::time::timeout(PATIENCE, resp.text()).await.expect("body ends").expect("body");
    (code, body)
}

fn log_path(name: &str, query: &str) -> String {
    format!("{TASKS}/{name}/log{query}")
}

/// A server, an agent, its node `n1` and task `name` bound to it; returns the task's uid
/// too.
async fn task_on_agent(name: &str) -> (TestServer, Agent, String) {
    let s = TestServer::start().await;
    let agent = Agent::start().await;
    node(&s, "n1", Some(&agent.endpoint)).await;
    let uid = task(&s, name, Some("n1")).await;
    (s, agent, uid)
}

/// Reads `body` into `got` until it contains `want`.
async fn read_until(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    got: &mut String,
    want: &str,
) {
    while !got.contains(want) {
        let chunk = tokio::time::timeout(PATIENCE, body.next())
            .await
            .unwrap_or_else(|_| panic!("{want:?} did not arrive; got {got:?}"))
            .expect("stream still open")
            .expect("chunk");
        got.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
}

/// Follows task `name`'s log through the server; returns the open body once exactly
/// `first` (the log so far) has arrived.
async fn follow(
    s: &TestServer,
    name: &str,
    first: &str,
) -> impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin + use<> {
    let resp = s.client.get(s.url(&log_path(name, "?follow=true"))).send().await.expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut got = String::new();
    read_until(&mut body, &mut got, first).await;
    assert_eq!(got, first);
    body
}

#[tokio::test]
async fn logs_tail_and_stderr_are_read_through_the_server() {
    let (s, agent, uid) = task_on_agent("web").await;
    agent.append(&uid, "stdout.1", "one\ntwo\n");
    agent.append(&uid, "stdout", "three\nfour\n");
    agent.append(&uid, "stderr", "oops\n");

    for (query, want) in
        [("", "one\ntwo\nthree\nfour\n"), ("?tailLines=3", "two\nthree\nfour\n"), ("?stream=stderr", "oops\n")]
    {
        let (code, body) = text(&s, &log_path("web", query)).await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, want), "{query}");
    }
    let resp = s.client.get(s.url(&log_path("web", ""))).send().await.expect("answered");
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
}

#[tokio::test]
async fn a_follow_gets_later_lines_and_ends_when_the_task_has_exited() {
    let (s, agent, uid) = task_on_agent("job").await;
    agent.append(&uid, "stdout", "early\n");

    let mut body = follow(&s, "job", "early\n").await;
    let mut got = String::from("early\n");
    agent.append(&uid, "stdout", "later\n");
    read_until(&mut body, &mut got, "later\n").await;
    agent.append(&uid, "stdout", "last\n");
    agent.exit(&uid);
    let rest = tokio::time::timeout(PATIENCE, body.collect::<Vec<_>>()).await.expect("the follow ends after exit");
    for chunk in rest {
        got.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf-8"));
    }
    assert_eq!(got, "early\nlater\nlast\n");
}

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn log_errors_say_what_is_missing() {
    let s = TestServer::start().await;
    let agent = Agent::start().await;
    node(&s, "n1", Some(&agent.endpoint)).await;
    node(&s, "bare", None).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("address"))
    };
    node(&s, "gone", Some(&closed)).await;
    task(&s, "unbound", None).await;
    task(&s, "not-launched", Some("n1")).await;
    task(&s, "on-bare", Some("bare")).await;
    task(&s, "on-gone", Some("gone")).await;
    task(&s, "on-missing", Some("nowhere")).await;

    for (task, query, want, what) in [
        ("nope", "", StatusCode::NOT_FOUND, "Task \"nope\" not found"),
        ("unbound", "", StatusCode::CONFLICT, "task \"unbound\" is not bound to a node yet"),
        ("not-launched", "", StatusCode::NOT_FOUND, "has no logs on this node"),
        ("on-bare", "", StatusCode::SERVICE_UNAVAILABLE, "node \"bare\" has no agent endpoint"),
        ("on-gone", "", StatusCode::BAD_GATEWAY, "cannot reach the agent of node \"gone\""),
        ("on-missing", "", StatusCode::NOT_FOUND, "node \"nowhere\", which does not exist"),
        ("not-launched", "?tailLines=-1", StatusCode::BAD_REQUEST, "tailLines"),
        ("not-launched", "?follow=maybe", StatusCode::BAD_REQUEST, "follow"),
        ("not-launched", "?stream=stdin", StatusCode::BAD_REQUEST, "stream"),
    ] {
        let (code, v) = s.get(&log_path(task, query)).await;
        assert_eq!(code, want, "{task}{query}: {v}");
        assert_eq!(v["kind"], "Status", "{task}{query}: {v}");
        assert!(message(&v).contains(what), "{task}{query}: {v}");
    }

    let (code, v) = s.call(reqwest::Method::POST, &log_path("unbound", ""), Some(&json!({}))).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{v}");
}

#[tokio::test]
async fn discovery_lists_the_log_subresource() {
    let s = TestServer::start().await;
    let (code, gv) = s.get("/apis/corral.dev/v1").await;
    assert_eq!(code, StatusCode::OK, "{gv}");
    let log = gv["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == "tasks/log")).cloned();
    assert_eq!(log, Some(json!({"name": "tasks/log", "kind": "Task", "namespaced": true, "verbs": ["get"]})));
}

/// How many of this process's descriptors have `path` open.
fn open_descriptors(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

#[tokio::test]
async fn a_client_leaving_a_follow_ends_the_read_on_the_agent() {
    let (s, agent, uid) = task_on_agent("svc").await;
    agent.append(&uid, "stdout", "up\n");
    let log = agent.layout.task(&uid).join("logs").join("stdout");

    let body = follow(&s, "svc", "up\n").await;
    assert_eq!(open_descriptors(&log), 1);
    drop(body);
    let closed = corral_testkit::within_patience(async || (open_descriptors(&log) == 0).then_some(())).await;
    assert!(closed.is_some(), "the agent still reads the log after the client left");
}

#[tokio::test]
async fn the_server_shuts_down_despite_an_open_follow() {
    let (s, agent, uid) = task_on_agent("svc").await;
    agent.append(&uid, "stdout", "up\n");
    let body = follow(&s, "svc", "up\n").await;
    tokio::time::timeout(PATIENCE, s.stop()).await.expect("shutdown does not wait for the follow");
    // The follow ends (cleanly or cut) rather than hanging.
    let rest = tokio::time::timeout(PATIENCE, body.collect::<Vec<_>>()).await.expect("the follow ends");
    assert!(rest.iter().all(|c| c.as_ref().map_or(true, |b| b.is_empty())), "{rest:?}");
}
