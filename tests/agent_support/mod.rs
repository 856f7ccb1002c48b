//! Shared by the `agent_*` integration tests: a real API server on `127.0.0.1:0`, a
//! real `corral agent` process (so that it can be killed with SIGKILL or stopped), a
//! busybox image imported into its image store, and cleanup of every container,
//! shim, mount and cgroup the test left behind, even when it fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use corral_testkit::{PATIENCE, TestServer, within_patience};
use serde_json::{Value, json};

/// A control plane, an agent process and its work dir.
pub struct Cluster {
    pub server: Option<TestServer>,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub node: String,
    pub agent: Option<Child>,
    /// Extra `corral agent` arguments.
    pub agent_args: Vec<String>,
    http: reqwest::Client,
    /// What the agent joins with (once; it keeps its own credential after).
    join_token: String,
}

impl Cluster {
    /// A server (node grace period `grace`) and an agent named `node` with a busybox
    /// image imported as `busybox:latest`.
    pub async fn start(node: &str, grace: Duration) -> Cluster {
        Self::start_with(node, grace, &[]).await
    }

    /// As [`Cluster::start`], with extra arguments for the agent.
    pub async fn start_with(node: &str, grace: Duration, agent_args: &[&str]) -> Cluster {
        Self::start_inner(node, grace, agent_args, true).await
    }

    /// As [`Cluster::start`], with an agent whose work dir is empty: no image imported.
    pub async fn start_empty(node: &str, grace: Duration) -> Cluster {
        Self::start_inner(node, grace, &[], false).await
    }

    async fn start_inner(node: &str, grace: Duration, agent_args: &[&str], import: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = TestServer::start_with(|o| o.node_grace_period = grace).await;
        let url = server.base.clone();
        // Most tests here run native tasks and file:// artifacts: their namespace
        // allows them. The restricted default has tests of its own.
        server.set_task_security("default", "privileged").await;
        let join_token = server.join_token().await;
        let http = server.http();
        if import {
            let work = dir.path().join("agent");
            let store = corral_agent::image::ImageStore::open(work.join("images")).expect("image store");
            let archive = dir.path().join("busybox.tar");
            corral_testkit::busybox::busybox_oci_archive(&archive, "busybox:latest").expect("busybox archive");
            store.import(&archive, None).expect("busybox imports");
        }
        let mut c = Cluster {
            server: Some(server),
            url,
            dir,
            node: node.to_string(),
            agent: None,
            agent_args: agent_args.iter().map(|a| a.to_string()).collect(),
            http,
            join_token,
        };
        c.start_agent();
        c.wait_node_registered().await;
        c
    }

    /// The administrator's token.
    pub fn admin_token(&self) -> String {
        self.server.as_ref().map(|s| s.token.clone()).unwrap_or_default()
    }

