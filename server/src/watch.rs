//! `?watch=true`: the store's watch stream as newline-delimited JSON events.
//!
//! Objects go out as the bytes the store holds, wrapped in the event envelope, never
//! parsed and re-serialized: a watch costs a copy per event, not a JSON round trip.
//! The one exception is a watch that asks for tables (`kubectl get -w`): each object
//! is then sent as a one-row `Table`, as Kubernetes does.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use corral_api::{FieldSelector, KindInfo, Selector};
use corral_store::{EventType, WatchEvent, WatchRequest};
use futures::StreamExt;
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ApiResult, StatusDetails};
use super::fields::Selection;
use super::watch_limits::WatchSlot;

/// Content type of watch streams.
pub const NDJSON: &str = "application/x-ndjson";

/// The content type a watch answers with: `application/json` for a client that
/// accepts it but not [`NDJSON`] (client-go, hence kubectl, decodes a watch only under
/// that name), else [`NDJSON`]. The bytes are the same either way.
pub(super) fn content_type(headers: &axum::http::HeaderMap) -> &'static str {
    let accepted: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|media| media.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .collect();
    if accepted.iter().any(|m| m == NDJSON) || !accepted.iter().any(|m| m == "application/json") {
        NDJSON
    } else {
        "application/json"
    }
}

/// What a watch request asks for.
pub(super) struct Watch {
    /// The namespace watched, or all.
    pub namespace: Option<String>,
    /// Label selector.
    pub selector: Selector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Revision to resume after; `None` starts with the current objects.
    pub from: Option<u64>,
    /// Whether to send bookmarks.
    pub bookmarks: bool,
    /// Send each object as a one-row `meta.k8s.io/v1` `Table` (see [`super::table`]).
    pub table: bool,
    /// The response's content type: [`NDJSON`], or `application/json` for clients
    /// (client-go) that decode a watch only under that name.
    pub content_type: &'static str,
}

