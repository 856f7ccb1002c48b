//! DELETE of one object, with a propagation policy for its dependents
//! (`?propagationPolicy=` or a `DeleteOptions` body), and the namespace rules that
//! come with deletion.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use std::sync::Arc;

use corral_store::{DeleteOutcome, Error as StoreError, StoredObject};
use serde::Deserialize;
use serde_json::Value;

use super::body;
use super::error::{ApiError, ApiResult, StatusDetails};
use super::gc::{self, NAMESPACE_FINALIZER, Propagation};
use super::resources::Ctx;

/// The parts of a Kubernetes `DeleteOptions` body Corral understands; others (such as
/// `gracePeriodSeconds`) are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    propagation_policy: Option<String>,
    #[serde(default)]
    dry_run: Vec<String>,
}

fn parse_policy(s: &str) -> ApiResult<Propagation> {
    Propagation::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "propagationPolicy={s:?} is not supported; use Background (the default), Foreground or Orphan"
        ))
    })
}

/// The policy asked for by the query and the optional body; they must agree when
/// both are given.
fn policy(query: Option<&str>, body_bytes: &Bytes) -> ApiResult<(Propagation, bool)> {
    let options: DeleteOptions = if body_bytes.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body_bytes)
            .map_err(|e| ApiError::bad_request(format!("the DELETE body is not valid DeleteOptions: {e}")))?
    };
    let body_dry_run = match options.dry_run.as_slice() {
        [] => false,
        [all] if all == "All" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "dryRun={other:?} is not supported; the only value is [\"All\"]"
            )));
        }
    };
    let from_query = query.filter(|s| !s.is_empty()).map(parse_policy).transpose()?;
    let from_body = options.propagation_policy.as_deref().map(parse_policy).transpose()?;
    let p = match (from_query, from_body) {
        (Some(q), Some(b)) if q != b => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy is {} in the query but {} in the body; give one",
                q.as_str(),
                b.as_str()
            )));
        }
        (q, b) => q.or(b).unwrap_or_default(),
    };
    Ok((p, body_dry_run))
}

fn is_namespace(ctx: &Ctx) -> bool {
    ctx.info.group == corral_api::GROUP && ctx.info.kind == "Namespace"
}

/// Handles DELETE of `ctx.name`: 200 with the last state when it is gone at once,
/// 202 with the object (carrying `deletionTimestamp`) when finalizers keep it.
pub(super) async fn delete(ctx: &Ctx, policy_param: Option<&str>, body_bytes: Bytes) -> ApiResult<Response> {
    let name = ctx.name.as_str();
    let (policy, body_dry_run) = policy(policy_param, &body_bytes)?;
    let mut add: Vec<&str> = policy.finalizer().into_iter().collect();
    if is_namespace(ctx) && name == "default" {
        // Everything without a namespace lands in `default`; Kubernetes protects its
        // own the same way.
        return Err(forbidden("the namespace \"default\" may not be deleted".to_string(), "default"));
    }
    if is_namespace(ctx) {
        // A namespace is emptied before it goes, whatever the policy.
        add.push(NAMESPACE_FINALIZER);
    }
    if ctx.dry_run || body_dry_run {
        return dry_run(ctx, &add).await;
    }
    let key = ctx.key(name);
    let store = ctx.state.store.as_ref();
    match gc::mark_for_deletion(store, &key, None, &add).await.map_err(ctx.store_error(name))? {
        DeleteOutcome::Deleted(o) => Ok(body::raw_json(StatusCode::OK, o.json.clone())),
        DeleteOutcome::Finalizing(o) if is_namespace(ctx) => {
            Ok(body::raw_json(StatusCode::ACCEPTED, terminating(ctx, o).await?.json.clone()))
        }
        DeleteOutcome::Finalizing(o) => Ok(body::raw_json(StatusCode::ACCEPTED, o.json.clone())),
    }
}

/// Sets the phase of the namespace `o` (being deleted) to `Terminating`; the collector
/// may do so first, which is as good.
async fn terminating(ctx: &Ctx, mut o: Arc<StoredObject>) -> ApiResult<Arc<StoredObject>> {
    let name = ctx.name.as_str();
    for _ in 0..8 {
        let mut v = o.value().map_err(ctx.store_error(name))?;
        if v.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
            return Ok(o);
        }
        gc::set_terminating(&mut v);
        match ctx.state.store.update_status(ctx.key(name), v, Some(o.revision)).await {
            Ok(out) => return Ok(out.object().clone()),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(ApiError::from_store(e, &ctx.info, name)),
        }
        match ctx.state.store.get(&ctx.key(name)).await.map_err(ctx.store_error(name))? {
            Some(fresh) => o = fresh,
            // Already emptied and gone: report the last state seen.
            None => return Ok(o),
        }
    }
    Ok(o)
}

/// What a delete would do, writing nothing.
async fn dry_run(ctx: &Ctx, add: &[&str]) -> ApiResult<Response> {
    let name = ctx.name.as_str();
    let live = ctx.live(name).await?;
    let mut value = live.value().map_err(ctx.store_error(name))?;
    let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(body::raw_json(StatusCode::OK, live.json.clone()));
    };
    if !meta.contains_key("deletionTimestamp") {
        let list = meta.entry("finalizers").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(a) = list.as_array_mut() {
            for f in add {
                if !a.iter().any(|x| x.as_str() == Some(f)) {
                    a.push(Value::String((*f).to_string()));
                }
            }
        }
        if list.as_array().is_some_and(Vec::is_empty) {
            meta.remove("finalizers");
        }
    }
    let finalizing = meta.get("finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    if !finalizing {
        return Ok(body::raw_json(StatusCode::OK, live.json.clone()));
    }
    meta.entry("deletionTimestamp").or_insert_with(|| Value::String(corral_api::meta::now_timestamp()));
    if is_namespace(ctx) {
        gc::set_terminating(&mut value);
    }
    Ok(body::json(StatusCode::ACCEPTED, &value))
}

/// The error for a create in namespace `ns` while it is being deleted.
pub(super) fn namespace_terminating(ns: &str) -> ApiError {
    forbidden(
        format!(
            "namespace {ns:?} is being deleted (Terminating): no new objects can be created in it; \
             wait until it is gone and create it again, or use another namespace"
        ),
        ns,
    )
}

/// 403 `Forbidden` about the namespace `ns`.
fn forbidden(message: String, ns: &str) -> ApiError {
    ApiError { code: StatusCode::FORBIDDEN, reason: "Forbidden", message, details: None }.with_details(StatusDetails {
        group: corral_api::GROUP.to_string(),
        kind: "Namespace".to_string(),
        name: ns.to_string(),
        causes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_comes_from_query_or_body_and_they_must_agree() {
        let empty = Bytes::new();
        assert_eq!(policy(None, &empty).ok(), Some((Propagation::Background, false)));
        assert_eq!(policy(Some("Orphan"), &empty).ok(), Some((Propagation::Orphan, false)));
        let body = Bytes::from_static(br#"{"kind":"DeleteOptions","propagationPolicy":"Foreground","dryRun":["All"]}"#);
        assert_eq!(policy(None, &body).ok(), Some((Propagation::Foreground, true)));
        assert!(policy(Some("Orphan"), &body).is_err());
        assert!(policy(Some("orphan"), &empty).is_err());
        assert!(policy(None, &Bytes::from_static(b"not json")).is_err());
    }
}
