//! The control plane of a test: the real API server and controller manager.

use std::time::Duration;

use corral_api::kinds::namespace::TASK_SECURITY_LABEL;
use corral_api::kinds::{TokenPurpose, TokenSpec};
use corral_controllers::Selection;
use corral_runtime::{CancellationToken, Manager, ManagerConfig};
use corral_server::{RunningServer, ServerConfig};

/// How a [`TestServer`] runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The API server's settings; `listen` and `data_dir` are the test's own.
    pub server: ServerConfig,
    /// Which built-in controllers run (all, by default).
    pub controllers: Selection,
    /// The node lifecycle controller's grace period.
    pub node_grace_period: Duration,
    /// Directories under which Syncs may name a `directory` source.
    pub sync_directory_allow: Vec<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            server: ServerConfig::default(),
            controllers: Selection::All,
            node_grace_period: Duration::from_secs(40),
            sync_directory_allow: Vec::new(),
        }
    }
}

impl Options {
    /// Runs every built-in controller but `name`.
    pub fn without(&mut self, name: &str) -> &mut Self {
        let keep = corral_controllers::NAMES.iter().filter(|n| **n != name).map(|n| n.to_string()).collect();
        self.controllers = Selection::Only(keep);
        self
    }
}

/// A running control plane, stopped when dropped.
pub struct TestServer {
    server: Option<RunningServer>,
    manager: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The administrator's bearer token.
    pub token: String,
    dir: tempfile::TempDir,
    options: Options,
}

impl TestServer {
    /// A control plane with default settings in a fresh directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A control plane after letting the test adjust its settings.
    pub async fn start_with(adjust: impl FnOnce(&mut Options)) -> Self {
        let mut options = Options::default();
        adjust(&mut options);
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, options).await
    }

    async fn start_in(dir: tempfile::TempDir, options: Options) -> Self {
        let cfg = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().join("data"),
            ..options.server.clone()
        };
        let server = corral_server::start(cfg).await.expect("server starts");
        let base = format!("http://{}", server.addr());
        let token = server.admin_token().to_string();
        let mut config = corral_controllers::Config::with_node_grace_period(options.node_grace_period);
        // Each test's git working copies of its own.
        config.sync.work_dir = Some(dir.path().join("sync"));
        config.sync.directory_allow = options.sync_directory_allow.clone();
        let controllers = corral_controllers::builtin(&config, &options.controllers);
        // As `corral server` runs them: some controllers act as users of their own.
        let controllers = corral_controllers::with_own_identities(controllers, |user| {
            server.client_as(corral_server::auth::Identity {
                user: user.to_string(),
                groups: vec![corral_server::auth::AUTHENTICATED.to_string()],
            })
        });
        let manager = (!controllers.is_empty()).then(|| {
            // One replica: no election to wait for.
            let config = ManagerConfig { leader_election: false, ..ManagerConfig::new("test", "test") };
            let mut manager = Manager::new(server.client(), config);
            for c in controllers {
                manager.add(c);
            }
            server.add_metrics(manager.registry());
            let stop = CancellationToken::new();
            (stop.clone(), tokio::spawn(manager.run(stop)))
        });
        TestServer { server: Some(server), manager, base, token, dir, options }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client of the server over HTTP, as the administrator.
    pub fn client(&self) -> corral_client::Client {
        corral_client::Client::from_config(&self.config()).expect("the test server's URL")
    }

    /// The server's URL with the administrator's token.
    pub fn config(&self) -> corral_client::Config {
        corral_client::Config {
            server: self.base.clone(),
            token: Some(self.token.clone()),
            ca_pem: None,
            client_identity: None,
        }
    }

    /// A client of the server over HTTP with `token` (or none).
    pub fn client_with(&self, token: Option<&str>) -> corral_client::Client {
        let config = corral_client::Config { token: token.map(str::to_string), ..self.config() };
        corral_client::Client::from_config(&config).expect("the test server's URL")
    }

    /// A new token for `user` in `groups`, good for `purpose`, expiring at
    /// `expiration` (RFC 3339) if given; made as the administrator. Returns the token.
    pub async fn create_token(
        &self,
        user: &str,
        groups: &[&str],
        purpose: TokenPurpose,
        expiration: Option<String>,
    ) -> String {
        let token = corral_client::BearerToken::generate().expect("token");
        let spec = TokenSpec {
            user: user.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            purpose,
            expiration,
            secret_hash: token.secret_hash(),
            description: None,
            bound_to: None,
        };
        let object = serde_json::json!({
            "apiVersion": corral_api::API_VERSION,
            "kind": "Token",
            "metadata": {"name": token.id},
            "spec": spec,
        });
        let client = self.client();
        let kind = client.kind("tokens").await.expect("tokens are served");
        client.create(&kind, &object, &Default::default()).await.expect("token stored");
        token.expose()
    }

    /// A new join token (valid for an hour), made as the administrator.
    pub async fn join_token(&self) -> String {
        let expiration = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        self.create_token("system:bootstrap:test", &[], TokenPurpose::Join, Some(expiration)).await
    }

    /// The credential node `name` gets by joining (with a fresh join token).
    pub async fn node_token(&self, name: &str) -> String {
        let join = self.join_token().await;
        let resp = authorized_http(&join)
            .post(self.url("/auth/join"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"node": name}).to_string())
            .send()
            .await
            .expect("join is answered");
        assert!(resp.status().is_success(), "join {name}: {}", resp.status());
        let body: serde_json::Value =
            serde_json::from_slice(&resp.bytes().await.expect("join body")).expect("join answer is JSON");
        body["token"].as_str().expect("a node token").to_string()
    }

    /// Labels namespace `ns` with the task security level `level` (`privileged` lets
    /// its tasks run natively on the host, as root, with `file://` artifacts).
    pub async fn set_task_security(&self, ns: &str, level: &str) {
        let client = self.client();
        let kind = client.kind("namespaces").await.expect("namespaces are served");
        let patch = serde_json::json!({"metadata": {"labels": {TASK_SECURITY_LABEL: level}}});
        client
            .patch(&kind, None, ns, corral_client::Patch::Merge(&patch), &Default::default())
            .await
            .expect("namespace labelled");
    }

    /// A reqwest client sending the administrator's token with every request.
    pub fn http(&self) -> reqwest::Client {
        authorized_http(&self.token)
    }

    /// The test's own directory (the store is in `data/` below it).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops gracefully and starts again on the same data, with the same settings.
    pub async fn restart(mut self) -> Self {
        let options = self.options.clone();
        self.shut_down().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, options).await
    }

    /// Stops gracefully and starts again on the same data, with default settings
    /// adjusted by `adjust` (a test that ran without a controller restarts with it).
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Options)) -> Self {
        let mut options = Options::default();
        adjust(&mut options);
        self.shut_down().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, options).await
    }

    /// Stops gracefully, waits for `down` (the control plane being down across some
    /// time), then starts again on the same data with the same settings.
    pub async fn restart_after(mut self, down: impl std::future::Future<Output = ()>) -> Self {
        let options = self.options.clone();
        self.shut_down().await;
        down.await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, options).await
    }

    /// Stops gracefully.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        if let Some((stop, task)) = self.manager.take() {
            stop.cancel();
            let _ = task.await;
        }
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }
}

/// A reqwest client (without proxies) sending `token` with every request.
pub fn authorized_http(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value: reqwest::header::HeaderValue = format!("Bearer {token}").parse().expect("a token fits a header");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder().no_proxy().default_headers(headers).build().expect("client")
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.manager {
            stop.cancel();
        }
    }
}
