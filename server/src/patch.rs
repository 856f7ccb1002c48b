//! PATCH: JSON patch (RFC 6902), merge patch (RFC 7386) and apply.
//!
//! Every kind works the same way: read the live object, compute the result, validate
//! it, and update with the live `resourceVersion` as precondition. A conflict means
//! someone wrote in between, so the patch is recomputed on the new state, a bounded
//! number of times. A patch that itself sets `metadata.resourceVersion` asked for
//! that precondition: its conflict is the client's to handle and is not retried.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use corral_api::FieldError;
use corral_api::apply::{
    Conflict, applied_by_others, conflicts, last_applied, manager_of, owned_only, prepare_manifest, take_over,
    three_way_merge,
};
use corral_api::validate::pointer_to_path;
use corral_store::{Error as StoreError, Key, StoredObject};
use serde_json::Value;

use super::body;
use super::error::{ApiError, ApiResult};
use super::patch_bounds::{
    JsonPatchFailure, MAX_JSON_PATCH_OPERATIONS, MAX_OBJECT_BYTES, apply_json_patch, json_size_within,
};
use super::resources::{Ctx, precondition, stale, would_be_created, would_be_updated};

/// Attempts before a patch that keeps losing races gives up with 409.
const MAX_ATTEMPTS: usize = 16;

enum Format {
    Json,
    Merge,
    ApplyJson,
    ApplyYaml,
}

/// The patch format a request's `Content-Type` names.
fn format(headers: &HeaderMap) -> ApiResult<Format> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(match content_type.as_str() {
        "application/json-patch+json" => Format::Json,
        "application/merge-patch+json" => Format::Merge,
        "application/apply-patch+json" => Format::ApplyJson,
        "application/apply-patch+yaml" => Format::ApplyYaml,
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "PATCH does not accept Content-Type {other:?}; use application/json-patch+json, \
                 application/merge-patch+json, application/apply-patch+json or application/apply-patch+yaml"
            )));
        }
    })
}

/// A JSON patch (RFC 6902) or a merge patch (RFC 7386), read from a request: it
/// applies to any document (an object, a subresource's view of one).
pub(super) enum DocumentPatch {
    Json(json_patch::Patch),
    Merge(Value),
}

impl DocumentPatch {
    /// The JSON or merge patch in `bytes`, as the request's `Content-Type` says; an
    /// apply patch is refused with `apply_refusal`, for paths that take none.
    pub(super) fn read(headers: &HeaderMap, bytes: &[u8], apply_refusal: &str) -> ApiResult<Self> {
        match format(headers)? {
            Format::Json => Self::json(bytes),
            Format::Merge => Ok(DocumentPatch::Merge(body::json_object(bytes)?)),
            Format::ApplyJson | Format::ApplyYaml => Err(ApiError::unsupported_media_type(apply_refusal)),
        }
    }

    fn json(bytes: &[u8]) -> ApiResult<Self> {
        body::check_depth(corral_api::nesting::check_json(bytes, corral_api::nesting::MAX_NESTING_DEPTH))?;
        let ops: json_patch::Patch = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("the body is not a JSON patch (RFC 6902): {e}")))?;
        Ok(DocumentPatch::Json(ops))
    }

    /// `doc` patched; a failed JSON patch operation names the field (as of `ctx`'s object).
    pub(super) fn apply(&self, ctx: &Ctx, doc: &Value) -> ApiResult<Value> {
        let mut doc = doc.clone();
        match self {
            DocumentPatch::Merge(merge) => json_patch::merge(&mut doc, merge),
            DocumentPatch::Json(ops) => apply_json_patch(&mut doc, &ops.0).map_err(|e| match e {
                JsonPatchFailure::TooManyOperations(n) => ApiError::entity_too_large(format!(
                    "a JSON patch may hold at most {MAX_JSON_PATCH_OPERATIONS} operations; this one has {n}"
                )),
                JsonPatchFailure::TooLarge { index, op } => ApiError::entity_too_large(format!(
                    "JSON patch operation {index} ({op}) would take the bytes copied by this patch past \
                     {MAX_OBJECT_BYTES}, the largest an object may be; nothing was changed"
                )),
                JsonPatchFailure::Failed { index, op, path, reason } => ApiError::invalid(
                    &ctx.info,
                    &ctx.name,
                    vec![FieldError::new(
                        pointer_to_path(&path),
                        format!("JSON patch operation {index} ({op}) failed: {reason}"),
                    )],
                ),
            })?,
        }
        Ok(doc)
    }
}

