//! The Corral API server: Kubernetes-shaped REST over JSON on top of the store, as
//! specified in `docs/api.md`.
//!
//! [`app`] builds the router from an [`AppState`], so tests can drive it without a
//! socket; [`start`] opens the store, binds and serves in the background, with the
//! built-in controllers, until [`RunningServer::shutdown`].

mod body;
mod crd;
mod delete;
mod discovery;
pub mod error;
pub mod gc;
pub mod in_process;
mod logs;
mod metrics;
mod ops;
mod patch;
pub mod path;
mod resources;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{any, get, post};
use corral_api::Registry;
use corral_store::{Key, SledStore, Storage};
use serde_json::json;

pub use error::{ApiError, StatusDetails};
pub use metrics::Metrics;

/// Largest request body accepted; larger ones answer 413.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How the server is run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (see [`RunningServer::addr`]).
    pub listen: SocketAddr,
    /// Directory of the store's database; created if missing.
    pub data_dir: PathBuf,
    /// Revisions of event log kept before older ones are compacted automatically.
    pub compaction_retain: u64,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// Run the garbage collector (cascading deletion, namespace deletion). Off only
    /// in tests that need deletions to stay half-done.
    pub garbage_collection: bool,
    /// How long a node may go without a heartbeat before it is unreachable and its
    /// tasks are `LOST`.
    pub node_grace_period: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data_dir: PathBuf::from("corral-data"),
            compaction_retain: 100_000,
            bookmark_interval: Duration::from_secs(10),
            garbage_collection: true,
            node_grace_period: Duration::from_secs(40),
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The object store.
    pub store: Arc<dyn Storage>,
    /// The served kinds and their validators.
    pub registry: Arc<Registry>,
    /// Request and store metrics exported at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Flipped to `true` to end every open watch stream (graceful shutdown would
    /// otherwise wait for them forever).
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    /// State serving `registry`'s kinds from `store`, with fresh metrics.
    pub fn new(store: Arc<dyn Storage>, registry: Arc<Registry>) -> Self {
        let metrics = Arc::new(Metrics::new(store.clone()));
        let (closing, _) = tokio::sync::watch::channel(false);
        AppState { store, registry, metrics, closing: Arc::new(closing) }
    }

    /// Ends every watch stream opened through this state (and any opened later).
    pub fn close_watches(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`AppState::close_watches`] has been called.
    fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            // An error means the sender is gone, which also means closing.
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

/// The whole HTTP API as a router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz).fallback(method_not_allowed))
        .route("/metrics", get(metrics::serve).fallback(method_not_allowed))
        .route("/apis", get(discovery::groups).fallback(method_not_allowed))
        .route(
            "/apis/corral.dev/v1/namespaces/{namespace}/tasks/{name}/log",
            get(logs::serve).fallback(method_not_allowed),
        )
        .route("/apis/{*rest}", any(resources::dispatch))
        .route("/kinds", get(discovery::kinds).fallback(method_not_allowed))
        .route("/schemas/{group}/{version}/{plural}", get(discovery::schema).fallback(method_not_allowed))
        .route("/admin/compact", post(ops::compact).fallback(method_not_allowed))
        .route("/admin/revision", get(ops::revision).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(&method, uri.path())
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("the server could not find the requested resource {}", uri.path()))
}

