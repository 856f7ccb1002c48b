//! The control plane of issue 16, highly available on etcd: 3 etcd members, 2 API
//! servers each running a leader-elected controller manager, and a real node agent
//! given both servers (`--server a,b`). Killing the server whose manager leads (with
//! SIGKILL) moves the lease to the other; the agent fails over to the surviving server,
//! and a task of a service that fails afterwards is replaced by the new leader: the
//! service is back to its instance count, with no duplicate placements.
//!
//! Bounded waits only (the lease takes up to its 15 s to run out): no timing is
//! asserted.

mod agent_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use corral_bench::cluster::{EtcdCluster, Server};
use corral_testkit::within_patience;
use serde_json::{Value, json};

const LEASE: &str = "/apis/corral.dev/v1/namespaces/corral-system/leases/corral-controller-manager";
const SERVICES: &str = "/apis/corral.dev/v1/namespaces/default/services";
const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";
const NODE: &str = "ha-node";
/// The service's name and the argument of its `sleep`, unique to this test so that
/// its processes are told from any other's.
const SERVICE: &str = "ha-keep";
const SLEEP_ARG: &str = "3617";

/// A `corral agent` process and its work dir: on drop the agent is killed and every
/// task process it started, with their cgroups, is removed.
struct Agent {
    child: Option<Child>,
    work: PathBuf,
    log: PathBuf,
}

