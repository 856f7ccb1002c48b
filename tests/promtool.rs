//! `/metrics` is valid Prometheus exposition format, as Prometheus' own `promtool`
//! judges it (Debian's `prometheus` package, installed by scripts/setup.sh).

use std::io::Write;
use std::process::{Command, Stdio};

use corral::server::{ServerConfig, start};

#[tokio::test]
async fn metrics_pass_promtool_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", server.addr());
    let http = reqwest::Client::new();
    // Some traffic first, so request metrics have samples, errors included.
    http.get(format!("{base}/apis/corral.dev/v1/namespaces")).send().await.unwrap();
    http.get(format!("{base}/apis/corral.dev/v1/namespaces/nope")).send().await.unwrap();
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
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
    server.shutdown().await.unwrap();
}
