//! Lists read in pages (`limit`, then `continue`) against a real server: the client's
//! pager, `corral get --chunk-size` and a reflector each see every object exactly
//! once, in order, at one revision, from more than one page; a snapshot compacted
//! between two pages makes the pager read the list again from its first page.

mod cli_support;

use std::process::Command;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use cli_support::{Env, Run};
use corral_api::kinds::namespace::{Namespace, NamespaceSpec};
use corral_api::kinds::{ConfigMap, ConfigMapSpec};
use corral_api::{ApiObject, Registry};
use corral_client::{Api, Client, DEFAULT_PAGE_SIZE, HttpTransport, ListParams, Response, Transport};
use corral_runtime::{CancellationToken, Reflector};
use corral_server::auth::Identity;
use corral_server::in_process::InProcess;
use corral_server::{AppState, app};
use corral_store::{Options, SledStore, Storage};
use corral_testkit::{TestServer, eventually};
use futures::StreamExt;

/// Objects listed: more than two default pages.
const COUNT: usize = 1_200;
/// Where they live.
const NS: &str = "paging";

fn name(i: usize) -> String {
    format!("cm-{i:04}")
}

/// ConfigMap `i`, labelled `half=even` or `half=odd`.
fn cm(i: usize) -> ConfigMap {
    let mut c = ConfigMap::namespaced(NS, name(i), ConfigMapSpec { data: [("i".to_string(), i.to_string())].into() });
    c.metadata.labels.insert("half".into(), if i.is_multiple_of(2) { "even" } else { "odd" }.into());
    c
}

/// The names of ConfigMaps `0..n`, in the order a list gives them (by name).
fn expected(n: usize) -> Vec<String> {
    (0..n).map(name).collect()
}

/// Creates namespace [`NS`] and ConfigMaps `0..n` in it, a few writes at a time.
async fn seed(client: &Client, n: usize) {
    Api::<Namespace>::all(client.clone()).create(&Namespace::new(NS, NamespaceSpec {})).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(0..n)
        .map(|i| {
            let cms = cms.clone();
            async move { cms.create(&cm(i)).await.unwrap() }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// Asserts `got == want`, saying where they part instead of printing both whole.
#[track_caller]
fn assert_names(got: &[String], want: &[String], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} names where {} were expected; first difference at {at}: {:?} instead of {:?}",
            got.len(),
            want.len(),
            got.get(at),
            want.get(at)
        );
    }
}

/// The method, path and query (`GET /apis/...`) of every request a client sent, in
/// order.
#[derive(Clone, Default)]
struct Requests(Arc<Mutex<Vec<String>>>);

impl Requests {
    fn push(&self, path_and_query: String) {
        self.0.lock().unwrap().push(path_and_query);
    }

    /// The list requests (not watches, not discovery) and the watch requests sent
    /// since the last call.
    fn take(&self) -> (Vec<String>, Vec<String>) {
        let all = std::mem::take(&mut *self.0.lock().unwrap());
        let (watches, rest): (Vec<String>, Vec<String>) = all.into_iter().partition(|r| r.contains("watch=true"));
        (rest.into_iter().filter(|r| r.starts_with("GET ") && r.contains("/configmaps")).collect(), watches)
    }

    /// The list requests sent since the last call.
    fn take_lists(&self) -> Vec<String> {
        self.take().0
    }
}

/// Asserts that `lists` is one list read in `pages` pages of `limit`: each request
/// asks for `limit` objects, the first without a `continue` token, every later one
/// with one.
fn assert_paged(lists: &[String], pages: usize, limit: u32) {
    assert_eq!(lists.len(), pages, "{lists:#?}");
    for (i, r) in lists.iter().enumerate() {
        assert!(r.contains(&format!("limit={limit}")), "request {i} without limit={limit}: {r}");
        assert_eq!(r.contains("continue="), i > 0, "request {i}: {r}");
    }
}

/// Records each request, then sends it on.
struct Recording {
    inner: Arc<dyn Transport>,
    requests: Requests,
}

#[async_trait]
impl Transport for Recording {
    async fn send(&self, request: http::Request<Bytes>) -> corral_client::Result<Response> {
        self.requests.push(format!("{} {}", request.method(), request.uri()));
        self.inner.send(request).await
    }

    fn server(&self) -> String {
        self.inner.server()
    }
}

