//! `GET /apis/corral.dev/v1/namespaces/{ns}/tasks/{name}/log`: a task's log, proxied
//! from the agent of the node the task is bound to.
//!
//! The server holds no logs: it finds the task's node and uid, the node's
//! `status.agentEndpoint`, and streams the agent's
//! `GET /v1/tasks/{uid}/log` through, chunk by chunk, until the agent ends it, the
//! client goes away or the server shuts down.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use corral_api::error::error_chain;
use corral_api::logs::{LOG_HEADERS, LogParams};
use corral_store::Key;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ApiResult, StatusDetails};

/// How long connecting to an agent may take before the request answers 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an agent may take to start its answer before the request answers 504. A
/// follow's body then streams for as long as the task writes.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest error body read from an agent; its message is what matters.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Query of the log path; values are checked by [`LogParams::from_query`] so that
/// errors name them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    follow: Option<String>,
    tail_lines: Option<String>,
    stream: Option<String>,
}

/// `GET …/namespaces/{namespace}/tasks/{name}/log`: the task's log from its agent.
pub(super) async fn serve(state: &AppState, namespace: &str, name: &str, uri: &Uri) -> ApiResult<Response> {
    let Query(q) = Query::<LogQuery>::try_from_uri(uri).map_err(|e| ApiError::bad_request(e.body_text()))?;
    let params = LogParams::from_query(q.follow.as_deref(), q.tail_lines.as_deref(), q.stream.as_deref(), "tailLines")
        .map_err(ApiError::bad_request)?;
    let (follow, tail, stream) = (params.follow, params.tail_lines, params.stream.as_str());
    let task = read(state, "tasks", Some(namespace), name).await?;
    let uid = task.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(node_name) = task.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return Err(ApiError::conflict(format!(
            "task {name:?} is not bound to a node yet, so it has no log; wait until a scheduler places it"
        ))
        .with_details(task_details(name)));
    };
    let node = read(state, "nodes", None, node_name).await.map_err(|e| {
        if e.code == StatusCode::NOT_FOUND {
            ApiError::not_found(format!("task {name:?} is bound to node {node_name:?}, which does not exist"))
                .with_details(task_details(name))
        } else {
            e
        }
    })?;
    let Some(endpoint) = node.pointer("/status/agentEndpoint").and_then(Value::as_str).filter(|e| !e.is_empty()) else {
        return Err(unavailable(format!(
            "node {node_name:?} has no agent endpoint (status.agentEndpoint), so the log of task {name:?} cannot be \
             read; is the node's agent running?"
        )));
    };
    let mut url = reqwest::Url::parse(endpoint)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
        .ok_or_else(|| {
            bad_gateway(format!("node {node_name:?} has an agent endpoint that is not an http URL: {endpoint:?}"))
        })?;
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(["v1", "tasks", &uid, "log"]);
    }
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("stream", stream);
        q.append_pair("follow", if follow { "true" } else { "false" });
        if let Some(n) = tail {
            q.append_pair("tail", &n.to_string());
        }
    }

    let resp = tokio::time::timeout(ANSWER_TIMEOUT, client()?.get(url).send())
        .await
        .map_err(|_| {
            gateway_timeout(format!(
                "the agent of node {node_name:?} at {endpoint} did not answer within {}s for the log of task {name:?}",
                ANSWER_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| {
            bad_gateway(format!(
                "cannot reach the agent of node {node_name:?} at {endpoint} to read the log of task {name:?}: {}",
                error_chain(&e)
            ))
        })?;
    if !resp.status().is_success() {
        return Err(agent_error(resp, node_name, name).await);
    }
    // The log ends with the server too, or graceful shutdown would wait for every
    // follow to end.
    let closed = state.closed();
    let body = resp.bytes_stream().map(|r| r.map_err(std::io::Error::other)).take_until(closed);
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    for (name, value) in LOG_HEADERS {
        resp.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    Ok(resp)
}

/// One object of the built-in kind `plural`, as JSON; 404 when missing.
async fn read(state: &AppState, plural: &str, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
    let info = state.builtin_kind(plural)?;
    let key = match namespace {
        Some(ns) => Key::namespaced(info.resource(), ns, name),
        None => Key::cluster(info.resource(), name),
    };
    let stored = state
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::from_store(e, &info, name))?
        .ok_or_else(|| ApiError::object_not_found(&info, name))?;
    stored.value().map_err(|e| ApiError::from_store(e, &info, name))
}

fn task_details(name: &str) -> StatusDetails {
    StatusDetails {
        group: corral_api::GROUP.to_string(),
        kind: "Task".to_string(),
        name: name.to_string(),
        causes: Vec::new(),
    }
}

fn bad_gateway(message: String) -> ApiError {
    ApiError { code: StatusCode::BAD_GATEWAY, reason: "BadGateway", message, details: None }
}

fn gateway_timeout(message: String) -> ApiError {
    ApiError { code: StatusCode::GATEWAY_TIMEOUT, reason: "Timeout", message, details: None }
}

fn unavailable(message: String) -> ApiError {
    ApiError { code: StatusCode::SERVICE_UNAVAILABLE, reason: "ServiceUnavailable", message, details: None }
}

/// The agent's error answer, passed on: its 400 and 404 keep their code (the request
/// or the task is the problem), anything else is the agent failing, 502.
async fn agent_error(resp: reqwest::Response, node: &str, task: &str) -> ApiError {
    let code = resp.status();
    let mut body = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            break;
        }
    }
    let said = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().chars().take(200).collect());
    let message = format!("the agent of node {node:?} answered {code} for the log of task {task:?}: {said}");
    match code {
        StatusCode::NOT_FOUND => ApiError::not_found(message).with_details(task_details(task)),
        StatusCode::BAD_REQUEST => ApiError::bad_request(message),
        _ => bad_gateway(message),
    }
}

/// One client for every agent: connections are reused across requests. Agents are
/// reached directly, never through an environment proxy, and their redirects are not
/// followed: an endpoint answering 3xx is an agent failing (502), not a way to send
/// the server elsewhere — to itself, say, in a loop.
fn client() -> ApiResult<&'static reqwest::Client> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ApiError::internal(format!("cannot build the HTTP client for agents: {e}")))
}
