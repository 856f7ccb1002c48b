//! Issue 10 (security): who may do what, against a real server over HTTP. One table:
//! anonymous callers, a bad token, `view` and `edit` in one namespace, two nodes, a
//! join token, an expired token and the administrator — each refused (401/403) what
//! it must not do, and allowed what it may.

mod api_support;

use api_support::TestServer;
use corral_api::kinds::TokenPurpose;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const V1: &str = "/apis/corral.dev/v1";

/// Stores a token for `user` in `groups`; `expiration` in RFC 3339, if any.
async fn token(s: &TestServer, user: &str, groups: &[&str], purpose: TokenPurpose, expiration: Option<&str>) -> String {
    s.kit().create_token(user, groups, purpose, expiration.map(str::to_string)).await
}

async fn bind(s: &TestServer, ns: &str, name: &str, role: &str, user: &str) {
    let binding = json!({"apiVersion": "corral.dev/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "spec": {"roleRef": {"kind": "ClusterRole", "name": role}, "subjects": [{"kind": "User", "name": user}]}});
    let (code, body) = s.post(&format!("{V1}/namespaces/{ns}/rolebindings"), &binding).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

async fn call(
    s: &TestServer,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::builder().no_proxy().build().unwrap().request(method, s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status();
    let bytes = resp.bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())))
}

/// Who, with which token, sends what, and the status it must get.
type Case<'a> = (&'a str, Option<&'a str>, Method, String, Option<Value>, u16);

fn cm(name: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {"name": name}, "spec": {"data": {"k": "v"}}})
}

fn task(name: &str, node: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name},
        "spec": {"image": "busybox:latest", "command": ["sleep", "1"], "nodeName": node}})
}

fn event(name: &str, kind: &str, about: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Event", "metadata": {"name": name},
        "spec": {"involvedObject": {"apiVersion": "corral.dev/v1", "kind": kind, "name": about, "namespace": "web"},
                 "reason": "Test", "message": "m", "type": "Normal"}})
}

/// A node's report that task `name` (in `web`) is running.
fn report(name: &str) -> Value {
    json!({"entries": [{"namespace": "web", "name": name, "status": {"phase": "RUNNING"}}]})
}

