//! `POST /apis/corral.dev/v1/namespaces/NS/syncs/NAME/trigger`: asks the Sync
//! controller to sync now, by setting the Sync's
//! [`REQUESTED_AT_ANNOTATION`](corral_api::kinds::sync::REQUESTED_AT_ANNOTATION).
//!
//! Two ways in. With a credential of the API, the request is authorized by RBAC as
//! the verb `update` on `syncs/trigger` (a subresource of its own, so that a role may
//! grant triggering without granting changes to the Sync). Without one, a git host's
//! push notification presents the Sync's webhook token (`Authorization: Bearer
//! TOKEN`, whose SHA-256 the Sync's `spec.webhook.tokenSha256` holds); that token is
//! good for this one route of this one Sync and authenticates nothing else. A wrong
//! token and a Sync that does not exist (or has no webhook) answer the same 401, so
//! an anonymous caller learns nothing of which Syncs exist.
//!
//! Either way, the annotation is written by the server itself, whatever else the
//! caller may change. The body (a push payload, maybe large) is ignored: at most
//! [`MAX_TRIGGER_BODY`] of it is read.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_api::kinds::sync::REQUESTED_AT_ANNOTATION;
use corral_store::{Error as StoreError, Key};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use std::sync::Arc;

use super::AppState;
use super::auth::Identity;
use super::auth::rbac::AllowedBy;
use super::error::{ApiError, ApiResult};
use super::path::{Parts, Target};
use super::resources::Ctx;

/// How the audit log names the webhook of Sync NAME in namespace NS:
/// `system:sync-webhook:NS:NAME`.
pub const WEBHOOK_USER_PREFIX: &str = "system:sync-webhook:";

/// Most of a trigger's body read (and then ignored).
pub const MAX_TRIGGER_BODY: usize = 1 << 20;

/// Attempts at writing the annotation while others write the Sync.
const MAX_ATTEMPTS: usize = 8;

/// Whether `method` and `path` ask for a Sync's trigger.
pub(crate) fn is_trigger(method: &Method, path: &str) -> bool {
    *method == Method::POST && sync_of(path).is_some()
}

/// The namespace and name of the Sync a trigger path names.
fn sync_of(path: &str) -> Option<(&str, &str)> {
    match super::path::parse_parts(path.strip_prefix("/apis/")?)? {
        Parts::Resource { group, plural, namespace: Some(ns), name: Some(name), target: Target::Trigger, .. }
            if group == corral_api::GROUP && plural == "syncs" =>
        {
            Some((ns, name))
        }
        _ => None,
    }
}

/// A trigger authenticated (and authorized) as a user of the API.
pub(super) async fn trigger(ctx: &Ctx, body: Body) -> ApiResult<Response> {
    if !(ctx.info.group == corral_api::GROUP && ctx.info.plural == "syncs") {
        return Err(ApiError::not_found(format!(
            "{} cannot be triggered; only Syncs can (POST …/namespaces/{{ns}}/syncs/{{name}}/trigger)",
            ctx.info.kind
        )));
    }
    drain(body).await;
    let key = ctx.key(&ctx.name);
    match requested(&ctx.state, &key).await? {
        Some(at) => Ok(accepted(&at)),
        None => Err(ApiError::object_not_found(&ctx.info, &ctx.name)),
    }
}

/// A trigger without a credential of the API: only the Sync's webhook token opens it.
pub(crate) async fn webhook(
    state: AppState,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let attrs = super::auth::attributes(&method, &uri);
    let refused = || {
        ApiError::unauthorized(
            "this request carries no valid credential: send `Authorization: Bearer TOKEN` with a token of the API, \
             or the Sync's webhook token",
        )
    };
    let answer = async {
        let (ns, name) = sync_of(uri.path()).ok_or_else(refused)?;
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(refused)?;
        let key = Key::namespaced(format!("{}/syncs", corral_api::GROUP), ns, name);
        let live = state.store.get(&key).await.map_err(ApiError::from)?;
        let expected = live
            .and_then(|o| o.value().ok())
            .and_then(|v| v.pointer("/spec/webhook/tokenSha256").and_then(Value::as_str).map(str::to_ascii_lowercase))
            .filter(|h| !h.is_empty());
        let presented = hex(&Sha256::digest(token.as_bytes()));
        // Compared in constant time; a Sync without a webhook compares against a
        // digest no token has, so that it costs the same.
        let expected = expected.unwrap_or_else(|| "-".repeat(presented.len()));
        if !corral_client::credentials::constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
            return Err(refused());
        }
        drain(body).await;
        match requested(&state, &key).await? {
            Some(at) => Ok(accepted(&at)),
            // Deleted since the token was checked.
            None => Err(refused()),
        }
    };
    let response = match answer.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let code = response.status().as_u16();
    if response.status().is_success() {
        // Recorded as the webhook of that Sync: no user of the API asked.
        let (ns, name) = sync_of(uri.path()).unwrap_or_default();
        let who = Identity { user: format!("{WEBHOOK_USER_PREFIX}{ns}:{name}"), groups: Vec::new() };
        state.auth.audit.record(Some(Arc::new(who)), attrs, code, Some(AllowedBy::WebhookToken));
    } else {
        state.auth.audit.record(None, attrs, code, None);
    }
    response
}

/// Sets the annotation to now (RFC 3339, nanoseconds); `None` when the Sync is gone.
async fn requested(state: &AppState, key: &Key) -> ApiResult<Option<String>> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(live) = state.store.get(key).await.map_err(ApiError::from)? else { return Ok(None) };
        let mut v = live.value().map_err(ApiError::from)?;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Err(ApiError::internal(format!("{key}: metadata is not an object")));
        };
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        let Some(annotations) = annotations.as_object_mut() else {
            return Err(ApiError::internal(format!("{key}: metadata.annotations is not an object")));
        };
        annotations.insert(REQUESTED_AT_ANNOTATION.into(), Value::String(at.clone()));
        match state.store.update(key.clone(), v, Some(live.revision)).await {
            Ok(_) => return Ok(Some(at)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(ApiError::from(e)),
        }
    }
    Err(ApiError::conflict("the Sync kept changing while the trigger was recorded; retry"))
}

fn accepted(at: &str) -> Response {
    super::body::json(StatusCode::ACCEPTED, &json!({"requestedAt": at}))
}

/// Reads and drops up to [`MAX_TRIGGER_BODY`] of the body.
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        total = total.saturating_add(chunk.len());
        if total >= MAX_TRIGGER_BODY {
            break;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_syncs_trigger_path_is_a_trigger() {
        assert!(is_trigger(&Method::POST, "/apis/corral.dev/v1/namespaces/ns/syncs/s/trigger"));
        assert!(!is_trigger(&Method::GET, "/apis/corral.dev/v1/namespaces/ns/syncs/s/trigger"));
        assert!(!is_trigger(&Method::POST, "/apis/corral.dev/v1/namespaces/ns/tasks/s/trigger"));
        assert!(!is_trigger(&Method::POST, "/apis/corral.dev/v1/namespaces/ns/syncs/s"));
        assert!(!is_trigger(&Method::POST, "/apis/other.io/v1/namespaces/ns/syncs/s/trigger"));
    }
}