/// A client of the test server over HTTP, as its administrator, whose requests
/// `Requests` records.
fn recording_client(server: &TestServer) -> (Client, Requests) {
    let requests = Requests::default();
    let inner = Arc::new(HttpTransport::with_config(&server.config()).unwrap());
    (Client::new(Arc::new(Recording { inner, requests: requests.clone() })), requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_all_reads_every_object_once_in_order_at_one_revision() {
    let server = TestServer::start().await;
    let (client, requests) = recording_client(&server);
    seed(&client, COUNT).await;
    requests.take_lists();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);

    let list = cms.list_all(&ListParams::default(), 100).await.unwrap();
    let names: Vec<String> = list.items.iter().map(|o| o.name().to_string()).collect();
    assert_names(&names, &expected(COUNT), "every object once, in order");
    assert_eq!(list.continue_token(), None);
    let revision = list.revision();
    assert!(revision > 0 && list.items.iter().all(|o| o.revision() <= revision), "one snapshot at {revision}");
    assert_paged(&requests.take_lists(), COUNT / 100, 100);

    // The dynamic client, with a selector repeated on every page.
    let kind = client.kind("configmaps").await.unwrap();
    let even = client.list_all(&kind, Some(NS), &ListParams::default().labels("half=even"), 100).await.unwrap();
    let names: Vec<String> = even.items.iter().map(|o| o.metadata.name.clone()).collect();
    let want: Vec<String> = (0..COUNT).step_by(2).map(name).collect();
    assert_names(&names, &want, "the even half");
    assert_eq!(even.revision(), revision, "nothing was written since");
    let lists = requests.take_lists();
    assert_paged(&lists, COUNT / 2 / 100, 100);
    assert!(lists.iter().all(|r| r.contains("labelSelector=half%3Deven")), "{lists:#?}");

    // Page size 0: one request, no limit.
    let whole = cms.list_all(&ListParams::default(), 0).await.unwrap();
    assert_eq!(whole.items.len(), COUNT);
    let lists = requests.take_lists();
    assert_eq!(lists.len(), 1, "{lists:#?}");
    assert!(!lists[0].contains("limit="), "{lists:#?}");

    // Pages by hand: later pages stay at the first page's revision while the kind
    // changes underneath.
    let first = cms.list(&ListParams::default().limit(100)).await.unwrap();
    assert_eq!(first.items.len(), 100);
    let at = first.metadata.resource_version.clone();
    let mut token = first.continue_token().expect("more pages").to_string();
    let mut names: Vec<String> = first.items.iter().map(|o| o.name().to_string()).collect();
    cms.delete(&name(COUNT - 1), &Default::default()).await.unwrap();
    cms.create(&cm(COUNT)).await.unwrap();
    loop {
        let page = cms.list(&ListParams::default().limit(100).continue_token(&token)).await.unwrap();
        assert_eq!(page.metadata.resource_version, at, "every page at the list's revision");
        assert!(page.items.len() <= 100);
        names.extend(page.items.iter().map(|o| o.name().to_string()));
        match page.continue_token() {
            Some(next) => token = next.to_string(),
            None => break,
        }
    }
    assert_names(&names, &expected(COUNT), "the snapshot: the deleted object still there, the new one not");
    server.stop().await;
}

/// A proxy in front of `upstream` recording every request; returns its URL.
async fn recording_proxy(upstream: &str) -> (String, Requests) {
    use axum::extract::{Request, State};
    use axum::response::IntoResponse;

    #[derive(Clone)]
    struct Proxy {
        upstream: String,
        http: reqwest::Client,
        requests: Requests,
    }

    async fn forward(State(p): State<Proxy>, req: Request) -> axum::response::Response {
        let path = req.uri().path_and_query().map(|pq| pq.to_string()).unwrap_or_default();
        p.requests.push(format!("{} {path}", req.method()));
        let method = req.method().clone();
        let content_type = req.headers().get(http::header::CONTENT_TYPE).cloned();
        let authorization = req.headers().get(http::header::AUTHORIZATION).cloned();
        let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
        let mut out = p.http.request(method, format!("{}{path}", p.upstream)).body(body);
        if let Some(a) = authorization {
            out = out.header(http::header::AUTHORIZATION, a);
        }
        if let Some(ct) = content_type {
            out = out.header(http::header::CONTENT_TYPE, ct);
        }
        let resp = out.send().await.unwrap();
        let status = resp.status();
        let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();
        let bytes = resp.bytes().await.unwrap();
        let mut resp = (status, bytes).into_response();
        if let Some(ct) = content_type {
            resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
        }
        resp
    }

    let requests = Requests::default();
    let proxy = Proxy {
        upstream: upstream.to_string(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        requests: requests.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, requests)
}

#[test]
fn corral_get_pages_through_lists_with_chunk_size() {
    let env = Env::start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(seed(&env.client(), COUNT));
    let (proxy, requests) = rt.block_on(recording_proxy(&env.url));
    let get = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["--server", &proxy, "--token", &env.token, "get", "configmaps", "-n", NS])
            .args(extra)
            .env_remove("CORRAL_SERVER")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let run = Run(out);
        assert_eq!(run.code(), 0, "corral get {extra:?} failed:\n{run}");
        run.stdout()
    };

    let table = get(&["--chunk-size", "100"]);
    assert_paged(&requests.take_lists(), COUNT / 100, 100);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"]);
    let names: Vec<String> = lines.map(|l| l.split_whitespace().next().unwrap().to_string()).collect();
    assert_names(&names, &expected(COUNT), "one row per object, in order");

    // The default chunk is kubectl's: 500.
    let default_names = get(&["-o", "name"]);
    assert_paged(&requests.take_lists(), COUNT.div_ceil(DEFAULT_PAGE_SIZE as usize), DEFAULT_PAGE_SIZE);
    let want: Vec<String> = expected(COUNT).iter().map(|n| format!("configmap/{n}")).collect();
    let got: Vec<String> = default_names.lines().map(str::to_string).collect();
    assert_names(&got, &want, "-o name");

    // Paged or not, the output is the same, down to the list's resourceVersion.
    let paged = get(&["-o", "json", "--chunk-size", "100"]);
    requests.take_lists();
    let whole = get(&["-o", "json", "--chunk-size", "0"]);
    let lists = requests.take_lists();
    assert_eq!(lists.len(), 1, "--chunk-size 0 is one request: {lists:#?}");
    assert!(!lists[0].contains("limit="), "{lists:#?}");
    assert_eq!(paged, whole);
    let doc: serde_json::Value = serde_json::from_str(&paged).unwrap();
    assert_eq!(doc["items"].as_array().map(Vec::len), Some(COUNT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_lists_in_pages_then_watches_from_the_list() {
    let server = TestServer::start().await;
    let (client, requests) = recording_client(&server);
    seed(&client, COUNT).await;
    requests.take_lists();

    let reflector = Reflector::new(Api::<ConfigMap>::namespaced(client.clone(), NS), ListParams::default());
    let cache = reflector.cache();
    let stop = CancellationToken::new();
    let task = tokio::spawn(reflector.run(stop.clone(), |_| {}));
    cache.wait_synced().await;
    let names: Vec<String> = cache.list().iter().map(|o| o.name().to_string()).collect();
    assert_names(&names, &expected(COUNT), "the cache");
    let listed_at = cache.revision();

    // The watch starts from the list's revision: a later write arrives.
    Api::<ConfigMap>::namespaced(client.clone(), NS).create(&cm(COUNT)).await.unwrap();
    eventually("the cache sees a write after the list", || async { (cache.len() == COUNT + 1).then_some(()) }).await;
    let (lists, watches) = requests.take();
    assert_paged(&lists, COUNT.div_ceil(DEFAULT_PAGE_SIZE as usize), DEFAULT_PAGE_SIZE);
    assert!(
        watches.first().is_some_and(|w| w.contains(&format!("resourceVersion={listed_at}"))),
        "the first watch starts at the list's revision {listed_at}: {watches:#?}"
    );
    stop.cancel();
    task.await.unwrap();
    server.stop().await;
}

/// In-process transport that, before the first request for a later page, writes one
/// ConfigMap and compacts the store up to that write: the page's snapshot is gone.
struct CompactBeforeSecondPage {
    inner: InProcess,
    store: Arc<SledStore>,
    done: Mutex<bool>,
    requests: Requests,
}

#[async_trait]
impl Transport for CompactBeforeSecondPage {
    async fn send(&self, request: http::Request<Bytes>) -> corral_client::Result<Response> {
        let path = format!("{} {}", request.method(), request.uri());
        self.requests.push(path.clone());
        let first_continue = path.contains("continue=") && !std::mem::replace(&mut *self.done.lock().unwrap(), true);
        if first_continue {
            let key = corral_store::Key::namespaced("corral.dev/configmaps", NS, name(COUNT));
            self.store.create(key, serde_json::to_value(cm(COUNT)).unwrap()).await.unwrap();
            self.store.compact(self.store.stats().revision).await.unwrap();
        }
        self.inner.send(request).await
    }

    fn server(&self) -> String {
        "in-process".into()
    }
}

#[tokio::test]
async fn a_list_whose_snapshot_expires_between_pages_restarts_from_the_first_page() {
    let n = 250;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), Options::default()).unwrap());
    let dyn_store: Arc<dyn Storage> = store.clone();
    let state = AppState::new(dyn_store, Arc::new(Registry::builtin()));
    state.load_policy().await.unwrap();
    let router = app(state);
    let requests = Requests::default();
    let transport = CompactBeforeSecondPage {
        inner: InProcess::new(router, Identity::admin()),
        store: store.clone(),
        done: Mutex::new(false),
        requests: requests.clone(),
    };
    let client = Client::new(Arc::new(transport));
    // Seeding sends no `continue`, so nothing is compacted yet.
    seed(&client, n).await;
    requests.take_lists();
    let before = store.stats().revision;

    // The second page answers 410; the list is read again, now with the new object.
    let list = Api::<ConfigMap>::namespaced(client, NS).list_all(&ListParams::default(), 100).await.unwrap();
    let names: Vec<String> = list.items.iter().map(|o| o.name().to_string()).collect();
    let mut want = expected(n);
    want.push(name(COUNT));
    assert_names(&names, &want, "each object once: nothing kept from the expired pass");
    assert_eq!(list.revision(), before + 1, "the snapshot of the second pass");
    let lists = requests.take_lists();
    let firsts = lists.iter().filter(|r| !r.contains("continue=")).count();
    assert_eq!((lists.len(), firsts), (2 + 3, 2), "one expired page, then a whole pass: {lists:#?}");
}
