//! The dynamic client: any served kind, objects as [`DynamicObject`], kinds discovered
//! at run time through `GET /kinds`. [`Api`](crate::Api) is its typed face.

use std::sync::Arc;

use bytes::Bytes;
use corral_api::{DynamicObject, KindInfo};
use http::{Method, StatusCode, header};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, Status};
use crate::pager;
use crate::params::{DeleteParams, ListParams, Patch, WatchParams, WriteParams};
use crate::transport::{HttpTransport, Response, Transport};
use crate::watch::{self, WatchStream};

/// A handle on one Corral server. Cheap to clone; clones share the transport (and its
/// connections) and the kinds learnt so far.
#[derive(Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
    kinds: Arc<RwLock<Vec<Arc<KindInfo>>>>,
    /// Who every request acts as, when impersonating ([`Client::impersonating`]).
    impersonate: Option<Arc<Impersonation>>,
}

/// The identity a client impersonates: sent as `Impersonate-User` and
/// `Impersonate-Group` on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Impersonation {
    user: String,
    groups: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("server", &self.transport.server()).finish()
    }
}

/// A list answer: a consistent snapshot at `metadata.resourceVersion`, whole or one
/// page of it (then `metadata.continue` names the next page).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList<K> {
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
    #[serde(default = "Vec::new")]
    pub items: Vec<K>,
}

impl<K> ObjectList<K> {
    /// The revision of the snapshot: watch from it to see every later change.
    pub fn revision(&self) -> u64 {
        self.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// The token of the next page (`metadata.continue`), for
    /// [`ListParams::continue_token`]; `None` on the last (or only) page.
    pub fn continue_token(&self) -> Option<&str> {
        self.metadata.continue_token.as_deref().filter(|t| !t.is_empty())
    }
}

/// Metadata of a list.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// Revision of the snapshot; watch from here to see every later change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// On a page of a list, when more objects remain: the token that fetches the
    /// next page (`continue`). Absent or empty on the last page.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
    /// On a page of a list, how many objects remain after it, when the server knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_item_count: Option<u64>,
}

/// The object a write left behind, and whether the write created it.
#[derive(Clone, Debug)]
pub struct Written<K = DynamicObject> {
    /// The object as the server now has it (or would have it, on a dry run).
    pub object: K,
    /// Whether the server answered 201 Created.
    pub created: bool,
}

/// What a delete did.
#[derive(Clone, Debug)]
pub enum Deleted<K = DynamicObject> {
    /// The object is gone; this was its last state.
    Gone(K),
    /// Finalizers remain: the object now carries a `deletionTimestamp` and disappears
    /// once they are removed.
    Pending(K),
}

