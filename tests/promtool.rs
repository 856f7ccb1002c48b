//! `/metrics` of the API server and of the agent is valid Prometheus exposition
//! format, as Prometheus' own `promtool` judges it (Debian's `prometheus` package, installed by scripts/setup.sh).

mod agent_support;
mod api_support;
mod promtool_support;

use api_support::TestServer;
use promtool_support::promtool_check;

#[tokio::test]
async fn metrics_pass_promtool_check() {
    let server = TestServer::start().await;
    // Some traffic first, so request metrics have samples, errors included.
    server.get("/apis/corral.dev/v1/namespaces").await;
    server.get("/apis/corral.dev/v1/namespaces/nope").await;
    let text = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("corral_"), "no corral metrics in:\n{text}");
    promtool_check(&text);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_metrics_pass_promtool_check() {
    let c = agent_support::Cluster::start("metrics", std::time::Duration::from_secs(60)).await;
    c.create_task("one", serde_json::json!({"image": "busybox", "command": ["true"]})).await;
    c.wait_phase("one", "FINISHED").await;
    let node = c.get(&format!("/apis/corral.dev/v1/nodes/{}", c.node)).await.expect("node");
    let endpoint = node.pointer("/status/agentEndpoint").and_then(|v| v.as_str()).expect("agent endpoint");
    let text = reqwest::get(format!("{endpoint}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("corral_agent_task_launches_total 1"), "{text}");
    promtool_check(&text);
    c.stop().await;
}
