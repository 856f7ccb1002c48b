//! A dynamic HTTP client for the Corral API (`docs/api.md`): any served kind, objects
//! as [`DynamicObject`], kinds discovered at run time through `GET /kinds`.
//!
//! Every non-2xx answer becomes [`Error::Api`] carrying the server's `Status` (code,
//! reason, message and every cause), so callers can report field errors precisely.

mod error;
mod logs;
mod watch;

use std::time::Duration;

use corral_api::{DynamicObject, KindInfo};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use error::{Cause, Error, Result, Status, StatusDetails};
pub use logs::{LogParams, LogStream};
pub use watch::{WatchEvent, WatchStream};

/// The field manager `corral` records on apply patches.
pub const CLI_FIELD_MANAGER: &str = "corral-cli";

/// A handle on one Corral server. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
}

/// A list answer: a consistent snapshot at `metadata.resourceVersion`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList {
    /// `group/version` of the listed kind.
    #[serde(default)]
    pub api_version: String,
    /// e.g. `ConfigMapList`.
    #[serde(default)]
    pub kind: String,
    /// The revision the snapshot was taken at.
    #[serde(default)]
    pub metadata: ListMeta,
    /// The objects.
    #[serde(default)]
    pub items: Vec<DynamicObject>,
}

/// Metadata of a list.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// Revision of the snapshot; watch from here to see every later change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    /// A label selector such as `app=web,tier!=db`.
    pub label_selector: Option<String>,
}

/// Options of a watch.
#[derive(Clone, Debug, Default)]
pub struct WatchParams {
    /// A label selector such as `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// Replay every event after this revision, then go live. Without it, the server
    /// sends an `ADDED` for every current object first.
    pub resource_version: Option<String>,
    /// Ask for periodic `BOOKMARK` events.
    pub bookmarks: bool,
}

/// Options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteParams {
    /// Validate and compute the result, write nothing (`dryRun=All`).
    pub dry_run: bool,
    /// Recorded by the server on apply patches.
    pub field_manager: Option<String>,
}

/// A patch body, tagged with how the server must interpret it.
#[derive(Clone, Copy, Debug)]
pub enum Patch<'a> {
    /// An apply: create if missing, else three-way merge with the last applied
    /// manifest (`application/apply-patch+json`).
    Apply(&'a serde_json::Value),
    /// An RFC 7386 merge patch.
    Merge(&'a serde_json::Value),
    /// An RFC 6902 JSON patch (an array of operations).
    Json(&'a serde_json::Value),
}

impl Patch<'_> {
    fn content_type(&self) -> &'static str {
        match self {
            Patch::Apply(_) => "application/apply-patch+json",
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Json(_) => "application/json-patch+json",
        }
    }

    fn body(&self) -> &serde_json::Value {
        match self {
            Patch::Apply(v) | Patch::Merge(v) | Patch::Json(v) => v,
        }
    }
}

/// The object a write left behind, and whether the write created it.
#[derive(Clone, Debug)]
pub struct Written {
    /// The object as the server now has it (or would have it, on a dry run).
    pub object: DynamicObject,
    /// Whether the server answered 201 Created.
    pub created: bool,
}

/// What a delete did.
#[derive(Clone, Debug)]
pub enum Deleted {
    /// The object is gone; this was its last state.
    Gone(DynamicObject),
    /// Finalizers remain: the object now carries a `deletionTimestamp` and disappears
    /// once they are removed.
    Pending(DynamicObject),
}

impl Client {
    /// A client for the server at `server` (e.g. `http://127.0.0.1:7070`).
    ///
    /// # Errors
    /// [`Error::BadServerUrl`] if `server` is not an `http(s)` URL with a host.
    pub fn new(server: &str) -> Result<Self> {
        let bad = |message: &str| Error::BadServerUrl { url: server.to_string(), message: message.to_string() };
        let base = Url::parse(server).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad("expected http://HOST:PORT"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Transport { server: server.to_string(), source: e })?;
        Ok(Client { http, base })
    }

    /// The server's base URL.
    pub fn server(&self) -> &Url {
        &self.base
    }

    /// Every served kind with its JSON Schema (`GET /kinds`).
    pub async fn kinds(&self) -> Result<Vec<KindInfo>> {
        let url = self.url(&["kinds"]);
        let resp = self.send(self.http.get(url)).await?;
        decode(resp, "the list of kinds").await
    }

    /// One object. `namespace` is ignored for cluster-scoped kinds.
    pub async fn get(&self, kind: &KindInfo, namespace: Option<&str>, name: &str) -> Result<DynamicObject> {
        let url = self.object_url(kind, namespace, Some(name));
        let resp = self.send(self.http.get(url)).await?;
        decode(resp, "an object").await
    }

    /// Every object of `kind` in `namespace`, or in all namespaces when `None`.
    pub async fn list(&self, kind: &KindInfo, namespace: Option<&str>, params: &ListParams) -> Result<ObjectList> {
        let mut url = self.object_url(kind, namespace, None);
        if let Some(sel) = params.label_selector.as_deref().filter(|s| !s.is_empty()) {
            url.query_pairs_mut().append_pair("labelSelector", sel);
        }
        let resp = self.send(self.http.get(url)).await?;
        decode(resp, "a list").await
    }

    /// Creates `object` (POST); 409 `AlreadyExists` if it exists.
    pub async fn create(
        &self,
        kind: &KindInfo,
        object: &serde_json::Value,
        params: &WriteParams,
    ) -> Result<DynamicObject> {
        let url = self.write_url(self.object_url(kind, namespace_of(object), None), params);
        let resp = self.send(self.http.post(url).json(object)).await?;
        decode(resp, "the created object").await
    }