impl<K> Deleted<K> {
    /// The object, gone or pending.
    pub fn into_object(self) -> K {
        match self {
            Deleted::Gone(o) | Deleted::Pending(o) => o,
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The header naming the user a request impersonates.
pub const IMPERSONATE_USER: &str = "impersonate-user";
/// The header, repeated, naming each group a request impersonates.
pub const IMPERSONATE_GROUP: &str = "impersonate-group";

/// A path with a query string being built.
pub(crate) struct PathQuery {
    text: String,
    has_query: bool,
}

impl PathQuery {
    pub(crate) fn new(path: String) -> Self {
        PathQuery { text: path, has_query: false }
    }

    pub(crate) fn param(mut self, key: &str, value: &str) -> Self {
        self.text.push(if self.has_query { '&' } else { '?' });
        self.has_query = true;
        self.text.push_str(key);
        self.text.push('=');
        self.text.push_str(&encode(value));
        self
    }

    pub(crate) fn param_opt(self, key: &str, value: Option<&str>) -> Self {
        match value.filter(|v| !v.is_empty()) {
            Some(v) => self.param(key, v),
            None => self,
        }
    }

    pub(crate) fn into_text(self) -> String {
        self.text
    }

    pub(crate) fn write(self, params: &WriteParams) -> Self {
        let q = if params.dry_run { self.param("dryRun", "All") } else { self };
        let q = if params.force { q.param("force", "true") } else { q };
        q.param_opt("fieldManager", params.field_manager.as_deref())
    }
}

/// Where a kind's objects live: `/apis/{g}/{v}[/namespaces/{ns}]/{plural}`.
pub(crate) fn collection_path(kind: &KindInfo, namespace: Option<&str>) -> String {
    match namespace.filter(|_| kind.namespaced) {
        Some(ns) => format!("/apis/{}/{}/namespaces/{}/{}", kind.group, kind.version, encode(ns), kind.plural),
        None => format!("/apis/{}/{}/{}", kind.group, kind.version, kind.plural),
    }
}

/// The path and query of a list (or one page of it).
fn list_query(kind: &KindInfo, namespace: Option<&str>, params: &ListParams) -> String {
    let limit = params.limit.filter(|l| *l > 0).map(|l| l.to_string());
    PathQuery::new(collection_path(kind, namespace))
        .param_opt("labelSelector", params.label_selector.as_deref())
        .param_opt("fieldSelector", params.field_selector.as_deref())
        .param_opt("limit", limit.as_deref())
        .param_opt("continue", params.continue_token.as_deref())
        .text
}

/// Where one object lives.
pub(crate) fn object_path(kind: &KindInfo, namespace: Option<&str>, name: &str) -> String {
    format!("{}/{}", collection_path(kind, namespace), encode(name))
}

/// Namespace and name of an object about to be written.
fn identity<B: Serialize + ?Sized>(body: &B) -> Result<(Option<String>, String)> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        metadata: HeadMeta,
    }
    #[derive(Deserialize, Default)]
    struct HeadMeta {
        #[serde(default)]
        name: String,
        #[serde(default)]
        namespace: Option<String>,
    }
    let v = serde_json::to_value(body).map_err(|e| Error::Invalid(format!("cannot encode the object: {e}")))?;
    let head: Head = serde_json::from_value(v).map_err(|e| Error::Invalid(format!("object without metadata: {e}")))?;
    Ok((head.metadata.namespace, head.metadata.name))
}

impl Client {
    /// A client over `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Client { transport, kinds: Arc::default(), impersonate: None }
    }

    /// A clone of this client whose every request (watches included) acts as `user`
    /// in `groups`, as Kubernetes' impersonation: the server checks that this client's
    /// own identity may `impersonate` that user (`users`, or `serviceaccounts` for
    /// `system:serviceaccount:NS:NAME`) and each group (`groups`), then authorizes and
    /// audits the request as the impersonated identity. Requests of the clone fail
    /// with 403 when this client may not impersonate that user or a group, and with
    /// [`Error::Invalid`] when a name cannot be sent as a header value.
    pub fn impersonating(&self, user: &str, groups: &[&str]) -> Client {
        let impersonation =
            Impersonation { user: user.to_string(), groups: groups.iter().map(|g| g.to_string()).collect() };
        Client { impersonate: Some(Arc::new(impersonation)), ..self.clone() }
    }

    /// Adds the impersonation headers, if any, to `request`.
    fn impersonation_headers(&self, request: &mut http::Request<Bytes>) -> Result<()> {
        let Some(i) = &self.impersonate else { return Ok(()) };
        let value = |v: &str| {
            http::HeaderValue::from_str(v)
                .map_err(|_| Error::Invalid(format!("{v:?} cannot be sent as an impersonation header")))
        };
        let headers = request.headers_mut();
        headers.insert(IMPERSONATE_USER, value(&i.user)?);
        for g in &i.groups {
            headers.append(IMPERSONATE_GROUP, value(g)?);
        }
        Ok(())
    }

