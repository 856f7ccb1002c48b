//! Lists: `limit` and `continue` as in Kubernetes, every page consistent at the
//! revision of the first, and the body streamed in steps of about a megabyte, so a
//! list of any size costs the server one step of memory, not the whole list.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use corral_api::{FieldSelector, KindInfo, Selector};
use corral_store::{Error as StoreError, Key, ListPage, ListRequest};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ApiResult};

/// Items read from the store per step of a streamed list.
const STEP_ITEMS: usize = 256;
/// Bytes read from the store per step (the first item goes whatever its size).
const STEP_BYTES: u64 = 1 << 20;

/// Where a list goes on: the revision of its first page and the last key it passed.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Token {
    /// Format version.
    v: u32,
    rv: u64,
    ns: String,
    name: String,
}

fn encode_token(rv: u64, after: &Key) -> String {
    let t = Token { v: 1, rv, ns: after.namespace.clone(), name: after.name.clone() };
    let json = serde_json::to_vec(&t).unwrap_or_default();
    json.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(resource: &str, s: &str) -> ApiResult<(u64, Key)> {
    let bad = || {
        ApiError::bad_request(format!(
            "continue={s:?} is not a token this server issued; start the list again without it"
        ))
    };
    if !s.len().is_multiple_of(2) || s.len() > 4096 {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.v != 1 {
        return Err(bad());
    }
    Ok((t.rv, Key::namespaced(resource, t.ns, t.name)))
}

/// What a list asks for.
pub(super) struct ListQuery {
    pub namespace: Option<String>,
    pub selector: Selector,
    pub fields: FieldSelector,
    /// `limit`: at most this many items, then a `continue` token.
    pub limit: Option<usize>,
    /// `continue`: the token of the previous page.
    pub token: Option<String>,
}

/// Parses `limit`: absent, empty or 0 means no limit.
pub(super) fn parse_limit(v: Option<&str>) -> ApiResult<Option<usize>> {
    match v {
        None | Some("" | "0") => Ok(None),
        Some(s) => match s.parse::<usize>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(ApiError::bad_request(format!("limit={s:?} must be a non-negative integer"))),
        },
    }
}

fn expired(e: StoreError, continuing: bool) -> ApiError {
    match e {
        StoreError::Gone { .. } if continuing => ApiError::expired(
            "the list's revision has been compacted since its first page; start the list again without continue",
        ),
        e => ApiError::from(e),
    }
}

/// Serves a list: the first step is read before answering, so a bad token or a
/// compacted revision answers an error status; the rest streams.
pub(super) async fn serve(state: &AppState, info: &KindInfo, q: ListQuery) -> ApiResult<Response> {
    let resource = info.resource();
    let continuing = q.token.is_some();
    let (at, after) = match q.token.as_deref() {
        Some(t) => {
            let (rv, after) = decode_token(&resource, t)?;
            (Some(rv), Some(after))
        }
        None => (None, None),
    };
    let mut lister = Lister {
        state: state.clone(),
        req: ListRequest {
            resource,
            namespace: q.namespace,
            selector: q.selector,
            at,
            after,
            limit: None,
            max_bytes: Some(STEP_BYTES),
            count_remaining: q.limit.is_some(),
        },
        fields: q.fields,
        left: q.limit,
        done: false,
        first: true,
        remaining: None,
    };
    let first = lister.step().await.map_err(|e| expired(e, continuing))?;
    let revision = lister.req.at.unwrap_or_default();
    let head = format!(
        "{{\"apiVersion\":{},\"kind\":{},\"items\":[",
        Value::String(info.api_version()),
        Value::String(format!("{}List", info.kind)),
    );
    let stream =
        futures::stream::unfold((lister, Some(first), false), move |(mut lister, mut pending, mut ended)| async move {
            if ended {
                return None;
            }
            let chunk = match pending.take() {
                Some(c) => Ok(c),
                None if lister.done => {
                    ended = true;
                    Ok(lister.tail(revision))
                }
                None => lister.step().await,
            };
            Some((chunk, (lister, pending, ended)))
        });
    // An error after the head cuts the connection: the client sees a truncated body,
    // never a wrong one.
    let body = futures::stream::once(async move { Ok::<Bytes, StoreError>(Bytes::from(head)) })
        .chain(stream)
        .inspect_err(|e| tracing::warn!(error = %e, "list cut short"));
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// Reads a list from the store one step at a time.
struct Lister {
    state: AppState,
    req: ListRequest,
    fields: FieldSelector,
    /// Items still wanted on this page, if limited.
    left: Option<usize>,
    done: bool,
    first: bool,
    /// Matching items after the page, when known (no field selector).
    remaining: Option<u64>,
}

impl Lister {
    /// The next items, as the bytes of a JSON array's continuation.
    async fn step(&mut self) -> Result<Bytes, StoreError> {
        let mut out = Vec::new();
        let want = self.left.map_or(STEP_ITEMS, |l| l.min(STEP_ITEMS));
        self.req.limit = Some(want.max(1));
        let page: ListPage = self.state.store.list_page(&self.req).await?;
        self.req.at = Some(page.revision);
        for item in &page.items {
            if !self.fields.is_empty() && !self.fields.matches_json(&item.json) {
                continue;
            }
            if !self.first {
                out.push(b',');
            }
            self.first = false;
            out.extend_from_slice(&item.json);
            if let Some(l) = self.left.as_mut() {
                *l -= 1;
            }
        }
        self.req.after = page.next;
        self.remaining = self.fields.is_empty().then_some(page.remaining);
        self.done = self.req.after.is_none() || self.left == Some(0);
        Ok(Bytes::from(out))
    }

    /// The end of the list: its metadata, with the token of the next page if any.
    fn tail(&self, revision: u64) -> Bytes {
        let mut meta = serde_json::Map::new();
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
        if self.left.is_some()
            && let Some(after) = &self.req.after
        {
            meta.insert("continue".into(), Value::String(encode_token(revision, after)));
            if let Some(n) = self.remaining {
                meta.insert("remainingItemCount".into(), Value::from(n));
            }
        }
        let meta = serde_json::to_string(&Value::Object(meta)).unwrap_or_default();
        Bytes::from(format!("],\"metadata\":{meta}}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let k = Key::namespaced("corral.dev/configmaps", "ns", "a\"b");
        let t = encode_token(42, &k);
        assert_eq!(decode_token("corral.dev/configmaps", &t).ok(), Some((42, k)));
        for bad in ["zz", "abc", "7b7d", &"0".repeat(5000)] {
            assert_eq!(decode_token("r", bad).err().map(|e| e.code), Some(StatusCode::BAD_REQUEST), "{bad}");
        }
    }

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit(None).ok(), Some(None));
        assert_eq!(parse_limit(Some("0")).ok(), Some(None));
        assert_eq!(parse_limit(Some("5")).ok(), Some(Some(5)));
        assert!(parse_limit(Some("-1")).is_err());
    }
}