/// Serves PATCH on an object.
pub(super) async fn patch(
    ctx: &Ctx,
    headers: &HeaderMap,
    req_body: Body,
    content_length: Option<u64>,
) -> ApiResult<Response> {
    let format = format(headers)?;
    let bytes = body::read(req_body, content_length).await?;
    let patch = match format {
        Format::Json => DocumentPatch::json(&bytes)?,
        Format::Merge => DocumentPatch::Merge(body::json_object(&bytes)?),
        Format::ApplyJson => return apply(ctx, body::json_object(&bytes)?).await,
        Format::ApplyYaml => return apply(ctx, body::yaml_object(&bytes)?).await,
    };
    patch_existing(ctx, |live| patch.apply(ctx, live)).await
}

/// JSON and merge patches: the object must exist.
async fn patch_existing(ctx: &Ctx, compute: impl Fn(&Value) -> ApiResult<Value>) -> ApiResult<Response> {
    let name = ctx.name.as_str();
    let key = ctx.key(name);
    for _ in 0..MAX_ATTEMPTS {
        let live = ctx.live(name).await?;
        let live_value = live.value().map_err(ctx.store_error(name))?;
        let patched = compute(&live_value)?;
        if let Some(resp) = write(ctx, &key, &live, &live_value, patched).await? {
            return Ok(resp);
        }
    }
    Err(gave_up(ctx))
}

/// Apply: create when missing, otherwise a three-way merge with the last applied
/// manifest.
async fn apply(ctx: &Ctx, mut manifest: Value) -> ApiResult<Response> {
    let name = ctx.name.as_str();
    ctx.fill_identity(&mut manifest, Some(name))?;
    let manager = ctx.field_manager.as_deref();
    let desired = prepare_manifest(&manifest, manager);
    tracing::debug!(
        field_manager = ctx.field_manager.as_deref().unwrap_or("unknown"),
        kind = %ctx.info.kind,
        name,
        "apply"
    );
    let key = ctx.key(name);
    for _ in 0..MAX_ATTEMPTS {
        let live = ctx.state.store.get(&key).await.map_err(ctx.store_error(name))?;
        let Some(live) = live else {
            // The namespace first: admission judges tasks by their namespace's label.
            ctx.require_namespace().await?;
            ctx.validate(&desired).await?;
            if ctx.dry_run {
                return Ok(body::json(StatusCode::CREATED, &would_be_created(desired)));
            }
            let mut desired = desired.clone();
            super::resources::initial_status(&ctx.info, &mut desired);
            match ctx.state.store.create(key.clone(), desired).await {
                Ok(created) => return Ok(body::raw_json(StatusCode::CREATED, created.json.clone())),
                // Created by someone else since we looked: merge into theirs.
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(ApiError::from_store(e, &ctx.info, name)),
            }
        };
        let live_value = live.value().map_err(ctx.store_error(name))?;
        let merged = apply_onto(ctx, &desired, &live_value).await?;
        if let Some(resp) = write(ctx, &key, &live, &live_value, merged).await? {
            return Ok(resp);
        }
    }
    Err(gave_up(ctx))
}

