//! The controller manager out of process: `corral server --controllers none` serves
//! the API alone; `corral controllers --server URL` runs the built-in controllers
//! against it, behind leader election — of two managers one acts, and when it stops
//! (releasing its lease) the other takes over at once.

mod promtool_support;

use std::process::{Child, Command, Stdio};

use corral_testkit::eventually_blocking;
use serde_json::{Value, json};

/// A process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The administrator's token, once the server has written it.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn corral(args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(args)
            .env("RUST_LOG", "warn")
            .env("CORRAL_CONFIG", "/nonexistent")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("corral starts"),
    )
}

fn http() -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = TOKEN.get() {
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
    }
    reqwest::blocking::Client::builder().no_proxy().default_headers(headers).build().unwrap()
}

fn get(url: &str) -> Option<Value> {
    let r = http().get(url).send().ok()?;
    r.status().is_success().then(|| r.json().ok()).flatten()
}

/// The value of the unlabelled gauge `name` at `metrics`, once it is served.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    let text = http().get(metrics).send().ok()?.text().ok()?;
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.trim().parse().ok())
}

#[test]
fn an_out_of_process_manager_collects_garbage_and_hands_over_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("data");
    let _server = corral(&[
        "server",
        "--controllers",
        "none",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    eventually_blocking("the API server answers", || {
        http().get(format!("{base}/healthz")).send().ok().filter(|r| r.status().is_success()).map(drop)
    });
    let admin = corral_client::Config::from_kubeconfig(&data.join("admin.conf")).expect("the server wrote admin.conf");
    assert_eq!(admin.server, base);
    TOKEN.set(admin.token.expect("an admin token")).unwrap();
    // The managers run as the controller manager, with its role only.
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--server", &base, "--token", TOKEN.get().unwrap(), "token", "create"])
        .args(["--user", "system:controller-manager", "--ttl", "1h"])
        .env("CORRAL_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manager_token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let cms = format!("{base}/apis/corral.dev/v1/namespaces/default/configmaps");
    let post = |body: Value| -> Value {
        let r = http().post(&cms).json(&body).send().unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
        r.json().unwrap()
    };
    let owner = post(json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
        "metadata": {"name": "owner", "namespace": "default"}, "spec": {}}));
    post(json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap",
        "metadata": {"name": "dependent", "namespace": "default", "ownerReferences": [{
            "apiVersion": "corral.dev/v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]},
        "spec": {}}));

    // The server alone collects nothing.
    let r = http().delete(format!("{cms}/owner")).send().unwrap();
    assert!(r.status().is_success());
    assert!(get(&format!("{cms}/dependent")).is_some(), "no controller runs yet");

    let (m1, m2) = (free_port(), free_port());
    let metrics1 = format!("http://127.0.0.1:{m1}/metrics");
    let metrics2 = format!("http://127.0.0.1:{m2}/metrics");
    let manager = |identity: &str, metrics: u16| {
        corral(&[
            "--server",
            &base,
            "--token",
            &manager_token,
            "controllers",
            "--identity",
            identity,
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
        ])
    };
    let mut one = manager("one", m1);
    eventually_blocking("manager one leads", || (gauge(&metrics1, "corral_manager_leader") == Some(1.0)).then_some(()));
    eventually_blocking("the dependent is collected", || get(&format!("{cms}/dependent")).is_none().then_some(()));
    let text = http().get(&metrics1).send().unwrap().text().unwrap();
    assert!(text.contains("corral_gc_deleted_total"), "{text}");
    promtool_support::promtool_check(&text);

    // A second manager only campaigns while the first leads.
    let _two = manager("two", m2);
    eventually_blocking("manager two serves its metrics", || gauge(&metrics2, "corral_manager_leader").map(|_| ()));
    assert_eq!(gauge(&metrics2, "corral_manager_leader"), Some(0.0), "two acts while one leads");
    let lease = get(&format!("{base}/apis/corral.dev/v1/namespaces/corral-system/leases/corral-controller-manager"))
        .expect("the managers' lease");
    assert_eq!(lease["spec"]["holderIdentity"], "one");

    // One stops: it releases the lease, and two takes over.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(one.0.id() as i32, libc::SIGTERM) };
    let status = eventually_blocking("manager one stops on SIGTERM", || one.0.try_wait().unwrap());
    assert!(status.success(), "manager one exited with {status}");
    eventually_blocking("manager two leads", || (gauge(&metrics2, "corral_manager_leader") == Some(1.0)).then_some(()));
    let lease = get(&format!("{base}/apis/corral.dev/v1/namespaces/corral-system/leases/corral-controller-manager"))
        .expect("the managers' lease");
    assert_eq!(lease["spec"]["holderIdentity"], "two");
}
