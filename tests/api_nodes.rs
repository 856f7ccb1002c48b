//! The node lifecycle controller inside the server: a node whose lease is not renewed
//! becomes Unreachable and its non-terminal tasks LOST; renewals make it Ready again.
//! The heartbeats here are written by the test itself, through the real API.

mod api_support;

use std::time::Duration;

use api_support::TestServer;
use corral_testkit::{eventually, within_patience};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NODES: &str = "/apis/corral.dev/v1/nodes";
const LEASES: &str = "/apis/corral.dev/v1/namespaces/corral-system/leases";
const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";
async fn renew(s: &TestServer, node: &str) {
    let (code, mut lease) = s.get(&format!("{LEASES}/{node}")).await;
    if code == StatusCode::NOT_FOUND {
        let fresh = json!({"apiVersion": "corral.dev/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": "corral-system"},
            "spec": {"holderIdentity": node, "renewTime": "2026-11-22T00:00:00Z", "leaseTransitions": 0}});
        let (code, body) = s.post(LEASES, &fresh).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        return;
    }
    let n = lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0);
    lease["spec"]["leaseTransitions"] = json!(n + 1);
    let (code, body) = s.put(&format!("{LEASES}/{node}"), &lease).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

/// Renews the node's lease until the controller calls the node Ready.
async fn beat_until_ready(s: &TestServer, node: &str) {
    let mut last = Value::Null;
    let ready = within_patience(async || {
        renew(s, node).await;
        let (_, n) = s.get(&format!("{NODES}/{node}")).await;
        let ready = phase(&n) == "Ready";
        last = n;
        ready.then_some(())
    })
    .await;
    assert!(ready.is_some(), "node never became Ready: {last:#}");
}

fn phase(v: &Value) -> &str {
    v.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_heartbeats_become_unreachable_and_their_tasks_lost() {
    let s = TestServer::start_with(|o| o.node_grace_period = Duration::from_secs(1)).await;
    let (code, ns) = s.get("/apis/corral.dev/v1/namespaces/corral-system").await;
    assert_eq!(code, StatusCode::OK, "the lease namespace exists from the start: {ns}");
    let (code, body) =
        s.post(NODES, &json!({"apiVersion": "corral.dev/v1", "kind": "Node", "metadata": {"name": "n1"}})).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    renew(&s, "n1").await;

    // Keep beating until the controller calls the node Ready.
    beat_until_ready(&s, "n1").await;

    for (name, st) in [("running", "RUNNING"), ("done", "FINISHED")] {
        let task = json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name},
                          "spec": {"nodeName": "n1", "command": ["true"]}});
        let (code, mut t) = s.post(TASKS, &task).await;
        assert_eq!(code, StatusCode::CREATED, "{t}");
        t["status"] = json!({"phase": st});
        let (code, body) = s.put(&format!("{TASKS}/{name}/status"), &t).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }

    // A task whose deletion waits on the node's agent.
    let stuck = json!({"apiVersion": "corral.dev/v1", "kind": "Task",
                       "metadata": {"name": "stuck", "finalizers": ["corral.dev/agent"]},
                       "spec": {"nodeName": "n1", "command": ["true"]}});
    let (code, body) = s.post(TASKS, &stuck).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, body) = s.delete(&format!("{TASKS}/stuck")).await;
    assert!(code.is_success(), "{body}");

    // Silence: the node goes Unreachable, its running task LOST, the finished one stays,
    // and the deletion no longer waits for an agent that may never return.
    let node = s.wait_for(&format!("{NODES}/n1"), "Unreachable", |n| phase(n) == "Unreachable").await;
    assert!(node.pointer("/status/lastTransitionTime").is_some(), "{node:#}");
    let lost = s.wait_for(&format!("{TASKS}/running"), "LOST", |t| phase(t) == "LOST").await;
    assert_eq!(lost.pointer("/status/reason"), Some(&json!("NodeUnreachable")));
    let (_, done) = s.get(&format!("{TASKS}/done")).await;
    assert_eq!(phase(&done), "FINISHED", "terminal tasks are left alone: {done:#}");
    eventually("the deletion of a task of an unreachable node completes", async || {
        (s.get(&format!("{TASKS}/stuck")).await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;

    // Beating again makes it Ready; the LOST task stays LOST.
    beat_until_ready(&s, "n1").await;
    let (_, lost) = s.get(&format!("{TASKS}/running")).await;
    assert_eq!(phase(&lost), "LOST");
    s.stop().await;
}
