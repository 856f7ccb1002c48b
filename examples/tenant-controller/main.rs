//! tenant-controller: a custom controller built on `corral-runtime`, run as its
//! own process against a Corral server.
//!
//! For every `Tenant` (a cluster-scoped custom kind, see `crd.yaml`) it provisions a
//! namespace `tenant-<name>` and, in it, a ConfigMap `tenant-settings` holding the
//! tenant's settings; both are owned by the tenant. It reports progress in the
//! tenant's status and through Events, and, through a finalizer, removes the namespace
//! before the tenant disappears.
//!
//! ```sh
//! corral apply -f examples/tenant-controller/crd.yaml
//! cargo run --example tenant-controller -- --server http://127.0.0.1:7070 [--metrics-listen 127.0.0.1:9100]
//! corral apply -f examples/tenant-controller/tenant.yaml
//! corral get tenants; corral get cm -n tenant-payments
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use corral_api::KindInfo;
use corral_runtime::finalizer::Event;
use corral_runtime::{Action, Client, Controller, EventType, LeaderConfig, LeaderElector, Recorder, finalizer};
use serde_json::{Value, json};

const FINALIZER: &str = "tenants.example.corral.dev/cleanup";

struct Ctx {
    client: Client,
    tenants: Arc<KindInfo>,
    namespaces: Arc<KindInfo>,
    configmaps: Arc<KindInfo>,
    recorder: Recorder,
}

fn owner_ref(tenant: &Value) -> Value {
    json!(corral_runtime::owner_reference(tenant, true).into_iter().collect::<Vec<_>>())
}

async fn reconcile(tenant: Arc<Value>, ctx: Arc<Ctx>) -> anyhow::Result<Action> {
    let c = ctx.clone();
    finalizer(&ctx.client, &ctx.tenants, FINALIZER, tenant, |event| async move {
        match event {
            Event::Apply(t) => provision(&t, &c).await,
            Event::Cleanup(t) => deprovision(&t, &c).await,
        }
    })
    .await
    .map_err(|e| anyhow!("{e}"))
}

async fn provision(t: &Value, ctx: &Ctx) -> anyhow::Result<Action> {
    let name = t["metadata"]["name"].as_str().context("tenant without a name")?;
    let ns = format!("tenant-{name}");
    if ctx.client.get(&ctx.namespaces, None, &ns).await?.is_none() {
        let namespace = json!({"apiVersion": ctx.namespaces.api_version(), "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"tenant": name}, "ownerReferences": owner_ref(t)}});
        ctx.client.create(&ctx.namespaces, &namespace).await?;
        ctx.recorder.publish(t, EventType::Normal, "NamespaceCreated", &format!("created namespace {ns}")).await?;
    }
    let data = t["spec"]["settings"].clone();
    let data = if data.is_object() { data } else { json!({}) };
    match ctx.client.get(&ctx.configmaps, Some(&ns), "tenant-settings").await? {
        None => {
            let cm = json!({"apiVersion": ctx.configmaps.api_version(), "kind": "ConfigMap",
                "metadata": {"name": "tenant-settings", "namespace": ns, "labels": {"tenant": name},
                             "ownerReferences": owner_ref(t)},
                "spec": {"data": data}});
            ctx.client.create(&ctx.configmaps, &cm).await?;
        }
        Some(mut cm) if cm["spec"]["data"] != data => {
            cm["spec"]["data"] = data;
            ctx.client.update(&ctx.configmaps, &cm).await?;
            ctx.recorder.publish(t, EventType::Normal, "SettingsUpdated", "tenant-settings updated").await?;
        }
        Some(_) => {}
    }
    let status = json!({"phase": "Ready", "namespace": ns, "observedGeneration": t["metadata"]["generation"]});
    if t["status"] != status {
        let mut updated = t.clone();
        updated["status"] = status;
        ctx.client.update_status(&ctx.tenants, &updated).await?;
    }
    // Resync now and then, to repair drift nobody told us about.
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn deprovision(t: &Value, ctx: &Ctx) -> anyhow::Result<Action> {
    let name = t["metadata"]["name"].as_str().context("tenant without a name")?;
    let ns = format!("tenant-{name}");
    if ctx.client.delete(&ctx.namespaces, None, &ns).await?.is_some() {
        ctx.recorder.publish(t, EventType::Normal, "Deprovisioned", &format!("deleted namespace {ns}")).await?;
    }
    Ok(Action::await_change())
}

/// Serves the controller's metrics at `http://ADDR/metrics` (Prometheus text).
async fn serve_metrics(addr: &str, controller: &Controller) -> anyhow::Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    controller.metrics().register(&mut registry, "tenant-controller");
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (axum::http::StatusCode::OK, text),
                    Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let server = arg("--server")
        .or_else(|| std::env::var("CORRAL_SERVER").ok())
        .unwrap_or_else(|| "http://127.0.0.1:7070".to_string());
    let client = Client::http(&server)?;
    // The CRD may be applied after we start: wait for the kind, bounded.
    let mut tenants = None;
    for _ in 0..600 {
        match client.kind("tenants").await {
            Ok(k) => {
                tenants = Some(k);
                break;
            }
            Err(e) => {
                tracing::info!(error = %e, "waiting for the Tenant kind (apply examples/tenant-controller/crd.yaml)")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tenants = tenants.context("the Tenant kind never appeared: apply examples/tenant-controller/crd.yaml")?;
    let ctx = Arc::new(Ctx {
        namespaces: client.kind("namespaces").await?,
        configmaps: client.kind("configmaps").await?,
        recorder: Recorder::new(client.clone(), "tenant-controller"),
        client: client.clone(),
        tenants: tenants.clone(),
    });
    let controller = Controller::new(client.clone(), tenants, None)
        .owns(ctx.configmaps.clone())
        .owns(ctx.namespaces.clone())
        .concurrency(2);
    if let Some(addr) = arg("--metrics-listen") {
        serve_metrics(&addr, &controller).await?;
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let run = controller.run(
        reconcile,
        |_t: &Arc<Value>, _e: &anyhow::Error, _c: &Arc<Ctx>| Action::requeue(Duration::from_secs(1)),
        ctx,
        shutdown,
    );
    if let Some(identity) = arg("--leader-elect") {
        let elector = LeaderElector::new(client, LeaderConfig::new("default", "tenant-controller", &identity));
        elector.run(run).await?;
    } else {
        run.await;
    }
    Ok(())
}
