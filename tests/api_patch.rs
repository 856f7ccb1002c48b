//! PATCH over HTTP: JSON patch, merge patch and apply.

mod api_support;

use api_support::{CMS, TestServer, cm, cm_path, rv};
use reqwest::StatusCode;
use serde_json::json;

const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";
const APPLY_JSON: &str = "application/apply-patch+json";
const APPLY_YAML: &str = "application/apply-patch+yaml";

#[tokio::test]
async fn json_patch_and_merge_patch_edit_the_live_object() {
    let s = TestServer::start().await;
    let (_, created) = s.post(CMS, &cm("a", json!({"k": "1", "gone": "x"}))).await;
    let path = cm_path("a");

    let (code, patched) = s
        .patch(
            &path,
            JSON_PATCH,
            r#"[{"op":"test","path":"/spec/data/k","value":"1"},{"op":"add","path":"/spec/data/n","value":"2"}]"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(patched["spec"]["data"], json!({"k": "1", "gone": "x", "n": "2"}));
    assert_eq!(patched["metadata"]["generation"], 2);

    let (code, status) = s.patch(&path, JSON_PATCH, r#"[{"op":"test","path":"/spec/data/k","value":"nope"}]"#).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    let (code, status) = s.patch(&path, JSON_PATCH, r#"[{"op":"add","path":"/spec/bogus","value":1}]"#).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "the result is validated: {status}");
    assert!(status["details"]["causes"].to_string().contains("spec.bogus"), "{status}");

    let (code, merged) =
        s.patch(&path, MERGE_PATCH, r#"{"spec":{"data":{"gone":null,"k":"3"}},"metadata":{"labels":{"l":"v"}}}"#).await;
    assert_eq!(code, StatusCode::OK, "{merged}");
    assert_eq!(merged["spec"]["data"], json!({"k": "3", "n": "2"}));
    assert_eq!(merged["metadata"]["labels"]["l"], "v");
    assert_eq!(merged["metadata"]["uid"], created["metadata"]["uid"]);

    let (code, same) = s.patch(&path, MERGE_PATCH, r#"{"spec":{"data":{"k":"3"}}}"#).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(rv(&same), rv(&merged), "a patch that changes nothing writes nothing");

    let (code, status) = s.patch(&path, "application/json", "{}").await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(status["reason"], "UnsupportedMediaType");
    let (code, _) = s.patch(&cm_path("missing"), MERGE_PATCH, "{}").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, status) = s.patch(&path, JSON_PATCH, r#"{"op":"add"}"#).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    let (code, _) = s.patch(&path, MERGE_PATCH, r#"{"metadata":{"name":"b"}}"#).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "a patch cannot rename");
    s.stop().await;
}

#[tokio::test]
async fn a_patch_carrying_a_stale_resource_version_conflicts() {
    let s = TestServer::start().await;
    let (_, created) = s.post(CMS, &cm("a", json!({"k": "1"}))).await;
    let path = cm_path("a");
    let (code, _) = s.patch(&path, MERGE_PATCH, r#"{"spec":{"data":{"k":"2"}}}"#).await;
    assert_eq!(code, StatusCode::OK);
    let stale = format!(r#"{{"metadata":{{"resourceVersion":"{}"}},"spec":{{"data":{{"k":"3"}}}}}}"#, rv(&created));
    let (code, status) = s.patch(&path, MERGE_PATCH, &stale).await;
    assert_eq!(code, StatusCode::CONFLICT, "{status}");
    let (_, live) = s.get(&path).await;
    assert_eq!(live["spec"]["data"]["k"], "2");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_all_land() {
    let s = TestServer::start().await;
    s.post(CMS, &cm("a", json!({}))).await;
    let path = cm_path("a");
    let patches: Vec<String> = (0..8).map(|i| format!(r#"{{"spec":{{"data":{{"k{i}":"v"}}}}}}"#)).collect();
    let results = futures::future::join_all(patches.iter().map(|p| s.patch(&path, MERGE_PATCH, p))).await;
    for (code, body) in &results {
        assert_eq!(*code, StatusCode::OK, "{body}");
    }
    let (_, live) = s.get(&path).await;
    let data = live["spec"]["data"].as_object().expect("data");
    assert_eq!(data.len(), 8, "every patch was applied: {live}");
    s.stop().await;
}

#[tokio::test]
async fn apply_creates_updates_and_prunes_like_kubectl() {
    let s = TestServer::start().await;
    let path = cm_path("app");
    let manifest = |data: serde_json::Value| cm("app", data).to_string();

    let (code, created) = s.patch(&path, APPLY_JSON, &manifest(json!({"a": "1", "b": "2"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert!(created["metadata"]["annotations"]["corral.dev/last-applied-configuration"].is_string());

    let (code, again) = s.patch(&path, APPLY_JSON, &manifest(json!({"a": "1", "b": "2"}))).await;
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(rv(&again), rv(&created), "re-applying the same manifest writes nothing");

    let (code, edited) = s.patch(&path, APPLY_JSON, &manifest(json!({"a": "changed", "b": "2"}))).await;
    assert_eq!(code, StatusCode::OK);
    assert_ne!(rv(&edited), rv(&created));
    assert_eq!(edited["spec"]["data"]["a"], "changed");

    let (code, _) = s.patch(&path, MERGE_PATCH, r#"{"spec":{"data":{"by-someone-else":"x"}}}"#).await;
    assert_eq!(code, StatusCode::OK);

    let (code, pruned) = s.patch(&path, APPLY_JSON, &manifest(json!({"a": "changed"}))).await;
    assert_eq!(code, StatusCode::OK, "{pruned}");
    assert_eq!(
        pruned["spec"]["data"],
        json!({"a": "changed", "by-someone-else": "x"}),
        "b left the manifest and the object; the field added by a patch stays"
    );

    let yaml = "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: app\nspec:\n  data:\n    a: from-yaml\n";
    // Another field manager changing a value the first one applied conflicts (as in
    // Kubernetes' server-side apply) until it forces.
    let (code, conflict) = s.patch(&format!("{path}?fieldManager=test"), APPLY_YAML, yaml).await;
    assert_eq!(code, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["details"]["causes"][0]["field"], ".spec.data.a", "{conflict}");
    let (_, unchanged) = s.get(&path).await;
    assert_eq!(unchanged["spec"]["data"]["a"], "changed");
    let (code, from_yaml) = s.patch(&format!("{path}?fieldManager=test&force=true"), APPLY_YAML, yaml).await;
    assert_eq!(code, StatusCode::OK, "{from_yaml}");
    assert_eq!(from_yaml["spec"]["data"], json!({"a": "from-yaml", "by-someone-else": "x"}));
    assert_eq!(from_yaml["metadata"]["namespace"], "default");

    let (code, status) = s.patch(&path, APPLY_JSON, &manifest(json!({"a": 1}))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    let (code, status) = s.patch(&path, APPLY_YAML, "kind: [unclosed").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");

    let (code, dry) =
        s.patch(&format!("{}?dryRun=All", cm_path("never")), APPLY_JSON, &cm("never", json!({})).to_string()).await;
    assert_eq!(code, StatusCode::CREATED, "{dry}");
    let (code, _) = s.get(&cm_path("never")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    s.stop().await;
}
