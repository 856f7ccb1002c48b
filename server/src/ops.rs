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

/// `GET /version`: the server's version in Kubernetes' shape (`kubectl version` reads
/// it too). Open to anyone, as in Kubernetes: it names a build, nothing of the data.
pub async fn version() -> Json<corral_api::version::VersionInfo> {
    Json(corral_api::version::VersionInfo::of(env!("CARGO_PKG_VERSION")))
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

/// `GET /admin/snapshot`: every object at one revision, streamed in the snapshot
/// format (`corral_store::snapshot`), for `corral admin snapshot save`. Its revision
/// is pinned while it streams, so compaction cannot overtake it; one that fails
/// midway ends without its trailer, so a restore refuses it.
pub async fn snapshot(State(state): State<AppState>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    use corral_store::snapshot::SnapshotWriter;
    use futures::StreamExt;
    let mut req = corral_store::ListRequest {
        limit: Some(256),
        max_bytes: Some(1 << 20),
        ..corral_store::ListRequest::new("", None, &corral_api::Selector::everything())
    };
    // Held until the last page is read (or the client goes: a client that stops
    // reading is cut off by the write-stall timeout), so that writes and compaction
    // going on meanwhile cannot cut the snapshot short.
    let revision = state.store.stats().revision;
    let pin = state.store.pin(revision)?;
    req.at = Some(revision);
    let first = state.store.list_page(&req).await?;
    let mut writer = SnapshotWriter::default();
    let head = writer.header(first.revision);
    tracing::info!(revision = first.revision, "snapshot started");
    let stream = futures::stream::unfold(Some((state, req, writer, Some(first), pin)), |st| async move {
        let (state, mut req, mut writer, first, pin) = st?;
        let page = match first {
            Some(p) => p,
            None => match state.store.list_page(&req).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "snapshot cut short");
                    return Some((Err(std::io::Error::other(e.to_string())), None));
                }
            },
        };
        let mut out = bytes::BytesMut::new();
        for o in &page.items {
            out.extend_from_slice(&writer.object(o));
        }
        match page.next {
            Some(next) => {
                req.after = Some(next);
                Some((Ok(out.freeze()), Some((state, req, writer, None, pin))))
            }
            None => {
                drop(pin);
                out.extend_from_slice(&writer.trailer());
                Some((Ok(out.freeze()), None))
            }
        }
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(stream);
    let mut resp = (axum::http::StatusCode::OK, axum::body::Body::from_stream(body)).into_response();
    resp.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-ndjson"));
    Ok(resp)
}
