//! The controller runtime against a real server: reflectors resume after the server
//! restarts and re-list after compaction; the controller maps owned objects to their
//! owners and never reconciles one object twice at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use corral::server::{AppState, ServerConfig, app, in_process::InProcess};
use corral_api::Registry;
use corral_runtime::transport::{Response, Transport};
use corral_runtime::{Action, Change, Client, Controller, Reflector};
use corral_store::{Options, SledStore, Storage};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;

fn cm(name: &str, v: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default"}, "spec": {"data": {"v": v}}})
}

/// A real server on 127.0.0.1:0 with sled in a temp dir, and an HTTP client of it.
async fn serve() -> (tempfile::TempDir, corral::server::RunningServer, Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = corral::server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let client = Client::http(&format!("http://{}", server.addr())).unwrap();
    (dir, server, client)
}

/// Polls `cond` (bounded: a guard against hanging, not a timing assertion).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

fn names(cache: &corral_runtime::Cache) -> BTreeMap<String, String> {
    cache
        .list()
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                o["spec"]["data"]["v"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn reflector_resumes_after_a_server_restart_without_missing_or_repeating() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = ServerConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    };
    let server = corral::server::start(cfg.clone()).await.unwrap();
    let client = Client::http(&format!("http://127.0.0.1:{port}")).unwrap();
    let kind = client.kind("configmaps").await.unwrap();
    for i in 0..3 {
        client.create(&kind, &cm(&format!("a{i}"), "1")).await.unwrap();
    }
    let seen: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let reflector = Reflector::new(client.clone(), kind.clone(), None, "");
    let cache = reflector.cache();
    let (stop, stopped) = watch::channel(false);
    let s = seen.clone();
    let task = tokio::spawn(reflector.run(stopped, move |c: Change| {
        let o = c.object();
        let rv = o["metadata"]["resourceVersion"].as_str().unwrap_or("0").parse().unwrap_or(0);
        s.lock().unwrap().push((o["metadata"]["name"].as_str().unwrap_or_default().to_string(), rv));
    }));
    cache.wait_synced().await;
    assert_eq!(cache.len(), 3);

    server.shutdown().await.unwrap();
    let server = corral::server::start(cfg).await.unwrap();
    client.create(&kind, &cm("a3", "1")).await.unwrap();
    client.update(&kind, &cm("a0", "2")).await.unwrap();
    client.delete(&kind, Some("default"), "a1").await.unwrap();
    eventually("cache follows the restarted server", || {
        names(&cache)
            == BTreeMap::from([("a0".into(), "2".into()), ("a2".into(), "1".into()), ("a3".into(), "1".into())])
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a change was delivered twice: {seen:?}");
    assert_eq!(seen.len(), 6, "3 listed + 3 changes: {seen:?}");
    stop.send(true).unwrap();
    task.await.unwrap();
    server.shutdown().await.unwrap();
}

/// In-process transport whose watch streams the test can cut, and whose new requests
/// it can hold back.
struct Gated {
    inner: InProcess,
    open: watch::Receiver<bool>,
    cut: watch::Receiver<u64>,
}

#[async_trait]
impl Transport for Gated {
    async fn send(&self, request: http::Request<Bytes>) -> corral_runtime::Result<Response> {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        let resp = self.inner.send(request).await?;
        let mut cut = self.cut.clone();
        cut.mark_unchanged();
        let body = resp.body.take_until(async move {
            let _ = cut.changed().await;
        });
        Ok(Response { status: resp.status, body: body.boxed() })
    }
}

#[tokio::test]
async fn forced_compaction_makes_the_reflector_relist_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), Options::default()).unwrap());
    let dyn_store: Arc<dyn Storage> = store.clone();
    let router = app(AppState::new(dyn_store, Arc::new(Registry::builtin())));
    let (open_tx, open) = watch::channel(true);
    let (cut_tx, cut) = watch::channel(0u64);
    let client = Client::new(Arc::new(Gated { inner: InProcess::new(router), open, cut }));
    let ns = client.kind("namespaces").await.unwrap();
    client
        .create(&ns, &json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "default"}}))
        .await
        .unwrap();
    let kind = client.kind("configmaps").await.unwrap();
    for i in 0..4 {
        client.create(&kind, &cm(&format!("b{i}"), "1")).await.unwrap();
    }
    let reflector = Reflector::new(client.clone(), kind.clone(), None, "");
    let cache = reflector.cache();
    let deleted: Arc<Mutex<Vec<String>>> = Arc::default();
    let d = deleted.clone();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(reflector.run(stopped, move |c: Change| {
        if let Change::Deleted(o) = c {
            d.lock().unwrap().push(o["metadata"]["name"].as_str().unwrap_or_default().to_string());
        }
    }));
    cache.wait_synced().await;
    assert_eq!(cache.len(), 4);

    // Disconnect the reflector and keep it out while the log moves on and is compacted.
    open_tx.send(false).unwrap();
    cut_tx.send(1).unwrap();
    store.create(corral_store::Key::namespaced("corral.dev/configmaps", "default", "b9"), cm("b9", "1")).await.unwrap();
    store.delete(corral_store::Key::namespaced("corral.dev/configmaps", "default", "b0"), None).await.unwrap();
    store
        .update(corral_store::Key::namespaced("corral.dev/configmaps", "default", "b1"), cm("b1", "2"), None)
        .await
        .unwrap();
    let now = store.stats().revision;
    store.compact(now).await.unwrap();
    open_tx.send(true).unwrap();

    eventually("cache re-listed after Gone", || {
        names(&cache)
            == BTreeMap::from([
                ("b1".into(), "2".into()),
                ("b2".into(), "1".into()),
                ("b3".into(), "1".into()),
                ("b9".into(), "1".into()),
            ])
    })
    .await;
    assert_eq!(*deleted.lock().unwrap(), ["b0"], "the re-list reports what disappeared");
    assert_eq!(cache.revision(), now);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_recreates_owned_objects_and_never_reconciles_one_object_concurrently() {
    let (_dir, server, client) = serve().await;
    let kind = client.kind("configmaps").await.unwrap();

    struct Ctx {
        client: Client,
        kind: Arc<corral_api::KindInfo>,
        in_flight: Mutex<HashSet<String>>,
        overlap: AtomicBool,
        reconciles: AtomicU64,
    }
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        kind: kind.clone(),
        in_flight: Mutex::default(),
        overlap: AtomicBool::new(false),
        reconciles: AtomicU64::new(0),
    });
    let reconcile = |obj: Arc<Value>, ctx: Arc<Ctx>| async move {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if !ctx.in_flight.lock().unwrap().insert(name.clone()) {
            ctx.overlap.store(true, Ordering::SeqCst);
        }
        ctx.reconciles.fetch_add(1, Ordering::SeqCst);
        // Widen the window in which a second reconcile of the same key would overlap.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let result = if name.ends_with("-child") {
            Ok(Action::await_change())
        } else {
            let child = format!("{name}-child");
            match ctx.client.get(&ctx.kind, Some("default"), &child).await {
                Ok(Some(_)) => Ok(Action::await_change()),
                Ok(None) => {
                    let mut c = cm(&child, "child");
                    c["metadata"]["ownerReferences"] = json!([{"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
                        "name": name, "uid": obj["metadata"]["uid"], "controller": true}]);
                    ctx.client.create(&ctx.kind, &c).await.map(|_| Action::await_change())
                }
                Err(e) => Err(e),
            }
        };
        ctx.in_flight.lock().unwrap().remove(&name);
        result
    };
    let controller =
        Controller::new(client.clone(), kind.clone(), Some("default".into())).owns(kind.clone()).concurrency(4);
    let cache = controller.cache();
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(controller.run(
        reconcile,
        |_obj: &Arc<Value>, _e: &corral_runtime::Error, _ctx: &Arc<Ctx>| Action::requeue(Duration::from_millis(10)),
        ctx.clone(),
        async move {
            let mut s = stopped;
            let _ = s.wait_for(|s| *s).await;
        },
    ));

    client.create(&kind, &cm("parent", "0")).await.unwrap();
    let child_ref = corral_runtime::ObjectRef::namespaced("corral.dev/configmaps", "default", "parent-child");
    eventually("child created", || cache.get(&child_ref).is_some()).await;
    let first_uid = cache.get(&child_ref).map(|c| c["metadata"]["uid"].clone());
    client.delete(&kind, Some("default"), "parent-child").await.unwrap();
    // The child's deletion maps to its owner, which recreates it: a new incarnation.
    eventually("child recreated", || {
        cache.get(&child_ref).is_some_and(|c| Some(c["metadata"]["uid"].clone()) != first_uid)
    })
    .await;
    // A burst of changes to one object: merged, and never reconciled twice at once.
    for i in 0..40 {
        client.update(&kind, &cm("parent", &i.to_string())).await.unwrap();
    }
    eventually("burst reconciled", || ctx.reconciles.load(Ordering::SeqCst) >= 4).await;
    assert!(!ctx.overlap.load(Ordering::SeqCst), "one object was reconciled twice at once");
    stop.send(true).unwrap();
    run.await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn cache_indexes_follow_changes() {
    let (_dir, server, client) = serve().await;
    let kind = client.kind("configmaps").await.unwrap();
    let owner = client.create(&kind, &cm("owner", "1")).await.unwrap();
    let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
    let mut a = cm("a", "1");
    a["metadata"]["labels"] = json!({"app": "web"});
    a["metadata"]["ownerReferences"] = json!([corral_runtime::owner_reference(&owner, true).unwrap()]);
    client.create(&kind, &a).await.unwrap();
    let reflector = Reflector::new(client.clone(), kind.clone(), None, "")
        .index("owner", corral_runtime::by_owner_uid())
        .index("app", corral_runtime::by_label("app"));
    let cache = reflector.cache();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(reflector.run(stopped, |_| {}));
    cache.wait_synced().await;
    let names = |v: Vec<Arc<Value>>| {
        v.iter().map(|o| o["metadata"]["name"].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(names(cache.by_index("owner", &uid)), ["a"]);
    assert_eq!(names(cache.by_index("app", "web")), ["a"]);
    // Relabel: the index moves with the object.
    a["metadata"]["labels"] = json!({"app": "db"});
    client.update(&kind, &a).await.unwrap();
    eventually("index updated", || {
        cache.by_index("app", "web").is_empty() && names(cache.by_index("app", "db")) == ["a"]
    })
    .await;
    client.delete(&kind, Some("default"), "a").await.unwrap();
    eventually("index emptied", || cache.by_index("owner", &uid).is_empty() && cache.by_index("app", "db").is_empty())
        .await;
    stop.send(true).unwrap();
    task.await.unwrap();
    server.shutdown().await.unwrap();
}
