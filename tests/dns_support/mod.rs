//! Shared by the `dns_*` tests: the real `corral server` binary (its API server,
//! controllers and cluster DNS) in a temporary directory, the real `dig`, and a
//! SIMULATED agent that reports the tasks bound to the test's nodes as running (no
//! process runs; the DNS reads only what an agent would write).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// A `corral server` child process, stopped (SIGTERM, then waited for) when dropped.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The administrator's token.
    pub token: String,
    /// Where the cluster DNS answers, if it runs.
    pub dns: Option<SocketAddr>,
    /// The server's log (stderr).
    pub log: std::path::PathBuf,
}

/// The log line saying where the cluster DNS answers.
const DNS_LINE: &str = "cluster DNS: ";

impl Server {
    /// Starts `corral server` with `args` after the test's own `--data-dir` and
    /// `--listen 127.0.0.1:0`; waits until it listens (and serves DNS, unless `--no-dns`).
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("CORRAL_CONFIG", dir.path().join("no-config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("corral server starts");
        let wants_dns = !args.contains(&"--no-dns");
        let (url, dns) = corral_testkit::eventually_blocking("the server to listen", || {
            // Gone, as when the address given to `--dns-listen` was taken: say why at once.
            corral_testkit::assert_running(&mut child, &log);
            let url = corral_testkit::logged(&log, "listening url=")?;
            let dns = corral_testkit::logged(&log, DNS_LINE).and_then(|a| a.parse().ok());
            if wants_dns && dns.is_none() {
                return None;
            }
            Some((url, dns))
        });
        let conf = std::fs::read_to_string(data.join("admin.conf")).expect("admin.conf");
        let token = conf
            .lines()
            .find_map(|l| l.trim().strip_prefix("token: "))
            .expect("a token in admin.conf")
            .trim()
            .to_string();
        Server { child, dir, url, token, dns, log }
    }

    /// A client of the API as the administrator.
    pub fn http(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = format!("Bearer {}", self.token).parse().expect("header");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        reqwest::Client::builder().default_headers(headers).build().expect("client")
    }

    /// `METHOD path` with `body`; the status and the answer.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self.http().request(method.clone(), format!("{}{path}", self.url));
        if let Some(b) = body {
            let ct = if method == reqwest::Method::PATCH { "application/merge-patch+json" } else { "application/json" };
            req = req.header("content-type", ct).body(b.to_string());
        }
        let resp = req.send().await.expect("the server answers");
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Creates `object` at `path`, requiring success.
    pub async fn create(&self, path: &str, object: &Value) -> Value {
        let (code, out) = self.call(reqwest::Method::POST, path, Some(object)).await;
        assert!(code == 201 || code == 200, "POST {path}: {code} {out}");
        out
    }

    /// Registers a ready node `name` at `address`, with ports 31000-31099.
    pub async fn node(&self, name: &str, address: &str) {
        let nodes = "/apis/corral.dev/v1/nodes";
        let mut n = self
            .create(
                nodes,
                &json!({"apiVersion": "corral.dev/v1", "kind": "Node", "metadata": {"name": name},
                    "spec": {"attributes": {"hostname": name}}}),
            )
            .await;
        n["status"] = json!({"phase": "Ready", "capacity": {"cpus": 8.0, "mem": 8192},
            "portRanges": [{"begin": 31000, "end": 31099}], "address": address});
        let (code, out) = self.call(reqwest::Method::PUT, &format!("{nodes}/{name}/status"), Some(&n)).await;
        assert_eq!(code, 200, "{out}");
    }

    /// Runs `corral ARGS` against this server as the administrator.
    pub fn corral(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .arg("--server")
            .arg(&self.url)
            .args(args)
            .env("CORRAL_TOKEN", &self.token)
            .env("CORRAL_CONFIG", self.dir.path().join("no-config"))
            .env_remove("CORRAL_SERVER")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("corral runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM: a clean stop, as an operator's.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which we still hold (not yet reaped).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIMULATED agent: once, reports every task bound to a node as RUNNING (with its host
/// ports) and every task asked to die as KILLED. Returns how many it changed.
pub async fn agent_pass(s: &Server) -> usize {
    let tasks = "/apis/corral.dev/v1/tasks";
    let (_, list) = s.call(reqwest::Method::GET, tasks, None).await;
    let mut changed = 0;
    for t in list["items"].as_array().cloned().unwrap_or_default() {
        if t["spec"]["nodeName"].as_str().is_none() {
            continue;
        }
        let phase = t["status"]["phase"].as_str().unwrap_or("").to_string();
        let terminal = matches!(phase.as_str(), "FINISHED" | "FAILED" | "KILLED" | "LOST");
        let want = if t["spec"]["kill"] == json!(true) {
            if terminal {
                continue;
            }
            "KILLED"
        } else if phase.is_empty() || phase == "STAGING" {
            "RUNNING"
        } else {
            continue;
        };
        let mut ports = serde_json::Map::new();
        for p in t["spec"]["ports"].as_array().cloned().unwrap_or_default() {
            if let (Some(n), Some(h)) = (p["name"].as_str(), p["hostPort"].as_u64()) {
                ports.insert(n.to_string(), json!(h));
            }
        }
        let mut updated = t.clone();
        updated["status"] = json!({"phase": want, "ports": ports});
        let ns = t["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = t["metadata"]["name"].as_str().unwrap_or_default();
        let path = format!("/apis/corral.dev/v1/namespaces/{ns}/tasks/{name}/status");
        let (code, _) = s.call(reqwest::Method::PUT, &path, Some(&updated)).await;
        if code == 200 {
            changed += 1;
        }
    }
    changed
}

/// `dig +short` for `name` and `rtype` at `dns`, sorted.
pub fn dig_short(dns: SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    let out = dig(dns, &["+short", name, rtype]);
    let mut lines: Vec<String> = out.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    lines.sort();
    lines
}

/// The `status:` of dig's answer header (`NOERROR`, `NXDOMAIN`, `REFUSED`, …).
pub fn dig_status(dns: SocketAddr, name: &str, rtype: &str) -> String {
    let out = dig(dns, &[name, rtype]);
    out.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("no answer").to_string()
}

/// Runs the real `dig` at `dns` (UDP, one try, 2 s timeout).
pub fn dig(dns: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string(), "+tries=1", "+time=2"])
        .args(args)
        .output()
        .expect("dig runs (scripts/setup.sh installs dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `dig +short` (and the simulated agent) until `want` holds; a bounded number
/// of tries, no timing asserted. Panics with the last answer.
pub async fn until_answer(
    s: &Server,
    name: &str,
    rtype: &str,
    what: &str,
    want: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let dns = s.dns.expect("the server serves DNS");
    let mut last = Vec::new();
    for _ in 0..200 {
        agent_pass(s).await;
        last = dig_short(dns, name, rtype);
        if want(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("waited in vain for {what} ({name} {rtype}); last answer: {last:?}\nlog:\n{}", s.log_text());
}
