//! Shared by the `cli_*` integration tests: the test kit's control plane (a real API
//! server on `127.0.0.1:0` with a real store in a temporary directory, and the
//! built-in controllers), and a way to run the real `corral` binary against it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use corral_testkit::PATIENCE;
use corral_testkit::TestServer;

/// One control plane per test, stopped when dropped.
pub struct Env {
    rt: tokio::runtime::Runtime,
    server: Option<TestServer>,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The administrator's token, which every command sends.
    pub token: String,
}

impl Env {
    /// Starts a control plane with a fresh store.
    pub fn start() -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let server = rt.block_on(async {
            let server = TestServer::start().await;
            // Native tasks in manifests here; the restricted default is tested elsewhere.
            server.set_task_security("default", "privileged").await;
            server
        });
        let url = server.base.clone();
        let token = server.token.clone();
        std::fs::create_dir(dir.path().join("manifests")).unwrap();
        Env { rt, server: Some(server), dir, url, token }
    }

    /// Runs `f` on this control plane's runtime (a client's calls, say).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A client of the server, as the administrator.
    pub fn client(&self) -> corral_client::Client {
        let config =
            corral_client::Config { server: self.url.clone(), token: Some(self.token.clone()), ..Default::default() };
        corral_client::Client::from_config(&config).expect("the test server's URL")
    }

    /// The credential node `name` gets by joining.
    pub fn node_token(&self, name: &str) -> String {
        let server = self.server.as_ref().expect("running");
        self.rt.block_on(server.node_token(name))
    }

    /// Writes `text` to `rel` under this test's manifest directory; returns the path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join("manifests").join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The command `corral --server URL args...`, from the manifest directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.arg("--server")
            .arg(&self.url)
            .args(args)
            .current_dir(self.dir.path().join("manifests"))
            .env_remove("CORRAL_SERVER")
            .env("CORRAL_TOKEN", &self.token)
            // No configuration file of the machine's user is read.
            .env("CORRAL_CONFIG", self.dir.path().join("no-config"))
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs `corral args...` to completion with empty stdin.
    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.command(args).stdin(Stdio::null()).output().unwrap())
    }

    /// Runs `corral args...` to completion with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child =
            self.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        Run(child.wait_with_output().unwrap())
    }

    /// Runs `corral args...` and requires success.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code(), 0, "corral {args:?} failed:\n{r}");
        r.stdout()
    }

    /// Starts `corral args...` in the background, its stdout read line by line.
    pub fn spawn_lines(&self, args: &[&str]) -> Lines {
        let mut child =
            self.command(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { child, rx, seen: Vec::new() }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.stop());
        }
    }
}

/// A finished `corral` run.
pub struct Run(pub Output);

impl Run {
    /// Exit code (-1 if killed by a signal).
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}\n--- stdout\n{}--- stderr\n{}", self.code(), self.stdout(), self.stderr())
    }
}

/// A running `corral` whose stdout lines arrive on a channel; killed when dropped.
pub struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Waits (at most [`PATIENCE`]) for a line satisfying `pred` and returns it.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => self.fail(&format!("no line {what} within {PATIENCE:?}")),
            }
        }
    }

    /// Waits (at most [`PATIENCE`]) for the process to exit by itself; returns its
    /// status and every line it printed.
    pub fn wait_exit(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.fail(&format!("no exit within {PATIENCE:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader stops (and hangs up) at the end of stdout.
        while let Ok(line) = self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(line);
        }
        (status, self.seen.clone())
    }

    /// Kills the process and panics with `why`, the lines so far and its stderr.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        panic!("{why}; lines so far: {:#?}\nstderr: {err}", self.seen);
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ConfigMap manifest.
pub fn configmap(name: &str, namespace: Option<&str>, labels: &[(&str, &str)], data: &[(&str, &str)]) -> String {
    let mut s = format!("apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    if let Some(ns) = namespace {
        s.push_str(&format!("  namespace: {ns}\n"));
    }
    if !labels.is_empty() {
        s.push_str("  labels:\n");
        for (k, v) in labels {
            s.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    s.push_str("spec:\n  data:\n");
    if data.is_empty() {
        s.truncate(s.len() - "  data:\n".len());
        s.push_str("  data: {}\n");
    }
    for (k, v) in data {
        s.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    s
}
