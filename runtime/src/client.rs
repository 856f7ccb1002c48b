//! A client of the Corral API for controllers: dynamic (JSON) for any kind, typed
//! through [`Api`] for kinds with a Rust type. Works over any [`Transport`].

use std::sync::Arc;

use bytes::Bytes;
use corral_api::{KindInfo, Resource};
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{Method, Request, StatusCode, header};
use parking_lot::RwLock;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::transport::{HttpTransport, Transport};

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// The object was created (or existed when an unversioned watch began).
    Added(Value),
    /// The object changed.
    Modified(Value),
    /// The object is gone; its last state.
    Deleted(Value),
    /// Every event up to this revision has been delivered.
    Bookmark(u64),
}

/// A consistent list and the revision it reflects.
#[derive(Clone, Debug, Default)]
pub struct ObjectList {
    /// The objects.
    pub items: Vec<Value>,
    /// Watch from here to see every later change.
    pub revision: u64,
}

/// A dynamic client: objects as JSON, kinds looked up by name. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
    kinds: Arc<RwLock<Vec<Arc<KindInfo>>>>,
}

/// Where a kind's objects live.
fn collection(kind: &KindInfo, namespace: Option<&str>) -> String {
    match namespace.filter(|_| kind.namespaced) {
        Some(ns) => format!("/apis/{}/{}/namespaces/{ns}/{}", kind.group, kind.version, kind.plural),
        None => format!("/apis/{}/{}/{}", kind.group, kind.version, kind.plural),
    }
}

fn item(kind: &KindInfo, namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", collection(kind, namespace))
}

/// Namespace and name of an object, for its URL.
fn identity(obj: &Value) -> Result<(Option<&str>, &str)> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Decode("object has no metadata.name".into()))?;
    Ok((obj.pointer("/metadata/namespace").and_then(Value::as_str), name))
}

fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Client {
    /// A client over `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Client { transport, kinds: Arc::default() }
    }

    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:7070`).
    ///
    /// # Errors
    /// Fails if the URL is not `http://`.
    pub fn http(base_url: &str) -> Result<Self> {
        Ok(Client::new(Arc::new(HttpTransport::new(base_url)?)))
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, content_type, body).await?;
        let status = resp.status;
        let bytes = resp.bytes().await?;
        if status.is_success() { Ok((status, bytes)) } else { Err(api_error(status, &bytes)) }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<crate::transport::Response> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .map_err(|e| Error::Transport(e.to_string()))?;
        self.transport.send(req).await
    }

    async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(StatusCode, Value)> {
        let body = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).map_err(|e| Error::Decode(e.to_string()))?),
            None => Bytes::new(),
        };
        let (status, bytes) = self.request(method, path, "application/json", body).await?;
        let v = serde_json::from_slice(&bytes).map_err(|e| Error::Decode(format!("{path}: {e}")))?;
        Ok((status, v))
    }

    /// Every served kind (refreshed from the server).
    pub async fn refresh_kinds(&self) -> Result<Vec<Arc<KindInfo>>> {
        let (_, v) = self.json(Method::GET, "/kinds", None).await?;
        let kinds: Vec<KindInfo> = serde_json::from_value(v).map_err(|e| Error::Decode(format!("/kinds: {e}")))?;
        let kinds: Vec<Arc<KindInfo>> = kinds.into_iter().map(Arc::new).collect();
        *self.kinds.write() = kinds.clone();
        Ok(kinds)
    }

    /// The kind a name designates (plural, singular, short name or kind), asking the
    /// server again if it is not known yet (custom kinds appear at run time).
    pub async fn kind(&self, name: &str) -> Result<Arc<KindInfo>> {
        if let Some(k) = self.kinds.read().iter().find(|k| k.matches_name(name)) {
            return Ok(k.clone());
        }
        self.refresh_kinds()
            .await?
            .into_iter()
            .find(|k| k.matches_name(name))
            .ok_or_else(|| Error::UnknownKind(name.to_string()))
    }

    /// The object, or `None` if it does not exist.
    pub async fn get(&self, kind: &KindInfo, namespace: Option<&str>, name: &str) -> Result<Option<Value>> {
        match self.json(Method::GET, &item(kind, namespace, name), None).await {
            Ok((_, v)) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Objects of `kind` (in `namespace`, or all), filtered by a label selector.
    pub async fn list(&self, kind: &KindInfo, namespace: Option<&str>, selector: &str) -> Result<ObjectList> {
        let mut path = collection(kind, namespace);
        if !selector.is_empty() {
            path.push_str(&format!("?labelSelector={}", encode_query(selector)));
        }
        let (_, v) = self.json(Method::GET, &path, None).await?;
        let revision = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Decode(format!("{path}: list without resourceVersion")))?;
        let items = match v.get("items") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        Ok(ObjectList { items, revision })
    }

    /// Creates `obj`; returns it as stored.
    pub async fn create(&self, kind: &KindInfo, obj: &Value) -> Result<Value> {
        let (ns, _) = identity(obj)?;
        Ok(self.json(Method::POST, &collection(kind, ns), Some(obj)).await?.1)
    }

    /// Replaces `obj` (its `metadata.resourceVersion`, if set, is a precondition).
    pub async fn update(&self, kind: &KindInfo, obj: &Value) -> Result<Value> {
        let (ns, name) = identity(obj)?;
        Ok(self.json(Method::PUT, &item(kind, ns, name), Some(obj)).await?.1)
    }

    /// Replaces only the status of `obj`. Writing status does not change
    /// `generation`, so a controller that compares `generation` with its
    /// `observedGeneration` does not re-trigger itself.
    pub async fn update_status(&self, kind: &KindInfo, obj: &Value) -> Result<Value> {
        let (ns, name) = identity(obj)?;
        Ok(self.json(Method::PUT, &format!("{}/status", item(kind, ns, name)), Some(obj)).await?.1)
    }

    /// Applies an RFC 7386 merge patch.
    pub async fn patch_merge(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<Value> {
        let body = Bytes::from(serde_json::to_vec(patch).map_err(|e| Error::Decode(e.to_string()))?);
        let (_, bytes) =
            self.request(Method::PATCH, &item(kind, namespace, name), "application/merge-patch+json", body).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Deletes the object. `Ok(None)` if it did not exist; otherwise its last state
    /// (or, while finalizers remain, its state with `deletionTimestamp` set).
    pub async fn delete(&self, kind: &KindInfo, namespace: Option<&str>, name: &str) -> Result<Option<Value>> {
        match self.json(Method::DELETE, &item(kind, namespace, name), None).await {
            Ok((_, v)) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Streams changes of `kind` after revision `from` (or, without one, the current
    /// objects as `Added` first). A compacted `from` yields [`Error::Gone`], at once
    /// or mid-stream; the stream ends when the server ends it.
    pub async fn watch(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        selector: &str,
        from: Option<u64>,
    ) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        let mut path = format!("{}?watch=true&allowWatchBookmarks=true", collection(kind, namespace));
        if let Some(rv) = from {
            path.push_str(&format!("&resourceVersion={rv}"));
        }
        if !selector.is_empty() {
            path.push_str(&format!("&labelSelector={}", encode_query(selector)));
        }
        let resp = self.send(Method::GET, &path, "application/json", Bytes::new()).await?;
        if resp.status == StatusCode::GONE {
            return Err(Error::Gone);
        }
        if !resp.status.is_success() {
            let status = resp.status;
            return Err(api_error(status, &resp.bytes().await?));
        }
        Ok(ndjson(resp.body))
    }
}

/// Splits a body into lines and decodes each as a watch event.
fn ndjson(body: BoxStream<'static, Result<Bytes>>) -> BoxStream<'static, Result<WatchEvent>> {
    futures::stream::unfold((body, Vec::<u8>::new(), false), |(mut body, mut buf, done)| async move {
        if done {
            return None;
        }
        loop {
            if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let ev = decode_event(&line[..line.len() - 1]);
                let end = ev.is_err();
                return Some((ev, (body, buf, end)));
            }
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(e), (body, buf, true))),
                None => return None,
            }
        }
    })
    .boxed()
}

fn decode_event(line: &[u8]) -> Result<WatchEvent> {
    let mut v: Value = serde_json::from_slice(line).map_err(|e| Error::Decode(format!("watch event: {e}")))?;
    let object = v.get_mut("object").map(Value::take).unwrap_or(Value::Null);
    match v.get("type").and_then(Value::as_str) {
        Some("ADDED") => Ok(WatchEvent::Added(object)),
        Some("MODIFIED") => Ok(WatchEvent::Modified(object)),
        Some("DELETED") => Ok(WatchEvent::Deleted(object)),
        Some("BOOKMARK") => Ok(WatchEvent::Bookmark(
            object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        )),
        Some("ERROR") if object.get("code").and_then(Value::as_u64) == Some(410) => Err(Error::Gone),
        Some("ERROR") => Err(status_error(&object)),
        other => Err(Error::Decode(format!("unknown watch event type {other:?}"))),
    }
}

fn status_error(v: &Value) -> Error {
    Error::Api {
        code: v.get("code").and_then(Value::as_u64).unwrap_or(500) as u16,
        reason: v.get("reason").and_then(Value::as_str).unwrap_or("Unknown").to_string(),
        message: v.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.get("kind").and_then(Value::as_str) == Some("Status") => status_error(&v),
        _ => Error::Api {
            code: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Unknown").to_string(),
            message: String::from_utf8_lossy(body).chars().take(500).collect(),
        },
    }
}

/// A typed view of one kind: objects as `K`.
#[derive(Clone)]
pub struct Api<K> {
    client: Client,
    kind: Arc<KindInfo>,
    _k: std::marker::PhantomData<fn() -> K>,
}

impl<K: Resource> Api<K> {
    /// The typed API of `K` through `client`.
    pub fn new(client: Client) -> Self {
        Api { client, kind: Arc::new(K::kind_info()), _k: std::marker::PhantomData }
    }

    /// The kind this API serves.
    pub fn kind(&self) -> &Arc<KindInfo> {
        &self.kind
    }

    fn decode(v: Value) -> Result<K> {
        serde_json::from_value(v).map_err(|e| Error::Decode(format!("{}: {e}", K::KIND)))
    }

    fn encode(obj: &K) -> Result<Value> {
        serde_json::to_value(obj).map_err(|e| Error::Decode(format!("{}: {e}", K::KIND)))
    }

    /// The object, or `None`.
    pub async fn get(&self, namespace: Option<&str>, name: &str) -> Result<Option<K>> {
        self.client.get(&self.kind, namespace, name).await?.map(Self::decode).transpose()
    }

    /// Creates the object.
    pub async fn create(&self, obj: &K) -> Result<K> {
        Self::decode(self.client.create(&self.kind, &Self::encode(obj)?).await?)
    }

    /// Replaces the object (resourceVersion, if set, is a precondition).
    pub async fn update(&self, obj: &K) -> Result<K> {
        Self::decode(self.client.update(&self.kind, &Self::encode(obj)?).await?)
    }

    /// Replaces the object's status only.
    pub async fn update_status(&self, obj: &K) -> Result<K> {
        Self::decode(self.client.update_status(&self.kind, &Self::encode(obj)?).await?)
    }

    /// Deletes the object; `None` if it did not exist.
    pub async fn delete(&self, namespace: Option<&str>, name: &str) -> Result<Option<K>> {
        self.client.delete(&self.kind, namespace, name).await?.map(Self::decode).transpose()
    }

    /// Lists objects matching a label selector.
    pub async fn list(&self, namespace: Option<&str>, selector: &str) -> Result<(Vec<K>, u64)> {
        let list = self.client.list(&self.kind, namespace, selector).await?;
        let items = list.items.into_iter().map(Self::decode).collect::<Result<Vec<_>>>()?;
        Ok((items, list.revision))
    }
}
