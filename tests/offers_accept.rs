//! Accepting and declining offers through the real server: an accept creates its
//! tasks and consumes the offer in one write, or does nothing and says why; no
//! node is ever oversubscribed, also when frameworks race. The offers here are
//! written by the test (no offers controller runs), some of them deliberately
//! overlapping, as a stale allocator's could.

mod api_support;

use std::sync::Arc;

use api_support::TestServer;
use corral_controllers::Selection;
use reqwest::StatusCode;
use serde_json::{Value, json};

const OFFERS: &str = "/apis/corral.dev/v1/offers";
const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";

async fn server() -> TestServer {
    TestServer::start_with(|o| o.controllers = Selection::Only(vec![])).await
}

async fn offer(s: &TestServer, name: &str, framework: &str, node: &str, cpus: f64, mem: u64, expires: &str) {
    let o = json!({"apiVersion": "corral.dev/v1", "kind": "Offer", "metadata": {"name": name},
        "spec": {"framework": framework, "role": "*", "node": node, "resources": {"cpus": cpus, "mem": mem},
                 "ports": [{"begin": 31000, "end": 31009}], "expires": expires}});
    let (code, body) = s.post(OFFERS, &o).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

fn task(name: &str, cpus: f64, mem: u64) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": "default"},
        "spec": {"command": ["/bin/true"], "resources": {"cpus": cpus, "mem": mem}}})
}

const LATER: &str = "2099-01-01T00:00:00Z";

#[tokio::test]
async fn an_accept_creates_its_tasks_bound_and_stamped_and_consumes_the_offer() {
    let s = server().await;
    s.register_node("n1", 2.0, 1024).await;
    offer(&s, "o1", "fw", "n1", 2.0, 1024, LATER).await;
    let mut web = task("web-1", 0.5, 128);
    web["spec"]["ports"] = json!([{"name": "http", "hostPort": 31003}]);
    let (code, body) = s
        .post(&format!("{OFFERS}/o1/accept"), &json!({"framework": "fw", "tasks": [web, task("web-2", 0.5, 128)]}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2));
    let (_, t) = s.get(&format!("{TASKS}/web-1")).await;
    assert_eq!(t["spec"]["nodeName"], "n1");
    assert_eq!(t["spec"]["framework"], "fw");
    assert_eq!(t["spec"]["role"], "*");
    assert_eq!(t["spec"]["offer"], "o1");
    assert_eq!(t["spec"]["ports"][0]["hostPort"], 31003);
    assert_eq!(t["metadata"]["finalizers"], json!(["corral.dev/agent"]), "held for the agent from the start: {t}");
    let (code, _) = s.get(&format!("{OFFERS}/o1")).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "an accepted offer is consumed");

    let (code, body) =
        s.post(&format!("{OFFERS}/o1/accept"), &json!({"framework": "fw", "tasks": [task("web-3", 0.1, 16)]})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("no longer outstanding"), "{body}");
}

#[tokio::test]
async fn an_accepts_tasks_meet_their_namespaces_task_policy() {
    // Judged once per namespace for the whole accept, each task as a create in it
    // would be: a restricted namespace runs no native task.
    let s = server().await;
    s.register_node("n1", 2.0, 1024).await;
    let ns = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "locked"}});
    let (code, body) = s.post("/apis/corral.dev/v1/namespaces", &ns).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    offer(&s, "o1", "fw", "n1", 2.0, 1024, LATER).await;
    let in_locked = |name: &str| {
        let mut t = task(name, 0.1, 16);
        t["metadata"]["namespace"] = json!("locked");
        t
    };
    let mut boxed = in_locked("boxed");
    boxed["spec"]["image"] = json!("busybox");
    let (code, body) = s
        .post(
            &format!("{OFFERS}/o1/accept"),
            &json!({"framework": "fw", "tasks": [boxed.clone(), in_locked("native")]}),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("restricted") && message.contains("spec.image"), "{body}");
    let (code, _) = s.get("/apis/corral.dev/v1/namespaces/locked/tasks/boxed").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "nothing of a refused accept is created");
    let (code, body) = s.post(&format!("{OFFERS}/o1/accept"), &json!({"framework": "fw", "tasks": [boxed]})).await;
    assert_eq!(code, StatusCode::CREATED, "the offer stood, and a container task is allowed: {body}");
}

