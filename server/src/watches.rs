//! `POST /watches`: several watches over one response, for clients that may hold only
//! a few connections to a server — a browser over HTTP/1.1 keeps six per server, across
//! its tabs, and a page of the web interface watches several kinds at once.
//!
//! The body names each watch by an id of the client's choosing and the path it would
//! have asked for on its own (`/apis/…?watch=true&resourceVersion=…`). Each is sent,
//! as it is, through the whole API — authentication, authorization, the per-client
//! watch limits and the watch's own semantics are those of a single watch request —
//! and the answer is one NDJSON stream of the events of all of them, each line
//! `{"id": ID, "event": EVENT}` with the event as the single watch sends it. A watch
//! whose request is refused (410 for a compacted revision, 403…) or whose stream
//! ends is told by a line `{"id": ID, "end": STATUS}`, its `Status` when it has one; the
//! others go on. The response ends when every watch has ended or the client goes.
//! When every watch is refused for want of a valid credential, the answer is that
//! 401 itself, so a client knows to log in again.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::error::ApiError;

/// Where it is served.
pub const PATH: &str = "/watches";
/// Most watches one request may carry.
pub const MAX_WATCHES: usize = 32;
/// Largest request body.
const MAX_BODY: usize = 64 << 10;

/// One watch of the request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Watch {
    /// The client's name for it, repeated on each of its lines.
    id: String,
    /// The path and query of the single watch request it stands for.
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Watches {
    watches: Vec<Watch>,
}

/// Whether `path` is a watch of the resource API, the only requests carried.
fn is_watch(path: &str) -> bool {
    let Some((p, query)) = path.split_once('?') else { return false };
    p.starts_with("/apis/") && query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1")
}

/// Serves `POST /watches` by sending each watch through `api`.
pub(crate) async fn serve(api: Router, request: Request<Body>) -> Response {
    match run(api, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(api: Router, request: Request<Body>) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::bad_request(format!("the body of POST /watches is larger than {MAX_BODY} bytes")))?;
    let asked: Watches = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body of POST /watches is not a list of watches: {e}")))?;
    if asked.watches.is_empty() || asked.watches.len() > MAX_WATCHES {
        return Err(ApiError::bad_request(format!(
            "POST /watches carries 1 to {MAX_WATCHES} watches, not {}",
            asked.watches.len()
        )));
    }
    if let Some(w) = asked.watches.iter().find(|w| !is_watch(&w.path)) {
        return Err(ApiError::bad_request(format!(
            "watch {:?}: {:?} is not a watch of the API (/apis/…?watch=true)",
            w.id, w.path
        )));
    }
    // Each watch is a request of its own, as the client would have sent it: same
    // credentials, same connection facts (the client's address, for its limits).
    let mut answers = Vec::with_capacity(asked.watches.len());
    for w in asked.watches {
        let mut sub = Request::builder()
            .method(Method::GET)
            .uri(&w.path)
            .body(Body::empty())
            .map_err(|e| ApiError::bad_request(format!("watch {:?}: {:?} is not a path: {e}", w.id, w.path)))?;
        *sub.headers_mut() = forwarded(&parts.headers);
        *sub.extensions_mut() = parts.extensions.clone();
        let resp = api.clone().oneshot(sub).await.unwrap_or_else(|never| match never {});
        answers.push((Arc::<str>::from(w.id), resp));
    }
    if answers.iter().all(|(_, r)| r.status() == StatusCode::UNAUTHORIZED) {
        let (_, first) = answers.swap_remove(0);
        return Ok(first);
    }
    let lines = answers.into_iter().map(|(id, resp)| one(id, resp).boxed());
    let merged = stream::select_all(lines).map(Ok::<Bytes, std::convert::Infallible>);
    let mut response = Body::from_stream(merged).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The headers a watch is sent with: the credential and what the client accepts.
fn forwarded(from: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::USER_AGENT] {
        if let Some(v) = from.get(&name) {
            h.insert(name, v.clone());
        }
    }
    h.insert(header::ACCEPT, HeaderValue::from_static(super::watch::NDJSON));
    h
}

/// The lines of one watch: its events, then its end.
fn one(id: Arc<str>, resp: Response) -> impl futures::Stream<Item = Bytes> + Send {
    let status = resp.status();
    let idj = Value::String(id.to_string()).to_string();
    if !status.is_success() {
        let end_id = idj.clone();
        let body = resp.into_body();
        return stream::once(async move {
            let bytes = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
            let why: Value = serde_json::from_slice(&bytes).unwrap_or_else(
                |_| json!({"kind": "Status", "code": status.as_u16(), "message": String::from_utf8_lossy(&bytes)}),
            );
            Bytes::from(format!("{{\"id\":{end_id},\"end\":{why}}}\n"))
        })
        .left_stream();
    }
    let end_id = idj.clone();
    let mut rest = Vec::<u8>::new();
    let events = resp
        .into_body()
        .into_data_stream()
        .take_while(|r| futures::future::ready(r.is_ok()))
        .map(move |chunk| {
            // A chunk may end inside a line: the rest waits for the next one.
            rest.extend_from_slice(&chunk.unwrap_or_default());
            let mut out = Vec::new();
            while let Some(i) = rest.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = rest.drain(..=i).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                out.extend_from_slice(b"{\"id\":");
                out.extend_from_slice(idj.as_bytes());
                out.extend_from_slice(b",\"event\":");
                out.extend_from_slice(line);
                out.extend_from_slice(b"}\n");
            }
            Bytes::from(out)
        })
        .filter(|b| futures::future::ready(!b.is_empty()));
    events.chain(stream::once(async move { Bytes::from(format!("{{\"id\":{end_id},\"end\":null}}\n")) })).right_stream()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watches_of_the_api_are_carried() {
        assert!(is_watch("/apis/corral.dev/v1/tasks?watch=true&resourceVersion=3"));
        assert!(is_watch("/apis/corral.dev/v1/namespaces/a/configmaps?resourceVersion=3&watch=1"));
        assert!(!is_watch("/apis/corral.dev/v1/tasks"));
        assert!(!is_watch("/apis/corral.dev/v1/tasks?watch=false"));
        assert!(!is_watch("/admin/snapshot?watch=true"));
        assert!(!is_watch("/apis/corral.dev/v1/tasks?xwatch=true"));
    }
}
