//! The reconciler of the kube-rs example: for every ConfigMap labelled `mirror=true`,
//! a ConfigMap `NAME-mirror` beside it with the same data, owned by it (so Corral's
//! garbage collector removes the copy with the original).
//!
//! Only kube-rs is used: `Api<DynamicObject>` for a Corral kind described by an
//! `ApiResource` (Corral's kinds have no `k8s-openapi` types), `Controller` for the
//! list, watch and reconcile loop, server-side apply for the write.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

/// The field manager the controller applies as.
pub const MANAGER: &str = "kube-rs-mirror";
/// The label that asks for a mirror.
pub const LABEL: &str = "mirror=true";

/// Corral's ConfigMap kind, as kube-rs addresses it.
pub fn config_maps() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("corral.dev", "v1", "ConfigMap"), "configmaps")
}

/// The name of `source`'s mirror.
pub fn mirror_name(source: &str) -> String {
    format!("{source}-mirror")
}

struct Ctx {
    client: Client,
    resource: ApiResource,
}

/// Runs the controller on `namespace` until the watch streams end (they don't,
/// unless the client is dropped): each reconcile is logged.
pub async fn run(client: Client, namespace: &str) {
    let resource = config_maps();
    let sources: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let ctx = Arc::new(Ctx { client, resource: resource.clone() });
    Controller::new_with(sources.clone(), watcher::Config::default().labels(LABEL), resource.clone())
        // A mirror changed or deleted by hand brings its source back to the queue.
        .owns_with(sources, resource, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            match outcome {
                Ok((object, _)) => tracing::info!(configmap = %object.name, "mirrored"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

/// Makes `source`'s mirror hold its data, whatever event brought it here.
async fn reconcile(source: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let namespace = source.namespace().unwrap_or_else(|| "default".into());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &ctx.resource);
    let name = mirror_name(&source.name_any());
    let data = source.data.pointer("/spec/data").cloned().unwrap_or_else(|| json!({}));
    let mut mirror = DynamicObject::new(&name, &ctx.resource).within(&namespace).data(json!({"spec": {"data": data}}));
    mirror.metadata.owner_references = source.controller_owner_ref(&ctx.resource).map(|r| vec![r]);
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&mirror)).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_source: Arc<DynamicObject>, error: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(%error, "will retry");
    Action::requeue(Duration::from_secs(2))
}