/// Opens a watch on a collection, holding `slot` (the client's place) while it lasts.
/// A compacted starting revision fails here, with 410, before anything is streamed.
pub(super) async fn serve(state: &AppState, info: &KindInfo, w: Watch, slot: Option<WatchSlot>) -> ApiResult<Response> {
    let Watch { namespace, selector, fields, from, bookmarks, table, content_type } = w;
    let collection_error = |e: corral_store::Error| with_collection(ApiError::from(e), info);
    // A resumed watch with a field selector starts from what matches now (see
    // `fields`), read before the watch opens.
    let current = match (fields.is_empty(), from) {
        (false, Some(_)) => {
            let list =
                state.store.list(&info.resource(), namespace.as_deref(), &selector).await.map_err(collection_error)?;
            Some(list.items.iter().filter(|o| fields.matches_json(&o.json)).map(|o| o.key.clone()).collect())
        }
        _ => None,
    };
    let request = WatchRequest { resources: vec![info.resource()], namespace, selector, from, bookmarks };
    let events = state.store.watch(request).await.map_err(collection_error)?;
    let mut selection = match current {
        _ if fields.is_empty() => None,
        Some(current) => Some(Selection::resumed(fields, current, state.store.stats().revision)),
        None => Some(Selection::fresh(fields)),
    };
    let frames = Frames::new(info, table);
    let stream = events
        .filter_map(move |ev| {
            let kept = match (&ev, selection.as_mut()) {
                (WatchEvent::Event(e), Some(sel)) => {
                    sel.admit(e.revision, e.event_type, &e.object).map(|ty| (ev.clone(), Some(ty)))
                }
                _ => Some((ev, None)),
            };
            futures::future::ready(kept)
        })
        .scan(false, move |ended, (ev, as_type)| {
            // The store ends the stream after `Gone`; stopping here as well keeps the
            // contract (one ERROR, then the end) whatever the store does.
            let frame = if *ended {
                None
            } else {
                if matches!(ev, WatchEvent::Gone { .. }) {
                    *ended = true;
                }
                Some(frames.frame(&ev, as_type))
            };
            futures::future::ready(frame)
        })
        .take_until(state.closed())
        // The client's place is held for as long as the stream lives.
        .inspect(move |_| {
            let _ = &slot;
        })
        // Small frames that are ready together leave in one write (a replay or a burst
        // costs one write per batch, not per event); large objects go out as the
        // store's own bytes, shared with every other watch, never copied per watcher.
        .boxed();
    let stream = futures::stream::unfold(stream, |mut frames| async move {
        let batch = ready_batch(&mut frames).await?;
        Some((futures::stream::iter(coalesce(batch)), frames))
    })
    .flatten()
    .map(Ok::<Bytes, Infallible>);
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// The next frame, and those ready right after it up to [`BATCH_BYTES`]: a client
/// that stops reading leaves the server holding one batch, not every event that was
/// ready.
async fn ready_batch(frames: &mut futures::stream::BoxStream<'static, Vec<Bytes>>) -> Option<Vec<Vec<Bytes>>> {
    use futures::FutureExt;
    let first = frames.next().await?;
    let mut size: usize = first.iter().map(Bytes::len).sum();
    let mut batch = vec![first];
    while size < BATCH_BYTES && batch.len() < 64 {
        match frames.next().now_or_never() {
            Some(Some(f)) => {
                size += f.iter().map(Bytes::len).sum::<usize>();
                batch.push(f);
            }
            _ => break,
        }
    }
    Some(batch)
}

/// Most bytes of frames gathered into one batch of writes.
const BATCH_BYTES: usize = 16 << 10;

/// Frames (each a list of pieces) as writes: small pieces joined, large ones alone.
fn coalesce(frames: Vec<Vec<Bytes>>) -> Vec<Bytes> {
    const JOIN_BELOW: usize = 64 << 10;
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    for piece in frames.into_iter().flatten() {
        if piece.len() >= JOIN_BELOW {
            if !buf.is_empty() {
                out.push(buf.split().freeze());
            }
            out.push(piece);
        } else {
            buf.extend_from_slice(&piece);
            if buf.len() >= JOIN_BELOW {
                out.push(buf.split().freeze());
            }
        }
    }
    if !buf.is_empty() {
        out.push(buf.freeze());
    }
    out
}

fn with_collection(e: ApiError, info: &KindInfo) -> ApiError {
    e.with_details(StatusDetails {
        group: info.group.clone(),
        kind: info.kind.clone(),
        name: String::new(),
        causes: Vec::new(),
    })
}

/// Turns watch events into wire frames for one kind.
struct Frames {
    /// `{"type":"BOOKMARK","object":{"apiVersion":..,"kind":..,"metadata":{"resourceVersion":"`
    bookmark_head: String,
    info: KindInfo,
    table: bool,
}

impl Frames {
    fn new(info: &KindInfo, table: bool) -> Self {
        let bookmark_head = format!(
            "{{\"type\":\"BOOKMARK\",\"object\":{{\"apiVersion\":{},\"kind\":{},\"metadata\":{{\"resourceVersion\":\"",
            Value::String(info.api_version()),
            Value::String(info.kind.clone()),
        );
        // Keep only what error and table frames need; the schema can be large.
        let info = KindInfo { schema: Value::Null, ..info.clone() };
        Frames { bookmark_head, info, table }
    }

    /// The frame of `ev` in pieces (the object's JSON is the store's bytes), sent as
    /// `as_type` instead of its own type when given (a field selector's entries and
    /// exits).
    fn frame(&self, ev: &WatchEvent, as_type: Option<EventType>) -> Vec<Bytes> {
        match ev {
            WatchEvent::Event(e) => {
                let ty = as_type.unwrap_or(e.event_type).as_str();
                let head = Bytes::from(format!("{{\"type\":\"{ty}\",\"object\":"));
                let object = if self.table { self.table_of(&e.object.json) } else { e.object.json.clone() };
                vec![head, object, Bytes::from_static(b"}\n")]
            }
            WatchEvent::Bookmark(rev) => vec![Bytes::from(format!("{}{rev}\"}}}}}}\n", self.bookmark_head))],
            WatchEvent::Gone { compacted } => {
                let status = with_collection(
                    ApiError::gone(format!(
                        "the watch fell behind compaction: events up to revision {compacted} are gone; \
                         re-list, then watch from the list's resourceVersion"
                    )),
                    &self.info,
                )
                .status_json();
                let event = serde_json::json!({"type": "ERROR", "object": status});
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                vec![Bytes::from(line)]
            }
        }
    }
}

impl Frames {
    /// `json` (an object as stored) as a one-row table carrying its resourceVersion.
    fn table_of(&self, json: &Bytes) -> Bytes {
        let object: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
        let rv = object.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
        let table = super::table::of(&self.info, &[object], serde_json::json!({ "resourceVersion": rv }));
        Bytes::from(serde_json::to_vec(&table).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use corral_store::{Event, Key, StoredObject};

    use super::*;

    fn info() -> KindInfo {
        let reg = corral_api::Registry::builtin();
        reg.resolve("cm").map(|i| (*i).clone()).unwrap_or_else(|| panic!("configmaps are built in"))
    }

    fn parse(pieces: &[Bytes]) -> Value {
        let b: Vec<u8> = pieces.concat();
        assert!(b.ends_with(b"\n"));
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b)))
    }

    #[test]
    fn client_go_gets_its_json_and_others_newline_delimited_json() {
        use axum::http::{HeaderMap, HeaderValue};
        let with = |accept: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(accept));
            content_type(&h)
        };
        assert_eq!(content_type(&HeaderMap::new()), NDJSON);
        assert_eq!(with("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"), "application/json");
        assert_eq!(with("application/x-ndjson, application/json"), NDJSON);
        assert_eq!(with("*/*"), NDJSON);
    }

    #[test]
    fn frames_are_one_json_line_each() {
        let f = Frames::new(&info(), false);
        let obj = StoredObject {
            key: Key::namespaced("corral.dev/configmaps", "default", "a"),
            revision: 5,
            labels: Default::default(),
            json: Bytes::from_static(br#"{"kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"5"}}"#),
        };
        let ev =
            WatchEvent::Event(Arc::new(Event { revision: 5, event_type: EventType::Modified, object: Arc::new(obj) }));
        let v = parse(&f.frame(&ev, None));
        assert_eq!(parse(&f.frame(&ev, Some(EventType::Deleted)))["type"], "DELETED");
        assert_eq!(v["type"], "MODIFIED");
        assert_eq!(v["object"]["metadata"]["name"], "a");

        let v = parse(&Frames::new(&info(), true).frame(&ev, None));
        assert_eq!(v["type"], "MODIFIED");
        assert_eq!(v["object"]["kind"], "Table");
        assert_eq!(v["object"]["metadata"]["resourceVersion"], "5");
        assert_eq!(v["object"]["rows"][0]["cells"][0], "a");

        let v = parse(&f.frame(&WatchEvent::Bookmark(42), None));
        assert_eq!(v["type"], "BOOKMARK");
        assert_eq!(
            v["object"],
            serde_json::json!({"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{"resourceVersion":"42"}})
        );

        let v = parse(&f.frame(&WatchEvent::Gone { compacted: 9 }, None));
        assert_eq!(v["type"], "ERROR");
        assert_eq!(v["object"]["kind"], "Status");
        assert_eq!(v["object"]["code"], 410);
        assert_eq!(v["object"]["reason"], "Gone");
    }
}
