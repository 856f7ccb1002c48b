//! `…/{name}/scale`: a scalable kind's counts as an `autoscaling/v1` `Scale`, as
//! Kubernetes serves it for Deployments, so that `kubectl scale` and autoscalers work
//! on services unchanged. Reading answers the desired and observed counts; writing
//! (PUT, or a merge or JSON patch of the `Scale`) sets only the desired count on the
//! object, with the object's resourceVersion as precondition.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use corral_api::FieldError;
use corral_api::registry::{ScaleSubresource, json_path_pointer};
use corral_store::Error as StoreError;
use serde_json::{Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::patch::DocumentPatch;
use super::resources::Ctx;

/// Attempts before a patch that keeps losing races gives up with 409.
const MAX_ATTEMPTS: usize = 16;

/// Serves GET, PUT and PATCH on an object's scale.
pub(super) async fn serve(ctx: &Ctx, method: &Method, headers: &HeaderMap, bytes: Bytes) -> ApiResult<Response> {
    let Some(paths) = ctx.info.subresources.scale.clone() else {
        return Err(ApiError::not_found(format!(
            "{} has no scale subresource; services do (…/namespaces/{{ns}}/services/{{name}}/scale)",
            ctx.info.kind
        )));
    };
    let name = ctx.name.as_str();
    for _ in 0..MAX_ATTEMPTS {
        let live = ctx.live(name).await?;
        let object = live.value().map_err(ctx.store_error(name))?;
        let current = scale_of(ctx, &paths, &object);
        let asked = match *method {
            Method::GET | Method::HEAD => return Ok(body::json(StatusCode::OK, &current)),
            Method::PUT => body::json_object(&bytes)?,
            Method::PATCH => DocumentPatch::read(
                headers,
                &bytes,
                "a scale is patched with application/merge-patch+json or application/json-patch+json",
            )?
            .apply(ctx, &current)?,
            _ => return Err(ApiError::method_not_allowed(method, &format!("{}/scale", ctx.info.plural))),
        };
        let replicas = replicas(ctx, &asked)?;
        // A resourceVersion the client sent is its precondition; otherwise the one read.
        let asked_rv = asked.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty());
        let expected = match asked_rv {
            Some(rv) => rv
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("metadata.resourceVersion {rv:?} is not a revision")))?,
            None => live.revision,
        };
        let mut updated = object.clone();
        set(&mut updated, &paths.spec_replicas_path, json!(replicas))?;
        ctx.validate(&updated).await?;
        if ctx.dry_run {
            return Ok(body::json(StatusCode::OK, &scale_of(ctx, &paths, &updated)));
        }
        match ctx.state.store.update(ctx.key(name), updated, Some(expected)).await {
            Ok(outcome) => {
                let written = outcome.object().value().map_err(ctx.store_error(name))?;
                return Ok(body::json(StatusCode::OK, &scale_of(ctx, &paths, &written)));
            }
            Err(StoreError::Conflict { .. }) if asked_rv.is_none() => continue,
            Err(e) => return Err(ApiError::from_store(e, &ctx.info, name)),
        }
    }
    Err(ApiError::conflict(format!(
        "{} {name:?} kept changing while it was scaled ({MAX_ATTEMPTS} attempts); retry",
        ctx.info.kind
    )))
}

/// The `Scale` of `object`: its name, uid and revision, desired and observed counts.
fn scale_of(ctx: &Ctx, paths: &ScaleSubresource, object: &Value) -> Value {
    let count = |path: &str| json_path_pointer(path).and_then(|p| object.pointer(&p)).cloned().unwrap_or(json!(0));
    let meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |f: &str| meta.get(f).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": ctx.namespace,
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": count(&paths.spec_replicas_path)},
        "status": {"replicas": count(&paths.status_replicas_path)},
    })
}

/// `spec.replicas` of a `Scale`: a whole number, at least 0.
fn replicas(ctx: &Ctx, scale: &Value) -> ApiResult<u64> {
    scale.pointer("/spec/replicas").and_then(Value::as_u64).ok_or_else(|| {
        ApiError::invalid(
            &ctx.info,
            &ctx.name,
            vec![FieldError::new("spec.replicas", "must be a whole number, 0 or more")],
        )
    })
}

/// Sets the field at JSONPath `path` (creating maps on the way).
fn set(object: &mut Value, path: &str, value: Value) -> ApiResult<()> {
    let pointer = json_path_pointer(path)
        .ok_or_else(|| ApiError::internal(format!("the kind's scale path {path:?} is not a JSONPath")))?;
    let mut at = object;
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let map = at
            .as_object_mut()
            .ok_or_else(|| ApiError::internal(format!("{path}: a parent of the count is not a map")))?;
        if i + 1 == segments.len() {
            map.insert((*seg).to_string(), value);
            return Ok(());
        }
        at = map.entry((*seg).to_string()).or_insert_with(|| json!({}));
    }
    Ok(())
}
