//! Issue 10 (security), on a real agent with real runc containers: a restricted
//! namespace (the default level) runs container tasks as a non-root user with no
//! capabilities beyond binding low ports and no credential to the API; what would
//! run on the host as root is refused before it reaches a node (finding 2).

mod agent_support;

use std::time::Duration;

use agent_support::Cluster;
use serde_json::{Value, json};

const V1: &str = "/apis/corral.dev/v1";

async fn create_in(c: &Cluster, ns: &str, name: &str, mut spec: Value) -> (u16, Value) {
    spec["nodeName"] = json!(c.node);
    let task = json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name}, "spec": spec});
    let resp = c
        .server
        .as_ref()
        .expect("server")
        .http()
        .post(format!("{}{V1}/namespaces/{ns}/tasks", c.url))
        .json(&task)
        .send()
        .await
        .expect("POST");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_in_a_restricted_namespace_runs_unprivileged_and_cannot_use_the_api() {
    let c = Cluster::start("restricted", Duration::from_secs(60)).await;
    c.send(
        reqwest::Method::POST,
        &format!("{V1}/namespaces"),
        Some(&json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "tenant"}})),
    )
    .await;
    // Finding 2: the task that ran natively as root on the host, and one asking
    // for uid 0, are refused; the 403 names the fields.
    let (code, body) = create_in(&c, "tenant", "native", json!({"command": ["/bin/cat", "/etc/shadow"]})).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.to_string().contains("spec.image"), "{body}");
    let (code, body) =
        create_in(&c, "tenant", "root", json!({"image": "busybox:latest", "command": ["id"], "user": "0:0"})).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.to_string().contains("spec.user"), "{body}");
    let (code, body) = create_in(
        &c,
        "tenant",
        "shadow",
        json!({"image": "busybox:latest", "command": ["true"], "artifacts": [{"uri": "file:///etc/shadow"}]}),
    )
    .await;
    assert_eq!(code, 403, "{body}");

    // A container with no user asked for runs as nobody, with no capability but
    // NET_BIND_SERVICE, and the API refuses it: it holds no token.
    let port = c.url.rsplit(':').next().expect("port");
    let script = format!(
        "id -u; grep -E '^Cap(Eff|Bnd)' /proc/self/status; \
         wget -q -O - http://127.0.0.1:{port}{V1}/namespaces/tenant/tasks 2>&1; echo wget=$?"
    );
    let (code, body) =
        create_in(&c, "tenant", "probe", json!({"image": "busybox:latest", "command": ["sh", "-c", script]})).await;
    assert_eq!(code, 201, "{body}");
    let t = c
        .wait_for(&format!("{V1}/namespaces/tenant/tasks/probe"), "the probe to finish", |t| {
            t.pointer("/status/phase").and_then(Value::as_str) == Some("FINISHED")
        })
        .await;
    let uid = t.pointer("/metadata/uid").and_then(Value::as_str).expect("uid");
    let out = std::fs::read_to_string(c.work_dir().join("tasks").join(uid).join("logs/stdout")).expect("log");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("65534"), "{out}");
    // NET_BIND_SERVICE is bit 10: 0x400.
    assert!(out.contains("CapEff:\t0000000000000400"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000400"), "{out}");
    assert!(out.contains("401 Unauthorized"), "the API answered the container: {out}");
    assert!(out.contains("wget=1"), "{out}");
    c.stop().await;
}