/// A server serving in the background, returned by [`start`]. Dropping it stops the
/// server without waiting; [`RunningServer::shutdown`] waits.
pub struct RunningServer {
    addr: SocketAddr,
    closing: Arc<tokio::sync::watch::Sender<bool>>,
    store: Option<Arc<SledStore>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    gc: Option<tokio::task::JoinHandle<()>>,
    /// Watches custom resource definitions; holds the store too.
    crds: Option<tokio::task::JoinHandle<()>>,
    /// The built-in controllers (node lifecycle), over the in-process transport.
    controllers: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// The address actually bound (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, ends open watches, lets in-flight requests
    /// finish, then closes the store so that its directory can be opened again.
    ///
    /// # Errors
    /// Fails if the server task failed or panicked.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.signal_stop();
        let served = match self.task.take() {
            Some(task) => task.await.context("server task panicked")?.context("serving failed"),
            None => Ok(()),
        };
        // The collector holds the store too; it stops on the closing signal.
        if let Some(gc) = self.gc.take()
            && let Err(e) = gc.await
        {
            tracing::warn!(error = %e, "garbage collector task failed");
        }
        for c in self.controllers.drain(..) {
            if let Err(e) = c.await {
                tracing::warn!(error = %e, "built-in controller task failed");
            }
        }
        if let Some(crds) = self.crds.take()
            && let Err(e) = crds.await
        {
            tracing::warn!(error = %e, "custom resource definition task failed");
        }
        if let Some(store) = self.store.take() {
            // Every connection, and with it every clone of the state, is gone once
            // the server task ends; should anything still hold the store, closing it
            // still stops its writer.
            match Arc::try_unwrap(store) {
                Ok(store) => store.shutdown().await,
                Err(store) => store.close(),
            }
        }
        tracing::info!("corral API server stopped");
        served
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.closing.send_replace(true);
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Opens the store in `cfg.data_dir`, makes sure the `default` namespace exists, binds
/// `cfg.listen` and serves in the background.
///
/// # Errors
/// Fails if the store cannot be opened (e.g. another server holds the directory) or
/// the address cannot be bound.
pub async fn start(cfg: ServerConfig) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    let options = corral_store::Options {
        compaction_retain: cfg.compaction_retain,
        bookmark_interval: cfg.bookmark_interval,
        ..Default::default()
    };
    let store = Arc::new(
        SledStore::open(&cfg.data_dir, options)
            .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display()))?,
    );
    let dyn_store: Arc<dyn Storage> = store.clone();
    for ns in ["default", corral_api::node::NODE_LEASE_NAMESPACE] {
        ensure_namespace(dyn_store.as_ref(), ns).await?;
    }
    let state = AppState::new(dyn_store, Arc::new(Registry::builtin()));
    // Stored custom kinds are served before the first request.
    let crds = crd::start(&state).await.context("cannot serve the custom resource definitions")?;
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr().context("cannot read the bound address")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gc = cfg.garbage_collection.then(|| {
        gc::spawn(
            state.store.clone(),
            state.registry.clone(),
            state.metrics.gc.clone(),
            gc::GcConfig::default(),
            state.closed(),
        )
    });
    let router = app(state.clone());
    let controllers = spawn_builtin_controllers(&state, router.clone(), &cfg);
    // Watch events and small responses must leave at once: with Nagle's algorithm they
    // wait for the peer's delayed ACK, adding ~40 ms stalls.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "corral API server listening");
    Ok(RunningServer {
        addr,
        closing: state.closing.clone(),
        store: Some(store),
        stop: Some(stop),
        task: Some(task),
        gc,
        crds: Some(crds),
        controllers,
    })
}

/// Runs the controllers built into the server, talking to it through its router.
fn spawn_builtin_controllers(state: &AppState, router: Router, cfg: &ServerConfig) -> Vec<tokio::task::JoinHandle<()>> {
    let client = corral_runtime::Client::new(Arc::new(in_process::InProcess::new(router)));
    let lifecycle = corral_runtime::node_lifecycle::NodeLifecycleConfig {
        grace_period: cfg.node_grace_period,
        check_interval: (cfg.node_grace_period / 8).clamp(Duration::from_millis(200), Duration::from_secs(5)),
    };
    vec![corral_runtime::node_lifecycle::spawn(client, lifecycle, state.closing.subscribe())]
}

/// The `default` and `corral-system` namespaces always exist.
async fn ensure_namespace(store: &dyn Storage, name: &str) -> anyhow::Result<()> {
    let key = Key::cluster(format!("{}/namespaces", corral_api::GROUP), name);
    if store.get(&key).await?.is_some() {
        return Ok(());
    }
    let ns = json!({
        "apiVersion": corral_api::API_VERSION,
        "kind": "Namespace",
        "metadata": {"name": name},
        "spec": {},
        "status": {"phase": "Active"},
    });
    match store.create(key, ns).await {
        Ok(_) | Err(corral_store::Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create the {name} namespace")),
    }
}
