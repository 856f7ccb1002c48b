//! Services end to end on real containers: the real server with its controller
//! manager (the offers controller and the built-in `services` framework), a real
//! `corral agent` process and busybox containers under runc. A service's tasks run,
//! answer HTTP on the host ports the offers gave them, are replaced when a container
//! dies, roll to a new template without going below the minimum health capacity; a
//! Marathon app converted by the real `corral convert marathon` runs; and a `hostname
//! UNIQUE` service over a real node and a simulated (hollow) one places one task per
//! node and says why the third waits.
//!
//! Each test's agent gets a port range of its own, so that tests running at once on
//! this host never hand out the same host port; the ranges sit below Linux's ephemeral
//! ports (32768 and up), which outgoing connections may hold, and apart from the agent's
//! default (31000-32000) that other tests use.

mod agent_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use agent_support::Cluster;
use corral_testkit::PATIENCE;
use serde_json::{Value, json};

const GRACE: Duration = Duration::from_secs(60);

fn services_path(ns: &str) -> String {
    format!("/apis/corral.dev/v1/namespaces/{ns}/services")
}

fn service_path(ns: &str, name: &str) -> String {
    format!("{}/{name}", services_path(ns))
}

fn phase(t: &Value) -> &str {
    t.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

fn name_of(t: &Value) -> String {
    t.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn revision_of(t: &Value) -> &str {
    t.pointer("/metadata/labels/corral.dev~1service-revision").and_then(Value::as_str).unwrap_or("")
}

/// Asked to stop (`spec.kill`) or being deleted: on its way out.
fn leaving(t: &Value) -> bool {
    t.pointer("/spec/kill") == Some(&json!(true)) || t.pointer("/metadata/deletionTimestamp").is_some()
}

/// RUNNING, not on its way out, and its health checks pass (or it has none).
fn healthy(t: &Value) -> bool {
    let checks = t.pointer("/spec/healthChecks").and_then(Value::as_array).is_some_and(|c| !c.is_empty());
    let passing = match t.pointer("/status/health/healthy") {
        Some(h) => h == &json!(true),
        None => !checks,
    };
    phase(t) == "RUNNING" && !leaving(t) && passing
}

/// The host port the task's `http` port got.
fn http_port(t: &Value) -> u16 {
    let port = t.pointer("/status/ports/http").or_else(|| t.pointer("/spec/ports/0/hostPort"));
    port.and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or_else(|| panic!("no http port: {t:#}"))
}

fn field<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

/// Every task of service `name` in `ns`, found by its label.
async fn service_tasks(c: &Cluster, ns: &str, name: &str) -> Vec<Value> {
    let path = format!("/apis/corral.dev/v1/namespaces/{ns}/tasks?labelSelector=corral.dev/service%3D{name}");
    let list = c.get(&path).await.expect("the task list");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// A client that goes straight to loopback, whatever proxy the environment names.
fn direct_http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("HTTP client")
}

/// The body of `GET http://127.0.0.1:PORT/index.html`, if it answers 200.
async fn index_on(http: &reqwest::Client, port: u16) -> Option<String> {
    let r = http.get(format!("http://127.0.0.1:{port}/index.html")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// A busybox httpd serving the task's sandbox on its `http` port (from the offer),
/// checked over HTTP. It writes its own index page unless `GATED` is set: then the
/// test writes it into the sandbox, and until it does the task runs but is not
/// healthy (the long grace period keeps the failing checks from killing it).
fn web_template(env: Value) -> Value {
    json!({
        "image": "busybox",
        "command": ["sh", "-c",
            "test -n \"$GATED\" || echo ok > /mnt/sandbox/index.html; exec httpd -f -p $PORT_HTTP -h /mnt/sandbox"],
        "env": env,
        "ports": [{"name": "http"}],
        "resources": {"cpus": 0.1, "mem": 32},
        "healthChecks": [{"http": {"portName": "http", "path": "/index.html"},
            "gracePeriodSeconds": 300, "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}],
        "killGracePeriodSeconds": 1
    })
}

fn service(name: &str, instances: u32, template: Value, extra: Value) -> Value {
    let mut spec = json!({"instances": instances, "template": template});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "corral.dev/v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

/// Waits until service `ns/name`'s status has `running` and `healthy` at `n` and
/// nothing staged.
async fn wait_healthy(c: &Cluster, ns: &str, name: &str, n: u64) -> Value {
    c.wait_for(&service_path(ns, name), &format!("service {ns}/{name} at {n} running, {n} healthy"), |s| {
        field(s, "/status/running") == &json!(n)
            && field(s, "/status/healthy") == &json!(n)
            && field(s, "/status/staged") == &json!(0)
    })
    .await
}

/// Runs the real `corral` binary with `args`, reading no configuration of the
/// machine's user.
fn corral(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .current_dir(dir)
        .env_remove("CORRAL_SERVER")
        .env_remove("RUST_LOG")
        .env("CORRAL_CONFIG", dir.join("no-config"))
        .output()
        .expect("corral runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_three_busybox_web_servers_runs_and_a_killed_container_is_replaced() {
    let c = Cluster::start_with("svc-replace", GRACE, &["--resources", "ports:[30100-30149]"]).await;
    let http = direct_http();
    c.send(
        reqwest::Method::POST,
        &services_path("default"),
        Some(&service("web", 3, web_template(json!({})), json!({}))),
    )
    .await;
    wait_healthy(&c, "default", "web", 3).await;

    let tasks: Vec<Value> = service_tasks(&c, "default", "web").await.into_iter().filter(healthy).collect();
    assert_eq!(tasks.len(), 3, "three healthy tasks: {tasks:#?}");
    let ports: BTreeSet<u16> = tasks.iter().map(http_port).collect();
    assert_eq!(ports.len(), 3, "each task has a host port of its own: {tasks:#?}");
    for t in &tasks {
        let port = http_port(t);
        assert!((30100..=30149).contains(&port), "the host port comes from the agent's offer: {t:#}");
        assert_eq!(t.pointer("/spec/nodeName"), Some(&json!("svc-replace")), "{t:#}");
        assert_eq!(t.pointer("/metadata/labels/corral.dev~1service-revision"), Some(&json!("1")), "{t:#}");
        assert_eq!(index_on(&http, port).await.as_deref(), Some("ok\n"), "task {} answers on {port}", name_of(t));
    }

    // A crash, from outside: the container's init is killed.
    let victim = &tasks[0];
    let victim_name = name_of(victim);
    let container = victim.pointer("/status/containerId").and_then(Value::as_str).expect("container id").to_string();
    assert!(c.containers().contains(&container), "{container} is a runc container of the agent: {}", c.containers());
    c.kill_container(&container);

    // A replacement runs and the service is back at three healthy, without the victim.
    let mut last = Vec::new();
    let back = corral_testkit::within_patience(async || {
        let all = service_tasks(&c, "default", "web").await;
        let svc = c.get(&service_path("default", "web")).await?;
        let live: Vec<&Value> = all.iter().filter(|t| healthy(t)).collect();
        let victim_now = all.iter().find(|t| name_of(t) == victim_name);
        let victim_done = victim_now.is_none_or(|t| phase(t) == "FAILED");
        let ok = live.len() == 3
            && !live.iter().any(|t| name_of(t) == victim_name)
            && victim_done
            && field(&svc, "/status/running") == &json!(3)
            && field(&svc, "/status/healthy") == &json!(3);
        last = all;
        ok.then_some(svc)
    })
    .await;
    let Some(svc) = back else {
        panic!("no replacement for {victim_name}; tasks: {last:#?}\nagent log:\n{}", c.agent_log());
    };
    let live: Vec<&Value> = last.iter().filter(|t| healthy(t)).collect();
    let replacements: Vec<&&Value> = live.iter().filter(|t| !tasks.iter().any(|o| name_of(o) == name_of(t))).collect();
    assert_eq!(replacements.len(), 1, "one new task, the two others untouched: {live:#?}");
    let port = http_port(replacements[0]);
    assert_eq!(index_on(&http, port).await.as_deref(), Some("ok\n"), "the replacement answers on {port}");
    // The killed task counts for nothing: the figures are those of the three live ones.
    assert_eq!(field(&svc, "/status/instances"), &json!(3), "{svc:#}");
    c.until("the killed container is gone from runc", || !c.containers().contains(&container)).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_never_drops_below_minimum_health_capacity() {
    const MIN_HEALTHY: usize = 2; // ceil(3 * 0.5)
    let c = Cluster::start_with("svc-roll", GRACE, &["--resources", "ports:[30150-30199]"]).await;
    let strategy = json!({"upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5}});
    let svc = service("roll", 3, web_template(json!({})), strategy);
    c.send(reqwest::Method::POST, &services_path("default"), Some(&svc)).await;
    wait_healthy(&c, "default", "roll", 3).await;
    let first: BTreeSet<String> = service_tasks(&c, "default", "roll").await.iter().map(name_of).collect();
    assert_eq!(first.len(), 3, "{first:?}");

    // The new template: the same server, and a changed env; its tasks become healthy
    // only when the test opens their gate (writes their index page), one at a time.
    let mut svc = c.get(&service_path("default", "roll")).await.expect("service");
    svc["spec"]["template"] = web_template(json!({"GATED": "1"}));
    c.send(reqwest::Method::PUT, &service_path("default", "roll"), Some(&svc)).await;

    // Bounded by the clock only to fail instead of hanging; nothing is timed.
    let deadline = Instant::now() + 2 * PATIENCE;
    let mut samples = 0u32;
    let mut held = false; // seen: one old task stopped, two held, new ones waiting for health
    let mut opened: BTreeMap<String, String> = BTreeMap::new(); // gate opened: task name → uid
    let mut old_stopped = BTreeSet::new();
    let mut new_healthy = BTreeSet::new();
    loop {
        let tasks = service_tasks(&c, "default", "roll").await;
        let svc = c.get(&service_path("default", "roll")).await.expect("service");
        samples += 1;
        // One template change makes one new revision, numbered last + 1; tasks of the
        // new template launched a moment ago are never taken for old ones.
        let numbers: BTreeSet<&str> = tasks.iter().map(revision_of).collect();
        let status_revision = field(&svc, "/status/revision");
        assert!(
            numbers.iter().all(|r| ["1", "2"].contains(r)) && [json!(1), json!(2)].contains(status_revision),
            "sample {samples}: the one template change is revision 2, yet the status says revision \
             {status_revision} and the tasks carry {numbers:?}; tasks: {tasks:#?}\nservice: {svc:#}"
        );
        let up: Vec<&Value> = tasks.iter().filter(|t| healthy(t)).collect();
        assert!(
            up.len() >= MIN_HEALTHY,
            "sample {samples}: {} healthy, below the minimum of {MIN_HEALTHY}; tasks: {tasks:#?}\nservice: {svc:#}",
            up.len()
        );
        for name in &first {
            let gone = tasks.iter().find(|t| &name_of(t) == name).is_none_or(|t| leaving(t) || phase(t) != "RUNNING");
            if gone {
                old_stopped.insert(name.clone());
            }
        }
        let new: Vec<&Value> = tasks.iter().filter(|t| revision_of(t) == "2" && !leaving(t)).collect();
        new_healthy.extend(new.iter().filter(|t| healthy(t)).map(|t| name_of(t)));
        let old_up = up.iter().filter(|t| revision_of(t) == "1").count();
        let new_waiting = new.iter().filter(|t| phase(t) == "RUNNING" && !healthy(t)).count();
        if opened.is_empty() && old_stopped.len() == 1 && old_up == MIN_HEALTHY && new_waiting > 0 {
            held = true;
        }
        // Once the hold was seen, open one gate at a time: the next only when every
        // opened task is healthy.
        let pending = opened.keys().any(|n| !new_healthy.contains(n) && new.iter().any(|t| &name_of(t) == n));
        if held && !pending {
            let next = new.iter().find(|t| phase(t) == "RUNNING" && !opened.contains_key(&name_of(t)));
            if let Some(t) = next {
                let uid = t.pointer("/metadata/uid").and_then(Value::as_str).expect("uid").to_string();
                let sandbox = c.work_dir().join("tasks").join(&uid).join("sandbox");
                std::fs::write(sandbox.join("index.html"), "v2\n").expect("the gate opens");
                opened.insert(name_of(t), uid);
            }
        }
        let complete = field(&svc, "/status/deployment/revision") == &json!(2)
            && field(&svc, "/status/deployment/phase") == &json!("Complete");
        let live: Vec<&Value> = tasks.iter().filter(|t| !leaving(t) && phase(t) == "RUNNING").collect();
        if complete && live.len() == 3 && live.iter().all(|t| revision_of(t) == "2" && healthy(t)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deployment did not complete; held: {held}, opened: {opened:?}, tasks: {tasks:#?}\nservice: \
             {svc:#}\nagent log:\n{}",
            c.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The transition was watched, not skipped: the controller held two old tasks while
    // the new ones were unhealthy, every old task was stopped, and every new one became
    // healthy only through a gate the test opened.
    assert!(held, "never saw the deployment hold at the minimum health capacity");
    assert_eq!(old_stopped, first, "every old task was stopped");
    let now: Vec<Value> = service_tasks(&c, "default", "roll").await;
    let live: BTreeSet<String> = now.iter().filter(|t| healthy(t)).map(name_of).collect();
    assert!(live.is_disjoint(&first), "{live:?} vs {first:?}");
    assert!(live.iter().all(|n| opened.contains_key(n)), "healthy only once opened: {live:?}, opened {opened:?}");
    let http = direct_http();
    for t in now.iter().filter(|t| healthy(t)) {
        assert_eq!(index_on(&http, http_port(t)).await.as_deref(), Some("v2\n"), "{t:#}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marathon_app_converts_and_runs() {
    let c = Cluster::start_with("svc-marathon", GRACE, &["--resources", "ports:[30200-30249]"]).await;
    let work = tempfile::tempdir().expect("tempdir");
    // The example app, in a group (so it lands in a namespace of its own, restricted
    // as any new one), without its `hostname UNIQUE` constraint: it asks for two
    // instances on two hosts, and this cluster has one.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/marathon/web.json");
    let mut app: Value = serde_json::from_slice(&std::fs::read(&example).expect("example")).expect("JSON");
    assert_eq!(app["constraints"], json!([["hostname", "UNIQUE"]]), "the example changed; adapt this test");
    app["id"] = json!("/shop/web");
    app.as_object_mut().expect("an app").remove("constraints");
    let app_file = work.path().join("web.json");
    std::fs::write(&app_file, app.to_string()).expect("app written");

    let out = corral(work.path(), &["convert", "marathon", app_file.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "convert: {}", text(&out.stderr));
    let manifest = work.path().join("web.yaml");
    std::fs::write(&manifest, &out.stdout).expect("manifest written");

    // The namespace the manifest names, created as an administrator would.
    let svc: Value = serde_norway::from_slice(&out.stdout).expect("a Service manifest");
    let ns = svc.pointer("/metadata/namespace").and_then(Value::as_str).expect("a namespace").to_string();
    assert_eq!(ns, "shop");
    let namespace = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": ns}});
    c.send(reqwest::Method::POST, "/apis/corral.dev/v1/namespaces", Some(&namespace)).await;

    let token = c.admin_token();
    let out =
        corral(work.path(), &["--server", &c.url, "--token", &token, "apply", "-f", manifest.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "apply: {}{}", text(&out.stdout), text(&out.stderr));

    let svc = c
        .wait_for(&service_path(&ns, "web"), "the converted app's two instances healthy and ready", |s| {
            field(s, "/status/healthy") == &json!(2)
                && field(s, "/status/deployment/phase") == &json!("Complete")
                && field(s, "/status/deployment/updated") == &json!(2)
        })
        .await;
    assert!(svc.pointer("/spec/readinessCheck").is_some(), "the readiness check was carried: {svc:#}");
    let tasks: Vec<Value> = service_tasks(&c, &ns, "web").await.into_iter().filter(healthy).collect();
    assert_eq!(tasks.len(), 2, "{tasks:#?}");
    let http = direct_http();
    for t in &tasks {
        assert_eq!(t.pointer("/spec/env/GREETING"), Some(&json!("hello")), "{t:#}");
        let port = http_port(t);
        assert!((30200..=30249).contains(&port), "$PORT0 is the offered port: {t:#}");
        assert_eq!(index_on(&http, port).await.as_deref(), Some("ok\n"), "task {} answers on {port}", name_of(t));
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_hostname_on_a_real_and_a_hollow_node_places_two_and_says_why() {
    use corral_bench::hollow::{HollowOptions, SIMULATED, run_hollow};
    use corral_runtime::CancellationToken;

    let c = Cluster::start_with("svc-real", GRACE, &["--resources", "ports:[30250-30299]"]).await;
    // The second node is a simulation: registered through the real API, heartbeating,
    // reporting its tasks RUNNING without starting any process.
    let shutdown = CancellationToken::new();
    let client = c.server.as_ref().expect("server").client();
    let opts = HollowOptions {
        nodes: 1,
        prefix: "hollow-".into(),
        heartbeat: Duration::from_secs(1),
        realize_concurrency: 4,
        ..Default::default()
    };
    let hollow = tokio::spawn(run_hollow(client, opts, shutdown.clone()));
    c.wait_for("/apis/corral.dev/v1/nodes/hollow-0", "the hollow node Ready", |n| {
        field(n, "/status/phase") == &json!("Ready")
    })
    .await;

    let template = json!({"image": "busybox", "command": ["sleep", "3600"], "resources": {"cpus": 0.1, "mem": 32},
        "killGracePeriodSeconds": 1});
    let svc = service("spread", 3, template, json!({"constraints": [["hostname", "UNIQUE"]]}));
    c.send(reqwest::Method::POST, &services_path("default"), Some(&svc)).await;
    let svc = c
        .wait_for(&service_path("default", "spread"), "two running and the third waiting, with why", |s| {
            field(s, "/status/running") == &json!(2)
                && field(s, "/status/waiting/refusals/0/reason") == &json!("hostname UNIQUE")
        })
        .await;

    let tasks = service_tasks(&c, "default", "spread").await;
    assert_eq!(tasks.len(), 2, "exactly two tasks placed: {tasks:#?}");
    let mut nodes: Vec<&str> =
        tasks.iter().filter_map(|t| t.pointer("/spec/nodeName").and_then(Value::as_str)).collect();
    nodes.sort();
    assert_eq!(nodes, ["hollow-0", "svc-real"], "one task per node: {tasks:#?}");
    for t in &tasks {
        assert_eq!(phase(t), "RUNNING", "{t:#}");
        let message = t.pointer("/status/message").and_then(Value::as_str).unwrap_or_default();
        if t.pointer("/spec/nodeName") == Some(&json!("hollow-0")) {
            assert!(message.contains("simulated"), "the hollow node says it simulates: {t:#}");
        } else {
            let container = t.pointer("/status/containerId").and_then(Value::as_str).expect("container id");
            assert!(c.containers().contains(container), "a real container runs on the real node: {t:#}");
        }
    }
    let hollow_node = c.get("/apis/corral.dev/v1/nodes/hollow-0").await.expect("node");
    assert_eq!(hollow_node.pointer(&format!("/spec/attributes/{SIMULATED}")), Some(&json!("true")));

    let waiting = field(&svc, "/status/waiting");
    assert_eq!(waiting["instances"], json!(1), "{svc:#}");
    let refusal = &waiting["refusals"][0];
    let offers = refusal["offers"].as_u64().unwrap_or(0);
    let on = refusal["nodes"].as_u64().unwrap_or(0);
    assert!(offers >= 1 && (1..=2).contains(&on) && on <= offers, "refusal counts: {svc:#}");
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(message.contains("hostname UNIQUE"), "{message}");
    // Both nodes turn the third instance down for the same reason, as their offers
    // come round.
    c.wait_for(&service_path("default", "spread"), "both nodes refusing for hostname UNIQUE", |s| {
        field(s, "/status/waiting/refusals/0/reason") == &json!("hostname UNIQUE")
            && field(s, "/status/waiting/refusals/0/nodes") == &json!(2)
    })
    .await;
    assert_eq!(service_tasks(&c, "default", "spread").await.len(), 2, "still two tasks");

    shutdown.cancel();
    hollow.await.expect("hollow nodes stop").expect("hollow nodes ran");
    c.stop().await;
}