    /// The agent's work dir.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    /// Starts (or restarts) the agent process.
    pub fn start_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["--server", &self.url, "--token", &self.join_token])
            .args(["agent", "--name", &self.node, "--heartbeat-interval", "1"])
            .arg("--work-dir")
            .arg(self.work_dir())
            .args(["--listen", "127.0.0.1:0", "--log-max-bytes", "65536"])
            // The tests' own files; nothing else on the host.
            .arg("--artifact-dir")
            .arg(self.dir.path().join("artifacts"))
            // The tests' artifact servers listen on loopback.
            .args(["--artifact-allow-net", "127.0.0.0/8"])
            .args(&self.agent_args)
            .env("RUST_LOG", "info,corral_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("agent starts");
        self.agent = Some(child);
    }

    /// Kills the agent with SIGKILL (its shims and tasks keep running).
    pub fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }

    /// Sends `sig` to the agent process.
    pub fn signal_agent(&self, sig: i32) {
        if let Some(a) = &self.agent {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(a.id() as i32, sig) };
        }
    }

    /// The ids of the runc containers of this agent, one per line.
    pub fn containers(&self) -> String {
        let out = Command::new("runc")
            .arg("--root")
            .arg(self.work_dir().join("runc"))
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A crash, from outside: SIGKILL to the init of the agent's runc container `id`.
    pub fn kill_container(&self, id: &str) {
        let out = Command::new("runc")
            .arg("--root")
            .arg(self.work_dir().join("runc"))
            .args(["kill", id, "KILL"])
            .output()
            .expect("runc kill");
        assert!(out.status.success(), "runc kill {id}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The agent's log so far, for failure messages.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    async fn wait_node_registered(&self) {
        let node = self.node.clone();
        self.wait_for(&format!("/apis/corral.dev/v1/nodes/{node}"), "the node registers", |n| {
            n.pointer("/status/agentEndpoint").is_some()
        })
        .await;
    }

    /// `GET path` as JSON, `None` on 404.
    pub async fn get(&self, path: &str) -> Option<Value> {
        let r = self.http.get(format!("{}{path}", self.url)).send().await.expect("GET");
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let status = r.status();
        let v: Value = r.json().await.expect("JSON");
        assert!(status.is_success(), "GET {path}: {status} {v}");
        Some(v)
    }

    /// Sends `method path body`; panics unless it succeeds.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    /// Creates a task in `default` from its spec, bound to this cluster's node.
    pub async fn create_task(&self, name: &str, mut spec: Value) -> Value {
        spec["nodeName"] = json!(self.node);
        let task = json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name}, "spec": spec});
        self.send(reqwest::Method::POST, "/apis/corral.dev/v1/namespaces/default/tasks", Some(&task)).await
    }

    /// Path of task `name` in `default`.
    pub fn task_path(name: &str) -> String {
        format!("/apis/corral.dev/v1/namespaces/default/tasks/{name}")
    }

    /// Polls `path` until `pred` holds; panics (with the last state and the agent's
    /// log) after PATIENCE.
    pub async fn wait_for(&self, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let last = std::sync::Mutex::new(Value::Null);
        let found = within_patience(|| async {
            let v = self.get(path).await?;
            if pred(&v) {
                return Some(v);
            }
            *last.lock().unwrap_or_else(|e| e.into_inner()) = v;
            None
        })
        .await;
        match found {
            Some(v) => v,
            None => panic!(
                "waited in vain for {what}; last seen: {:#}\nagent log:\n{}",
                last.lock().unwrap_or_else(|e| e.into_inner()),
                self.agent_log()
            ),
        }
    }

    /// Waits until task `name` has phase `phase`.
    pub async fn wait_phase(&self, name: &str, phase: &str) -> Value {
        self.wait_for(&Self::task_path(name), &format!("task {name} to be {phase}"), |t| {
            t.pointer("/status/phase").and_then(Value::as_str) == Some(phase)
        })
        .await
    }

    /// Waits until `cond` holds; panics naming `what`, with the agent's log, after
    /// PATIENCE.
    pub async fn until(&self, what: &str, cond: impl Fn() -> bool) {
        if within_patience(|| async { cond().then_some(()) }).await.is_none() {
            panic!("never happened within {PATIENCE:?}: {what}\nagent log:\n{}", self.agent_log());
        }
    }

    /// As [`Cluster::until`], with a condition that reads the API.
    pub async fn until_async(&self, what: &str, cond: impl AsyncFnMut() -> Option<()>) {
        if within_patience(cond).await.is_none() {
            panic!("never happened within {PATIENCE:?}: {what}\nagent log:\n{}", self.agent_log());
        }
    }

    /// Waits until the object at `path` is gone.
    pub async fn wait_gone(&self, path: &str) {
        let gone = within_patience(|| async { self.get(path).await.is_none().then_some(()) });
        if gone.await.is_none() {
            panic!("{path} was not deleted\nagent log:\n{}", self.agent_log());
        }
    }

    /// Stops the server and the agent, and removes everything the agent's tasks left.
    pub async fn stop(mut self) {
        self.kill_agent();
        // For debugging a passing run too.
        if let Some(dir) = std::env::var_os("CORRAL_KEEP_AGENT_LOGS") {
            let _ =
                std::fs::copy(self.dir.path().join("agent.log"), PathBuf::from(dir).join(format!("{}.log", self.node)));
        }
        cleanup_work_dir(&self.work_dir());
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_agent();
        cleanup_work_dir(&self.work_dir());
    }
}

/// Kills every shim and task process started from `work`, deletes its runc containers,
/// unmounts what is mounted under it and removes the cgroups of its tasks.
pub fn cleanup_work_dir(work: &Path) {
    let work_s = work.display().to_string();
    // Shims carry the work dir in their command line.
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else { continue };
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("__shim") && cmd.contains(&work_s) {
                // SAFETY: kill(2) on a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let runc_root = work.join("runc");
    if let Ok(out) = Command::new("runc").arg("--root").arg(&runc_root).args(["list", "-q"]).output() {
        for id in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
            let _ = Command::new("runc").arg("--root").arg(&runc_root).args(["delete", "--force", id]).output();
        }
    }
    let tasks = work.join("tasks");
    let mut uids = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&tasks) {
        for e in entries.flatten() {
            uids.push(e.file_name().to_string_lossy().to_string());
        }
    }
    // Native tasks: kill what is left in their cgroups, then remove them.
    for uid in &uids {
        for ctrl in ["memory", "cpu", "pids"] {
            let cg = PathBuf::from(format!("/sys/fs/cgroup/{ctrl}/corral/{uid}"));
            if let Ok(pids) = std::fs::read_to_string(cg.join("cgroup.procs")) {
                for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) on a process in this test's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    for uid in &uids {
        for ctrl in ["memory", "cpu", "pids", "cpuacct"] {
            let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{ctrl}/corral/{uid}"));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> =
        mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&work_s)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in points {
        let _ = Command::new("umount").args(["-l", m]).output();
    }
}
