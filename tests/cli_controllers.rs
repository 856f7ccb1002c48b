//! The controller manager out of process: `corral server --controllers none` serves
//! the API alone; `corral controllers --server URL` runs the built-in controllers
//! against it, behind leader election — of two managers one acts, and when it stops
//! (releasing its lease) the other takes over at once.

mod promtool_support;

use std::path::Path;
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

/// The administrator's token, once the server has written it.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `corral ARGS`, logging to `log` the lines that say where it listens.
fn corral(args: &[&str], log: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(args)
            .env("RUST_LOG", "warn,corral_server=info,corral::cli::controllers=info")
            .env("CORRAL_CONFIG", "/nonexistent")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
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
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut server = corral(
        &["server", "--controllers", "none", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()],
        &log,
    );
    let base = corral_testkit::wait_logged(&mut server.0, &log, "listening url=");
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

    // Each manager and the URL of its /metrics.
    let manager = |identity: &str| {
        let log = dir.path().join(format!("{identity}.log"));
        let mut p = corral(
            &[
                "--server",
                &base,
                "--token",
                &manager_token,
                "controllers",
                "--identity",
                identity,
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            &log,
        );
        let addr = corral_testkit::wait_logged(&mut p.0, &log, "/healthz addr=");
        (p, format!("http://{addr}/metrics"))
    };
    let (mut one, metrics1) = manager("one");
    eventually_blocking("manager one leads", || (gauge(&metrics1, "corral_manager_leader") == Some(1.0)).then_some(()));
    eventually_blocking("the dependent is collected", || get(&format!("{cms}/dependent")).is_none().then_some(()));
    let text = http().get(&metrics1).send().unwrap().text().unwrap();
    assert!(text.contains("corral_gc_deleted_total"), "{text}");
    promtool_support::promtool_check(&text);

    // A second manager only campaigns while the first leads.
    let (_two, metrics2) = manager("two");
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