#[tokio::test]
async fn an_accept_that_no_longer_fits_is_refused_and_changes_nothing() {
    let s = server().await;
    s.register_node("n1", 1.0, 1024).await;
    offer(&s, "mine", "fw", "n1", 1.0, 1024, LATER).await;
    offer(&s, "old", "fw", "n1", 1.0, 1024, "2020-01-01T00:00:00Z").await;
    let accept = |t: Vec<Value>, fw: &str| json!({"framework": fw, "tasks": t});
    let cases = [
        ("mine", accept(vec![task("a", 0.5, 16)], "other"), StatusCode::FORBIDDEN, "made to framework \"fw\""),
        ("old", accept(vec![task("a", 0.5, 16)], "fw"), StatusCode::CONFLICT, "expired"),
        ("mine", accept(vec![task("a", 0.75, 16), task("b", 0.5, 16)], "fw"), StatusCode::CONFLICT, "resources short"),
        ("nope", accept(vec![task("a", 0.5, 16)], "fw"), StatusCode::CONFLICT, "no longer outstanding"),
    ];
    for (name, body, want, says) in cases {
        let (code, out) = s.post(&format!("{OFFERS}/{name}/accept"), &body).await;
        assert_eq!(code, want, "{name}: {out}");
        assert!(out["message"].as_str().unwrap_or_default().contains(says), "{name}: {out}");
    }
    let mut bad_port = task("p", 0.1, 16);
    bad_port["spec"]["ports"] = json!([{"name": "http", "hostPort": 8080}]);
    let (code, out) = s.post(&format!("{OFFERS}/mine/accept"), &accept(vec![bad_port], "fw")).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out.to_string().contains("tasks[0].spec.ports[0].hostPort"), "{out}");
    let (_, list) = s.get(TASKS).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "nothing was created: {list}");
    let (code, _) = s.get(&format!("{OFFERS}/mine")).await;
    assert_eq!(code, StatusCode::OK, "a refused accept leaves the offer");

    // A task bound by hand takes half the node; the offer, made before, no longer fits.
    let mut by_hand = task("by-hand", 0.5, 16);
    by_hand["spec"]["nodeName"] = json!("n1");
    let (code, out) = s.post(TASKS, &by_hand).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let (code, out) = s.post(&format!("{OFFERS}/mine/accept"), &accept(vec![task("a", 0.75, 16)], "fw")).await;
    assert_eq!(code, StatusCode::CONFLICT, "{out}");
    assert!(out["message"].as_str().unwrap_or_default().contains("node \"n1\" has cpus 0.5"), "{out}");
    let mut too_big = task("too-big", 0.75, 16);
    too_big["spec"]["nodeName"] = json!("n1");
    let (code, out) = s.post(TASKS, &too_big).await;
    assert_eq!(code, StatusCode::CONFLICT, "binding by hand cannot oversubscribe either: {out}");
}

#[tokio::test]
async fn a_decline_marks_the_offer_for_its_framework_only() {
    let s = server().await;
    s.register_node("n1", 1.0, 1024).await;
    offer(&s, "o1", "fw", "n1", 1.0, 1024, LATER).await;
    let (code, out) = s.post(&format!("{OFFERS}/o1/decline"), &json!({"framework": "other"})).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{out}");
    let (code, out) = s.post(&format!("{OFFERS}/o1/decline"), &json!({"framework": "fw", "refuseSeconds": 30})).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    assert_eq!(out["status"]["declinedForSeconds"], 30);
    let (code, out) =
        s.post(&format!("{OFFERS}/o1/accept"), &json!({"framework": "fw", "tasks": [task("a", 0.1, 16)]})).await;
    assert_eq!(code, StatusCode::CONFLICT, "a declined offer cannot be accepted: {out}");
}

