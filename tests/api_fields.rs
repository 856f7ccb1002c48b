//! Field selectors over HTTP: lists keep what matches; watches send what a client
//! keeping a copy of the selection needs — entries as ADDED, exits as DELETED, and
//! nothing at all about objects that never match.

mod api_support;

use api_support::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";

fn task(name: &str, node: Option<&str>) -> Value {
    let mut spec = json!({"command": ["true"]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": "default"},
           "spec": spec})
}

async fn bind(s: &TestServer, name: &str, node: &str) {
    let path = format!("{TASKS}/{name}");
    let (_, mut t) = s.get(&path).await;
    t["spec"]["nodeName"] = json!(node);
    let (code, body) = s.put(&path, &t).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

fn names(list: &Value) -> Vec<&str> {
    list["items"].as_array().into_iter().flatten().filter_map(|o| o["metadata"]["name"].as_str()).collect()
}

#[tokio::test]
async fn lists_keep_only_the_objects_whose_fields_match() {
    let s = TestServer::start().await;
    for (name, node) in [("a1", Some("a")), ("a2", Some("a")), ("b1", Some("b")), ("free", None)] {
        assert_eq!(s.post(TASKS, &task(name, node)).await.0, StatusCode::CREATED);
    }
    let (code, list) = s.get(&format!("{TASKS}?fieldSelector=spec.nodeName%3Da")).await;
    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(names(&list), ["a1", "a2"]);
    let (_, list) = s.get(&format!("{TASKS}?fieldSelector=spec.nodeName%3D")).await;
    assert_eq!(names(&list), ["free"], "an absent field is empty");
    let (_, list) = s.get(&format!("{TASKS}?fieldSelector=spec.nodeName!%3Da,metadata.name!%3Dfree")).await;
    assert_eq!(names(&list), ["b1"]);
    let (_, list) =
        s.get("/apis/corral.dev/v1/tasks?fieldSelector=metadata.namespace%3Ddefault,metadata.name%3Db1").await;
    assert_eq!(names(&list), ["b1"]);
    let (code, err) = s.get(&format!("{TASKS}?fieldSelector=spec.nodeName")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{err}");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("spec.nodeName")), "{err}");
    s.stop().await;
}

#[tokio::test]
async fn a_watch_sees_entries_and_exits_of_its_selection_and_nothing_else() {
    let s = TestServer::start().await;
    let mut watch = s.watch(&format!("{TASKS}?watch=true&fieldSelector=spec.nodeName%3Da")).await;
    // Never selected: no event at all, whatever happens to it.
    s.post(TASKS, &task("elsewhere", Some("b"))).await;
    bind(&s, "elsewhere", "c").await;
    s.delete(&format!("{TASKS}/elsewhere")).await;
    // Created unbound, then bound here: it enters the selection.
    s.post(TASKS, &task("mover", None)).await;
    bind(&s, "mover", "a").await;
    let ev = watch.next_change().await;
    assert_eq!((ev["type"].as_str(), ev["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("mover")));
    // Moved away: it leaves, and the client learns so.
    bind(&s, "mover", "b").await;
    let ev = watch.next_change().await;
    assert_eq!((ev["type"].as_str(), ev["object"]["metadata"]["name"].as_str()), (Some("DELETED"), Some("mover")));
    assert_eq!(ev["object"]["spec"]["nodeName"], "b", "the exit carries the new state");
    // Created here, changed, deleted: the usual three.
    s.post(TASKS, &task("native", Some("a"))).await;
    bind(&s, "native", "a").await;
    let (_, mut t) = s.get(&format!("{TASKS}/native")).await;
    t["metadata"]["labels"] = json!({"x": "y"});
    s.put(&format!("{TASKS}/native"), &t).await;
    s.delete(&format!("{TASKS}/native")).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = watch.next_change().await;
        seen.push((ev["type"].as_str().unwrap_or_default().to_string(), ev["object"]["metadata"]["name"].clone()));
    }
    assert_eq!(
        seen,
        [
            ("ADDED".to_string(), json!("native")),
            ("MODIFIED".to_string(), json!("native")),
            ("DELETED".to_string(), json!("native"))
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn a_resumed_watch_tells_of_exits_it_missed() {
    let s = TestServer::start().await;
    s.post(TASKS, &task("stays", Some("a"))).await;
    s.post(TASKS, &task("leaves", Some("a"))).await;
    s.post(TASKS, &task("other", Some("b"))).await;
    let from = s.revision().await;
    // While the client is away: one of its tasks moves elsewhere, one stays.
    bind(&s, "leaves", "b").await;
    let mut watch =
        s.watch(&format!("{TASKS}?watch=true&resourceVersion={from}&fieldSelector=spec.nodeName%3Da")).await;
    let ev = watch.next_change().await;
    assert_eq!((ev["type"].as_str(), ev["object"]["metadata"]["name"].as_str()), (Some("DELETED"), Some("leaves")));
    // Live again: a task of another node changes, then one of ours: only ours arrives.
    bind(&s, "other", "c").await;
    let (_, mut t) = s.get(&format!("{TASKS}/stays")).await;
    t["metadata"]["labels"] = json!({"x": "y"});
    s.put(&format!("{TASKS}/stays"), &t).await;
    let ev = watch.next_change().await;
    assert_eq!((ev["type"].as_str(), ev["object"]["metadata"]["name"].as_str()), (Some("MODIFIED"), Some("stays")));
    s.stop().await;
}