    /// A client of the server at `server` (e.g. `http://127.0.0.1:7070`).
    ///
    /// # Errors
    /// [`Error::BadServerUrl`] if `server` is not an `http(s)` URL with a host.
    pub fn http(server: &str) -> Result<Self> {
        Ok(Client::new(Arc::new(HttpTransport::new(server)?)))
    }

    /// A client of `config.server` authenticating with `config.token`.
    ///
    /// # Errors
    /// As [`HttpTransport::with_config`].
    pub fn from_config(config: &crate::Config) -> Result<Self> {
        Ok(Client::new(Arc::new(HttpTransport::with_config(config)?)))
    }

    /// Where requests go: the base URL, or `in-process`.
    pub fn server(&self) -> String {
        self.transport.server()
    }

    /// Every served kind with its JSON Schema (`GET /kinds`), fetched afresh; also
    /// refreshes what [`Client::kind`] knows.
    pub async fn kinds(&self) -> Result<Vec<Arc<KindInfo>>> {
        let (_, kinds): (_, Vec<KindInfo>) = self.call(Method::GET, "/kinds".into(), None, "the list of kinds").await?;
        let kinds: Vec<Arc<KindInfo>> = kinds.into_iter().map(Arc::new).collect();
        *self.kinds.write() = kinds.clone();
        Ok(kinds)
    }

    /// The kind a name designates (plural, singular, short name or kind, any case),
    /// asking the server again if it is not known yet (custom kinds appear at run time).
    ///
    /// # Errors
    /// [`Error::UnknownKind`] if the server serves no such kind.
    pub async fn kind(&self, name: &str) -> Result<Arc<KindInfo>> {
        if let Some(k) = self.kinds.read().iter().find(|k| k.matches_name(name)) {
            return Ok(k.clone());
        }
        self.kinds()
            .await?
            .into_iter()
            .find(|k| k.matches_name(name))
            .ok_or_else(|| Error::UnknownKind(name.to_string()))
    }

    /// One object. `namespace` is ignored for cluster-scoped kinds.
    pub async fn get(&self, kind: &KindInfo, namespace: Option<&str>, name: &str) -> Result<DynamicObject> {
        self.get_as(kind, namespace, name).await
    }

    /// One object, or `None` if it does not exist.
    pub async fn get_opt(&self, kind: &KindInfo, namespace: Option<&str>, name: &str) -> Result<Option<DynamicObject>> {
        not_found_is_none(self.get(kind, namespace, name).await)
    }

