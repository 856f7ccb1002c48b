//! Watches over HTTP: replay from a revision, live events, bookmarks, compaction and
//! finalizers.

mod api_support;

use std::time::Duration;

use api_support::{CMS, TestServer, cm, cm_path, rv};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn revision_of(ev: &Value) -> u64 {
    rv(&ev["object"]).parse().expect("numeric resourceVersion")
}

#[tokio::test]
async fn a_watch_from_a_revision_sees_every_later_event_once_in_order() {
    let s = TestServer::start().await;
    s.post(CMS, &cm("before", json!({}))).await;
    let from = s.revision().await;

    // Half the writes happen before the watch opens (replayed from the log), half
    // after (live).
    let mut expected: Vec<(String, String, u64)> = Vec::new();
    let write = async |s: &TestServer, i: usize, expected: &mut Vec<(String, String, u64)>| {
        let name = format!("cm-{i}");
        let (code, obj) = s.post(CMS, &cm(&name, json!({"i": i.to_string()}))).await;
        assert_eq!(code, StatusCode::CREATED);
        expected.push(("ADDED".into(), name.clone(), rv(&obj).parse().unwrap_or(0)));
        let mut edit = obj.clone();
        edit["spec"]["data"]["again"] = json!("yes");
        let (code, obj) = s.put(&cm_path(&name), &edit).await;
        assert_eq!(code, StatusCode::OK);
        expected.push(("MODIFIED".into(), name.clone(), rv(&obj).parse().unwrap_or(0)));
        if i.is_multiple_of(2) {
            let (code, obj) = s.delete(&cm_path(&name)).await;
            assert_eq!(code, StatusCode::OK);
            expected.push(("DELETED".into(), name.clone(), rv(&obj).parse().unwrap_or(0)));
        }
    };
    for i in 0..5 {
        write(&s, i, &mut expected).await;
    }
    let mut watch = s.watch(&format!("{CMS}?watch=true&resourceVersion={from}")).await;
    for i in 5..10 {
        write(&s, i, &mut expected).await;
    }
    // Another kind's writes must not show up.
    s.post(
        "/apis/corral.dev/v1/namespaces",
        &json!({"apiVersion":"corral.dev/v1","kind":"Namespace","metadata":{"name":"noise"}}),
    )
    .await;
    let last = s.post(CMS, &cm("last", json!({}))).await.1;
    expected.push(("ADDED".into(), "last".into(), rv(&last).parse().unwrap_or(0)));

    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let ev = watch.next_change().await;
        seen.push((
            ev["type"].as_str().unwrap_or_default().to_string(),
            ev["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            revision_of(&ev),
        ));
    }
    assert_eq!(seen, expected);
    s.stop().await;
}

#[tokio::test]
async fn a_watch_without_a_revision_starts_with_the_current_objects() {
    let s = TestServer::start().await;
    for name in ["a", "b"] {
        let mut o = cm(name, json!({}));
        o["metadata"]["labels"] = json!({"app": name});
        s.post(CMS, &o).await;
    }
    let mut watch = s.watch(&format!("{CMS}?watch=1&labelSelector=app%3Db")).await;
    let first = watch.next_change().await;
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "b");
    let mut edit = cm("b", json!({"k": "v"}));
    edit["metadata"]["labels"] = json!({"app": "b"});
    s.put(&cm_path("b"), &edit).await;
    let next = watch.next_change().await;
    assert_eq!(next["type"], "MODIFIED");
    assert_eq!(next["object"]["spec"]["data"]["k"], "v");
    s.stop().await;
}

#[tokio::test]
async fn bookmarks_arrive_when_asked_for() {
    let s = TestServer::start_with(|o| o.server.bookmark_interval = Duration::from_millis(20)).await;
    let from = s.revision().await;
    let mut watch = s.watch(&format!("{CMS}?watch=true&resourceVersion={from}&allowWatchBookmarks=true")).await;
    let ev = watch.next().await.expect("stream stays open");
    assert_eq!(ev["type"], "BOOKMARK", "{ev}");
    assert_eq!(ev["object"]["kind"], "ConfigMap");
    assert_eq!(ev["object"]["apiVersion"], "corral.dev/v1");
    assert!(revision_of(&ev) >= from);
    s.stop().await;
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_is_gone() {
    let s = TestServer::start().await;
    for i in 0..3 {
        s.post(CMS, &cm(&format!("c{i}"), json!({}))).await;
    }
    let current = s.revision().await;
    let (code, body) = s.call(reqwest::Method::POST, &format!("/admin/compact?revision={current}"), None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["compacted"], current);
    let (_, rev) = s.get("/admin/revision").await;
    // The built-in controllers may write meanwhile (a framework's lease): the
    // revision can only have moved on.
    assert_eq!(rev["compacted"], current, "{rev}");
    assert!(rev["revision"].as_u64().is_some_and(|r| r >= current), "{rev}");

    let (code, status) = s.get(&format!("{CMS}?watch=true&resourceVersion=1")).await;
    assert_eq!(code, StatusCode::GONE, "{status}");
    assert_eq!(status["reason"], "Gone");
    assert_eq!(status["code"], 410);

    // From the compacted revision itself every later event is still there.
    let mut watch = s.watch(&format!("{CMS}?watch=true&resourceVersion={current}")).await;
    s.post(CMS, &cm("after", json!({}))).await;
    assert_eq!(watch.next_change().await["object"]["metadata"]["name"], "after");

    let (code, _) = s.call(reqwest::Method::POST, "/admin/compact?revision=999999", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = s.call(reqwest::Method::POST, "/admin/compact", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_removed() {
    let s = TestServer::start().await;
    let mut o = cm("held", json!({}));
    o["metadata"]["finalizers"] = json!(["corral.dev/test"]);
    let (_, created) = s.post(CMS, &o).await;
    let mut watch = s.watch(&format!("{CMS}?watch=true&resourceVersion={}", rv(&created))).await;

    let (code, deleting) = s.delete(&cm_path("held")).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{deleting}");
    assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    let (code, still) = s.get(&cm_path("held")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(still, deleting);
    let ev = watch.next_change().await;
    assert_eq!((ev["type"].as_str(), &ev["object"]), (Some("MODIFIED"), &deleting));

    let mut released = deleting.clone();
    released["metadata"]["finalizers"] = json!([]);
    let (code, last) = s.put(&cm_path("held"), &released).await;
    assert_eq!(code, StatusCode::OK, "{last}");
    let (code, _) = s.get(&cm_path("held")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let ev = watch.next_change().await;
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["metadata"]["name"], "held");
    s.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let s = TestServer::start().await;
    let mut watch = s.watch(&format!("{CMS}?watch=true")).await;
    s.stop().await;
    assert_eq!(watch.next().await, None, "the stream ends with the server");
}
