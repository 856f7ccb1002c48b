//! The example custom controller (examples/tenant-controller) runs as its own process
//! against a real server: it provisions, reports status and events, follows edits, and
//! cleans up through its finalizer.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod api_support;

use api_support::TestServer;
use corral_runtime::Client;
use serde_json::{Value, json};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn corral(server: &str, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).args(args).env("CORRAL_SERVER", server).output().unwrap();
    assert!(out.status.success(), "corral {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Polls until `probe` returns `Some` (bounded: a guard, not a timing assertion).
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..1500 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_controller_provisions_follows_edits_and_cleans_up() {
    let server = TestServer::start().await;
    let url = server.base.clone();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    corral(&url, &["apply", "-f", root.join("examples/tenant-controller/crd.yaml").to_str().unwrap()]);

    let exe = PathBuf::from(env!("CARGO_BIN_EXE_corral")).parent().unwrap().join("examples/tenant-controller");
    assert!(exe.exists(), "{} missing: cargo test builds examples", exe.display());
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let _controller = Kill(
        Command::new(exe)
            .args(["--server", &url, "--metrics-listen", &metrics_addr])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    corral(&url, &["apply", "-f", root.join("examples/tenant-controller/tenant.yaml").to_str().unwrap()]);

    let client = Client::http(&url).unwrap();
    let tenants = client.kind("tenants").await.unwrap();
    let cms = client.kind("configmaps").await.unwrap();
    let nss = client.kind("namespaces").await.unwrap();
    let cm = eventually("settings provisioned", async || {
        client.get(&cms, Some("tenant-payments"), "tenant-settings").await.unwrap()
    })
    .await;
    assert_eq!(cm["spec"]["data"], json!({"tier": "gold", "region": "eu-west"}));
    let t = eventually("status reported", async || {
        client.get(&tenants, None, "payments").await.unwrap().filter(|t| t["status"]["phase"] == "Ready")
    })
    .await;
    assert_eq!(t["status"]["namespace"], "tenant-payments");
    assert_eq!(t["metadata"]["finalizers"], json!(["tenants.example.corral.dev/cleanup"]));
    let events = client.kind("events").await.unwrap();
    let list = client.list(&events, Some("default"), "").await.unwrap();
    assert!(list.items.iter().any(|e| e["spec"]["reason"] == "NamespaceCreated"), "{:?}", list.items);
    // `corral get events` tabulates them like kubectl.
    let out =
        Command::new(env!("CARGO_BIN_EXE_corral")).args(["get", "events"]).env("CORRAL_SERVER", &url).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("TYPE") && header.contains("REASON") && header.contains("OBJECT"), "{table}");
    assert!(table.lines().any(|l| l.contains("NamespaceCreated") && l.contains("tenant/payments")), "{table}");
    // `corral describe` shows the events recorded about the tenant.
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["describe", "tenant", "payments"])
        .env("CORRAL_SERVER", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Events:") && text.contains("NamespaceCreated"), "{text}");
    assert!(text.contains("tenants.example.corral.dev/cleanup"), "finalizer shown: {text}");

    // The controller's own metrics.
    let text = reqwest::get(format!("http://{metrics_addr}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"corral_controller_reconciles_total{controller="tenant-controller"}"#), "{text}");
    assert!(text.contains("corral_controller_reconcile_duration_seconds_bucket"), "{text}");
    assert!(text.contains("corral_controller_queue_depth"), "{text}");

    // An edit of the tenant reaches the ConfigMap.
    client.patch_merge(&tenants, None, "payments", &json!({"spec": {"settings": {"tier": "platinum"}}})).await.unwrap();
    eventually("edit followed", async || {
        client
            .get(&cms, Some("tenant-payments"), "tenant-settings")
            .await
            .unwrap()
            .filter(|c| c["spec"]["data"]["tier"] == "platinum")
    })
    .await;

    // Deletion: the finalizer holds the tenant until its namespace is removed.
    client.delete(&tenants, None, "payments").await.unwrap();
    eventually("tenant gone", async || client.get(&tenants, None, "payments").await.unwrap().is_none().then_some(()))
        .await;
    let ns: Option<Value> = client.get(&nss, None, "tenant-payments").await.unwrap();
    assert!(
        ns.as_ref().is_none_or(|n| n["metadata"]["deletionTimestamp"].is_string()),
        "namespace left behind: {ns:?}"
    );
    server.stop().await;
}