/// Joins node `name` with `join`; returns the node's own token.
async fn join(s: &TestServer, join: &str, name: &str) -> String {
    let (code, body) = call(s, Some(join), Method::POST, "/auth/join", Some(&json!({"node": name}))).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["user"], format!("system:node:{name}"));
    body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_identity_is_refused_what_it_must_not_do_and_allowed_what_it_may() {
    let s = TestServer::start().await;
    for ns in ["web", "other"] {
        let (code, body) = s
            .post(
                &format!("{V1}/namespaces"),
                &json!({"kind": "Namespace", "apiVersion": "corral.dev/v1", "metadata": {"name": ns}}),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let viewer = token(&s, "vera", &[], TokenPurpose::Authentication, None).await;
    let editor = token(&s, "eddie", &[], TokenPurpose::Authentication, None).await;
    bind(&s, "web", "vera-views", "view", "vera").await;
    bind(&s, "web", "eddie-edits", "edit", "eddie").await;
    let expired =
        token(&s, "old", &["system:masters"], TokenPurpose::Authentication, Some("2020-01-01T00:00:00Z")).await;
    let join_token = token(&s, "system:bootstrap:x", &[], TokenPurpose::Join, Some("2999-01-01T00:00:00Z")).await;
    let node_a = join(&s, &join_token, "node-a").await;
    let node_b = join(&s, &join_token, "node-b").await;
    for (name, node) in [("task-a", "node-a"), ("task-b", "node-b")] {
        let (code, body) = s.post(&format!("{V1}/namespaces/web/tasks"), &task(name, node)).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let (code, body) = s.post(&format!("{V1}/namespaces/web/configmaps"), &cm("present")).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (_, task_a) = s.get(&format!("{V1}/namespaces/web/tasks/task-a")).await;
    let (_, task_b) = s.get(&format!("{V1}/namespaces/web/tasks/task-b")).await;
    let mut task_a_status = task_a.clone();
    task_a_status["status"] = json!({"phase": "RUNNING"});
    let mut task_b_status = task_b.clone();
    task_b_status["status"] = json!({"phase": "RUNNING"});
    let mut task_a_respec = task_a.clone();
    task_a_respec["spec"]["command"] = json!(["sh", "-c", "id"]);
    let node = |name: &str, endpoint: &str| {
        json!({"apiVersion": "corral.dev/v1", "kind": "Node", "metadata": {"name": name}, "spec": {},
            "status": {"agentEndpoint": endpoint}})
    };
    let admin = s.token().to_string();

    let garbage = "abcdefgh.0123456789abcdefghijklmnopqrstuv";
    let anon: Option<&str> = None;
    let cms_web = format!("{V1}/namespaces/web/configmaps");
    let cms_other = format!("{V1}/namespaces/other/configmaps");
    let tasks_web = format!("{V1}/namespaces/web/tasks");
    let own = format!("{tasks_web}?fieldSelector=spec.nodeName%3Dnode-a");
    let others = format!("{tasks_web}?fieldSelector=spec.nodeName%3Dnode-b");
    #[rustfmt::skip]
    let table: Vec<Case> = vec![
        // Finding 1: nothing answers without a credential, but the health probe.
        ("anonymous", anon, Method::GET, cms_web.clone(), None, 401),
        ("anonymous", anon, Method::DELETE, format!("{V1}/namespaces/corral-system"), None, 401),
        ("anonymous", anon, Method::GET, "/metrics".into(), None, 401),
        ("anonymous", anon, Method::POST, "/admin/compact?revision=1".into(), None, 401),
        ("anonymous", anon, Method::GET, "/kinds".into(), None, 401),
        ("anonymous", anon, Method::GET, "/healthz".into(), None, 200),
        ("garbage token", Some(garbage), Method::GET, cms_web.clone(), None, 401),
        ("garbage token", Some("not-even-shaped-like-one"), Method::GET, cms_web.clone(), None, 401),
        ("expired token", Some(&expired), Method::GET, cms_web.clone(), None, 401),
        ("join token", Some(&join_token), Method::GET, cms_web.clone(), None, 401),
        // view in web: read there, nothing else.
        ("view", Some(&viewer), Method::GET, cms_web.clone(), None, 200),
        ("view", Some(&viewer), Method::GET, format!("{tasks_web}/task-a/status"), None, 200),
        ("view", Some(&viewer), Method::GET, "/kinds".into(), None, 200),
        ("view", Some(&viewer), Method::POST, cms_web.clone(), Some(cm("v")), 403),
        ("view", Some(&viewer), Method::DELETE, format!("{cms_web}/present"), None, 403),
        ("view", Some(&viewer), Method::GET, cms_other.clone(), None, 403),
        ("view", Some(&viewer), Method::GET, format!("{V1}/configmaps"), None, 403),
        ("view", Some(&viewer), Method::GET, format!("{V1}/tokens"), None, 403),
        ("view", Some(&viewer), Method::GET, "/metrics".into(), None, 403),
        ("view", Some(&viewer), Method::POST, "/admin/compact".into(), None, 403),
        // edit in web: change workloads there; not permissions, statuses or elsewhere.
        ("edit", Some(&editor), Method::POST, cms_web.clone(), Some(cm("e")), 201),
        ("edit", Some(&editor), Method::DELETE, format!("{cms_web}/e"), None, 200),
        ("edit", Some(&editor), Method::POST, format!("{V1}/namespaces/web/rolebindings"), Some(json!({"apiVersion": "corral.dev/v1", "kind": "RoleBinding", "metadata": {"name": "x"}, "spec": {"roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "eddie"}]}})), 403),
        ("edit", Some(&editor), Method::PUT, format!("{tasks_web}/task-a/status"), Some(task_a_status.clone()), 403),
        ("edit", Some(&editor), Method::POST, cms_other.clone(), Some(cm("e")), 403),
        ("edit", Some(&editor), Method::DELETE, format!("{V1}/namespaces/web"), None, 403),
        ("edit", Some(&editor), Method::POST, format!("{V1}/tokens"), Some(json!({})), 403),
        ("edit", Some(&editor), Method::GET, "/admin/snapshot".into(), None, 403),
        // A node: its own tasks, Node, Lease and Events only.
        ("node-a", Some(&node_a), Method::GET, own.clone(), None, 200),
        ("node-a", Some(&node_a), Method::GET, tasks_web.clone(), None, 403),
        ("node-a", Some(&node_a), Method::GET, others.clone(), None, 403),
        ("node-a", Some(&node_a), Method::GET, format!("{tasks_web}/task-a"), None, 200),
        ("node-a", Some(&node_a), Method::GET, format!("{tasks_web}/task-b"), None, 403),
        ("node-a", Some(&node_a), Method::GET, format!("{tasks_web}/task-b/log"), None, 403),
        ("node-a", Some(&node_a), Method::PUT, format!("{tasks_web}/task-b/status"), Some(task_b_status.clone()), 403),
        ("node-a", Some(&node_a), Method::PUT, format!("{tasks_web}/task-a/status"), Some(task_a_status.clone()), 200),
        ("node-a", Some(&node_a), Method::PUT, format!("{tasks_web}/task-a"), Some(task_a_respec.clone()), 403),
        ("node-a", Some(&node_a), Method::POST, tasks_web.clone(), Some(task("mine", "node-a")), 403),
        ("node-a", Some(&node_a), Method::POST, format!("{V1}/nodes"), Some(node("node-b", "http://127.0.0.1:1")), 403),
        ("node-a", Some(&node_a), Method::POST, format!("{V1}/nodes"), Some(node("node-a", "http://127.0.0.1:2")), 201),
        ("node-a", Some(&node_a), Method::PUT, format!("{V1}/nodes/node-a/status"), Some(node("node-a", "http://127.0.0.1:2")), 200),
        // A node reports its own tasks' statuses, many at once; not another node's.
        ("node-a", Some(&node_a), Method::POST, format!("{V1}/nodes/node-a/taskstatus"), Some(report("task-a")), 200),
        ("node-a", Some(&node_a), Method::POST, format!("{V1}/nodes/node-b/taskstatus"), Some(report("task-b")), 403),
        ("edit", Some(&editor), Method::POST, format!("{V1}/nodes/node-a/taskstatus"), Some(report("task-a")), 403),
        ("node-a", Some(&node_a), Method::POST, format!("{V1}/namespaces/web/events"), Some(event("about-b", "Task", "task-b")), 403),
        ("node-a", Some(&node_a), Method::POST, format!("{V1}/namespaces/web/events"), Some(event("about-a", "Task", "task-a")), 201),
        ("node-a", Some(&node_a), Method::POST, cms_web.clone(), Some(cm("n")), 403),
        ("node-a", Some(&node_a), Method::GET, format!("{V1}/tokens"), None, 403),
        ("node-a", Some(&node_a), Method::POST, "/auth/join".into(), Some(json!({"node": "node-z"})), 403),
        ("node-b", Some(&node_b), Method::PUT, format!("{V1}/nodes/node-a/status"), Some(node("node-a", "http://attacker:1")), 403),
        // Finding 4: only the node itself sets where its logs are fetched from.
        ("admin", Some(&admin), Method::PUT, format!("{V1}/nodes/node-a/status"), Some(node("node-a", "http://attacker:1")), 403),
        // A create keeps no status: the endpoint written with it is dropped (below).
        ("admin", Some(&admin), Method::POST, format!("{V1}/nodes"), Some(node("node-c", "http://attacker:1")), 201),
        ("admin", Some(&admin), Method::GET, "/metrics".into(), None, 200),
        ("admin", Some(&admin), Method::POST, "/admin/compact?revision=1".into(), None, 200),
        ("admin", Some(&admin), Method::GET, format!("{V1}/tokens"), None, 200),
        ("admin", Some(&admin), Method::DELETE, format!("{V1}/namespaces/corral-system"), None, 403),
    ];
    let mut wrong = Vec::new();
    for (who, token, method, path, body, want) in table {
        let (code, answer) = call(&s, token, method.clone(), &path, body.as_ref()).await;
        if code.as_u16() != want {
            wrong.push(format!("{who} {method} {path}: got {code}, want {want}: {answer}"));
        } else if want == 401 || want == 403 {
            // Refusals are Status objects that say why.
            assert_eq!(answer["kind"], "Status", "{who} {method} {path}: {answer}");
            assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
        }
    }
    assert!(wrong.is_empty(), "{} wrong answers:\n{}", wrong.len(), wrong.join("\n"));
    // The refused writes left nothing behind.
    let (code, _) = s.get(&format!("{V1}/nodes/node-b")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (_, a) = s.get(&format!("{V1}/nodes/node-a")).await;
    assert_eq!(a["status"]["agentEndpoint"], "http://127.0.0.1:2");
    let (_, c) = s.get(&format!("{V1}/nodes/node-c")).await;
    assert!(c["status"]["agentEndpoint"].is_null(), "{c}");
    let (_, t) = s.get(&format!("{tasks_web}/task-a")).await;
    assert_eq!(t["spec"]["command"], json!(["sleep", "1"]));
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_a_rejoin_revokes_the_nodes_earlier_credential() {
    let s = TestServer::start().await;
    let alice = token(&s, "alice", &["system:masters"], TokenPurpose::Authentication, None).await;
    let (code, _) = call(&s, Some(&alice), Method::GET, "/auth/whoami", None).await;
    assert_eq!(code, StatusCode::OK);
    // Connections kept open across the revocation (HTTP/1.1 keep-alive and HTTP/2):
    // the server checks a connection's credential once, until the tokens change.
    let kept = [
        reqwest::Client::builder().no_proxy().http1_only().build().unwrap(),
        reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap(),
    ];
    let whoami = async |c: &reqwest::Client| {
        c.get(s.url("/auth/whoami")).bearer_auth(&alice).send().await.expect("whoami").status()
    };
    for c in &kept {
        for _ in 0..3 {
            assert_eq!(whoami(c).await, StatusCode::OK);
        }
    }
    let id = alice.split('.').next().unwrap();
    let (code, body) = s.delete(&format!("{V1}/tokens/{id}")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _) = call(&s, Some(&alice), Method::GET, "/auth/whoami", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "no delay between the revocation and the refusal");
    for c in &kept {
        assert_eq!(whoami(c).await, StatusCode::UNAUTHORIZED, "a connection that authenticated before");
    }

    let join_token = token(&s, "system:bootstrap:y", &[], TokenPurpose::Join, None).await;
    let first = join(&s, &join_token, "n1").await;
    let second = join(&s, &join_token, "n1").await;
    let (code, _) = call(&s, Some(&first), Method::GET, "/auth/whoami", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, me) = call(&s, Some(&second), Method::GET, "/auth/whoami", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(me["user"], "system:node:n1");
    assert!(me["groups"].as_array().unwrap().contains(&json!("system:nodes")));
    // The server keeps hashes only: no token's secret is in what it stores.
    let (_, tokens) = s.get(&format!("{V1}/tokens")).await;
    let text = tokens.to_string();
    for t in [&second, &join_token, &s.token().to_string()] {
        let secret = t.split('.').nth(1).unwrap();
        assert!(!text.contains(secret), "a secret is readable from the API");
    }
    s.stop().await;
}
