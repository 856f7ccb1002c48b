//! The node restriction, as Kubernetes' Node authorizer and NodeRestriction admission:
//! RBAC's `node` role lets nodes touch nodes, leases, tasks and events at all; this
//! narrows it to a node's own — its Node and Lease, the tasks and volumes bound to it
//! (their finalizers and status, never their spec), and Events about those.

use axum::http::Method;
use corral_api::kinds::node::NODE_LEASE_NAMESPACE;
use corral_api::kinds::task::TaskSpec;
use corral_api::kinds::volume::VolumeSpec;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::path::Target;
use crate::resources::Ctx;

fn refuse(node: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::forbidden(format!("node {node:?} may not {what}: a node acts only on its own objects"))
}

/// Checks a node's request against the path, before the handler runs.
pub(crate) async fn check_request(
    ctx: &Ctx,
    node: &str,
    target: Target,
    method: &Method,
    field_selector: Option<&str>,
) -> ApiResult<()> {
    let plural = ctx.info.plural.as_str();
    if ctx.info.group != corral_api::GROUP {
        return Err(refuse(node, format_args!("touch {plural}")));
    }
    let reading = *method == Method::GET || *method == Method::HEAD;
    match (plural, target) {
        ("tasks" | "volumes", Target::Collection) if reading => {
            let own = format!("spec.nodeName={node}");
            let selects_own = field_selector.is_some_and(|s| s.split(',').any(|t| t.trim() == own));
            if !selects_own {
                return Err(refuse(node, format_args!("list {plural} without the field selector {own}")));
            }
        }
        ("tasks" | "volumes", Target::Collection) => return Err(refuse(node, format_args!("create {plural}"))),
        ("tasks" | "volumes", _) => {
            // Missing objects fall through to the handler's 404.
            if let Ok(live) = ctx.live(&ctx.name).await
                && bound_node(&live.json) != Some(node)
            {
                let kind = &ctx.info.kind;
                return Err(refuse(node, format_args!("touch {kind} {:?}, which is not bound to it", ctx.name)));
            }
        }
        ("nodes", Target::TaskStatus) if ctx.name != node => {
            return Err(refuse(node, format_args!("report the tasks of node {:?}", ctx.name)));
        }
        ("nodes" | "leases", Target::Object | Target::Status) if !reading && ctx.name != node => {
            return Err(refuse(node, format_args!("change {plural} {:?}", ctx.name)));
        }
        ("leases", _) if ctx.namespace.as_deref().is_some_and(|ns| ns != NODE_LEASE_NAMESPACE) => {
            return Err(refuse(node, format_args!("use leases outside {NODE_LEASE_NAMESPACE}")));
        }
        _ => {}
    }
    Ok(())
}

/// `spec.nodeName` of a stored task or volume.
pub(crate) fn bound_node(task_json: &[u8]) -> Option<&str> {
    // Only the one field is needed: skip decoding the whole task.
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        spec: Option<Spec<'a>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Spec<'a> {
        #[serde(borrow)]
        node_name: Option<&'a str>,
    }
    serde_json::from_slice::<Head>(task_json).ok()?.spec?.node_name
}

/// Checks an object a node writes, before it is stored.
pub(crate) async fn admit(ctx: &Ctx, node: &str, object: &Value) -> ApiResult<()> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    match ctx.info.plural.as_str() {
        "nodes" | "leases" if name != node => Err(refuse(node, format_args!("write {} {name:?}", ctx.info.kind))),
        "tasks" => {
            let live = ctx.live(name).await?;
            let live: Value = serde_json::from_slice(&live.json).map_err(ApiError::internal)?;
            // Compared as typed specs: a client may spell defaults differently.
            let spec = |v: &Value| serde_json::from_value::<TaskSpec>(v.get("spec").cloned().unwrap_or_default()).ok();
            if spec(&live) != spec(object) {
                return Err(refuse(node, "change a task's spec (only its finalizers and status)"));
            }
            Ok(())
        }
        "volumes" => {
            let live = ctx.live(name).await?;
            let live: Value = serde_json::from_slice(&live.json).map_err(ApiError::internal)?;
            let spec =
                |v: &Value| serde_json::from_value::<VolumeSpec>(v.get("spec").cloned().unwrap_or_default()).ok();
            if spec(&live) != spec(object) {
                return Err(refuse(node, "change a volume's spec (only its finalizers and status)"));
            }
            Ok(())
        }
        "events" => {
            let involved = object.pointer("/spec/involvedObject").cloned().unwrap_or_default();
            let kind = involved.get("kind").and_then(Value::as_str).unwrap_or_default();
            let about = involved.get("name").and_then(Value::as_str).unwrap_or_default();
            let ours = match kind {
                "Node" => about == node,
                "Task" => {
                    let ns = involved.get("namespace").and_then(Value::as_str).or(ctx.namespace.as_deref());
                    match ns {
                        Some(ns) => {
                            let key = corral_store::Key::namespaced(format!("{}/tasks", corral_api::GROUP), ns, about);
                            matches!(ctx.state.store.get(&key).await, Ok(Some(t)) if bound_node(&t.json) == Some(node))
                        }
                        None => false,
                    }
                }
                _ => false,
            };
            if ours { Ok(()) } else { Err(refuse(node, format_args!("record events about {kind} {about:?}"))) }
        }
        _ => Ok(()),
    }
}