    /// The objects of `kind` in `namespace` (all namespaces when `None`) that the
    /// selectors match: all of them, or one page when `params.limit` is set (see
    /// [`Client::list_all`] to read every page).
    ///
    /// # Errors
    /// 410 `Expired` when `params.continue_token` names a snapshot compacted since:
    /// start the list again from its first page.
    pub async fn list(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList<DynamicObject>> {
        self.list_as(kind, namespace, params).await
    }

    /// Every object of `kind` in `namespace` (all namespaces when `None`) that the
    /// selectors match, read in pages of `page_size` objects (`limit`, then
    /// `continue` with the same selectors) and returned as one list; 0 reads it in one
    /// request. [`DEFAULT_PAGE_SIZE`](crate::DEFAULT_PAGE_SIZE) is kubectl's and
    /// client-go's choice.
    ///
    /// # Guarantees
    /// The items are one consistent snapshot at the returned
    /// `metadata.resourceVersion` (every page is read at that revision), each object
    /// once, in the server's order: watch from that revision to see every later
    /// change. `params.limit` and `params.continue_token` are not used: the list is
    /// read from its start.
    ///
    /// # Errors
    /// When the snapshot is compacted between two pages (410 `Expired`), the list is
    /// read again from its first page, at most
    /// [`MAX_LIST_RESTARTS`](crate::MAX_LIST_RESTARTS) times; then the 410 is returned
    /// ([`Error::is_gone`]). [`Error::Decode`] when the server's pages do not share
    /// one revision. Any other error of a page as it is.
    pub async fn list_all(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        params: &ListParams,
        page_size: u32,
    ) -> Result<ObjectList<DynamicObject>> {
        self.list_all_as(kind, namespace, params, page_size).await
    }

    /// Creates `object` (POST); 409 `AlreadyExists` if it exists.
    pub async fn create<B: Serialize + ?Sized>(
        &self,
        kind: &KindInfo,
        object: &B,
        params: &WriteParams,
    ) -> Result<DynamicObject> {
        let (ns, _) = identity(object)?;
        self.create_as(kind, ns.as_deref(), object, params).await
    }

    /// Replaces `object` (PUT); its status is kept. A `metadata.resourceVersion` in it
    /// is a precondition (409 `Conflict` when stale).
    pub async fn update<B: Serialize + ?Sized>(
        &self,
        kind: &KindInfo,
        object: &B,
        params: &WriteParams,
    ) -> Result<DynamicObject> {
        let (ns, name) = identity(object)?;
        self.update_as(kind, ns.as_deref(), &name, object, false, params).await
    }

    /// Replaces only the status of `object`. Writing status does not change
    /// `generation`, so a controller that compares `generation` with its
    /// `observedGeneration` does not re-trigger itself.
    pub async fn update_status<B: Serialize + ?Sized>(
        &self,
        kind: &KindInfo,
        object: &B,
        params: &WriteParams,
    ) -> Result<DynamicObject> {
        let (ns, name) = identity(object)?;
        self.update_as(kind, ns.as_deref(), &name, object, true, params).await
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
        self.patch_as(kind, namespace, name, patch, params).await
    }

    /// Deletes one object; its dependents go as `params.propagation` says.
    pub async fn delete(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Deleted> {
        self.delete_as(kind, namespace, name, params).await
    }

    /// Watches `kind` in `namespace` (all namespaces when `None`).
    ///
    /// # Errors
    /// A compacted `resource_version` fails here with code 410 ([`Error::is_gone`]);
    /// falling behind compaction later arrives as a
    /// [`WatchEvent::Error`](crate::WatchEvent::Error) with code 410 and ends the
    /// stream. Either way: re-list, then watch from the list.
    pub async fn watch(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        params: &WatchParams,
    ) -> Result<WatchStream<DynamicObject>> {
        self.watch_as(kind, namespace, params).await
    }

    // The typed forms behind both the dynamic methods above and `Api<K>`.

    pub(crate) async fn get_as<K: DeserializeOwned>(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<K> {
        Ok(self.call(Method::GET, object_path(kind, namespace, name), None, "an object").await?.1)
    }

    pub(crate) async fn list_as<K: DeserializeOwned>(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList<K>> {
        Ok(self.call(Method::GET, list_query(kind, namespace, params), None, "a list").await?.1)
    }

    pub(crate) async fn list_all_as<K: DeserializeOwned>(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        params: &ListParams,
        page_size: u32,
    ) -> Result<ObjectList<K>> {
        pager::read_all(params, page_size, |page| async move { self.list_as(kind, namespace, &page).await }).await
    }

    pub(crate) async fn create_as<B: Serialize + ?Sized, K: DeserializeOwned>(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        object: &B,
        params: &WriteParams,
    ) -> Result<K> {
        let path = PathQuery::new(collection_path(kind, namespace)).write(params);
        let body = json_body(object)?;
        Ok(self.call(Method::POST, path.text, Some(("application/json", body)), "the created object").await?.1)
    }

    pub(crate) async fn update_as<B: Serialize + ?Sized, K: DeserializeOwned>(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        object: &B,
        status: bool,
        params: &WriteParams,
    ) -> Result<K> {
        let mut path = object_path(kind, namespace, name);
        if status {
            path.push_str("/status");
        }
        let path = PathQuery::new(path).write(params);
        let body = json_body(object)?;
        Ok(self.call(Method::PUT, path.text, Some(("application/json", body)), "the updated object").await?.1)
    }

    pub(crate) async fn patch_as<K: DeserializeOwned>(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        patch: Patch<'_>,
        params: &WriteParams,
    ) -> Result<Written<K>> {
        let path = PathQuery::new(object_path(kind, namespace, name)).write(params);
        let body = json_body(patch.body())?;
        let (status, object) =
            self.call(Method::PATCH, path.text, Some((patch.content_type(), body)), "the patched object").await?;
        Ok(Written { object, created: status == StatusCode::CREATED })
    }

    pub(crate) async fn delete_as<K: DeserializeOwned>(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Deleted<K>> {
        let mut path = PathQuery::new(object_path(kind, namespace, name));
        let body = match params.body() {
            Some(options) => Some(("application/json", json_body(&options)?)),
            None => {
                if params.dry_run {
                    path = path.param("dryRun", "All");
                }
                path = path.param_opt("propagationPolicy", params.propagation.map(|p| p.as_str()));
                None
            }
        };
        let (status, object) = self.call(Method::DELETE, path.text, body, "the deleted object").await?;
        Ok(if status == StatusCode::ACCEPTED { Deleted::Pending(object) } else { Deleted::Gone(object) })
    }

    pub(crate) async fn watch_as<K: DeserializeOwned + Send + 'static>(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        params: &WatchParams,
    ) -> Result<WatchStream<K>> {
        let mut path = PathQuery::new(collection_path(kind, namespace))
            .param("watch", "true")
            .param_opt("labelSelector", params.label_selector.as_deref())
            .param_opt("fieldSelector", params.field_selector.as_deref())
            .param_opt("resourceVersion", params.resource_version.as_deref());
        if params.bookmarks {
            path = path.param("allowWatchBookmarks", "true");
        }
        let resp = self.send(Method::GET, path.text, None).await?;
        let resp = self.check(resp).await?;
        Ok(watch::event_stream(resp.body))
    }

    /// `GET` (no body) or `POST` (with `body`) a JSON endpoint outside `/apis`, such as
    /// `/auth/whoami`; the answer decoded as `T`.
    ///
    /// # Errors
    /// The `Status` of a refused request (as every call), or [`Error::Decode`].
    pub async fn call_json<T: DeserializeOwned>(&self, path: &str, body: Option<&serde_json::Value>) -> Result<T> {
        let (method, body) = match body {
            Some(b) => (Method::POST, Some(("application/json", json_body(b)?))),
            None => (Method::GET, None),
        };
        Ok(self.call(method, path.to_string(), body, path).await?.1)
    }

    /// Sends `request` as it is (its URI a path and query, e.g. `/v2/`) with this
    /// client's credential, and returns the response whatever its status: for
    /// endpoints outside the Kubernetes-shaped API, such as the image registry.
    ///
    /// # Errors
    /// The transport's, when no response arrives.
    pub async fn send_request(&self, mut request: http::Request<Bytes>) -> Result<Response> {
        self.impersonation_headers(&mut request)?;
        self.transport.send(request).await
    }

    /// Sends one request; the response whatever its status.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: String,
        body: Option<(&str, Bytes)>,
    ) -> Result<Response> {
        let mut req = http::Request::builder().method(method).uri(&path_and_query);
        req = req.header(header::ACCEPT, "application/json");
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let mut req =
            req.body(body).map_err(|e| Error::Invalid(format!("cannot build a request for {path_and_query}: {e}")))?;
        self.impersonation_headers(&mut req)?;
        self.transport.send(req).await
    }

    /// The response itself when it succeeded, else the error its `Status` describes.
    pub(crate) async fn check(&self, resp: Response) -> Result<Response> {
        if resp.status.is_success() {
            return Ok(resp);
        }
        let code = resp.status;
        let body = resp.bytes().await?;
        Err(status_error(code, &body))
    }

    /// Sends one request and decodes a successful answer as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: String,
        body: Option<(&str, Bytes)>,
        what: &str,
    ) -> Result<(StatusCode, T)> {
        let resp = self.check(self.send(method, path_and_query, body).await?).await?;
        let status = resp.status;
        let bytes = resp.bytes().await?;
        let value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Decode { what: what.into(), message: e.to_string() })?;
        Ok((status, value))
    }
}

pub(crate) fn json_body<B: Serialize + ?Sized>(body: &B) -> Result<Bytes> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| Error::Invalid(format!("cannot encode the request body: {e}")))
}

