//! The controller runtime against a real server: reflectors resume after the server
//! restarts and re-list after compaction; the controller maps owned objects to their
//! owners and never reconciles one object twice at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use corral_api::kinds::namespace::{Namespace, NamespaceSpec};
use corral_api::kinds::{ConfigMap, ConfigMapSpec};
use corral_api::{ApiObject, Registry};
use corral_client::{Api, Client, DeleteParams, ListParams, Response, Transport};
use corral_runtime::{Action, CancellationToken, Change, Controller, Reflector};
use corral_server::auth::Identity;
use corral_server::in_process::InProcess;
use corral_server::{AppState, ServerConfig, app};
use corral_store::{Options, SledStore, Storage};
use corral_testkit::eventually;
use futures::StreamExt;
use tokio::sync::watch;

fn cm(name: &str, v: &str) -> ConfigMap {
    ConfigMap::namespaced("default", name, ConfigMapSpec { data: [("v".to_string(), v.to_string())].into() })
}

/// A real control plane on 127.0.0.1:0 with sled in a temp dir, and typed access to
/// its ConfigMaps over HTTP.
async fn serve() -> (corral_testkit::TestServer, Client, Api<ConfigMap>) {
    let server = corral_testkit::TestServer::start().await;
    let client = server.client();
    let cms = Api::namespaced(client.clone(), "default");
    (server, client, cms)
}

fn names(cache: &corral_runtime::Cache<ConfigMap>) -> BTreeMap<String, String> {
    cache.list().iter().map(|o| (o.name().to_string(), o.spec.data.get("v").cloned().unwrap_or_default())).collect()
}

