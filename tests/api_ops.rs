//! Operations and discovery endpoints, metrics, and the router driven over any
//! `Storage`.

mod api_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use api_support::{CMS, TestServer, cm};
use async_trait::async_trait;
use corral_api::{Registry, Selector};
use corral_server::{AppState, app};
use corral_store::{
    DeleteOutcome, Error, Event, EventType, Key, ListResult, Result, Storage, StoreStats, StoredObject, UpdateOutcome,
    WatchEvent, WatchRequest, WatchStream,
};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn discovery_describes_every_served_kind() {
    let s = TestServer::start().await;
    let (code, groups) = s.get("/apis").await;
    assert_eq!(code, StatusCode::OK);
    let v1 = json!({"groupVersion": "corral.dev/v1", "version": "v1"});
    assert_eq!(
        groups,
        json!({"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{"name": "corral.dev", "versions": [v1], "preferredVersion": v1}]})
    );
    // The legacy core group, which Kubernetes clients ask for first, is empty.
    let (code, core) = s.get("/api").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!((core["kind"].as_str(), core["versions"].as_array().map(Vec::len)), (Some("APIVersions"), Some(0)));

    let (code, gv) = s.get("/apis/corral.dev/v1").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(gv["groupVersion"], "corral.dev/v1");
    assert_eq!(gv["kind"], "APIResourceList");
    let cms = gv["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == "configmaps")).cloned();
    assert_eq!(
        cms,
        Some(json!({"name": "configmaps", "singularName": "configmap", "kind": "ConfigMap", "namespaced": true,
            "shortNames": ["cm"], "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}))
    );
    let (code, _) = s.get("/apis/other.dev/v9").await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    let (code, kinds) = s.get("/kinds").await;
    assert_eq!(code, StatusCode::OK);
    let kinds = kinds.as_array().expect("array of kinds");
    let names: BTreeSet<&str> = kinds.iter().filter_map(|k| k["kind"].as_str()).collect();
    assert!(names.contains("ConfigMap") && names.contains("Namespace"), "{names:?}");
    for k in kinds {
        for field in ["group", "version", "kind", "plural", "singular", "shortNames", "namespaced", "schema"] {
            assert!(k.get(field).is_some(), "{field} missing in {k}");
        }
    }

    let (code, schema) = s.get("/schemas/corral.dev/v1/configmaps").await;
    assert_eq!(code, StatusCode::OK);
    let registry = Registry::builtin();
    let info = registry.by_plural("corral.dev", "v1", "configmaps").expect("built in");
    assert_eq!(schema, info.schema, "the schema served is the one writes are validated against");
    let (code, status) = s.get("/schemas/corral.dev/v1/widgets").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["kind"], "Status");

    let resp = s.client.get(s.url("/healthz")).send().await.expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "ok");
    s.stop().await;
}

/// Checks the exposition text line by line; returns the sample names.
fn parse_exposition(text: &str) -> BTreeSet<String> {
    let name_ok = |n: &str| {
        n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut typed = BTreeSet::new();
    let mut samples = BTreeSet::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            assert!(name_ok(name), "bad metric name in {line:?}");
            match keyword {
                "HELP" | "UNIT" => {}
                "TYPE" => {
                    let ty = parts.next().unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"].contains(&ty),
                        "{line:?}"
                    );
                    typed.insert(name.to_string());
                }
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        assert!(value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value), "bad value in {line:?}");
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(name_ok(k), "bad label name in {line:?}");
                    assert!(!v.trim_end_matches('"').contains('"'), "unescaped quote in {line:?}");
                }
                name
            }
            None => series,
        };
        assert!(name_ok(name), "bad sample name in {line:?}");
        let family = ["_total", "_bucket", "_count", "_sum", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample {name} has no TYPE line before it");
        samples.insert(name.to_string());
    }
    samples
}

#[tokio::test]
async fn metrics_are_valid_exposition_text() {
    // The request counts below are this test's own: the built-in controllers, which
    // send theirs through the same router (the services framework registering
    // itself, say), do not run.
    let s = TestServer::start_with(|o| o.controllers = corral_controllers::Selection::Only(vec![])).await;
    s.post(CMS, &cm("a", json!({}))).await;
    s.get("/nothing").await;
    // Without asking: the classic Prometheus text format, counters named by their samples.
    let plain = s.client.get(s.url("/metrics")).send().await.expect("answered");
    let content_type =
        plain.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let plain = plain.text().await.expect("body");
    assert!(plain.contains("# TYPE corral_store_writes_total counter"), "{plain}");
    assert!(!plain.contains("# EOF"), "{plain}");

    let resp = s
        .client
        .get(s.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = resp.text().await.expect("body");
    let samples = parse_exposition(&text);
    for want in [
        "corral_http_requests_total",
        "corral_http_request_duration_seconds_bucket",
        "corral_http_request_duration_seconds_count",
        "corral_store_revision",
        "corral_store_objects",
        "corral_store_watchers",
        "corral_store_writes_total",
        "corral_store_flushes_total",
    ] {
        assert!(samples.contains(want), "{want} missing from\n{text}");
    }
    assert!(text.contains(r#"corral_http_requests_total{method="POST",code="201"} 1"#), "{text}");
    assert!(text.contains(r#"corral_http_requests_total{method="GET",code="404"} 1"#), "{text}");
    s.stop().await;
}

/// A store whose watches deliver one event and then fall behind compaction; every
/// other operation is unavailable.
struct FallsBehind;

fn object() -> Arc<StoredObject> {
    let json = json!({"apiVersion":"corral.dev/v1","kind":"ConfigMap",
        "metadata":{"name":"a","namespace":"default","resourceVersion":"5"},"spec":{}});
    Arc::new(StoredObject {
        key: Key::namespaced("corral.dev/configmaps", "default", "a"),
        revision: 5,
        labels: Default::default(),
        json: serde_json::to_vec(&json).unwrap_or_default().into(),
    })
}

#[async_trait]
impl Storage for FallsBehind {
    async fn create(&self, _: Key, _: Value) -> Result<Arc<StoredObject>> {
        Err(Error::Closed)
    }
    async fn update(&self, _: Key, _: Value, _: Option<u64>) -> Result<UpdateOutcome> {
        Err(Error::Closed)
    }
    async fn update_status(&self, _: Key, _: Value, _: Option<u64>) -> Result<UpdateOutcome> {
        Err(Error::Closed)
    }
    async fn delete(&self, _: Key, _: Option<u64>) -> Result<DeleteOutcome> {
        Err(Error::Closed)
    }
    async fn transact(&self, _: Vec<corral_store::TxnOp>) -> Result<Vec<corral_store::TxnOutcome>> {
        Err(Error::Closed)
    }
    async fn get(&self, _: &Key) -> Result<Option<Arc<StoredObject>>> {
        Err(Error::Corrupt("secret internal detail".into()))
    }
    async fn list(&self, _: &str, _: Option<&str>, _: &Selector) -> Result<ListResult> {
        Ok(ListResult { items: vec![object(), object()], revision: 9 })
    }
    fn request_progress(&self) {}
    async fn watch(&self, _: WatchRequest) -> Result<WatchStream> {
        let event = WatchEvent::Event(Arc::new(Event { revision: 5, event_type: EventType::Added, object: object() }));
        // Anything after `Gone` must not reach the client.
        let events = vec![event.clone(), WatchEvent::Gone { compacted: 7 }, event];
        Ok(futures::stream::iter(events).boxed())
    }
    async fn compact(&self, _: u64) -> Result<()> {
        Ok(())
    }
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}

#[tokio::test]
async fn the_router_serves_any_storage_and_ends_a_watch_that_fell_behind() {
    let state = AppState::new(Arc::new(FallsBehind), Arc::new(Registry::builtin()));
    // This store holds no tokens: the policy is set by hand.
    let token = corral_client::BearerToken::generate().expect("token");
    {
        let mut policy = state.auth.policy.write();
        *policy = corral_server::auth::bootstrap::builtin_policy();
        let spec = corral_api::kinds::TokenSpec {
            user: "admin".into(),
            groups: vec![corral_server::auth::MASTERS.into()],
            secret_hash: token.secret_hash(),
            ..Default::default()
        };
        let entry = corral_server::auth::rbac::TokenEntry::new(&spec).expect("a usable token");
        policy.tokens.insert(token.id.clone(), entry);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", token.expose()).parse().expect("header"));
    let client = reqwest::Client::builder().no_proxy().default_headers(headers).build().expect("client");
    let url = |p: &str| format!("http://{addr}{p}");

    let text = client
        .get(url(&format!("{CMS}?watch=true&resourceVersion=4")))
        .send()
        .await
        .expect("watch")
        .text()
        .await
        .expect("body");
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "a");
    assert_eq!(events[1]["type"], "ERROR");
    assert_eq!(events[1]["object"]["kind"], "Status");
    assert_eq!(events[1]["object"]["code"], 410);

    let list: Value = client.get(url(CMS)).send().await.expect("list").json().await.expect("JSON list");
    assert_eq!(list["metadata"]["resourceVersion"], "9");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));

    let resp = client.get(url(&format!("{CMS}/a"))).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let status: Value = resp.json().await.expect("JSON status");
    assert_eq!(status["reason"], "InternalError");
    assert!(!status.to_string().contains("secret internal detail"), "{status}");
    server.abort();
}
