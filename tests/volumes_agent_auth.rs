//! A node acts only on the volumes bound to it: it reads, lists (with its own field
//! selector), reports status on and drops finalizers of its own volumes, and nothing of
//! another node's; it never creates, deletes, or changes a volume's spec.

use corral_testkit::{TestServer, authorized_http};
use reqwest::StatusCode;
use serde_json::{Value, json};

const VOLUMES: &str = "/apis/corral.dev/v1/namespaces/default/volumes";

fn volume(name: &str, node: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Volume",
           "metadata": {"name": name, "finalizers": ["corral.dev/volume-data"]},
           "spec": {"size": 16, "reclaimPolicy": "Delete", "nodeName": node}})
}

async fn call(
    http: &reqwest::Client,
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, s.url(path));
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.expect("answered");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reads_and_updates_only_the_volumes_bound_to_it() {
    use reqwest::Method;
    // No controllers: the volumes controller's status writes would race the
    // writes made here as the node.
    let s = TestServer::start_with(|o| o.controllers = corral_controllers::Selection::Only(vec![])).await;
    let admin = s.http();
    for (name, node) in [("ours", "a"), ("theirs", "b")] {
        let (st, v) = call(&admin, &s, Method::POST, VOLUMES, Some(&volume(name, node))).await;
        assert!(st.is_success(), "{st} {v}");
    }
    let a = authorized_http(&s.node_token("a").await);
    let (ours, theirs) = (format!("{VOLUMES}/ours"), format!("{VOLUMES}/theirs"));

    // Its own: read, listed by its selector, status and finalizers written.
    let (st, mine) = call(&a, &s, Method::GET, &ours, None).await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    let (st, list) = call(&a, &s, Method::GET, &format!("{VOLUMES}?fieldSelector=spec.nodeName%3Da"), None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let names: Vec<&str> =
        list["items"].as_array().expect("items").iter().filter_map(|v| v.pointer("/metadata/name")?.as_str()).collect();
    assert_eq!(names, ["ours"]);
    let mut status = mine.clone();
    status["status"] = json!({"phase": "Pending", "used": 3, "enforcement": "filesystem"});
    let (st, written) = call(&a, &s, Method::PUT, &format!("{ours}/status"), Some(&status)).await;
    assert_eq!(st, StatusCode::OK, "{written}");
    let mut spec = written.clone();
    spec["spec"]["size"] = json!(1024);
    let (st, body) = call(&a, &s, Method::PUT, &ours, Some(&spec)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a node never changes a volume's spec: {body}");
    let mut moved = written.clone();
    moved["spec"]["nodeName"] = json!("b");
    let (st, body) = call(&a, &s, Method::PUT, &ours, Some(&moved)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "nor moves it: {body}");
    let mut unfinalized = written.clone();
    unfinalized["metadata"]["finalizers"] = json!([]);
    let (st, body) = call(&a, &s, Method::PUT, &ours, Some(&unfinalized)).await;
    assert_eq!(st, StatusCode::OK, "it drops its own volume's finalizer: {body}");

    // Another node's: nothing.
    let (st, body) = call(&a, &s, Method::GET, &theirs, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("not bound to it"), "{body}");
    let (_, theirs_obj) = call(&admin, &s, Method::GET, &theirs, None).await;
    let mut st_write = theirs_obj.clone();
    st_write["status"] = json!({"phase": "Failed", "message": "forged"});
    let (st, body) = call(&a, &s, Method::PUT, &format!("{theirs}/status"), Some(&st_write)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let mut fin = theirs_obj.clone();
    fin["metadata"]["finalizers"] = json!([]);
    let (st, body) = call(&a, &s, Method::PUT, &theirs, Some(&fin)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (st, body) = call(&a, &s, Method::GET, VOLUMES, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "no list without its own selector: {body}");
    let (st, body) = call(&a, &s, Method::GET, &format!("{VOLUMES}?fieldSelector=spec.nodeName%3Db"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "nor with another node's: {body}");
    let (st, body) = call(&a, &s, Method::POST, VOLUMES, Some(&volume("made", "a"))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "no creates: {body}");
    let (st, body) = call(&a, &s, Method::DELETE, &ours, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "no deletes: {body}");

    // Untouched by all of the above.
    let (_, after) = call(&admin, &s, Method::GET, &theirs, None).await;
    // (The server adds the protection finalizer to every volume it creates.)
    assert_eq!(
        after.pointer("/metadata/finalizers"),
        Some(&json!(["corral.dev/volume-data", "corral.dev/volume-protection"]))
    );
    assert!(after.pointer("/status/message").is_none(), "{after}");
    s.stop().await;
}
