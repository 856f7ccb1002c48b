//! The Corral API server: Kubernetes-shaped REST over JSON on top of the versioned
//! store, as specified in `docs/api.md` — objects and their status, list and watch with
//! label and field selectors, apply, custom resource definitions, discovery, task
//! logs proxied from agents, `/metrics` and `/healthz`.
//!
//! The server keeps only what must be atomic with a write: validation, marking an
//! object for deletion with the finalizers its propagation policy needs, refusing
//! writes into a terminating namespace, and serving custom kinds as soon as their
//! definition is written. Garbage collection and every other controller run in a
//! controller manager (`corral-controllers`), which reaches the server through
//! [`corral_client`] — in the same process through [`in_process::InProcess`].
//!
//! [`app`] builds the router from an [`AppState`], so tests can drive it without a
//! socket; [`start`] opens the store, binds and serves in the background until
//! [`RunningServer::shutdown`].

#![warn(missing_docs)]

mod admission;
pub mod auth;
mod body;
mod connections;
mod crd;
mod delete;
mod discovery;
pub mod error;
mod fields;
pub mod in_process;
mod ledger;
mod list;
mod logs;
mod metrics;
mod offers;
mod openapi;
mod ops;
mod patch;
mod patch_bounds;
pub mod path;
mod placement;
pub mod registry;
mod resources;
mod scale;
mod table;
mod task_report;
pub mod tls;
mod transaction;
mod trigger;
mod volume_binding;
mod watch;
mod watch_limits;
pub mod watches;
mod write_stall;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{any, get, post};
use corral_api::Registry;
use corral_store::{Key, SledStore, Storage};
use corral_telemetry::SharedRegistry;
use parking_lot::RwLock;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use connections::{ConnectionLimits, raise_open_files_limit};
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
    /// Most revisions of history kept; older ones are compacted automatically.
    pub compaction_retain: u64,
    /// Oldest history kept.
    pub history_max_age: Duration,
    /// Most bytes of history kept; `None`: four times the live data, at least 256 MiB.
    pub history_max_bytes: Option<u64>,
    /// Space kept free on the data directory's disk; writes that would leave less
    /// answer 507 and `/healthz` 503 until space is freed.
    pub min_free_bytes: u64,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// Bounds on connections; `None` derives them from the open-files limit, which
    /// the server first raises to its hard limit.
    pub connections: Option<ConnectionLimits>,
    /// Watches one client address may hold open; more answer 429.
    pub max_watches_per_client: usize,
    /// How long a connection's writes may wait on a peer that reads nothing before
    /// the connection is closed (a watcher that stopped reading, a dead client).
    pub write_stall_timeout: Duration,
    /// Where the administrator's credential (a kubeconfig file) is kept; `None`:
    /// `admin.conf` in the data directory. Written at start unless it already holds
    /// a token the store knows.
    pub admin_kubeconfig: Option<PathBuf>,
    /// Where to append the audit log (JSON lines); `None`: no audit log.
    pub audit_log: Option<PathBuf>,
    /// Audit every read too (by default: writes, refusals, and reads of tokens and
    /// RBAC objects).
    pub audit_reads: bool,
    /// Serve HTTPS with this certificate; `None`: plain HTTP (loopback only, which
    /// the command line enforces).
    pub tls: Option<tls::TlsConfig>,
    /// Where the objects are kept: sled in `data_dir` (the default) or an etcd
    /// cluster. The data directory holds the rest either way (the administrator's
    /// credential, the image registry, the audit log).
    pub store: StoreBackend,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data_dir: PathBuf::from("corral-data"),
            compaction_retain: 1_000_000,
            history_max_age: Duration::from_secs(3600),
            history_max_bytes: None,
            min_free_bytes: 64 << 20,
            bookmark_interval: Duration::from_secs(10),
            connections: None,
            max_watches_per_client: watch_limits::DEFAULT_MAX_WATCHES_PER_CLIENT,
            write_stall_timeout: Duration::from_secs(30),
            admin_kubeconfig: None,
            audit_log: None,
            audit_reads: false,
            tls: None,
            store: StoreBackend::Sled,
        }
    }
}

