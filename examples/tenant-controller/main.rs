//! tenant-controller: a custom controller built on `corral-runtime`, run as its own
//! process against a Corral server.
//!
//! For every `Tenant` (a cluster-scoped custom kind whose Rust type is in `tenant.rs`;
//! its definition, `crd.yaml`, is generated from that type) it provisions a namespace
//! `tenant-<name>` and, in it, a ConfigMap `tenant-settings` holding the tenant's
//! settings; both are owned by the tenant. It reports progress in the tenant's status
//! and through Events, and, through a finalizer, removes the namespace before the
//! tenant disappears. The runtime's `Manager` runs it: leader election (with
//! `--leader-elect`), `/metrics`, shutdown.
//!
//! ```sh
//! corral apply -f examples/tenant-controller/crd.yaml        # or: … -- crd | corral apply -f -
//! corral apply -f examples/tenant-controller/rbac.yaml       # its own least-privilege identity
//! TOKEN=$(corral token create --service-account corral-system/tenant-controller --ttl 0)
//! cargo run --example tenant-controller -- --token "$TOKEN" [--server URL] [--metrics-listen 127.0.0.1:9100]
//! corral apply -f examples/tenant-controller/tenant.yaml
//! corral get tenants; corral get cm -n tenant-payments
//! ```

mod tenant;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use corral_api::kinds::namespace::{Namespace, NamespaceSpec};
use corral_api::kinds::{ConfigMap, ConfigMapSpec};
use corral_api::{ApiObject, Resource};
use corral_client::{Api, Client, DeleteParams, ListParams};
use corral_runtime::finalizer::Event;
use corral_runtime::{
    Action, CancellationToken, Controller, ControllerMetrics, EventType, Manager, ManagerConfig, Recorder, Runnable,
    finalizer, owner_reference,
};
use prometheus_client::registry::Registry;

use tenant::{Tenant, TenantStatus};

const NAME: &str = "tenant-controller";
const FINALIZER: &str = "tenants.example.corral.dev/cleanup";

struct Ctx {
    tenants: Api<Tenant>,
    namespaces: Api<Namespace>,
    client: Client,
    recorder: Recorder,
}

async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Ctx>) -> anyhow::Result<Action> {
    let c = ctx.clone();
    finalizer(&ctx.tenants, FINALIZER, tenant, |event| async move {
        match event {
            Event::Apply(t) => provision(&t, &c).await,
            Event::Cleanup(t) => deprovision(&t, &c).await,
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn provision(t: &Tenant, ctx: &Ctx) -> anyhow::Result<Action> {
    let name = t.name();
    let ns = format!("tenant-{name}");
    let owner: Vec<_> = owner_reference(t, true).into_iter().collect();
    if ctx.namespaces.get_opt(&ns).await?.is_none() {
        let mut namespace = Namespace::new(&ns, NamespaceSpec {});
        namespace.metadata.labels.insert("tenant".into(), name.to_string());
        namespace.metadata.owner_references = owner.clone();
        ctx.namespaces.create(&namespace).await?;
        ctx.recorder.publish(t, EventType::Normal, "NamespaceCreated", &format!("created namespace {ns}")).await?;
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let data = t.spec.settings.clone();
    match configmaps.get_opt("tenant-settings").await? {
        None => {
            let mut cm = ConfigMap::namespaced(&ns, "tenant-settings", ConfigMapSpec { data });
            cm.metadata.labels.insert("tenant".into(), name.to_string());
            cm.metadata.owner_references = owner;
            configmaps.create(&cm).await?;
        }
        Some(mut cm) if cm.spec.data != data => {
            cm.spec.data = data;
            configmaps.update(&cm).await?;
            ctx.recorder.publish(t, EventType::Normal, "SettingsUpdated", "tenant-settings updated").await?;
        }
        Some(_) => {}
    }
    let status =
        TenantStatus { phase: Some("Ready".into()), namespace: Some(ns), observed_generation: t.metadata.generation };
    if t.status.as_ref() != Some(&status) {
        let mut updated = t.clone();
        updated.status = Some(status);
        ctx.tenants.update_status(&updated).await?;
    }
    // Resync now and then, to repair drift nobody told us about.
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn deprovision(t: &Tenant, ctx: &Ctx) -> anyhow::Result<Action> {
    let ns = format!("tenant-{}", t.name());
    match ctx.namespaces.delete(&ns, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.recorder.publish(t, EventType::Normal, "Deprovisioned", &format!("deleted namespace {ns}")).await?;
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// The controller, for the runtime's manager.
struct TenantController {
    metrics: Arc<ControllerMetrics>,
}

#[async_trait]
impl Runnable for TenantController {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry, NAME);
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        // The definition may be applied after we start: until it is, fail, and the
        // manager tries again with a growing delay.
        if let Err(e) = client.kind(Tenant::PLURAL).await {
            tracing::info!(error = %e, "waiting for the Tenant kind (apply examples/tenant-controller/crd.yaml)");
            return Err(e.into());
        }
        let ctx = Arc::new(Ctx {
            tenants: Api::all(client.clone()),
            namespaces: Api::all(client.clone()),
            recorder: Recorder::new(client.clone(), NAME),
            client: client.clone(),
        });
        Controller::new(Api::<Tenant>::all(client.clone()), ListParams::default())
            .owns(Api::<ConfigMap>::all(client.clone()), ListParams::default().labels("tenant"))
            .owns(Api::<Namespace>::all(client), ListParams::default().labels("tenant"))
            .concurrency(2)
            .with_metrics(self.metrics.clone())
            .run(
                reconcile,
                |_t: &Arc<Tenant>, _e: &anyhow::Error, _c: &Arc<Ctx>| Action::requeue(Duration::from_secs(1)),
                ctx,
                shutdown,
            )
            .await;
        Ok(())
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("crd") {
        // The definition, from the type: what crd.yaml holds.
        print!("{}", serde_norway::to_string(&Tenant::custom_resource_definition())?);
        return Ok(());
    }
    corral_telemetry::logging::init("info");
    // As the CLI: the configuration file (~/.corral/config), overridden by flags and
    // the environment.
    let mut config = corral_client::Config::infer()?.unwrap_or_default();
    if let Some(server) = arg("--server").or_else(|| std::env::var("CORRAL_SERVER").ok()) {
        config.server = server;
    }
    if config.server.is_empty() {
        config.server = "http://127.0.0.1:7070".to_string();
    }
    if let Some(token) = arg("--token").or_else(|| std::env::var("CORRAL_TOKEN").ok()) {
        config.token = Some(token);
    }
    let client = Client::from_config(&config)?;
    let identity = arg("--leader-elect");
    let config = ManagerConfig {
        leader_election: identity.is_some(),
        ..ManagerConfig::new(NAME, identity.as_deref().unwrap_or(NAME))
    };
    let mut manager = Manager::new(client, config);
    manager.add(Arc::new(TenantController { metrics: Arc::default() }));
    let shutdown = CancellationToken::new();
    if let Some(addr) = arg("--metrics-listen") {
        let listener =
            tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
        let router = corral_runtime::exposition::router(manager.registry());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::warn!(error = %e, "metrics server stopped");
            }
        });
    }
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    manager.run(shutdown).await;
    Ok(())
}
