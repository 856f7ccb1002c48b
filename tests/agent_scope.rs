//! An agent watches only its own node's tasks: the server filters by
//! `spec.nodeName`, so the rest of the cluster costs it nothing. Counted through the
//! agent's own `/metrics` (events its task watch received).

mod agent_support;

use std::time::Duration;

use agent_support::Cluster;
use serde_json::{Value, json};

/// Watch events the agent's task controller has received so far.
async fn events_received(c: &Cluster) -> u64 {
    let node = c.get(&format!("/apis/corral.dev/v1/nodes/{}", c.node)).await.expect("node");
    let endpoint = node.pointer("/status/agentEndpoint").and_then(Value::as_str).expect("agent endpoint");
    let text = reqwest::get(format!("{endpoint}/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(r#"corral_controller_watch_events_total{controller="agent_tasks"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no watch event counter in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_receives_no_event_about_another_nodes_tasks() {
    let c = Cluster::start("mine", Duration::from_secs(60)).await;
    assert_eq!(events_received(&c).await, 0, "nothing is bound to this node yet");

    // A busy other node: 30 tasks bound to `theirs` (no agent), each created and
    // changed twice — 90 events the agent must not hear of.
    let mut theirs = 0;
    for i in 0..30 {
        let path = Cluster::task_path(&format!("theirs-{i}"));
        let t = json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": format!("theirs-{i}")},
                       "spec": {"nodeName": "theirs", "command": ["true"]}});
        c.send(reqwest::Method::POST, "/apis/corral.dev/v1/namespaces/default/tasks", Some(&t)).await;
        for round in 0..2 {
            let mut t = c.get(&path).await.expect("task");
            t["metadata"]["labels"] = json!({"round": round.to_string()});
            c.send(reqwest::Method::PUT, &path, Some(&t)).await;
        }
        theirs += 3;
    }
    // Then one task of its own, which it runs: the events about it come after all of
    // the above on the server's log, so by the time it runs, any of theirs would have
    // arrived first.
    c.create_task("ours", json!({"image": "busybox", "command": ["true"]})).await;
    c.wait_phase("ours", "FINISHED").await;
    let received = events_received(&c).await;
    assert!(received > 0, "the agent heard of its own task");
    assert!(
        received < theirs,
        "the agent received {received} watch events, as many as the {theirs} about the other node's tasks: it hears of them"
    );
    c.stop().await;
}
