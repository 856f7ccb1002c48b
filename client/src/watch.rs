//! Decoding a watch: newline-delimited JSON events over one long response. Each line
//! is decoded once, straight into the event's object type.

use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::{Error, Result, Status};

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<K> {
    /// The object was created, started to match the watch's selectors, or (at the
    /// start of a watch without a revision) exists.
    Added(K),
    /// The object changed.
    Modified(K),
    /// The object is gone, or stopped matching the watch's selectors; this was its
    /// last state.
    Deleted(K),
    /// Every event up to this revision has been sent.
    Bookmark {
        /// The revision reached.
        resource_version: String,
    },
    /// The watch failed, e.g. code 410 when it fell behind compaction; the stream
    /// ends after this.
    Error(Status),
}

impl<K: corral_api::ApiObject> WatchEvent<K> {
    /// The object's revision, or the bookmark's: where to resume from.
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                o.meta().resource_version.as_deref()
            }
            WatchEvent::Bookmark { resource_version } => Some(resource_version),
            WatchEvent::Error(_) => None,
        }
    }
}

/// The events of one watch, in order, until the server ends it.
pub type WatchStream<K> = Pin<Box<dyn Stream<Item = Result<WatchEvent<K>>> + Send>>;

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    object: &'a RawValue,
}

/// Lines longer than this are not events a server sends (objects are at most a few
/// MiB); the stream stops rather than buffer without bound.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Splits a body into lines and decodes each as an event. A last line without its
/// newline is still an event; a line over [`MAX_LINE`] ends the stream with an error.
pub(crate) fn event_stream<K: DeserializeOwned + Send + 'static>(
    body: BoxStream<'static, Result<Bytes>>,
) -> WatchStream<K> {
    let state = (body, BytesMut::new(), false);
    let stream = futures::stream::unfold(state, |(mut body, mut buf, mut done)| async move {
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
                return Some((parse_event(&line), (body, buf, done)));
            }
            if buf.len() > MAX_LINE {
                done = true;
                let err =
                    Error::Decode { what: "a watch event".into(), message: format!("line over {MAX_LINE} bytes") };
                return Some((Err(err), (body, buf, done)));
            }
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    done = true;
                    return Some((Err(e), (body, buf, done)));
                }
                None => {
                    done = true;
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let line = buf.split();
                    return Some((parse_event(&line), (body, buf, done)));
                }
            }
        }
    });
    Box::pin(stream)
}

/// A change event, decoded in one pass: the object straight into `K`.
#[derive(Deserialize)]
struct Change<K> {
    #[serde(rename = "type")]
    kind: ChangeType,
    object: K,
}

#[derive(Deserialize, PartialEq)]
enum ChangeType {
    #[serde(rename = "ADDED")]
    Added,
    #[serde(rename = "MODIFIED")]
    Modified,
    #[serde(rename = "DELETED")]
    Deleted,
}

fn parse_event<K: DeserializeOwned>(line: &[u8]) -> Result<WatchEvent<K>> {
    // Nearly every line is a change: decode it in one pass. Anything else (a bookmark,
    // an error, a change whose object does not decode) takes the careful path, which
    // says what is wrong.
    if let Ok(c) = serde_json::from_slice::<Change<K>>(line) {
        return Ok(match c.kind {
            ChangeType::Added => WatchEvent::Added(c.object),
            ChangeType::Modified => WatchEvent::Modified(c.object),
            ChangeType::Deleted => WatchEvent::Deleted(c.object),
        });
    }
    let bad = |m: String| Error::Decode { what: "a watch event".into(), message: m };
    let raw: RawEvent<'_> = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
    let object = || serde_json::from_str::<K>(raw.object.get()).map_err(|e| bad(e.to_string()));
    Ok(match raw.kind {
        "ADDED" => WatchEvent::Added(object()?),
        "MODIFIED" => WatchEvent::Modified(object()?),
        "DELETED" => WatchEvent::Deleted(object()?),
        "BOOKMARK" => {
            #[derive(Deserialize)]
            struct Bookmark {
                metadata: BookmarkMeta,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct BookmarkMeta {
                resource_version: String,
            }
            let b: Bookmark = serde_json::from_str(raw.object.get())
                .map_err(|e| bad(format!("bookmark without metadata.resourceVersion: {e}")))?;
            WatchEvent::Bookmark { resource_version: b.metadata.resource_version }
        }
        "ERROR" => WatchEvent::Error(serde_json::from_str(raw.object.get()).map_err(|e| bad(e.to_string()))?),
        other => return Err(bad(format!("unknown event type {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use corral_api::DynamicObject;

    use super::*;

    #[test]
    fn events_of_every_type_decode() {
        let added = br#"{"type":"ADDED","object":{"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default","resourceVersion":"7"},"spec":{}}}"#;
        let ev = parse_event::<DynamicObject>(added).expect("decodes");
        assert!(matches!(&ev, WatchEvent::Added(o) if o.metadata.name == "a"));
        assert_eq!(ev.resource_version(), Some("7"));

        let bm = br#"{"type":"BOOKMARK","object":{"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{"resourceVersion":"9"}}}"#;
        assert_eq!(
            parse_event::<DynamicObject>(bm).expect("decodes"),
            WatchEvent::Bookmark { resource_version: "9".into() }
        );

        let err = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Gone","message":"too old"}}"#;
        assert!(matches!(parse_event::<DynamicObject>(err).expect("decodes"), WatchEvent::Error(s) if s.code == 410));
    }

    #[test]
    fn unknown_event_type_is_an_error() {
        assert!(parse_event::<DynamicObject>(br#"{"type":"RENAMED","object":{}}"#).is_err());
    }

    fn body(chunks: Vec<&'static [u8]>) -> BoxStream<'static, Result<Bytes>> {
        futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed()
    }

    #[tokio::test]
    async fn lines_split_across_chunks_and_a_last_line_without_newline_decode() {
        let a = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"1"}}}"#;
        let stream = event_stream::<DynamicObject>(body(vec![&a[..10], &a[10..], b"\n\n", &a[..]]));
        let events: Vec<_> = stream.collect().await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events.iter().all(|e| matches!(e, Ok(WatchEvent::Bookmark { .. }))), "{events:?}");
    }

    #[tokio::test]
    async fn an_endless_line_ends_the_stream_with_an_error() {
        let big: &'static [u8] = Box::leak(vec![b'x'; MAX_LINE + 1].into_boxed_slice());
        let events: Vec<_> = event_stream::<DynamicObject>(body(vec![big, b"more"])).collect().await;
        assert_eq!(events.len(), 1);
        assert!(matches!(&events[0], Err(Error::Decode { .. })), "{events:?}");
    }
}
