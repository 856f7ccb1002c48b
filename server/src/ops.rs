//! Operations endpoints: health and the event log's compaction.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::Uri;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};

/// `GET /healthz`: `ok`, or 503 with the reason the store cannot take writes (its
/// disk is full, it failed).
pub async fn healthz(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.store.health() {
        Ok(()) => "ok".into_response(),
        Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

/// `GET /admin/revision`: the store's current and compacted revisions.
pub async fn revision(State(state): State<AppState>) -> Json<Value> {
    let stats = state.store.stats();
    Json(json!({"revision": stats.revision, "compacted": stats.compacted}))
}

#[derive(Deserialize)]
struct CompactParams {
    revision: Option<String>,
}

/// `POST /admin/compact?revision=N`: drops the event log at and below `N`; watches
/// from there get 410 afterwards. Answers like `GET /admin/revision`.
pub async fn compact(State(state): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let params = Query::<CompactParams>::try_from_uri(&uri).map_err(|e| ApiError::bad_request(e.body_text()))?.0;
    let raw = params.revision.ok_or_else(|| {
        ApiError::bad_request("the revision to compact to is required: POST /admin/compact?revision=N")
    })?;
    let target: u64 =
        raw.parse().map_err(|_| ApiError::bad_request(format!("revision={raw:?} is not a revision number")))?;
    let current = state.store.stats().revision;
    if target > current {
        return Err(ApiError::bad_request(format!(
            "cannot compact to revision {target}: the current revision is {current}"
        )));
    }
    state.store.compact(target).await?;
    tracing::info!(revision = target, "event log compacted on request");
    Ok(revision(State(state)).await)
}
