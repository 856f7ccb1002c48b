//! The control plane of a test: the real API server and controller manager.

use std::time::Duration;

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            server: ServerConfig::default(),
            controllers: Selection::All,
            node_grace_period: Duration::from_secs(40),
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
        let config = corral_controllers::Config::with_node_grace_period(options.node_grace_period);
        let controllers = corral_controllers::builtin(&config, &options.controllers);
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
        TestServer { server: Some(server), manager, base, dir, options }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client of the server over HTTP.
    pub fn client(&self) -> corral_client::Client {
        corral_client::Client::http(&self.base).expect("the test server's URL")
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

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.manager {
            stop.cancel();
        }
    }
}
