//! The example custom controller (examples/tenant-controller) runs as its own process
//! against a real server: it provisions, reports status and events, follows edits, and
//! cleans up through its finalizer.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

mod api_support;
mod promtool_support;

#[path = "../examples/tenant-controller/tenant.rs"]
#[allow(dead_code)]
mod tenant;

use api_support::TestServer;
use corral_api::kinds::ConfigMap;
use corral_api::kinds::Event;
use corral_api::kinds::namespace::Namespace;
use corral_client::{Api, DeleteParams, ListParams, Patch, WriteParams};
use corral_testkit::eventually;
use serde_json::json;
use tenant::Tenant;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `corral args...` as the administrator of `server`; its stdout.
fn corral(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .env("CORRAL_SERVER", &server.base)
        .env("CORRAL_TOKEN", server.token())
        .env("CORRAL_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "corral {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_checked_in_definition_is_the_one_generated_from_the_rust_type() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/tenant-controller/crd.yaml");
    let checked_in: serde_json::Value = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let generated = serde_json::to_value(Tenant::custom_resource_definition()).unwrap();
    assert_eq!(
        checked_in,
        generated,
        "{} is stale: regenerate it with `cargo run --example tenant-controller -- crd`",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_controller_provisions_follows_edits_and_cleans_up() {
    let server = TestServer::start().await;
    let url = server.base.clone();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    corral(&server, &["apply", "-f", root.join("examples/tenant-controller/crd.yaml").to_str().unwrap()]);
    // The controller runs as its own service account, with only what rbac.yaml grants.
    corral(&server, &["apply", "-f", root.join("examples/tenant-controller/rbac.yaml").to_str().unwrap()]);
    let token = corral(&server, &["token", "create", "--service-account", "corral-system/tenant-controller"]);

    let exe = PathBuf::from(env!("CARGO_BIN_EXE_corral")).parent().unwrap().join("examples/tenant-controller");
    assert!(exe.exists(), "{} missing: cargo test builds examples", exe.display());
    // Its metrics on a port of its own choosing, which it logs: one picked beforehand
    // could be taken by a parallel test's process first, whose answers would then be
    // taken for ours.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let mut controller = Kill(
        Command::new(exe)
            .args(["--server", &url, "--token", token.trim(), "--metrics-listen", "127.0.0.1:0"])
            .env("CORRAL_CONFIG", "/nonexistent")
            .env("RUST_LOG", "warn,tenant_controller=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let metrics_addr = corral_testkit::wait_logged(&mut controller.0, &log, "serving /metrics addr=");
    corral(&server, &["apply", "-f", root.join("examples/tenant-controller/tenant.yaml").to_str().unwrap()]);

    let client = server.api();
    let tenants: Api<Tenant> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "tenant-payments");
    let nss: Api<Namespace> = Api::all(client.clone());
    let cm = eventually("settings provisioned", || async { cms.get_opt("tenant-settings").await.unwrap() }).await;
    assert_eq!(serde_json::to_value(&cm.spec.data).unwrap(), json!({"tier": "gold", "region": "eu-west"}));
    let t = eventually("status reported", || async {
        tenants
            .get_opt("payments")
            .await
            .unwrap()
            .filter(|t| t.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready"))
    })
    .await;
    assert_eq!(t.status.as_ref().and_then(|s| s.namespace.as_deref()), Some("tenant-payments"));
    assert_eq!(t.metadata.finalizers, ["tenants.example.corral.dev/cleanup"]);
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert!(list.items.iter().any(|e| e.spec.reason == "NamespaceCreated"), "{:?}", list.items);
    // `corral get events` tabulates them like kubectl.
    let table = corral(&server, &["get", "events"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("TYPE") && header.contains("REASON") && header.contains("OBJECT"), "{table}");
    assert!(table.lines().any(|l| l.contains("NamespaceCreated") && l.contains("tenant/payments")), "{table}");
    // The custom kind's own columns, from its definition.
    let table = corral(&server, &["get", "tenants"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("OWNER") && header.contains("PHASE") && header.contains("NAMESPACE"), "{table}");
    assert!(table.lines().any(|l| l.contains("payments-team@example.com") && l.contains("Ready")), "{table}");
    // `corral describe` shows the events recorded about the tenant.
    let text = corral(&server, &["describe", "tenant", "payments"]);
    assert!(text.contains("Events:") && text.contains("NamespaceCreated"), "{text}");
    assert!(text.contains("tenants.example.corral.dev/cleanup"), "finalizer shown: {text}");

    // The controller's own metrics, from the runtime's exposition, valid for promtool.
    let text = reqwest::get(format!("http://{metrics_addr}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"corral_controller_reconciles_total{controller="tenant-controller"}"#), "{text}");
    assert!(text.contains("corral_controller_reconcile_duration_seconds_bucket"), "{text}");
    assert!(text.contains("corral_controller_queue_depth"), "{text}");
    promtool_support::promtool_check(&text);

    // An edit of the tenant reaches the ConfigMap.
    let edit = json!({"spec": {"settings": {"tier": "platinum"}}});
    tenants.patch("payments", Patch::Merge(&edit), &WriteParams::default()).await.unwrap();
    eventually("edit followed", || async {
        cms.get_opt("tenant-settings")
            .await
            .unwrap()
            .filter(|c| c.spec.data.get("tier").map(String::as_str) == Some("platinum"))
    })
    .await;

    // Deletion: the finalizer holds the tenant until its namespace is removed.
    tenants.delete("payments", &DeleteParams::default()).await.unwrap();
    eventually("tenant gone", || async { tenants.get_opt("payments").await.unwrap().is_none().then_some(()) }).await;
    let ns = nss.get_opt("tenant-payments").await.unwrap();
    assert!(ns.as_ref().is_none_or(|n| n.metadata.deletion_timestamp.is_some()), "namespace left behind: {ns:?}");
    server.stop().await;
}
