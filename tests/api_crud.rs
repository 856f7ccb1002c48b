//! Create, read, update and delete over HTTP against a real server and store.

mod api_support;

use api_support::{CMS, TestServer, cm, cm_path, rv};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn create_answers_201_and_a_second_create_409() {
    let s = TestServer::start().await;
    let (code, obj) = s.post(CMS, &cm("a", json!({"k": "v"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{obj}");
    assert_eq!(obj["metadata"]["generation"], 1);
    assert!(obj["metadata"]["uid"].is_string());
    assert!(obj["metadata"]["creationTimestamp"].is_string());
    assert_eq!(obj["spec"]["data"]["k"], "v");

    let (code, status) = s.post(CMS, &cm("a", json!({"k": "other"}))).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "AlreadyExists");
    assert_eq!(status["details"]["name"], "a");
    let (_, live) = s.get(&cm_path("a")).await;
    assert_eq!(live["spec"]["data"]["k"], "v", "the failed create changed nothing");
    s.stop().await;
}

#[tokio::test]
async fn namespace_comes_from_the_path_and_must_exist() {
    let s = TestServer::start().await;
    let mut body = cm("a", json!({}));
    body["metadata"].as_object_mut().map(|m| m.remove("namespace"));
    let (code, obj) = s.post(CMS, &body).await;
    assert_eq!(code, StatusCode::CREATED, "{obj}");
    assert_eq!(obj["metadata"]["namespace"], "default");

    let (code, status) = s.post("/apis/corral.dev/v1/namespaces/nowhere/configmaps", &body).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{status}");
    assert!(status["message"].as_str().is_some_and(|m| m.contains("nowhere")), "{status}");
    assert_eq!(status["details"]["kind"], "Namespace");

    let mut elsewhere = cm("c", json!({}));
    elsewhere["metadata"]["namespace"] = json!("other");
    let (code, status) = s.post(CMS, &elsewhere).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    let (code, status) = s.put(&cm_path("zzz"), &cm("a", json!({}))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "a body naming another object: {status}");
    s.stop().await;
}

#[tokio::test]
async fn get_and_list_filter_by_label_selectors() {
    // No controller: they write in the background (a framework's lease), and this
    // test compares a list's revision with the store's.
    let s = TestServer::start_with(|o| o.controllers = corral_controllers::Selection::Only(vec![])).await;
    let (code, _) = s
        .post(
            "/apis/corral.dev/v1/namespaces",
            &json!({"apiVersion":"corral.dev/v1","kind":"Namespace","metadata":{"name":"other"}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let labelled = |name: &str, ns: &str, labels: Value| {
        let mut o = cm(name, json!({}));
        o["metadata"]["namespace"] = json!(ns);
        o["metadata"]["labels"] = labels;
        o
    };
    for (name, ns, labels) in [
        ("web-1", "default", json!({"app": "web", "env": "prod"})),
        ("web-2", "default", json!({"app": "web", "env": "dev", "canary": "yes"})),
        ("db-1", "default", json!({"app": "db", "tier": "db"})),
        ("web-3", "other", json!({"app": "web", "env": "prod"})),
    ] {
        let (code, body) =
            s.post(&format!("/apis/corral.dev/v1/namespaces/{ns}/configmaps"), &labelled(name, ns, labels)).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (code, one) = s.get(&cm_path("web-1")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(one["metadata"]["labels"]["env"], "prod");

    let (code, list) = s.get(CMS).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["apiVersion"], "corral.dev/v1");
    assert_eq!(list["metadata"]["resourceVersion"], s.revision().await.to_string());
    assert_eq!(names(&list), ["db-1", "web-1", "web-2"]);

    for (selector, want) in [
        ("app=web", vec!["web-1", "web-2"]),
        ("app%3Dweb%2Cenv!%3Ddev", vec!["web-1"]),
        ("tier!=db", vec!["web-1", "web-2"]),
        ("env in (prod,staging)", vec!["web-1"]),
        ("env notin (prod)", vec!["db-1", "web-2"]),
        ("canary", vec!["web-2"]),
        ("!canary,app", vec!["db-1", "web-1"]),
    ] {
        let (code, list) = s.get(&format!("{CMS}?labelSelector={selector}")).await;
        assert_eq!(code, StatusCode::OK, "{selector}: {list}");
        assert_eq!(names(&list), want, "{selector}");
    }
    let (_, all) = s.get("/apis/corral.dev/v1/configmaps?labelSelector=env%3Dprod").await;
    assert_eq!(names(&all), ["web-1", "web-3"], "across namespaces");

    let (code, status) = s.get(&format!("{CMS}?labelSelector=env in prod")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    let (code, status) = s.get(&cm_path("missing")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["reason"], "NotFound");
    s.stop().await;
}

#[tokio::test]
async fn put_with_a_stale_resource_version_conflicts() {
    let s = TestServer::start().await;
    let (_, created) = s.post(CMS, &cm("a", json!({"k": "1"}))).await;
    let mut first = created.clone();
    first["spec"]["data"]["k"] = json!("2");
    let (code, updated) = s.put(&cm_path("a"), &first).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_ne!(rv(&updated), rv(&created));

    let mut stale = created.clone();
    stale["spec"]["data"]["k"] = json!("3");
    let (code, status) = s.put(&cm_path("a"), &stale).await;
    assert_eq!(code, StatusCode::CONFLICT, "{status}");
    assert_eq!(status["reason"], "Conflict");
    let (_, live) = s.get(&cm_path("a")).await;
    assert_eq!(live["spec"]["data"]["k"], "2");

    let mut blind = cm("a", json!({"k": "4"}));
    blind["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
    let (code, _) = s.put(&cm_path("a"), &blind).await;
    assert_eq!(code, StatusCode::OK, "no resourceVersion, no precondition");

    let (code, status) = s.put(&cm_path("missing"), &cm("missing", json!({}))).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{status}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_updates_on_one_resource_version_exactly_one_wins() {
    let s = TestServer::start().await;
    for round in 0..5 {
        let name = format!("race-{round}");
        let (_, created) = s.post(CMS, &cm(&name, json!({"k": "0"}))).await;
        let mut a = created.clone();
        a["spec"]["data"]["k"] = json!("a");
        let mut b = created.clone();
        b["spec"]["data"]["k"] = json!("b");
        let path = cm_path(&name);
        let ((ca, va), (cb, vb)) = tokio::join!(s.put(&path, &a), s.put(&path, &b));
        let mut codes = [ca, cb];
        codes.sort();
        assert_eq!(codes, [StatusCode::OK, StatusCode::CONFLICT], "{va} {vb}");
        let winner = if ca == StatusCode::OK { "a" } else { "b" };
        let (_, live) = s.get(&path).await;
        assert_eq!(live["spec"]["data"]["k"], winner);
    }
    s.stop().await;
}

#[tokio::test]
async fn generation_follows_the_spec_and_status_has_its_own_path() {
    let s = TestServer::start().await;
    let (_, created) = s.post(CMS, &cm("a", json!({"k": "1"}))).await;
    assert_eq!(created["metadata"]["generation"], 1);

    let mut labelled = created.clone();
    labelled["metadata"]["labels"] = json!({"app": "web"});
    let (_, labelled) = s.put(&cm_path("a"), &labelled).await;
    assert_eq!(labelled["metadata"]["generation"], 1, "metadata is not spec");
    assert_ne!(rv(&labelled), rv(&created));

    let (code, same) = s.put(&cm_path("a"), &labelled).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(rv(&same), rv(&labelled), "a no-op PUT writes nothing");
    assert_eq!(same, labelled);

    let mut changed = labelled.clone();
    changed["spec"]["data"]["k"] = json!("2");
    let (_, changed) = s.put(&cm_path("a"), &changed).await;
    assert_eq!(changed["metadata"]["generation"], 2);

    let mut with_status = changed.clone();
    with_status["status"] = json!({});
    with_status["spec"]["data"]["k"] = json!("ignored");
    let (code, status_written) = s.put(&format!("{}/status", cm_path("a")), &with_status).await;
    assert_eq!(code, StatusCode::OK, "{status_written}");
    assert_eq!(status_written["status"], json!({}));
    assert_eq!(status_written["spec"]["data"]["k"], "2", "the status path writes only status");
    assert_eq!(status_written["metadata"]["generation"], 2);
    assert_ne!(rv(&status_written), rv(&changed));

    let mut drop_status = status_written.clone();
    drop_status.as_object_mut().map(|o| o.remove("status"));
    let (code, kept) = s.put(&cm_path("a"), &drop_status).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(kept["status"], json!({}), "status in a PUT body is ignored");
    assert_eq!(rv(&kept), rv(&status_written));
    s.stop().await;
}

#[tokio::test]
async fn an_invalid_body_lists_every_bad_field_and_writes_nothing() {
    // No controller: they write in the background (a framework's lease), and this
    // test counts revisions.
    let s = TestServer::start_with(|o| o.controllers = corral_controllers::Selection::Only(vec![])).await;
    let before = s.revision().await;
    let bad = json!({
        "apiVersion": "corral.dev/v1",
        "kind": "ConfigMap",
        "metadata": {"name": "Bad_Name", "colour": "red"},
        "spec": {"data": {"k": 1}, "extra": true},
    });
    let (code, status) = s.post(CMS, &bad).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["kind"], "ConfigMap");
    let fields: Vec<&str> =
        status["details"]["causes"].as_array().expect("causes").iter().filter_map(|c| c["field"].as_str()).collect();
    for want in ["metadata.name", "metadata.colour", "spec.extra", "spec.data.k"] {
        assert!(fields.contains(&want), "{want} missing from {fields:?}");
    }
    assert_eq!(s.revision().await, before, "nothing written");

    let (_, good) = s.post(CMS, &cm("a", json!({"k": "v"}))).await;
    let mut worse = good.clone();
    worse["spec"]["extra"] = json!(1);
    let (code, _) = s.put(&cm_path("a"), &worse).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, live) = s.get(&cm_path("a")).await;
    assert_eq!(live, good, "a rejected PUT changes nothing");
    s.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_json_statuses() {
    let s = TestServer::start().await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(3 * 1024 * 1024 + 10));
    let (code, status) = s.send_raw(reqwest::Method::POST, CMS, "application/json", big.into_bytes()).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(status["reason"], "RequestEntityTooLarge");
    assert_eq!(status["code"], 413);

    let (code, status) = s.send_raw(reqwest::Method::POST, CMS, "application/json", b"{\n \"kind\": }".to_vec()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(status["message"].as_str().is_some_and(|m| m.contains("line 2 column")), "{status}");

    let (code, status) = s.call(reqwest::Method::DELETE, CMS, None).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(status["reason"], "MethodNotAllowed");
    let (code, status) = s.call(reqwest::Method::POST, "/healthz", None).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(status["kind"], "Status");

    for path in
        ["/nothing", "/apis/corral.dev/v1/widgets", "/apis/corral.dev/v1/configmaps/a", "/apis/corral.dev/v1/a/b/c/d"]
    {
        let (code, status) = s.get(path).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(status["reason"], "NotFound", "{path}");
    }
    let (code, _) = s.get("/healthz").await;
    assert_eq!(code, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn dry_run_computes_and_writes_nothing() {
    // The store's revision counts this test's writes: no controller (the services
    // framework renews its lease every few seconds) writes beside it.
    let s = TestServer::start_with(|o| o.controllers = corral_controllers::Selection::Only(vec![])).await;
    let before = s.revision().await;
    let (code, would) = s.post(&format!("{CMS}?dryRun=All"), &cm("a", json!({"k": "v"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{would}");
    assert_eq!(would["spec"]["data"]["k"], "v");
    let (code, _) = s.get(&cm_path("a")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    let (_, created) = s.post(CMS, &cm("a", json!({"k": "v"}))).await;
    let mut edit = created.clone();
    edit["spec"]["data"]["k"] = json!("w");
    let (code, would) = s.put(&format!("{}?dryRun=All", cm_path("a")), &edit).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(would["metadata"]["generation"], 2);
    let (code, _) = s.delete(&format!("{}?dryRun=All", cm_path("a"))).await;
    assert_eq!(code, StatusCode::OK);
    let (_, live) = s.get(&cm_path("a")).await;
    assert_eq!(live, created);
    assert_eq!(s.revision().await, before + 1, "only the real create was written");

    let (code, deleted) = s.delete(&cm_path("a")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(deleted["metadata"]["name"], "a");
    let (code, _) = s.get(&cm_path("a")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let s = TestServer::start().await;
    let (_, created) = s.post(CMS, &cm("kept", json!({"k": "v"}))).await;
    let s = s.restart().await;
    let (code, live) = s.get(&cm_path("kept")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(live, created);
    let (code, ns) = s.get("/apis/corral.dev/v1/namespaces/default").await;
    assert_eq!(code, StatusCode::OK, "{ns}");
    s.stop().await;
}