#[tokio::test]
async fn reflector_resumes_after_a_server_restart_without_missing_or_repeating() {
    let dir = tempfile::tempdir().unwrap();
    // A port of its own choosing (one picked beforehand could be taken by a parallel
    // test's process first), kept for the restart: the client goes on at the address it
    // knows. A restart that finds it taken fails, saying so.
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    };
    let server = corral_server::start(cfg.clone()).await.unwrap();
    cfg.listen = server.addr();
    // The restarted server keeps the administrator's credential (admin.conf).
    let client = Client::from_config(&corral_client::Config {
        server: format!("http://{}", server.addr()),
        token: Some(server.admin_token().to_string()),
        ca_pem: None,
        client_identity: None,
    })
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        cms.create(&cm(&format!("a{i}"), "1")).await.unwrap();
    }
    let seen: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let reflector = Reflector::new(Api::<ConfigMap>::all(client.clone()), ListParams::default());
    let cache = reflector.cache();
    let stop = CancellationToken::new();
    let s = seen.clone();
    let task = tokio::spawn(reflector.run(stop.clone(), move |c: Change<ConfigMap>| {
        let o = c.object();
        s.lock().unwrap().push((o.name().to_string(), o.revision()));
    }));
    cache.wait_synced().await;
    assert_eq!(cache.len(), 3);

    server.shutdown().await.unwrap();
    let server = corral_server::start(cfg).await.expect("the server starts again at its address");
    cms.create(&cm("a3", "1")).await.unwrap();
    cms.update(&cm("a0", "2")).await.unwrap();
    cms.delete("a1", &DeleteParams::default()).await.unwrap();
    eventually("cache follows the restarted server", || async {
        (names(&cache)
            == BTreeMap::from([("a0".into(), "2".into()), ("a2".into(), "1".into()), ("a3".into(), "1".into())]))
        .then_some(())
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a change was delivered twice: {seen:?}");
    assert_eq!(seen.len(), 6, "3 listed + 3 changes: {seen:?}");
    stop.cancel();
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
    async fn send(&self, request: http::Request<Bytes>) -> corral_client::Result<Response> {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        let resp = self.inner.send(request).await?;
        let mut cut = self.cut.clone();
        cut.mark_unchanged();
        let body = resp.body.take_until(async move {
            let _ = cut.changed().await;
        });
        Ok(Response { status: resp.status, headers: resp.headers, body: body.boxed() })
    }

    fn server(&self) -> String {
        "gated".into()
    }
}

#[tokio::test]
async fn forced_compaction_makes_the_reflector_relist_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), Options::default()).unwrap());
    let dyn_store: Arc<dyn Storage> = store.clone();
    let state = AppState::new(dyn_store, Arc::new(Registry::builtin()));
    state.load_policy().await.unwrap();
    let router = app(state);
    let (open_tx, open) = watch::channel(true);
    let (cut_tx, cut) = watch::channel(0u64);
    let client = Client::new(Arc::new(Gated { inner: InProcess::new(router, Identity::admin()), open, cut }));
    Api::<Namespace>::all(client.clone()).create(&Namespace::new("default", NamespaceSpec {})).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..4 {
        cms.create(&cm(&format!("b{i}"), "1")).await.unwrap();
    }
    let reflector = Reflector::new(Api::<ConfigMap>::all(client.clone()), ListParams::default());
    let cache = reflector.cache();
    let deleted: Arc<Mutex<Vec<String>>> = Arc::default();
    let d = deleted.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(reflector.run(stop.clone(), move |c: Change<ConfigMap>| {
        if let Change::Deleted(o) = c {
            d.lock().unwrap().push(o.name().to_string());
        }
    }));
    cache.wait_synced().await;
    assert_eq!(cache.len(), 4);

    // Disconnect the reflector and keep it out while the log moves on and is compacted.
    open_tx.send(false).unwrap();
    cut_tx.send(1).unwrap();
    let json = |o: &ConfigMap| serde_json::to_value(o).unwrap();
    let key = |n: &str| corral_store::Key::namespaced("corral.dev/configmaps", "default", n);
    store.create(key("b9"), json(&cm("b9", "1"))).await.unwrap();
    store.delete(key("b0"), None).await.unwrap();
    store.update(key("b1"), json(&cm("b1", "2")), None).await.unwrap();
    let now = store.stats().revision;
    store.compact(now).await.unwrap();
    open_tx.send(true).unwrap();

    eventually("cache re-listed after Gone", || async {
        (names(&cache)
            == BTreeMap::from([
                ("b1".into(), "2".into()),
                ("b2".into(), "1".into()),
                ("b3".into(), "1".into()),
                ("b9".into(), "1".into()),
            ]))
        .then_some(())
    })
    .await;
    assert_eq!(*deleted.lock().unwrap(), ["b0"], "the re-list reports what disappeared");
    assert_eq!(cache.revision(), now);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_recreates_owned_objects_and_never_reconciles_one_object_concurrently() {
    let (server, client, cms) = serve().await;

    struct Ctx {
        cms: Api<ConfigMap>,
        in_flight: Mutex<HashSet<String>>,
        overlap: AtomicBool,
        reconciles: AtomicU64,
    }
    let ctx = Arc::new(Ctx {
        cms: cms.clone(),
        in_flight: Mutex::default(),
        overlap: AtomicBool::new(false),
        reconciles: AtomicU64::new(0),
    });
    let reconcile = |obj: Arc<ConfigMap>, ctx: Arc<Ctx>| async move {
        let name = obj.name().to_string();
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
            match ctx.cms.get_opt(&child).await {
                Ok(Some(_)) => Ok(Action::await_change()),
                Ok(None) => {
                    let mut c = cm(&child, "child");
                    let mut owner = corral_runtime::owner_reference(&*obj, true).unwrap();
                    owner.block_owner_deletion = None;
                    c.metadata.owner_references = vec![owner];
                    ctx.cms.create(&c).await.map(|_| Action::await_change())
                }
                Err(e) => Err(e),
            }
        };
        ctx.in_flight.lock().unwrap().remove(&name);
        result
    };
    let controller =
        Controller::new(cms.clone(), ListParams::default()).owns(cms.clone(), ListParams::default()).concurrency(4);
    let cache = controller.cache();
    let stop = CancellationToken::new();
    let run = tokio::spawn(controller.run(
        reconcile,
        |_obj: &Arc<ConfigMap>, _e: &corral_client::Error, _ctx: &Arc<Ctx>| Action::requeue(Duration::from_millis(10)),
        ctx.clone(),
        stop.clone(),
    ));

    cms.create(&cm("parent", "0")).await.unwrap();
    let child_ref = corral_runtime::ObjectRef::namespaced("corral.dev/configmaps", "default", "parent-child");
    eventually("child created", || async { cache.get(&child_ref).map(|_| ()) }).await;
    let first_uid = cache.get(&child_ref).map(|c| c.uid().to_string());
    cms.delete("parent-child", &DeleteParams::default()).await.unwrap();
    // The child's deletion maps to its owner, which recreates it: a new incarnation.
    eventually("child recreated", || async {
        cache.get(&child_ref).is_some_and(|c| Some(c.uid().to_string()) != first_uid).then_some(())
    })
    .await;
    // A burst of changes to one object: merged, and never reconciled twice at once.
    for i in 0..40 {
        cms.update(&cm("parent", &i.to_string())).await.unwrap();
    }
    eventually("burst reconciled", || async { (ctx.reconciles.load(Ordering::SeqCst) >= 4).then_some(()) }).await;
    assert!(!ctx.overlap.load(Ordering::SeqCst), "one object was reconciled twice at once");
    stop.cancel();
    run.await.unwrap();
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn cache_indexes_follow_changes() {
    let (server, client, cms) = serve().await;
    let owner = cms.create(&cm("owner", "1")).await.unwrap();
    let uid = owner.uid().to_string();
    let mut a = cm("a", "1");
    a.metadata.labels = [("app".to_string(), "web".to_string())].into();
    a.metadata.owner_references = vec![corral_runtime::owner_reference(&owner, true).unwrap()];
    cms.create(&a).await.unwrap();
    let reflector = Reflector::new(Api::<ConfigMap>::all(client.clone()), ListParams::default())
        .index("owner", corral_runtime::by_owner_uid())
        .index("app", corral_runtime::by_label("app"));
    let cache = reflector.cache();
    let stop = CancellationToken::new();
    let task = tokio::spawn(reflector.run(stop.clone(), |_| {}));
    cache.wait_synced().await;
    let names = |v: Vec<Arc<ConfigMap>>| v.iter().map(|o| o.name().to_string()).collect::<Vec<_>>();
    assert_eq!(names(cache.by_index("owner", &uid)), ["a"]);
    assert_eq!(names(cache.by_index("app", "web")), ["a"]);
    // Relabel: the index moves with the object.
    a.metadata.labels = [("app".to_string(), "db".to_string())].into();
    let a = cms.update(&a).await.unwrap();
    eventually("index updated", || async {
        (cache.by_index("app", "web").is_empty() && names(cache.by_index("app", "db")) == ["a"]).then_some(())
    })
    .await;
    // A change that keeps the index values: the index hands out the new state.
    let mut changed = a.clone();
    changed.spec = cm("a", "2").spec;
    let changed = cms.update(&changed).await.unwrap();
    eventually("index entry replaced", || async {
        let by_app = cache.by_index("app", "db");
        let by_owner = cache.by_index("owner", &uid);
        (by_app.len() == 1
            && by_owner.len() == 1
            && by_app[0].revision() == changed.revision()
            && by_owner[0].revision() == changed.revision())
        .then_some(())
    })
    .await;
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    eventually("index emptied", || async {
        (cache.by_index("owner", &uid).is_empty() && cache.by_index("app", "db").is_empty()).then_some(())
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    server.stop().await;
}