impl Agent {
    fn start(servers: &str, token: &str, dir: &Path) -> Agent {
        let work = dir.join("agent");
        let log_path = dir.join("agent.log");
        let log = std::fs::File::create(&log_path).expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["--server", servers, "--token", token])
            .args(["agent", "--name", NODE, "--heartbeat-interval", "1"])
            // A port of its own choosing, which it registers as its endpoint: one picked
            // beforehand could be taken by a parallel test's process first.
            .args(["--listen", "127.0.0.1:0", "--log-max-bytes", "65536"])
            .arg("--work-dir")
            .arg(&work)
            .env("RUST_LOG", "info,corral_agent=debug,corral_client=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the agent starts");
        Agent { child: Some(child), work, log: log_path }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        // For debugging a passing run too.
        if let Some(dir) = std::env::var_os("CORRAL_KEEP_AGENT_LOGS") {
            let _ = std::fs::copy(&self.log, PathBuf::from(dir).join(format!("{NODE}.log")));
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        agent_support::cleanup_work_dir(&self.work);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET base path` as JSON; `None` if the server cannot be reached or does not answer
/// 200 (so that a poll goes on through a failover).
async fn get(http: &reqwest::Client, base: &str, path: &str) -> Option<Value> {
    let r = http.get(format!("{base}{path}")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Sends `method base path body`; panics unless it succeeds.
async fn send(http: &reqwest::Client, method: reqwest::Method, base: &str, path: &str, body: &Value) -> Value {
    let ct = if method == reqwest::Method::PATCH { "application/merge-patch+json" } else { "application/json" };
    let r = http
        .request(method.clone(), format!("{base}{path}"))
        .header("content-type", ct)
        .body(body.to_string())
        .send()
        .await
        .expect("the request is answered");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

fn holder(lease: &Value) -> Option<String> {
    lease.pointer("/spec/holderIdentity").and_then(Value::as_str).map(str::to_string)
}

fn phase(t: &Value) -> &str {
    t.pointer("/status/phase").and_then(Value::as_str).unwrap_or("STAGING")
}

fn is_terminal(t: &Value) -> bool {
    matches!(phase(t), "FINISHED" | "FAILED" | "KILLED" | "LOST")
}

/// The service's tasks, as one list.
async fn tasks(http: &reqwest::Client, base: &str) -> Option<Vec<Value>> {
    let list = get(http, base, &format!("{TASKS}?labelSelector=corral.dev%2Fservice%3D{SERVICE}")).await?;
    Some(list["items"].as_array().cloned().unwrap_or_default())
}

fn summary(tasks: &[Value]) -> String {
    tasks
        .iter()
        .map(|t| {
            format!(
                "{} {} node={} kill={}",
                t["metadata"]["name"].as_str().unwrap_or("?"),
                phase(t),
                t["spec"]["nodeName"].as_str().unwrap_or("-"),
                t["spec"]["kill"]
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The pids of the processes of native task `uid` that run its `sleep`, from its cgroup.
fn sleep_pids_of(uid: &str) -> Vec<i32> {
    let procs = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/corral/{uid}/cgroup.procs")).unwrap_or_default();
    procs
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"sleep")) && args.get(1) == Some(&SLEEP_ARG.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leading_managers_server_moves_the_lease_and_the_service_keeps_its_instances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).await.expect("a 3-member etcd cluster");
    let store = etcd.store_url();
    // DNS off: two servers on one host would contend for its port, and nothing here
    // resolves names.
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        let data = dir.path().join(name);
        servers.push(
            Server::start_exe(Path::new(env!("CARGO_BIN_EXE_corral")), &data, &store, &["--no-dns"])
                .await
                .expect("a corral server on etcd"),
        );
    }
    let token = servers[0].admin_config("").expect("admin.conf").token.expect("an admin token");
    let http = corral_testkit::authorized_http(&token);
    let base0 = servers[0].base_url();

    // Native tasks need a privileged namespace.
    send(
        &http,
        reqwest::Method::PATCH,
        &base0,
        "/apis/corral.dev/v1/namespaces/default",
        &json!({"metadata": {"labels": {"corral.dev/task-security": "privileged"}}}),
    )
    .await;

    // Which server's manager leads: the identity ends with its address.
    let first = within_patience(|| async {
        let lease = get(&http, &base0, LEASE).await?;
        let h = holder(&lease)?;
        servers.iter().position(|s| h.ends_with(&format!("/{}", s.addr))).map(|i| (i, h))
    })
    .await;
    let (leader, first_holder) = first.expect("one of the two managers holds the lease");
    let survivor = 1 - leader;
    let survivor_base = servers[survivor].base_url();
    let survivor_identity_suffix = format!("/{}", servers[survivor].addr);

    // The agent talks to the leader's server first, so that it has to fail over.
    let list = format!("{},{}", servers[leader].base_url(), survivor_base);
    let mut agent = Agent::start(&list, &token, dir.path());
    let registered = within_patience(|| async {
        let n = get(&http, &base0, &format!("/apis/corral.dev/v1/nodes/{NODE}")).await?;
        n.pointer("/status/agentEndpoint").map(|_| ())
    })
    .await;
    assert!(registered.is_some(), "the node never registered\nagent log:\n{}", agent.log());

    let service = json!({"apiVersion": "corral.dev/v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": "default"},
        "spec": {"instances": 3,
                 "template": {"command": ["/bin/sleep", SLEEP_ARG], "resources": {"cpus": 0.05, "mem": 16},
                              "killGracePeriodSeconds": 1}}});
    send(&http, reqwest::Method::POST, &base0, SERVICES, &service).await;
    let running = within_patience(|| async {
        let ts = tasks(&http, &base0).await?;
        let up: Vec<Value> = ts.iter().filter(|t| phase(t) == "RUNNING").cloned().collect();
        (up.len() == 3 && ts.iter().all(|t| !is_terminal(t))).then_some(up)
    })
    .await;
    let Some(running) = running else {
        panic!(
            "3 tasks never ran: {}\nagent log:\n{}",
            summary(&tasks(&http, &base0).await.unwrap_or_default()),
            agent.log()
        );
    };

    // The leader's server dies; then one of the tasks.
    servers[leader].kill();
    let victim = running[0]["metadata"]["name"].as_str().expect("a name").to_string();
    let victim_uid = running[0]["metadata"]["uid"].as_str().expect("a uid").to_string();
    let pids = sleep_pids_of(&victim_uid);
    assert_eq!(pids.len(), 1, "one sleep {SLEEP_ARG} in the cgroup of task {victim} ({victim_uid})");
    // SAFETY: kill(2) on the task process this test's agent started.
    unsafe { libc::kill(pids[0], libc::SIGKILL) };

    // The other manager takes the lease.
    let took = within_patience(|| async {
        let lease = get(&http, &survivor_base, LEASE).await?;
        holder(&lease).filter(|h| h.ends_with(&survivor_identity_suffix))
    })
    .await;
    assert!(took.is_some(), "the manager beside {} never took the lease from {first_holder}", servers[survivor].addr);

    // The failed task is reported through the surviving server and replaced: 3 running
    // again, all on the node, never more than 3 alive at a time.
    let mut most_alive = 0;
    let mut last = Vec::new();
    let recovered = within_patience(async || {
        let ts = tasks(&http, &survivor_base).await?;
        let alive: Vec<&Value> = ts.iter().filter(|t| !is_terminal(t)).collect();
        most_alive = most_alive.max(alive.len());
        // Reported FAILED, then removed by the services controller once replaced.
        let victim_ended = ts.iter().all(|t| t["metadata"]["name"] != victim.as_str() || phase(t) == "FAILED");
        let replaced = alive.len() == 3
            && alive.iter().all(|t| phase(t) == "RUNNING" && t["spec"]["nodeName"] == NODE)
            && !alive.iter().any(|t| t["metadata"]["name"] == victim.as_str());
        last = ts.clone();
        (victim_ended && replaced).then_some(())
    })
    .await;
    assert!(
        recovered.is_some(),
        "the service did not get back to 3 running tasks through the surviving server: {}\nagent log:\n{}",
        summary(&last),
        agent.log()
    );
    assert!(most_alive <= 3, "more than 3 tasks alive at once after the takeover: {}", summary(&last));
    // Still 3 a little later: the new leader placed no duplicates.
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let ts = tasks(&http, &survivor_base).await.expect("the surviving server answers");
        let alive = ts.iter().filter(|t| !is_terminal(t)).count();
        assert_eq!(alive, 3, "exactly 3 tasks alive: {}", summary(&ts));
    }

    // The agent's heartbeats go on through the surviving server.
    let node_lease = format!("/apis/corral.dev/v1/namespaces/corral-system/leases/{NODE}");
    let renewed = |l: &Value| l.pointer("/spec/renewTime").and_then(Value::as_str).map(str::to_string);
    let before = renewed(&get(&http, &survivor_base, &node_lease).await.expect("the node's lease")).expect("renewed");
    let beat = within_patience(async || {
        let now = renewed(&get(&http, &survivor_base, &node_lease).await?)?;
        (now != before).then_some(())
    })
    .await;
    assert!(beat.is_some(), "the node's lease was not renewed after {before}\nagent log:\n{}", agent.log());

    // Clean up through the API: deleting the service stops its tasks.
    let r = http.delete(format!("{survivor_base}{SERVICES}/{SERVICE}")).send().await.expect("delete answered");
    assert!(r.status().is_success(), "delete the service: {}", r.status());
    let gone = within_patience(|| async {
        let ts = tasks(&http, &survivor_base).await?;
        ts.is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "the service's tasks were not deleted\nagent log:\n{}", agent.log());
    agent.stop();
    drop(servers);
    drop(etcd);
}