/// Many frameworks race to accept overlapping offers of one node: whatever wins,
/// the node's live tasks never hold more than it has.
#[tokio::test]
async fn concurrent_accepts_never_oversubscribe_a_node() {
    let s = Arc::new(server().await);
    s.register_node("n1", 2.0, 2048).await;
    // Eight offers of the whole node, as a stale allocator might have made.
    for i in 0..8 {
        offer(&s, &format!("o{i}"), &format!("fw{i}"), "n1", 2.0, 2048, LATER).await;
    }
    let mut racers = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        racers.push(tokio::spawn(async move {
            let tasks: Vec<Value> = (0..3).map(|j| task(&format!("t{i}-{j}"), 0.25, 256)).collect();
            s.post(&format!("{OFFERS}/o{i}/accept"), &json!({"framework": format!("fw{i}"), "tasks": tasks})).await
        }));
    }
    let mut won = 0;
    for r in racers {
        let (code, out) = r.await.expect("racer");
        match code {
            StatusCode::CREATED => won += 1,
            StatusCode::CONFLICT => {
                assert!(out["message"].as_str().unwrap_or_default().contains("resources short"), "{out}")
            }
            other => panic!("unexpected {other}: {out}"),
        }
    }
    let (_, list) = s.get(TASKS).await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let cpus: f64 = items.iter().map(|t| t["spec"]["resources"]["cpus"].as_f64().unwrap_or(0.0)).sum();
    let mem: u64 = items.iter().map(|t| t["spec"]["resources"]["mem"].as_u64().unwrap_or(0)).sum();
    // 0.75 cpus and 768 MiB per accept: two fit in 2 cpus and 2048 MiB, a third would not.
    assert_eq!(won, 2, "exactly as many accepts as fit won");
    assert_eq!(items.len(), 6);
    assert!(cpus <= 2.0 + 1e-9 && mem <= 2048, "cpus {cpus}, mem {mem}");
}

#[tokio::test]
async fn tasks_bound_by_hand_get_free_host_ports_from_the_server() {
    let s = server().await;
    s.register_node("n1", 2.0, 1024).await;
    let with_port = |name: &str, node: &str| {
        let mut t = task(name, 0.1, 16);
        t["spec"]["nodeName"] = json!(node);
        t["spec"]["ports"] = json!([{"name": "http"}, {"name": "admin", "hostPort": 31001}]);
        t
    };
    let (code, a) = s.post(TASKS, &with_port("a", "n1")).await;
    assert_eq!(code, StatusCode::CREATED, "{a}");
    assert_eq!(a["spec"]["ports"][0]["hostPort"], 31000, "the lowest free port of the node");
    let mut b = task("b", 0.1, 16);
    b["spec"]["nodeName"] = json!("n1");
    b["spec"]["ports"] = json!([{"name": "http"}]);
    let (code, b) = s.post(TASKS, &b).await;
    assert_eq!(code, StatusCode::CREATED, "{b}");
    assert_eq!(b["spec"]["ports"][0]["hostPort"], 31002, "31000 and 31001 are held by task a");
    let (code, out) = s.post(TASKS, &with_port("c", "nowhere")).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out.to_string().contains("spec.ports[0].hostPort"), "{out}");
    // On a registered node the agent's finalizer comes with the task; on a node no
    // agent has registered, none: nothing might ever release it.
    assert_eq!(a["metadata"]["finalizers"], json!(["corral.dev/agent"]), "{a}");
    let mut ghost = task("ghost", 0.1, 16);
    ghost["spec"]["nodeName"] = json!("nowhere");
    let (code, ghost) = s.post(TASKS, &ghost).await;
    assert_eq!(code, StatusCode::CREATED, "{ghost}");
    assert!(ghost["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty), "{ghost}");
}
