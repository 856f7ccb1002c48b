//! The HTTP client used by the CLI, against a real server: errors carry the server's
//! Status, writes report what they did, watches stream and report compaction.

mod cli_support;

use std::sync::Arc;

use corral_api::KindInfo;
use corral_client::{Client, DeleteParams, Deleted, ListParams, Patch, WatchEvent, WatchParams, WriteParams};
use futures::StreamExt;
use serde_json::json;

async fn configmaps(client: &Client) -> Arc<KindInfo> {
    client.kinds().await.unwrap().into_iter().find(|k| k.plural == "configmaps").unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn api_errors_carry_code_reason_message_and_causes() {
    let env = cli_support::Env::start();
    rt().block_on(async {
        let client = env.client();
        let cm = configmaps(&client).await;

        let err = client.get(&cm, Some("default"), "absent").await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(err.reason(), Some("NotFound"));

        let bad = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "default"}, "spec": {"data": {"k": 1}, "extra": true}});
        let err = client.create(&cm, &bad, &WriteParams::default()).await.unwrap_err();
        assert_eq!(err.code(), Some(422), "{err}");
        assert_eq!(err.reason(), Some("Invalid"));
        let fields: Vec<&str> = err.causes().iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"spec.extra") && fields.contains(&"spec.data.k"), "{fields:?}");
        assert!(!err.to_string().is_empty());
    });
}

#[test]
fn apply_patch_reports_creation_and_delete_reports_finalizers() {
    let env = cli_support::Env::start();
    rt().block_on(async {
        let client = env.client();
        let cm = configmaps(&client).await;
        let manifest = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
            "metadata": {"name": "f", "namespace": "default", "finalizers": ["test.corral.dev/hold"]},
            "spec": {"data": {"k": "v"}}});
        let params = WriteParams { dry_run: false, field_manager: Some("test".into()), force: false };
        let w = client.patch(&cm, Some("default"), "f", Patch::Apply(&manifest), &params).await.unwrap();
        assert!(w.created);
        let again = client.patch(&cm, Some("default"), "f", Patch::Apply(&manifest), &params).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.object.metadata.resource_version, w.object.metadata.resource_version, "nothing changed");

        match client.delete(&cm, Some("default"), "f", &DeleteParams::default()).await.unwrap() {
            Deleted::Pending(o) => assert!(o.metadata.deletion_timestamp.is_some()),
            Deleted::Gone(_) => panic!("a finalizer remains: the delete must be pending"),
        }
        let release = json!([{"op": "remove", "path": "/metadata/finalizers"}]);
        client.patch(&cm, Some("default"), "f", Patch::Json(&release), &WriteParams::default()).await.unwrap();
        let err = client.get(&cm, Some("default"), "f").await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
    });
}

#[test]
fn watch_streams_changes_and_a_compacted_revision_is_gone() {
    let env = cli_support::Env::start();
    rt().block_on(async {
        let client = env.client();
        let cm = configmaps(&client).await;
        let list = client.list(&cm, None, &ListParams::default()).await.unwrap();
        let from = list.metadata.resource_version.clone().unwrap();
        let params = WatchParams { resource_version: Some(from.clone()), ..Default::default() };
        let mut stream = client.watch(&cm, Some("default"), &params).await.unwrap();

        let obj = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "spec": {}});
        let mut obj_ns = obj.clone();
        obj_ns["metadata"]["namespace"] = json!("default");
        client.create(&cm, &obj_ns, &WriteParams::default()).await.unwrap();
        match stream.next().await {
            Some(Ok(WatchEvent::Added(o))) => assert_eq!(o.metadata.name, "w"),
            other => panic!("expected ADDED w, got {other:?}"),
        }

        // Compact past `from`: watching from it again is 410 Gone.
        let revision = client.get(&cm, Some("default"), "w").await.unwrap().metadata.resource_version.unwrap();
        let url = format!("{}/admin/compact?revision={revision}", env.url);
        let resp = reqwest::Client::new().post(url).bearer_auth(&env.token).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let err = match client.watch(&cm, Some("default"), &params).await {
            Ok(_) => panic!("watching from a compacted revision must fail"),
            Err(e) => e,
        };
        assert!(err.is_gone(), "{err}");
    });
}

#[test]
fn bad_server_urls_are_refused_with_advice() {
    let err = Client::http("localhost:7070").unwrap_err().to_string();
    assert!(err.contains("--server"), "{err}");
    assert!(Client::http("not a url").is_err());
}
