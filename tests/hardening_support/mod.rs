#![allow(dead_code)]
//! The real `corral server` binary in a temp dir, for the hardening tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as the server logged it.
    pub base: String,
    /// Its log (stderr).
    pub log: PathBuf,
    /// Sends the administrator's token (from the server's admin.conf) once ready.
    pub http: reqwest::Client,
    /// The administrator's token.
    pub token: String,
    pub _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The API server alone.
    pub async fn start() -> Server {
        Server::start_with(&["--controllers", "none"]).await
    }

    /// `corral server` with `args` added.
    pub async fn start_with(args: &[&str]) -> Server {
        Server::start_limited(args, None).await
    }

    /// `corral server` with `args`, allowed at most `open_files` descriptors (soft and
    /// hard limit) when given.
    pub async fn start_limited(args: &[&str], open_files: Option<u64>) -> Server {
        let dir = tempfile::tempdir().expect("a temp dir");
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let child = spawn(&data, "127.0.0.1:0", &log, args, open_files);
        Server::adopt(child, log, dir).ready(&data).await
    }

    /// The administrator's `Authorization` header, for clients built by a test.
    pub fn http_headers(&self) -> reqwest::header::HeaderMap {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", self.token).parse().expect("header"));
        headers
    }

    /// A server process just spawned, logging to `log`, not ready yet (see
    /// [`Server::ready`]).
    pub fn adopt(child: Child, log: PathBuf, dir: tempfile::TempDir) -> Server {
        Server { child, base: String::new(), log, http: reqwest::Client::new(), token: String::new(), _dir: dir }
    }

    /// Waits until the server says where it listens and is healthy, then acts as the
    /// administrator whose credential it wrote to `data_dir/admin.conf`.
    pub async fn ready(mut self, data_dir: &Path) -> Server {
        // Its address, from its log (which each start writes anew): a first start
        // listens on a port of its own choosing, as one picked beforehand could be
        // taken by a parallel test's process first, whose answers would then be taken
        // for ours. A process that could not bind exits, and is reported at once.
        self.base = corral_testkit::wait_logged(&mut self.child, &self.log, "listening url=");
        self.wait_healthy().await;
        let admin = corral_client::Config::from_kubeconfig(&data_dir.join("admin.conf")).expect("admin.conf");
        self.token = admin.token.expect("an administrator's token");
        self.http = corral_testkit::authorized_http(&self.token);
        self
    }

    pub async fn wait_healthy(&self) {
        corral_testkit::eventually(&format!("the server at {} is healthy", self.base), async || {
            self.http
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        })
        .await
    }

    /// A new server process on the data dir and the address of `old`, which has
    /// stopped. Should a parallel test's process take the address meanwhile, the new
    /// one exits and [`Server::ready`] says so.
    pub async fn restart_in(mut old: Server) -> Server {
        let _ = old.child.kill();
        let _ = old.child.wait();
        let base = old.base.clone();
        let _dir = std::mem::replace(&mut old._dir, tempfile::tempdir().expect("a temp dir"));
        let data = _dir.path().join("data");
        let log = old.log.clone();
        let child = spawn(&data, base.trim_start_matches("http://"), &log, &["--controllers", "none"], None);
        let new = Server::adopt(child, log, _dir).ready(&data).await;
        assert_eq!(new.base, base, "the restarted server listens where the first did");
        new
    }

    /// Still serving, and still the same process.
    pub async fn assert_alive(&mut self) {
        assert!(matches!(self.child.try_wait(), Ok(None)), "the server process died");
        let r = self.http.get(format!("{}/healthz", self.base)).send().await.expect("/healthz answers");
        assert!(r.status().is_success(), "/healthz: {}", r.status());
    }

    pub fn configmap_url(&self, name: &str) -> String {
        format!("{}/apis/corral.dev/v1/namespaces/default/configmaps/{name}", self.base)
    }

    pub async fn create_configmap(&self, name: &str, data: Value) -> Value {
        let url = format!("{}/apis/corral.dev/v1/namespaces/default/configmaps", self.base);
        let body = json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {"name": name}, "spec": {"data": data}});
        let r = self.http.post(url).json(&body).send().await.expect("POST");
        let code = r.status();
        let created: Value = r.json().await.expect("the created object");
        assert_eq!(code, 201, "create {name}: {created}");
        created
    }

    pub async fn get(&self, name: &str) -> Value {
        let r = self.http.get(self.configmap_url(name)).send().await.expect("GET");
        assert_eq!(r.status(), 200, "get {name}");
        r.json().await.expect("an object")
    }

    pub async fn patch(&self, name: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .patch(self.configmap_url(name))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("PATCH answered");
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }
}

/// Starts `corral server` on `listen` (with port 0, one of its own choosing; it logs
/// which) with data in `data_dir`, its log (stderr) in `log` and `args` added, allowed
/// at most `open_files` descriptors (soft and hard limit) when given.
pub fn spawn(data_dir: &Path, listen: &str, log: &Path, args: &[&str], open_files: Option<u64>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.arg("server")
        .args(args)
        .args(["--listen", listen, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn,corral_server=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    if let Some(n) = open_files {
        use std::os::unix::process::CommandExt;
        let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
        // SAFETY: setrlimit is async-signal-safe and only reads `lim`, a copy.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    cmd.spawn().expect("spawn corral server")
}

pub fn rv(o: &Value) -> &str {
    o.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default()
}
