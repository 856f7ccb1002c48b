//! The agent's own HTTP API, which the API server proxies `corral logs` to:
//!
//! - `GET /v1/tasks/{uid}/log?stream=stdout|stderr&follow=true|false&tail=N`: the
//!   task's log as `text/plain`, streamed (see [`logs::open`]); a
//!   log that cannot be opened (a symlink planted in its place) answers 500;
//! - `GET /healthz`: `ok`;
//! - `GET /metrics`: the agent's metrics, Prometheus text, or OpenMetrics to a scraper
//!   that asks for it.
//!
//! Errors are JSON `Status` objects (`code`, `reason`, `message`), like the API
//! server's, so that it can pass their message on.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use corral_telemetry::SharedRegistry;
use serde::Deserialize;

use crate::layout::{self, Layout};
use crate::logs;
use corral_api::logs::{LOG_HEADERS, LogParams};

/// How long in-flight requests (log follows, mostly) may go on after shutdown was
/// asked for before their connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What the agent's handlers share.
#[derive(Clone)]
pub struct AgentHttp {
    /// The agent's work dir, where the task directories and their logs are.
    pub layout: Layout,
    /// Metrics served at `/metrics`.
    pub registry: SharedRegistry,
}

/// The agent's API as a router, so tests can drive it without a socket.
pub fn router(state: AgentHttp) -> Router {
    Router::new()
        .route("/v1/tasks/{uid}/log", get(task_log))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(|| async { status(StatusCode::NOT_FOUND, "NotFound", "no such path on the agent".into()) })
        .with_state(Arc::new(state))
}

/// Serves `router` on `listener` until `shutdown` resolves; requests still running
/// then get a short grace before their connections are dropped, since a log follow
/// would otherwise hold the shutdown until its task ends.
///
/// # Errors
/// Fails when accepting connections fails for good.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        // Log lines should leave as they are written, not wait for a delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });
    tokio::select! {
        r = served.into_future() => r,
        () = async move {
            // An error means the sender is gone, which happens only once it has sent.
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    }
}

/// Query of the log endpoint; values are checked by hand so that errors name them.
#[derive(Debug, Default, Deserialize)]
struct LogQuery {
    stream: Option<String>,
    follow: Option<String>,
    tail: Option<String>,
}

async fn task_log(
    State(state): State<Arc<AgentHttp>>,
    Path(uid): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let bad = |m: String| status(StatusCode::BAD_REQUEST, "BadRequest", m);
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad(e.body_text()),
    };
    let uid = match layout::check_uid(&uid) {
        Ok(u) => u,
        Err(e) => return bad(e.to_string()),
    };
    let params = match LogParams::from_query(q.follow.as_deref(), q.tail.as_deref(), q.stream.as_deref(), "tail") {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let (stream, follow) = (params.stream, params.follow);
    let tail = params.tail_lines.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let dir = state.layout.task(uid);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return status(StatusCode::NOT_FOUND, "NotFound", format!("task {uid} has no directory on this node")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "task {uid} has no logs on this node: it has not started here yet, or it ended and its sandbox was collected (see the agent's --sandbox-retention)"
                ),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, dir = %dir.display(), "cannot look at a task directory");
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "cannot read the task's directory".into(),
            );
        }
    }
    let log = match logs::open(&dir, stream, tail, follow).await {
        Ok(log) => log,
        Err(e) => {
            // The message names a file of the task's own log, nothing more.
            tracing::warn!(error = %e, uid, "cannot read a task's log");
            return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", format!("cannot read the log: {e}"));
        }
    };
    log_response(Body::from_stream(log))
}

/// A 200 answer streaming a log, with the headers every Corral log answer has.
fn log_response(body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    for (name, value) in LOG_HEADERS {
        resp.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    resp
}

async fn metrics(State(state): State<Arc<AgentHttp>>, headers: axum::http::HeaderMap) -> Response {
    state.registry.read(|r| corral_telemetry::metrics_response(&[r], &headers))
}

/// An error answer: a JSON `Status`.
fn status(code: StatusCode, reason: &'static str, message: String) -> Response {
    let body = serde_json::json!({
        "apiVersion": corral_api::API_VERSION,
        "kind": "Status",
        "code": code.as_u16(),
        "reason": reason,
        "message": message,
    });
    let mut resp = (code, body.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
