//! The agent's HTTP API on a real socket: task logs, health, metrics, and a shutdown
//! that does not wait for an open follow.

use corral_agent::Layout;
use corral_agent::http::{AgentHttp, router, serve};
use reqwest::StatusCode;

/// A guard against hanging forever, not a timing assertion.
use corral_testkit::PATIENCE;

struct Agent {
    layout: Layout,
    base: String,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Agent {
    async fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path()).unwrap();
        let registry = corral_telemetry::SharedRegistry::new();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        counter.inc();
        registry.register(|r| r.register("corral_agent_test_things", "Things counted by the test", counter));
        let app = router(AgentHttp { layout: layout.clone(), registry });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, app, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Agent { layout, base, client, stop: Some(stop), served, _dir: dir }
    }

    fn write(&self, uid: &str, file: &str, text: &str) {
        let logs = self.layout.task(uid).join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join(file), text).unwrap();
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        let code = resp.status();
        (code, tokio::time::timeout(PATIENCE, resp.text()).await.unwrap().unwrap())
    }

    /// Writes `running` to task `uid`'s stdout and follows its log; returns the open
    /// body once that line has arrived.
    async fn follow_running(
        &self,
        uid: &str,
    ) -> impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin + use<> {
        self.write(uid, "stdout", "running\n");
        let resp = self.client.get(format!("{}/v1/tasks/{uid}/log?follow=true", self.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.bytes_stream();
        let first = tokio::time::timeout(PATIENCE, futures::StreamExt::next(&mut body)).await.unwrap();
        assert_eq!(&first.unwrap().unwrap()[..], b"running\n");
        body
    }
}

#[tokio::test]
async fn the_log_endpoint_reads_streams_and_tails() {
    let agent = Agent::start().await;
    agent.write("t-1", "stdout.1", "a\nb\n");
    agent.write("t-1", "stdout", "c\n");
    agent.write("t-1", "stderr", "e\n");
    assert_eq!(agent.get("/v1/tasks/t-1/log").await, (StatusCode::OK, "a\nb\nc\n".into()));
    assert_eq!(agent.get("/v1/tasks/t-1/log?tail=2&follow=false").await, (StatusCode::OK, "b\nc\n".into()));
    assert_eq!(agent.get("/v1/tasks/t-1/log?stream=stderr").await, (StatusCode::OK, "e\n".into()));
    // A task that has not written anything yet has an empty log.
    std::fs::create_dir_all(agent.layout.task("t-2")).unwrap();
    assert_eq!(agent.get("/v1/tasks/t-2/log").await, (StatusCode::OK, String::new()));
}

#[tokio::test]
async fn bad_requests_and_unknown_tasks_get_a_status() {
    let agent = Agent::start().await;
    let (code, body) = agent.get("/v1/tasks/..%2F..%2Fetc/log").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("not usable as a directory name"), "{body}");
    let (code, body) = agent.get("/v1/tasks/abc/log").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["kind"].as_str(), v["code"].as_u64()), (Some("Status"), Some(404)));
    assert!(v["message"].as_str().unwrap().contains("task abc has no logs on this node"), "{v}");
    std::fs::create_dir_all(agent.layout.task("t")).unwrap();
    for (q, what) in [("stream=stdin", "stdin"), ("follow=perhaps", "follow"), ("tail=-3", "tail")] {
        let (code, body) = agent.get(&format!("/v1/tasks/t/log?{q}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(body.contains(what), "{q}: {body}");
    }
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let agent = Agent::start().await;
    assert_eq!(agent.get("/healthz").await, (StatusCode::OK, "ok\n".into()));
    let (code, body) = agent.get("/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("corral_agent_test_things_total 1"), "{body}");
    // Prometheus text by default (what promtool and older scrapers read): counter
    // families are named after their samples, and there is no OpenMetrics `# EOF`.
    assert!(body.contains("# TYPE corral_agent_test_things_total counter"), "{body}");
    assert!(!body.contains("# EOF"), "{body}");
}

#[tokio::test]
async fn shutdown_does_not_wait_for_an_open_follow() {
    let mut agent = Agent::start().await;
    let _body = agent.follow_running("t").await;
    let _ = agent.stop.take().map(|s| s.send(()));
    let served = tokio::time::timeout(PATIENCE, &mut agent.served).await.expect("serve returns despite the follow");
    served.unwrap().unwrap();
}

#[tokio::test]
async fn a_log_that_cannot_be_opened_is_an_error_answer() {
    let agent = Agent::start().await;
    let logs = agent.layout.task("t").join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", logs.join("stdout")).unwrap();
    let (code, body) = agent.get("/v1/tasks/t/log").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("symbolic link") && !body.contains("root:"), "{body}");
}

/// How many of this process's descriptors have `path` open.
fn open_descriptors(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

#[tokio::test]
async fn a_follow_stops_reading_when_the_client_goes_away() {
    let agent = Agent::start().await;
    let body = agent.follow_running("t").await;
    let log = agent.layout.task("t").join("logs").join("stdout");
    assert_eq!(open_descriptors(&log), 1);
    drop(body);
    // Nothing is written to the log any more: only noticing the closed connection ends
    // the reader.
    let closed = corral_testkit::within_patience(async || (open_descriptors(&log) == 0).then_some(())).await;
    assert!(closed.is_some(), "the log is still open after the client left");
}