/// What applying `desired` (a manifest made ready by `prepare_manifest` for
/// `ctx.field_manager`) makes of the live object: a three-way merge with what this
/// manager applied last. Fields other managers applied with other values are a
/// conflict (409) unless `ctx.force`, which takes them over.
pub(super) async fn apply_onto(ctx: &Ctx, desired: &Value, live_value: &Value) -> ApiResult<Value> {
    let manager = ctx.field_manager.as_deref();
    let others = applied_by_others(live_value, manager);
    let conflicting = conflicts(desired, live_value, &others);
    // What this manager alone applied is what its manifest may remove.
    let owned = last_applied(live_value, manager).map(|last| owned_only(&last, &others));
    let mut merged = three_way_merge(owned.as_ref(), desired, live_value);
    if !conflicting.is_empty() && !ctx.force {
        // An invalid manifest is told so first: forcing would not help it.
        ctx.validate(&merged).await?;
        return Err(conflict_error(ctx, &conflicting));
    }
    take_over(&mut merged, &conflicting);
    Ok(merged)
}

/// Validates and writes a patched object based on `live`. `None` means the object
/// changed (or vanished) since it was read: compute again.
async fn write(
    ctx: &Ctx,
    key: &Key,
    live: &Arc<StoredObject>,
    live_value: &Value,
    mut patched: Value,
) -> ApiResult<Option<Response>> {
    let name = ctx.name.as_str();
    if !patched.is_object() {
        return Err(ApiError::invalid(
            &ctx.info,
            name,
            vec![FieldError::new("", "the patched object is not a JSON object")],
        ));
    }
    ctx.fill_identity(&mut patched, Some(name))?;
    if json_size_within(&patched, MAX_OBJECT_BYTES).is_none() {
        return Err(ApiError::entity_too_large(format!(
            "the patched {} {name:?} would be larger than {MAX_OBJECT_BYTES} bytes, the largest an object may be; \
             nothing was changed",
            ctx.info.kind
        )));
    }
    ctx.validate(&patched).await?;
    let asked = precondition(ctx, &patched)?;
    // The live resourceVersion is in every patched object unless the patch changed
    // it; a different one is the client's own precondition.
    let (expected, retry) = match asked {
        Some(rv) if rv != live.revision => (rv, false),
        _ => (live.revision, true),
    };
    if ctx.dry_run {
        if expected != live.revision {
            return Err(stale(ctx, name, expected, live));
        }
        return Ok(Some(body::json(StatusCode::OK, &would_be_updated(live_value, &patched, false))));
    }
    match ctx.state.store.update(key.clone(), patched, Some(expected)).await {
        Ok(outcome) => Ok(Some(body::raw_json(StatusCode::OK, outcome.object().json.clone()))),
        Err(StoreError::Conflict { .. }) if retry => {
            tracing::debug!(kind = %ctx.info.kind, name, "patch lost a race; recomputing on the new state");
            Ok(None)
        }
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(ApiError::from_store(e, &ctx.info, name)),
    }
}

/// Server-side apply's refusal: which fields other managers applied with other
/// values, and how to take them over.
fn conflict_error(ctx: &Ctx, conflicts: &[Conflict]) -> ApiError {
    let listed: Vec<String> =
        conflicts.iter().map(|c| format!("conflict with {:?}: {}", manager_of(&c.annotation), c.field())).collect();
    let causes = conflicts
        .iter()
        .map(|c| {
            let manager = manager_of(&c.annotation);
            FieldError::new(
                c.field(),
                format!(
                    "conflict with {manager:?}, which applied another value; force (--force-conflicts) takes it over"
                ),
            )
        })
        .collect();
    ApiError::conflict(format!(
        "Apply failed with {} conflict{}: {}; apply again with force=true (kubectl apply --server-side \
         --force-conflicts, corral apply --force-conflicts) to take them over, or leave them out of the manifest",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        listed.join(", ")
    ))
    .with_details(super::error::StatusDetails { causes, ..super::error::StatusDetails::object(&ctx.info, &ctx.name) })
}

fn gave_up(ctx: &Ctx) -> ApiError {
    ApiError::conflict(format!(
        "{} {:?} kept changing while the patch was applied ({MAX_ATTEMPTS} attempts); retry",
        ctx.info.kind, ctx.name
    ))
}