    /// Replaces `object` (PUT). A `metadata.resourceVersion` in it is a precondition.
    pub async fn update(
        &self,
        kind: &KindInfo,
        object: &serde_json::Value,
        params: &WriteParams,
    ) -> Result<DynamicObject> {
        let name = object.pointer("/metadata/name").and_then(serde_json::Value::as_str).unwrap_or_default();
        let url = self.write_url(self.object_url(kind, namespace_of(object), Some(name)), params);
        let resp = self.send(self.http.put(url).json(object)).await?;
        decode(resp, "the updated object").await
    }

    /// Patches one object; an [`Patch::Apply`] creates it if missing.
    pub async fn patch(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        patch: Patch<'_>,
        params: &WriteParams,
    ) -> Result<Written> {
        let url = self.write_url(self.object_url(kind, namespace, Some(name)), params);
        let body = serde_json::to_vec(patch.body())
            .map_err(|e| Error::Decode { what: "a patch".into(), message: e.to_string() })?;
        let req = self
            .http
            .request(Method::PATCH, url)
            .header(reqwest::header::CONTENT_TYPE, patch.content_type())
            .body(body);
        let resp = self.send(req).await?;
        let created = resp.status() == StatusCode::CREATED;
        let object = decode(resp, "the patched object").await?;
        Ok(Written { object, created })
    }

    /// Deletes one object; the server collects its dependents in the background.
    pub async fn delete(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        params: &WriteParams,
    ) -> Result<Deleted> {
        self.delete_propagating(kind, namespace, name, params, None).await
    }

    /// Deletes one object, telling the server what to do with its dependents:
    /// `propagation` is `Background`, `Foreground` or `Orphan` (`propagationPolicy`);
    /// `None` leaves the server's default, `Background`.
    pub async fn delete_propagating(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        params: &WriteParams,
        propagation: Option<&str>,
    ) -> Result<Deleted> {
        let mut url = self.write_url(self.object_url(kind, namespace, Some(name)), params);
        if let Some(p) = propagation {
            url.query_pairs_mut().append_pair("propagationPolicy", p);
        }
        let resp = self.send(self.http.delete(url)).await?;
        let pending = resp.status() == StatusCode::ACCEPTED;
        let object = decode(resp, "the deleted object").await?;
        Ok(if pending { Deleted::Pending(object) } else { Deleted::Gone(object) })
    }

    /// Watches `kind` in `namespace` (all namespaces when `None`).
    ///
    /// # Errors
    /// A compacted `resource_version` fails here with code 410 ([`Error::is_gone`]);
    /// falling behind compaction later arrives as a [`WatchEvent::Error`] with code
    /// 410 and ends the stream. Either way: re-list, then watch from the list.
    pub async fn watch(&self, kind: &KindInfo, namespace: Option<&str>, params: &WatchParams) -> Result<WatchStream> {
        let mut url = self.object_url(kind, namespace, None);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("watch", "true");
            if let Some(sel) = params.label_selector.as_deref().filter(|s| !s.is_empty()) {
                q.append_pair("labelSelector", sel);
            }
            if let Some(rv) = &params.resource_version {
                q.append_pair("resourceVersion", rv);
            }
            if params.bookmarks {
                q.append_pair("allowWatchBookmarks", "true");
            }
        }
        let resp = self.send(self.http.get(url)).await?;
        Ok(watch::event_stream(resp, self.shown()))
    }

    /// The base URL as people write it, without the trailing `/`.
    fn shown(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `new` rejected cannot-be-a-base URLs, the only case where this fails.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn object_url(&self, kind: &KindInfo, namespace: Option<&str>, name: Option<&str>) -> Url {
        let mut segs: Vec<&str> = vec!["apis", &kind.group, &kind.version];
        if let (true, Some(ns)) = (kind.namespaced, namespace) {
            segs.extend(["namespaces", ns]);
        }
        segs.push(&kind.plural);
        segs.extend(name);
        self.url(&segs)
    }

    fn write_url(&self, mut url: Url, params: &WriteParams) -> Url {
        if params.dry_run {
            url.query_pairs_mut().append_pair("dryRun", "All");
        }
        if let Some(m) = &params.field_manager {
            url.query_pairs_mut().append_pair("fieldManager", m);
        }
        url
    }

    async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        if resp.status().is_success() { Ok(resp) } else { Err(self.status_error(resp).await) }
    }

    fn transport(&self, source: reqwest::Error) -> Error {
        Error::Transport { server: self.shown(), source }
    }

    async fn status_error(&self, resp: Response) -> Error {
        let code = resp.status();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return self.transport(e),
        };
        match serde_json::from_slice::<Status>(&body) {
            Ok(mut s) if !s.reason.is_empty() || !s.message.is_empty() => {
                if s.code == 0 {
                    s.code = code.as_u16();
                }
                Error::Api(Box::new(s))
            }
            // Not a Status: a proxy, or a server bug. Keep what it said, briefly.
            _ => {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.trim().chars().take(200).collect();
                let reason = code.canonical_reason().unwrap_or("Unknown").replace(' ', "");
                let message = if text.is_empty() {
                    format!("the server answered {code}")
                } else {
                    format!("the server answered {code}: {text}")
                };
                Error::Api(Box::new(Status { code: code.as_u16(), reason, message, details: None }))
            }
        }
    }
}

fn namespace_of(object: &serde_json::Value) -> Option<&str> {
    object.pointer("/metadata/namespace").and_then(serde_json::Value::as_str)
}

async fn decode<T: DeserializeOwned>(resp: Response, what: &str) -> Result<T> {
    let body = resp.bytes().await.map_err(|e| Error::Decode { what: what.into(), message: e.to_string() })?;
    serde_json::from_slice(&body).map_err(|e| Error::Decode { what: what.into(), message: e.to_string() })
}