/// Which store a server keeps its objects in.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StoreBackend {
    /// The embedded sled store in the data directory: one machine.
    #[default]
    Sled,
    /// An etcd cluster, which several API servers can share. The compaction and
    /// free-space settings of [`ServerConfig`] are sled's: etcd has its own
    /// (`--auto-compaction-*`, `--quota-backend-bytes`).
    Etcd {
        /// Client URLs of its members (`http://host:port`, `https://` with TLS).
        endpoints: Vec<String>,
        /// Prefix, credentials, TLS (boxed: far larger than the other variant).
        options: Box<corral_store_etcd::Options>,
    },
}

impl StoreBackend {
    /// The backend a `--store` value names: `sled`, or `etcd://HOST:PORT[,HOST:PORT…]`
    /// (`etcds://` for TLS) with `options` (credentials, TLS).
    ///
    /// # Errors
    /// A message naming what is wrong with `spec`.
    pub fn parse(spec: &str, options: corral_store_etcd::Options) -> std::result::Result<Self, String> {
        if spec == "sled" {
            return Ok(StoreBackend::Sled);
        }
        let endpoints = corral_store_etcd::parse_store_url(spec)
            .map_err(|e| format!("--store {spec:?}: {e}; or --store sled (the default)"))?;
        Ok(StoreBackend::Etcd { endpoints, options: Box::new(options) })
    }
}

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened or failed.
    #[error("store in {path}: {source}")]
    Store {
        /// The data directory.
        path: PathBuf,
        /// Why.
        source: corral_store::Error,
    },
    /// The store on etcd could not be reached or failed.
    #[error("store on etcd at {endpoints}: {source}")]
    EtcdStore {
        /// The etcd endpoints, comma-separated.
        endpoints: String,
        /// Why.
        source: corral_store::Error,
    },
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The administrator's credential or the audit log could not be set up.
    #[error("{0}")]
    Auth(String),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
    /// A background task of the server panicked.
    #[error("the server's {0} task panicked")]
    Panicked(&'static str),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every handler shares: one pointer to [`AppShared`], cloned for every request
/// — one reference count rather than one per field, each a cache line the cores
/// would contend for.
#[derive(Clone)]
pub struct AppState(Arc<AppShared>);

impl std::ops::Deref for AppState {
    type Target = AppShared;
    fn deref(&self) -> &AppShared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppShared {
    /// The object store.
    pub store: Arc<dyn Storage>,
    /// The served kinds and their validators.
    pub registry: Arc<Registry>,
    /// Request and store metrics exported at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Other metrics served at `/metrics` with the server's own (a controller manager
    /// running in the same process).
    extra_metrics: RwLock<Vec<SharedRegistry>>,
    /// Cancelled to end every open watch stream (graceful shutdown would otherwise
    /// wait for them forever).
    closing: CancellationToken,
    /// Open watches by client.
    watches: watch_limits::WatchLimits,
    /// Tokens, roles and bindings, and the audit log.
    pub auth: Arc<auth::Auth>,
    /// What each node's tasks hold.
    ledger: Arc<ledger::Ledger>,
    /// The image registry's files (`/v2/…`); set by [`start`] in the data directory.
    /// Unset, the registry answers 503 (a state built by a test without a directory).
    pub images: std::sync::OnceLock<registry::Storage>,
}

impl AppState {
    /// State serving `registry`'s kinds from `store`, with fresh metrics.
    pub fn new(store: Arc<dyn Storage>, registry: Arc<Registry>) -> Self {
        Self::with_watch_limit(store, registry, watch_limits::DEFAULT_MAX_WATCHES_PER_CLIENT)
    }

    /// As [`AppState::new`], allowing `max_watches_per_client` watches per client.
    pub fn with_watch_limit(store: Arc<dyn Storage>, registry: Arc<Registry>, max_watches_per_client: usize) -> Self {
        let auth = Arc::new(auth::Auth::new());
        let metrics = Arc::new(Metrics::new(store.clone(), &auth));
        AppState(Arc::new(AppShared {
            store,
            registry,
            metrics,
            extra_metrics: RwLock::default(),
            closing: CancellationToken::new(),
            watches: watch_limits::WatchLimits::new(max_watches_per_client),
            auth,
            ledger: Arc::default(),
            images: std::sync::OnceLock::new(),
        }))
    }

    /// Writes the built-in roles and bindings if missing, loads the authorization
    /// policy and keeps it current until [`AppState::close_watches`]. Until this
    /// runs, every request is denied.
    ///
    /// # Errors
    /// The store's.
    pub async fn load_policy(&self) -> Result<tokio::task::JoinHandle<()>, corral_store::Error> {
        auth::bootstrap::ensure_roles(self.store.as_ref()).await?;
        self.auth.index.start(self.store.clone(), self.closed()).await
    }

    /// Ends every watch stream opened through this state (and any opened later).
    pub fn close_watches(&self) {
        self.closing.cancel();
    }

    /// Serves `registry` at `/metrics` too, after the server's own metrics.
    pub fn add_metrics(&self, registry: SharedRegistry) {
        self.extra_metrics.write().push(registry);
    }

    /// Resolves once [`AppState::close_watches`] has been called.
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.closing.clone().cancelled_owned()
    }
}

/// The whole HTTP API as a router.
pub fn app(state: AppState) -> Router {
    app_with(state, Router::new())
}

/// Where the cluster DNS's records are listed (`corral dns records`), when the process
/// serving the API serves DNS too (see [`start_with_routes`]). Authorized as listing
/// every `DnsRecord`.
pub const DNS_RECORDS_PATH: &str = "/dns/records";

/// The whole HTTP API as a router, with `extra` routes mounted beside it: behind the
/// same authentication, authorization, audit and metrics.
pub fn app_with(state: AppState, extra: Router<AppState>) -> Router {
    app_with_public(state, extra, Router::new())
}

/// [`app_with`], and `public` routes served to anyone, before authentication: for
/// files that carry no secret and that a browser loads without a token (the web
/// interface's page and bundles). They must not reach the store or the policy.
pub fn app_with_public(state: AppState, extra: Router<AppState>, public: Router) -> Router {
    let api = Router::new()
        .merge(extra)
        .route("/healthz", get(ops::healthz).fallback(method_not_allowed))
        .route("/version", get(ops::version).fallback(method_not_allowed))
        .route("/metrics", get(metrics::serve).fallback(method_not_allowed))
        .route("/api", get(discovery::core).fallback(method_not_allowed))
        .route("/apis", get(discovery::groups).fallback(method_not_allowed))
        .route(auth::reviews::WHOAMI_PATH, post(auth::reviews::whoami).fallback(method_not_allowed))
        .route(auth::reviews::ACCESS_PATH, post(auth::reviews::access).fallback(method_not_allowed))
        .route("/apis/{*rest}", any(resources::dispatch))
        .route(corral_api::transaction::TRANSACTIONS_PATH, post(transaction::serve).fallback(method_not_allowed))
        .route("/openapi/v3", get(openapi::index).fallback(method_not_allowed))
        .route("/openapi/v3/apis/{group}/{version}", get(openapi::group_version).fallback(method_not_allowed))
        .route("/kinds", get(discovery::kinds).fallback(method_not_allowed))
        .route("/schemas/{group}/{version}/{plural}", get(discovery::schema).fallback(method_not_allowed))
        .route("/admin/compact", post(ops::compact).fallback(method_not_allowed))
        .route("/admin/revision", get(ops::revision).fallback(method_not_allowed))
        .route("/admin/snapshot", get(ops::snapshot).fallback(method_not_allowed))
        .route(auth::join::PATH, post(auth::join::join).fallback(method_not_allowed))
        .route(auth::task_token::PATH, post(auth::task_token::task_token).fallback(method_not_allowed))
        .route("/auth/whoami", get(auth::join::whoami).fallback(method_not_allowed))
        .route("/auth/can-i", post(auth::join::can_i).fallback(method_not_allowed))
        // The OCI distribution API; `/v2/{*rest}` does not match `/v2/` itself.
        .route("/v2", any(registry::dispatch))
        .route("/v2/", any(registry::dispatch))
        .route("/v2/{*rest}", any(registry::dispatch))
        .fallback(not_found)
        .layer(auth::guard::GuardLayer::new(state.clone()))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .with_state(state);
    // Several watches over one response: each goes through the API above, with its
    // authentication and limits, so the route itself needs none.
    let inner = api.clone();
    let watches = Router::new().route(
        watches::PATH,
        post(move |request: axum::extract::Request| watches::serve(inner.clone(), request))
            .fallback(method_not_allowed),
    );
    // Merged after the layers, so outside them; the API's fallback still answers
    // every other path.
    api.merge(watches).merge(public)
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
    /// Both hold the store: dropped on shutdown, before the store is closed.
    state: Option<AppState>,
    router: Option<Router>,
    data_dir: PathBuf,
    store: Option<Arc<SledStore>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Watches custom resource definitions; holds the store too.
    crds: Option<tokio::task::JoinHandle<()>>,
    /// Keeps the authorization policy current; holds the store too.
    policy: Option<tokio::task::JoinHandle<()>>,
    /// The administrator's token (as written to the admin kubeconfig).
    admin_token: String,
    /// Where the administrator's kubeconfig was written.
    admin_kubeconfig: PathBuf,
    /// `http(s)://ADDR`.
    base_url: String,
    /// What clients trust, when serving HTTPS.
    ca_pem: Option<Vec<u8>>,
}

impl RunningServer {
    /// The address actually bound (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client of this server that hands requests straight to its router: same
    /// validation and semantics as over HTTP, no socket, acting as the controller
    /// manager (`system:controller-manager`, bound to the `controller-manager` role).
    /// What controllers running in the same process use.
    ///
    /// Drop its clones before [`RunningServer::shutdown`]: they hold the store open.
    pub fn client(&self) -> corral_client::Client {
        self.client_as(auth::Identity::controller_manager())
    }

    /// An in-process client acting as `identity`.
    pub fn client_as(&self, identity: auth::Identity) -> corral_client::Client {
        let router = self.router.clone().unwrap_or_default();
        corral_client::Client::new(Arc::new(in_process::InProcess::new(router, identity)))
    }

    /// `http://ADDR`, or `https://ADDR` when serving TLS.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// PEM of the authority clients must trust, when serving TLS.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// The administrator's bearer token (what the admin kubeconfig holds).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Where the administrator's kubeconfig is.
    pub fn admin_kubeconfig(&self) -> &std::path::Path {
        &self.admin_kubeconfig
    }

    /// Mints node `name`'s own credential (what joining with a join token gives),
    /// revoking its earlier ones; for the agent of `corral up`.
    ///
    /// # Errors
    /// [`Error::Auth`] if no credential could be stored.
    pub async fn node_credential(&self, name: &str) -> Result<String> {
        let state = self.state.as_ref().ok_or_else(|| Error::Auth("the server is stopping".into()))?;
        let token =
            auth::bootstrap::node_credential(state.store.as_ref(), name, "minted by the server for its own agent")
                .await
                .map_err(Error::Auth)?;
        state.auth.index.caught_up(state.store.as_ref()).await;
        Ok(token)
    }

    /// Serves `registry` at `/metrics` too (a controller manager in this process).
    pub fn add_metrics(&self, registry: SharedRegistry) {
        if let Some(state) = &self.state {
            state.add_metrics(registry);
        }
    }

    /// Stops accepting connections, ends open watches, lets in-flight requests
    /// finish, then closes the store so that its directory can be opened again.
    ///
    /// # Errors
    /// Fails if the server task failed or panicked.
    pub async fn shutdown(mut self) -> Result<()> {
        self.signal_stop();
        let served = match self.task.take() {
            Some(task) => match task.await {
                Ok(r) => r.map_err(Error::Serve),
                Err(_) => Err(Error::Panicked("serving")),
            },
            None => Ok(()),
        };
        if let Some(crds) = self.crds.take()
            && let Err(e) = crds.await
        {
            tracing::warn!(error = %e, "custom resource definition task failed");
        }
        if let Some(policy) = self.policy.take()
            && let Err(e) = policy.await
        {
            tracing::warn!(error = %e, "authorization policy task failed");
        }
        // The last holders of the store but for in-process clients.
        self.state = None;
        self.router = None;
        if let Some(store) = self.store.take() {
            // Every connection, and with it every clone of the state, is gone once
            // the server task ends; should anything still hold the store (an
            // in-process client not yet dropped), closing it still stops its writer,
            // but the data directory stays locked until that holder lets go.
            match Arc::try_unwrap(store) {
                Ok(store) => store.shutdown().await,
                Err(store) => {
                    tracing::warn!("the store is still held (by an in-process client?): closing it without waiting");
                    store.close()
                }
            }
        }
        tracing::info!(data_dir = %self.data_dir.display(), "corral API server stopped");
        served
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(state) = &self.state {
            state.close_watches();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Opens the store in `cfg.data_dir`, makes sure the `default`, `corral-system` and `corral-frameworks`
/// namespaces exist, binds `cfg.listen` and serves in the background.
///
/// # Errors
/// Fails if the store cannot be opened (e.g. another server holds the directory) or
/// the address cannot be bound.
pub async fn start(cfg: ServerConfig) -> Result<RunningServer> {
    start_with_routes(cfg, Router::new()).await
}

/// [`start`], with `extra` routes mounted beside the API (see [`app_with`]): what the
/// `corral` binary serves of its own, e.g. [`DNS_RECORDS_PATH`].
///
/// # Errors
/// As [`start`].
pub async fn start_with_routes(cfg: ServerConfig, extra: Router<AppState>) -> Result<RunningServer> {
    start_with_public_routes(cfg, extra, Router::new()).await
}

/// [`start_with_routes`], and `public` routes served without authentication (see
/// [`app_with_public`]): the web interface's files.
///
/// # Errors
/// As [`start`].
pub async fn start_with_public_routes(
    cfg: ServerConfig,
    extra: Router<AppState>,
    public: Router,
) -> Result<RunningServer> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| Error::DataDir { path: cfg.data_dir.clone(), source })?;
    let options = corral_store::Options {
        compaction_retain: cfg.compaction_retain,
        history_max_age: cfg.history_max_age,
        history_max_bytes: cfg.history_max_bytes,
        min_free_bytes: cfg.min_free_bytes,
        bookmark_interval: cfg.bookmark_interval,
        ..Default::default()
    };
    let store_error = |source| match &cfg.store {
        StoreBackend::Sled => Error::Store { path: cfg.data_dir.clone(), source },
        StoreBackend::Etcd { endpoints, .. } => Error::EtcdStore { endpoints: endpoints.join(","), source },
    };
    // The sled store is kept apart to be closed on shutdown (releasing the data
    // directory); the store on etcd closes when its last holder drops it.
    let (store, dyn_store): (Option<Arc<SledStore>>, Arc<dyn Storage>) = match &cfg.store {
        StoreBackend::Sled => {
            let store = Arc::new(SledStore::open(&cfg.data_dir, options).map_err(store_error)?);
            (Some(store.clone()), store)
        }
        StoreBackend::Etcd { endpoints, options } => {
            let options =
                corral_store_etcd::Options { bookmark_interval: cfg.bookmark_interval, ..options.as_ref().clone() };
            let store = corral_store_etcd::EtcdStore::connect(endpoints, options).await.map_err(store_error)?;
            (None, Arc::new(store))
        }
    };
    for ns in [
        "default",
        corral_api::kinds::node::NODE_LEASE_NAMESPACE,
        corral_api::kinds::framework::FRAMEWORK_LEASE_NAMESPACE,
    ] {
        ensure_namespace(dyn_store.as_ref(), ns).await.map_err(store_error)?;
    }
    let state =
        AppState::with_watch_limit(dyn_store.clone(), Arc::new(Registry::builtin()), cfg.max_watches_per_client);
    let images_dir = cfg.data_dir.join("registry");
    let images = registry::Storage::open(images_dir.clone(), cfg.min_free_bytes)
        .map_err(|source| Error::DataDir { path: images_dir, source })?;
    let _ = state.images.set(images);
    if let Some(path) = &cfg.audit_log {
        state
            .auth
            .audit
            .open(path, cfg.audit_reads)
            .map_err(|e| Error::Auth(format!("cannot open the audit log {}: {e}", path.display())))?;
    }
    // Stored custom kinds are served before the first request.
    let crds = crd::start(&state).await.map_err(store_error)?;
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.map_err(|source| Error::Listen { addr: cfg.listen, source })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen { addr: cfg.listen, source })?;
    let (acceptor, ca_pem) = match &cfg.tls {
        Some(t) => {
            let authority =
                auth::certificates::NodeAuthority::load_or_create(&cfg.data_dir.join("tls")).map_err(Error::Auth)?;
            let client_ca = authority.ca_der().map_err(Error::Auth)?;
            let _ = state.auth.node_authority.set(authority);
            (
                Some(tls::acceptor(t, Some(client_ca)).map_err(Error::Auth)?),
                Some(tls::trust_pem(t).map_err(Error::Auth)?),
            )
        }
        None => (None, None),
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let base_url = format!("{scheme}://{addr}");
    let admin_kubeconfig = cfg.admin_kubeconfig.clone().unwrap_or_else(|| cfg.data_dir.join("admin.conf"));
    let admin_token = auth::bootstrap::ensure_admin(dyn_store.as_ref(), &admin_kubeconfig, &base_url, ca_pem.clone())
        .await
        .map_err(|e| Error::Auth(format!("administrator credential {}: {e}", admin_kubeconfig.display())))?;
    // Loaded after the administrator's token is stored, so that it works at once.
    let policy = state.load_policy().await.map_err(store_error)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = app_with_public(state.clone(), extra, public);
    let open_files = connections::raise_open_files_limit();
    let limits = cfg.connections.clone().unwrap_or_else(|| ConnectionLimits::for_open_files(open_files));
    tracing::debug!(open_files, ?limits, "connection limits");
    let serving = router.clone();
    let metrics = state.metrics.connections.clone();
    let task = tokio::spawn(connections::serve(
        listener,
        serving,
        limits,
        cfg.write_stall_timeout,
        metrics,
        acceptor,
        async move {
            let _ = stopped.await;
        },
    ));
    tracing::info!(url = %base_url, data_dir = %cfg.data_dir.display(), "corral API server listening");
    Ok(RunningServer {
        addr,
        state: Some(state),
        router: Some(router),
        data_dir: cfg.data_dir,
        store,
        stop: Some(stop),
        task: Some(task),
        crds: Some(crds),
        policy: Some(policy),
        admin_token,
        admin_kubeconfig,
        base_url,
        ca_pem,
    })
}

/// The `default`, `corral-system` and `corral-frameworks` namespaces always exist.
async fn ensure_namespace(store: &dyn Storage, name: &str) -> Result<(), corral_store::Error> {
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
        Err(e) => Err(e),
    }
}
