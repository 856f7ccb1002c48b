//! `/metrics` is valid Prometheus exposition format, as Prometheus' own `promtool`
//! judges it (Debian's `prometheus` package, installed by scripts/setup.sh).

use std::io::Write;
use std::process::{Command, Stdio};

mod api_support;

use api_support::TestServer;

#[tokio::test]
async fn metrics_pass_promtool_check() {
    let server = TestServer::start().await;
    // Some traffic first, so request metrics have samples, errors included.
    server.get("/apis/corral.dev/v1/namespaces").await;
    server.get("/apis/corral.dev/v1/namespaces/nope").await;
    let text = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("corral_"), "no corral metrics in:\n{text}");

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/setup.sh");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    // Strict: parse errors and lint findings (naming, missing HELP) both fail.
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool rejected /metrics:\n{report}\n---\n{text}");
    server.stop().await;
}
