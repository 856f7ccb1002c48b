//! The services framework on the offers, inside the real server, over nodes the test
//! registers itself (no agent runs on them, so their tasks stay STAGING; the
//! placement is what is tested here — running and replacing tasks is in
//! services_runc.rs).

mod api_support;

use api_support::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SERVICES: &str = "/apis/corral.dev/v1/namespaces/default/services";
const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";

fn service(name: &str, instances: u32, constraints: Value) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
        "spec": {"instances": instances, "constraints": constraints,
                 "template": {"command": ["sleep", "3600"], "resources": {"cpus": 0.1, "mem": 32},
                              "ports": [{"name": "http"}]}}})
}

#[tokio::test]
async fn unique_hostname_places_one_per_node_and_the_status_says_why_the_third_waits() {
    let s = TestServer::start_with(|o| {
        o.without("node-lifecycle");
    })
    .await;
    s.register_node("n1", 2.0, 2048).await;
    s.register_node("n2", 2.0, 2048).await;
    let (code, out) = s.post(SERVICES, &service("web", 3, json!([["hostname", "UNIQUE"]]))).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let svc = s
        .wait_for(&format!("{SERVICES}/web"), "the service to say why one instance waits", |v| {
            v["status"]["waiting"]["refusals"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
    let (_, tasks) = s.get(TASKS).await;
    let items = tasks["items"].as_array().cloned().unwrap_or_default();
    let mut nodes: Vec<&str> = items.iter().filter_map(|t| t["spec"]["nodeName"].as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2"], "one task per node: {tasks:#}");
    for t in &items {
        let port = t["spec"]["ports"][0]["hostPort"].as_u64().unwrap_or(0);
        assert!((31000..=31099).contains(&port), "host port from the offer: {t:#}");
        assert_eq!(t["spec"]["framework"], "services");
    }
    let waiting = &svc["status"]["waiting"];
    assert_eq!(waiting["instances"], 1, "{svc:#}");
    assert_eq!(waiting["refusals"][0]["reason"], "hostname UNIQUE", "{svc:#}");
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(message.contains("hostname UNIQUE"), "{message}");
    // Declined nodes are refused for a second, so some rounds see no offer at all:
    // the reason stays what the last offers said, not "no node has free resources".
    for _ in 0..15 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (_, now) = s.get(&format!("{SERVICES}/web")).await;
        let m = now["status"]["waiting"]["message"].as_str().unwrap_or_default().to_string();
        assert!(m.contains("hostname UNIQUE"), "the reason went away: {now:#}");
    }
    let placed = svc["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "Placed")).cloned();
    assert_eq!(placed.map(|c| c["status"].clone()), Some(json!("False")), "{svc:#}");
}

#[tokio::test]
async fn scaling_up_and_down_follows_instances() {
    let s = TestServer::start_with(|o| {
        o.without("node-lifecycle");
    })
    .await;
    s.register_node("n1", 4.0, 4096).await;
    let (code, out) = s.post(SERVICES, &service("api", 4, json!([]))).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let live =
        |v: &Value| v["items"].as_array().map_or(0, |i| i.iter().filter(|t| t["spec"]["kill"] != json!(true)).count());
    s.wait_for(TASKS, "four tasks", |v| live(v) == 4).await;
    let (code, out) =
        s.patch(&format!("{SERVICES}/api"), "application/merge-patch+json", r#"{"spec":{"instances":1}}"#).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    s.wait_for(TASKS, "three tasks killed", |v| live(v) == 1).await;
    let metrics = s.kit().http().get(s.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    for m in
        ["corral_services_tasks_launched_total 4", "corral_offers_made_total", "corral_services_tasks_killed_total 3"]
    {
        assert!(metrics.contains(m), "{m} in /metrics");
    }
}

#[tokio::test]
async fn a_role_quota_limit_caps_what_its_services_are_offered() {
    let s = TestServer::start_with(|o| {
        o.without("node-lifecycle");
    })
    .await;
    s.register_node("n1", 4.0, 4096).await;
    let quota = json!({"apiVersion": "corral.dev/v1", "kind": "Quota", "metadata": {"name": "batch"},
        "spec": {"limit": {"cpus": 0.3, "mem": 4096}}});
    let (code, out) = s.post("/apis/corral.dev/v1/quotas", &quota).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let mut svc = service("etl", 5, json!([]));
    svc["spec"]["role"] = json!("batch");
    let (code, out) = s.post(SERVICES, &svc).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let svc = s
        .wait_for(&format!("{SERVICES}/etl"), "two instances waiting", |v| v["status"]["waiting"]["instances"] == 2)
        .await;
    let (_, tasks) = s.get(TASKS).await;
    let items = tasks["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3, "0.3 cpus of quota fit three tasks of 0.1: {tasks:#}");
    assert!(items.iter().all(|t| t["spec"]["role"] == "batch"), "{tasks:#}");
    assert!(svc["status"]["waiting"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{svc:#}");
}

#[tokio::test]
async fn a_service_leaves_placement_to_the_scheduler_and_obeys_its_namespace_policy() {
    let s = TestServer::start_with(|o| {
        o.without("node-lifecycle");
    })
    .await;
    let mut pinned = service("pinned", 1, json!([]));
    pinned["spec"]["template"]["nodeName"] = json!("n1");
    pinned["spec"]["unreachableStrategy"] = json!({"inactiveAfterSeconds": 60, "expungeAfterSeconds": 10});
    let (code, out) = s.post(SERVICES, &pinned).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let text = out.to_string();
    assert!(text.contains("spec.template.nodeName") && text.contains("expungeAfterSeconds"), "{out}");

    let ns = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    let (code, out) = s.post("/apis/corral.dev/v1/namespaces", &ns).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let mut native = service("native", 1, json!([]));
    native["metadata"]["namespace"] = json!("shop");
    let (code, out) = s.post("/apis/corral.dev/v1/namespaces/shop/services", &native).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "a restricted namespace refuses a native template at once: {out}");
    assert!(out.to_string().contains("spec.template.image"), "{out}");
}