/// `Ok(None)` for a 404, the rest unchanged.
pub(crate) fn not_found_is_none<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The error an answer with status `code` and body `body` stands for.
pub(crate) fn status_error(code: StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<Status>(body) {
        Ok(mut s) if !s.reason.is_empty() || !s.message.is_empty() => {
            if s.code == 0 {
                s.code = code.as_u16();
            }
            Error::Api(Box::new(s))
        }
        // Not a Status: a proxy, or a server bug. Keep what it said, briefly.
        _ => {
            let text = String::from_utf8_lossy(body);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_are_encoded() {
        let kind = corral_api::Registry::builtin().resolve("cm").map(|k| (*k).clone()).expect("configmaps");
        assert_eq!(
            object_path(&kind, Some("default"), "a b"),
            "/apis/corral.dev/v1/namespaces/default/configmaps/a%20b"
        );
        let q =
            PathQuery::new(collection_path(&kind, None)).param("labelSelector", "app in (a,b)").param("watch", "true");
        assert_eq!(q.text, "/apis/corral.dev/v1/configmaps?labelSelector=app%20in%20%28a%2Cb%29&watch=true");
    }

    #[test]
    fn list_pages_are_asked_for_with_limit_and_continue() {
        let kind = corral_api::Registry::builtin().resolve("cm").map(|k| (*k).clone()).expect("configmaps");
        let path = "/apis/corral.dev/v1/namespaces/ns/configmaps";
        assert_eq!(list_query(&kind, Some("ns"), &ListParams::default()), path);
        assert_eq!(list_query(&kind, Some("ns"), &ListParams::default().limit(0)), path, "0 is no limit");
        let page = ListParams::default().labels("app=web").limit(500).continue_token("a+b/c==");
        assert_eq!(
            list_query(&kind, Some("ns"), &page),
            format!("{path}?labelSelector=app%3Dweb&limit=500&continue=a%2Bb%2Fc%3D%3D")
        );
    }

    #[test]
    fn list_metadata_carries_the_next_page() {
        let page: ObjectList<serde_json::Value> = serde_json::from_str(
            r#"{"kind":"ConfigMapList","metadata":{"resourceVersion":"7","continue":"tok","remainingItemCount":3},"items":[]}"#,
        )
        .unwrap();
        assert_eq!(page.continue_token(), Some("tok"));
        assert_eq!(page.metadata.remaining_item_count, Some(3));
        assert_eq!(page.revision(), 7);
        let last: ObjectList<serde_json::Value> =
            serde_json::from_str(r#"{"metadata":{"resourceVersion":"7","continue":""},"items":[]}"#).unwrap();
        assert_eq!(last.continue_token(), None, "an empty token is the last page");
        let text = serde_json::to_string(&page.metadata).unwrap();
        assert_eq!(text, r#"{"resourceVersion":"7","continue":"tok","remainingItemCount":3}"#);
    }

    #[test]
    fn error_answers_become_status_errors() {
        let e = status_error(
            StatusCode::CONFLICT,
            br#"{"kind":"Status","code":409,"reason":"Conflict","message":"stale"}"#,
        );
        assert!(e.is_conflict() && !e.is_already_exists(), "{e}");
        let e = status_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.code(), Some(502));
        assert!(e.to_string().contains("upstream down"), "{e}");
    }
}
