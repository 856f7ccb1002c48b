//! Decoding a watch: newline-delimited JSON events over one long response.

use std::pin::Pin;

use bytes::{Buf, BytesMut};
use corral_api::DynamicObject;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use super::error::{Error, Result, Status};

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// The object was created (or, at the start of a watch without a revision,
    /// exists).
    Added(DynamicObject),
    /// The object changed.
    Modified(DynamicObject),
    /// The object is gone; this was its last state.
    Deleted(DynamicObject),
    /// Every event up to this revision has been sent.
    Bookmark {
        /// The revision reached.
        resource_version: String,
    },
    /// The watch failed, e.g. code 410 when it fell behind compaction; the stream
    /// ends after this.
    Error(Status),
}

impl WatchEvent {
    /// The object's revision, or the bookmark's: where to resume from.
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                o.metadata.resource_version.as_deref()
            }
            WatchEvent::Bookmark { resource_version } => Some(resource_version),
            WatchEvent::Error(_) => None,
        }
    }
}

/// The events of one watch, in order, until the server ends it.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: serde_json::Value,
}

/// Lines longer than this are not events a server sends; stop rather than buffer
/// without bound.
const MAX_LINE: usize = 64 * 1024 * 1024;

pub(super) fn event_stream(resp: reqwest::Response, server: String) -> WatchStream {
    let bytes = resp.bytes_stream();
    let state = (bytes, BytesMut::new(), server, false);
    let stream = futures::stream::unfold(state, |(mut bytes, mut buf, server, mut done)| async move {
        loop {
            if done {
                return None;
            }
            if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(pos);
                buf.advance(1);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let ev = parse_event(&line);
                return Some((ev, (bytes, buf, server, done)));
            }
            if buf.len() > MAX_LINE {
                done = true;
                let err = Error::Decode { what: "a watch event".into(), message: "line too long".into() };
                return Some((Err(err), (bytes, buf, server, done)));
            }
            match bytes.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    done = true;
                    return Some((
                        Err(Error::Transport { server: server.clone(), source: e }),
                        (bytes, buf, server, done),
                    ));
                }
                None => {
                    done = true;
                    // A last event without its newline is still an event.
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let line = buf.split();
                    return Some((parse_event(&line), (bytes, buf, server, done)));
                }
            }
        }
    });
    Box::pin(stream)
}

fn parse_event(line: &[u8]) -> Result<WatchEvent> {
    let bad = |m: String| Error::Decode { what: "a watch event".into(), message: m };
    let raw: RawEvent = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
    let object = |v: serde_json::Value| serde_json::from_value::<DynamicObject>(v).map_err(|e| bad(e.to_string()));
    Ok(match raw.kind.as_str() {
        "ADDED" => WatchEvent::Added(object(raw.object)?),
        "MODIFIED" => WatchEvent::Modified(object(raw.object)?),
        "DELETED" => WatchEvent::Deleted(object(raw.object)?),
        "BOOKMARK" => {
            let rv = raw
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| bad("bookmark without metadata.resourceVersion".into()))?;
            WatchEvent::Bookmark { resource_version: rv.to_string() }
        }
        "ERROR" => WatchEvent::Error(serde_json::from_value(raw.object).map_err(|e| bad(e.to_string()))?),
        other => return Err(bad(format!("unknown event type {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_every_type_decode() {
        let added = br#"{"type":"ADDED","object":{"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default","resourceVersion":"7"},"spec":{}}}"#;
        let ev = parse_event(added).unwrap();
        assert!(matches!(&ev, WatchEvent::Added(o) if o.metadata.name == "a"));
        assert_eq!(ev.resource_version(), Some("7"));

        let bm = br#"{"type":"BOOKMARK","object":{"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{"resourceVersion":"9"}}}"#;
        assert_eq!(parse_event(bm).unwrap(), WatchEvent::Bookmark { resource_version: "9".into() });

        let err = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Gone","message":"too old"}}"#;
        assert!(matches!(parse_event(err).unwrap(), WatchEvent::Error(s) if s.code == 410));
    }

    #[test]
    fn unknown_event_type_is_an_error() {
        assert!(parse_event(br#"{"type":"RENAMED","object":{}}"#).is_err());
    }
}
