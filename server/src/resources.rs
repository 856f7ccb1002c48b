//! Everything under `/apis/{g}/{v}/...`: collections, objects and their status.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use corral_api::{KindInfo, Selector};
use corral_store::{Error as StoreError, Key, StoredObject};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AppState;
use super::auth::Identity;
use super::body;
use super::error::{ApiError, ApiResult, StatusDetails};
use super::path::{self, ApiPath, ResourcePath, Target};
use super::watch_limits::ClientAddr;

/// Query parameters understood on resource paths; others are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    label_selector: Option<String>,
    field_selector: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    allow_watch_bookmarks: Option<String>,
    dry_run: Option<String>,
    field_manager: Option<String>,
    force: Option<String>,
    propagation_policy: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

/// Longest a custom kind's schema validation may take.
const VALIDATION_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// One request on a kind, with what the path and query said.
pub(super) struct Ctx {
    /// Shared server state.
    pub state: AppState,
    /// The kind addressed.
    pub info: Arc<KindInfo>,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path; empty on collections.
    pub name: String,
    /// `dryRun=All`: compute, write nothing.
    pub dry_run: bool,
    /// `fieldManager`: whose apply this is.
    pub field_manager: Option<String>,
    /// `force`: an apply takes over fields other managers applied (server-side
    /// apply's conflicts).
    pub force: bool,
    /// Where the request came from, when over the network.
    pub client: Option<ClientAddr>,
    /// Who asks (established by [`crate::auth::guard`]).
    pub identity: Arc<Identity>,
    /// What part of the object the path addresses.
    pub target: Target,
}

impl AppState {
    /// The built-in kind `plural` (`tasks`, `nodes`…); registered at start, so its
    /// absence is a bug, answered 500.
    pub(super) fn builtin_kind(&self, plural: &str) -> ApiResult<Arc<KindInfo>> {
        self.registry
            .by_plural(corral_api::GROUP, corral_api::VERSION, plural)
            .ok_or_else(|| ApiError::internal(format!("the built-in kind {plural} is not registered")))
    }
}

impl Ctx {
    /// The store key of the object `name` in this request's namespace.
    pub fn key(&self, name: &str) -> Key {
        match &self.namespace {
            Some(ns) => Key::namespaced(self.info.resource(), ns, name),
            None => Key::cluster(self.info.resource(), name),
        }
    }

    /// Maps a store error about the object `name`.
    pub fn store_error(&self, name: &str) -> impl FnOnce(StoreError) -> ApiError + '_ {
        let name = name.to_string();
        move |e| ApiError::from_store(e, &self.info, &name)
    }

    /// Validates a whole object against the kind's schema: 422 naming every offending
    /// field. A custom kind's schema is the user's: its validation runs off the async
    /// workers and is given [`VALIDATION_TIME`], so no schema can stall the server.
    pub async fn validate(&self, object: &Value) -> ApiResult<()> {
        let invalid = |causes| ApiError::invalid(&self.info, object_name(object), causes);
        if self.info.group == corral_api::GROUP {
            self.state.registry.validate(&self.info, object).map_err(invalid)?;
            return super::admission::admit(self, object).await;
        }
        let (registry, info, copy) = (self.state.registry.clone(), self.info.clone(), object.clone());
        let check = tokio::task::spawn_blocking(move || registry.validate(&info, &copy));
        match tokio::time::timeout(VALIDATION_TIME, check).await {
            Ok(Ok(r)) => r.map_err(invalid),
            Ok(Err(e)) => Err(ApiError::internal(format!("validation failed: {e}"))),
            Err(_) => Err(invalid(vec![corral_api::FieldError::new(
                "spec",
                format!(
                    "validation against the {} schema took longer than {} s; simplify the object or the schema",
                    self.info.kind,
                    VALIDATION_TIME.as_secs()
                ),
            )])),
        }
    }

    /// The object `name` as stored; 404 when missing.
    pub async fn live(&self, name: &str) -> ApiResult<Arc<StoredObject>> {
        self.state
            .store
            .get(&self.key(name))
            .await
            .map_err(self.store_error(name))?
            .ok_or_else(|| ApiError::object_not_found(&self.info, name))
    }

    /// Creating a namespaced object needs its namespace to exist (404 naming it) and
    /// not to be terminating (403).
    pub async fn require_namespace(&self) -> ApiResult<()> {
        let Some(ns) = self.namespace.as_deref().filter(|_| self.info.namespaced) else {
            return Ok(());
        };
        let key = Key::cluster(format!("{}/namespaces", corral_api::GROUP), ns);
        match self.state.store.head(&key).await {
            Ok(Some(h)) if h.deleting => Err(super::delete::namespace_terminating(ns)),
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ApiError::not_found(format!("namespace {ns:?} not found; create it first")).with_details(
                StatusDetails {
                    group: corral_api::GROUP.to_string(),
                    kind: "Namespace".to_string(),
                    name: ns.to_string(),
                    causes: Vec::new(),
                },
            )),
            Err(e) => Err(ApiError::from(e)),
        }
    }

    /// Makes the body agree with the path: a missing namespace or name is taken from
    /// the path, a different one is a client error.
    pub fn fill_identity(&self, object: &mut Value, name: Option<&str>) -> ApiResult<()> {
        let Some(map) = object.as_object_mut() else {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        };
        let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        // A metadata of the wrong type is left to validation, which names it.
        let Some(meta) = meta.as_object_mut() else { return Ok(()) };
        let path_ns = self.namespace.as_deref().filter(|_| self.info.namespaced);
        let object_name =
            meta.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).or(name).unwrap_or_default().to_string();
        for (field, from_path) in [("namespace", path_ns), ("name", name)] {
            let Some(from_path) = from_path else { continue };
            match meta.get(field) {
                None | Some(Value::Null) => {
                    meta.insert(field.to_string(), Value::String(from_path.to_string()));
                }
                Some(Value::String(s)) if s.is_empty() => {
                    meta.insert(field.to_string(), Value::String(from_path.to_string()));
                }
                Some(Value::String(s)) if s != from_path => {
                    return Err(ApiError::bad_request(format!(
                        "metadata.{field} of the object ({s:?}) does not match the {field} in the request path ({from_path:?})"
                    ))
                    .with_details(StatusDetails::object(&self.info, &object_name)));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `metadata.name` of an object, or empty.
pub(super) fn object_name(object: &Value) -> &str {
    object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// The `metadata.resourceVersion` a body carries, as an update precondition.
pub(super) fn precondition(ctx: &Ctx, object: &Value) -> ApiResult<Option<u64>> {
    match object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        None | Some("") => Ok(None),
        Some(rv) => rv.parse().map(Some).map_err(|_| {
            ApiError::invalid(
                &ctx.info,
                object_name(object),
                vec![corral_api::FieldError::new(
                    "metadata.resourceVersion",
                    format!("{rv:?} is not a resourceVersion returned by the server; omit it or send the one you read"),
                )],
            )
        }),
    }
}

/// The conflict a write with a stale precondition gets, for dry runs that do not
/// reach the store.
pub(super) fn stale(ctx: &Ctx, name: &str, expected: u64, live: &StoredObject) -> ApiError {
    ApiError::from_store(StoreError::Conflict { key: ctx.key(name), expected, actual: live.revision }, &ctx.info, name)
}

/// The router's entry for `/apis/{*rest}`.
pub async fn dispatch(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    identity: Option<axum::Extension<Arc<Identity>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The guard in front of every route always sets the identity.
    let Some(axum::Extension(identity)) = identity else {
        // The guard lets one request through unauthenticated: a Sync's trigger,
        // whose webhook token is checked there.
        if super::trigger::is_trigger(&method, uri.path()) {
            return super::trigger::webhook(state, method, uri, headers, body).await;
        }
        return ApiError::unauthorized("this request was not authenticated").into_response();
    };
    match route(state, client.map(|c| c.0), identity, method, uri, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(
    state: AppState,
    client: Option<ClientAddr>,
    identity: Arc<Identity>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let path = uri.path();
    let not_found = || ApiError::not_found(format!("the server could not find the requested resource {path}"));
    let parsed = path.strip_prefix("/apis/").and_then(path::parse).ok_or_else(not_found)?;
    let p = match parsed {
        ApiPath::GroupVersion { group, version } => {
            return if method == Method::GET || method == Method::HEAD {
                super::discovery::group_version(&state, &group, &version)
            } else {
                Err(ApiError::method_not_allowed(&method, path))
            };
        }
        ApiPath::Resource(p) => p,
    };
    let info = state.registry.by_plural(&p.group, &p.version, &p.plural).ok_or_else(|| {
        ApiError::not_found(format!("the server does not serve {:?} in {}/{}", p.plural, p.group, p.version))
    })?;
    check_scope(&info, &p)?;
    let params = Query::<Params>::try_from_uri(&uri).map_err(|e| ApiError::bad_request(e.body_text()))?.0;
    let ctx = Ctx {
        state,
        info,
        namespace: p.namespace.clone(),
        name: p.name.clone().unwrap_or_default(),
        dry_run: dry_run(params.dry_run.as_deref())?,
        field_manager: params.field_manager.clone(),
        force: flag("force", params.force.as_deref())?,
        client,
        identity,
        target: p.target,
    };
    if let Some(node) = ctx.identity.node() {
        super::auth::node::check_request(&ctx, node, p.target, &method, params.field_selector.as_deref()).await?;
    }
    let content_length =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let result = match (p.target, method.as_str()) {
        (Target::Collection, "GET" | "HEAD")
            if super::table::wanted(&headers) && !flag("watch", params.watch.as_deref())? =>
        {
            let list = list_or_watch(&ctx, &params, &headers).await?;
            let list = body_json(list).await?;
            let items = list.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let meta = list.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({}));
            Ok(body::json(StatusCode::OK, &super::table::of(&ctx.info, items, meta)))
        }
        (Target::Collection, "GET" | "HEAD") => list_or_watch(&ctx, &params, &headers).await,
        (Target::Object, "GET" | "HEAD") if super::table::wanted(&headers) => {
            let live = ctx.live(&ctx.name).await?;
            let object: Value = serde_json::from_slice(&live.json)
                .map_err(|e| ApiError::internal(format!("a stored object is not JSON: {e}")))?;
            Ok(body::json(StatusCode::OK, &super::table::of(&ctx.info, &[object], serde_json::json!({}))))
        }
        (Target::Collection, "POST") => {
            if ctx.info.namespaced && ctx.namespace.is_none() {
                return Err(ApiError::method_not_allowed(&method, path).with_message(format!(
                    "{} is namespaced: create it with POST /apis/{}/namespaces/{{namespace}}/{}",
                    ctx.info.kind,
                    ctx.info.api_version(),
                    ctx.info.plural
                )));
            }
            create(&ctx, body::read(body, content_length).await?).await
        }
        (Target::Object | Target::Status, "GET" | "HEAD") => {
            let live = ctx.live(&ctx.name).await?;
            Ok(body::raw_json(StatusCode::OK, live.json.clone()))
        }
        (Target::Object, "PUT") => update(&ctx, body::read(body, content_length).await?, false).await,
        (Target::Status, "PUT") => update(&ctx, body::read(body, content_length).await?, true).await,
        (Target::Object, "PATCH") => super::patch::patch(&ctx, &headers, body, content_length).await,
        (Target::Log, "GET") if ctx.info.subresources.log => {
            let namespace = ctx.namespace.clone().unwrap_or_default();
            super::logs::serve(&ctx.state, &namespace, &ctx.name, &uri).await
        }
        (Target::Log, _) if !ctx.info.subresources.log => Err(ApiError::not_found(format!(
            "{} has no log; only tasks do (GET …/namespaces/{{ns}}/tasks/{{name}}/log)",
            ctx.info.kind
        ))),
        (Target::Scale, "GET" | "HEAD" | "PUT" | "PATCH") => {
            let bytes = body::read(body, content_length).await?;
            super::scale::serve(&ctx, &method, &headers, bytes).await
        }
        (Target::Accept | Target::Decline, "POST") if !is_offers(&ctx.info) => Err(ApiError::not_found(format!(
            "{} cannot be accepted or declined; only offers can (POST /apis/corral.dev/v1/offers/{{name}}/accept)",
            ctx.info.kind
        ))),
        (Target::Trigger, "POST") => super::trigger::trigger(&ctx, body).await,
        (Target::TaskStatus, "POST") => super::task_report::serve(&ctx, body::read(body, content_length).await?).await,
        (Target::Accept, "POST") => super::offers::accept(&ctx, body::read(body, content_length).await?).await,
        (Target::Decline, "POST") => super::offers::decline(&ctx, body::read(body, content_length).await?).await,
        (Target::Object, "DELETE") => {
            let bytes = body::read(body, content_length).await?;
            super::delete::delete(&ctx, params.propagation_policy.as_deref(), bytes).await
        }
        _ => Err(ApiError::method_not_allowed(&method, path)),
    };
    // A definition's kind is served, changed or gone before the write is answered.
    let wrote = !matches!(method, Method::GET | Method::HEAD) && !ctx.dry_run;
    if wrote && result.is_ok() && corral_api::crd::is_crd_kind(&ctx.info) {
        super::crd::after_write(&ctx.state).await;
    }
    result
}

/// The JSON body of a response this server made (a list, to be shown as a table).
async fn body_json(response: Response) -> ApiResult<Value> {
    // A list is already bounded by the server's own limits; this only collects it.
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::internal(format!("reading a list to make a table: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(format!("a list is not JSON: {e}")))
}

fn is_offers(info: &KindInfo) -> bool {
    info.group == corral_api::GROUP && info.plural == "offers"
}

/// Namespaced kinds are addressed inside a namespace, cluster-scoped ones outside.
fn check_scope(info: &KindInfo, p: &ResourcePath) -> ApiResult<()> {
    let base = format!("/apis/{}", info.api_version());
    if info.namespaced && p.namespace.is_none() && p.target != Target::Collection {
        return Err(ApiError::not_found(format!(
            "{} is namespaced: its objects are at {base}/namespaces/{{namespace}}/{}/{{name}}",
            info.kind, info.plural
        )));
    }
    if !info.namespaced && p.namespace.is_some() {
        return Err(ApiError::not_found(format!(
            "{} is cluster-scoped: its objects are at {base}/{}/{{name}}",
            info.kind, info.plural
        )));
    }
    Ok(())
}

pub(super) fn dry_run(v: Option<&str>) -> ApiResult<bool> {
    match v {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => {
            Err(ApiError::bad_request(format!("dryRun={other:?} is not supported; the only value is \"All\"")))
        }
    }
}

pub(super) fn flag(name: &str, v: Option<&str>) -> ApiResult<bool> {
    match v {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("{name}={other:?} must be true or false"))),
    }
}

async fn list_or_watch(ctx: &Ctx, params: &Params, headers: &HeaderMap) -> ApiResult<Response> {
    let selector = match params.label_selector.as_deref() {
        Some(s) => Selector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => Selector::everything(),
    };
    let fields = super::fields::parse(params.field_selector.as_deref())?;
    let namespace = ctx.namespace.clone();
    if flag("watch", params.watch.as_deref())? {
        let from = match params.resource_version.as_deref() {
            None | Some("") => None,
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion={rv:?} is not a revision; use the list's resourceVersion"
                ))
            })?),
        };
        let bookmarks = flag("allowWatchBookmarks", params.allow_watch_bookmarks.as_deref())?;
        let slot = ctx.state.watches.admit(ctx.client)?;
        let watch = super::watch::Watch {
            namespace,
            selector,
            fields,
            from,
            bookmarks,
            table: super::table::wanted(headers),
            content_type: super::watch::content_type(headers),
        };
        return super::watch::serve(&ctx.state, &ctx.info, watch, slot).await;
    }
    let query = super::list::ListQuery {
        namespace,
        selector,
        fields,
        limit: super::list::parse_limit(params.limit.as_deref())?,
        token: params.continue_token.clone().filter(|t| !t.is_empty()),
    };
    super::list::serve(&ctx.state, &ctx.info, query).await
}

/// Removes what the server owns from a new object: identity and revision are
/// assigned by the store, and status is written only through the status path.
/// Status a kind starts with. A namespace is usable as soon as it exists, so it is
/// born `Active` (Kubernetes' namespace controller does the same on its first pass).
pub(crate) fn initial_status(info: &corral_api::KindInfo, object: &mut Value) {
    if info.group == corral_api::GROUP
        && info.kind == "Namespace"
        && let Some(map) = object.as_object_mut()
    {
        map.insert("status".into(), serde_json::json!({"phase": "Active"}));
    }
}

/// Drops what only the server sets (status, uid, resourceVersion, …) from an object
/// about to be created.
pub(super) fn strip_for_create(object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for f in ["uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp"] {
                meta.remove(f);
            }
        }
    }
}

/// What a create would store, minus what only a real write assigns (uid,
/// resourceVersion).
pub(super) fn would_be_created(mut object: Value) -> Value {
    strip_for_create(&mut object);
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        meta.insert("creationTimestamp".into(), Value::String(corral_api::meta::now_timestamp()));
        meta.insert("generation".into(), Value::from(1));
    }
    object
}

/// What an update would store: the incoming object with the server-owned fields of
/// the live one, as the store computes it.
pub(super) fn would_be_updated(live: &Value, incoming: &Value, status_only: bool) -> Value {
    if status_only {
        let mut out = live.clone();
        if let Some(map) = out.as_object_mut() {
            match incoming.get("status") {
                Some(s) if !s.is_null() => map.insert("status".into(), s.clone()),
                _ => map.remove("status"),
            };
        }
        return out;
    }
    let mut out = incoming.clone();
    let Some(map) = out.as_object_mut() else { return out };
    match live.get("status") {
        Some(s) => map.insert("status".into(), s.clone()),
        None => map.remove("status"),
    };
    let desired = |v: &Value| -> Vec<(String, Value)> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.as_str() != "metadata" && k.as_str() != "status")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let spec_changed = desired(live) != desired(&out);
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        for f in ["name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp", "resourceVersion"]
        {
            match live.pointer(&format!("/metadata/{f}")) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        if spec_changed {
            let generation = live.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            meta.insert("generation".into(), Value::from(generation + 1));
        }
    }
    out
}

async fn create(ctx: &Ctx, bytes: Bytes) -> ApiResult<Response> {
    let mut object = body::json_object(&bytes)?;
    ctx.fill_identity(&mut object, None)?;
    strip_for_create(&mut object);
    // The namespace first: admission judges tasks by their namespace's label.
    ctx.require_namespace().await?;
    ctx.validate(&object).await?;
    let name = object_name(&object).to_string();
    if ctx.dry_run {
        return Ok(body::json(StatusCode::CREATED, &would_be_created(object)));
    }
    initial_status(&ctx.info, &mut object);
    let ours = ctx.info.group == corral_api::GROUP;
    if ours && ctx.info.plural == "volumes" {
        super::volume_binding::volume_finalizers(&mut object);
    }
    let bound = object.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string);
    let stored = match bound {
        Some(node) if ours && ctx.info.plural == "tasks" => {
            super::offers::create_bound(ctx, ctx.key(&name), object, &node).await?
        }
        None if ours && ctx.info.plural == "tasks" && object.pointer("/spec/volumeMounts").is_some() => {
            let mounts = super::volume_binding::mounts_of(&object);
            let ns = ctx.namespace.clone().unwrap_or_default();
            super::volume_binding::exist(&ctx.state.store, &ctx.info, &name, &ns, &mounts).await?;
            ctx.state.store.create(ctx.key(&name), object).await.map_err(ctx.store_error(&name))?
        }
        _ => ctx.state.store.create(ctx.key(&name), object).await.map_err(ctx.store_error(&name))?,
    };
    Ok(body::raw_json(StatusCode::CREATED, stored.json.clone()))
}

async fn update(ctx: &Ctx, bytes: Bytes, status_only: bool) -> ApiResult<Response> {
    let name = ctx.name.as_str();
    let mut object = body::json_object(&bytes)?;
    ctx.fill_identity(&mut object, Some(name))?;
    ctx.validate(&object).await?;
    let expected = precondition(ctx, &object)?;
    let key = ctx.key(name);
    if ctx.dry_run {
        let live = ctx.live(name).await?;
        if let Some(e) = expected.filter(|e| *e != live.revision) {
            return Err(stale(ctx, name, e, &live));
        }
        let live_value = live.value().map_err(ctx.store_error(name))?;
        return Ok(body::json(StatusCode::OK, &would_be_updated(&live_value, &object, status_only)));
    }
    let store = &ctx.state.store;
    let outcome = if status_only {
        store.update_status(key, object, expected).await
    } else {
        store.update(key, object, expected).await
    }
    .map_err(ctx.store_error(name))?;
    Ok(body::raw_json(StatusCode::OK, outcome.object().json.clone()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dry_run_update_mirrors_the_store() {
        let live = json!({"kind":"K","metadata":{"name":"a","uid":"u","generation":2,"resourceVersion":"7"},
            "spec":{"x":1},"status":{"s":1}});
        let same = would_be_updated(
            &live,
            &json!({"kind":"K","metadata":{"name":"a","labels":{"l":"v"}},"spec":{"x":1}}),
            false,
        );
        assert_eq!(same["metadata"]["generation"], 2);
        assert_eq!(same["status"], json!({"s":1}));
        assert_eq!(same["metadata"]["uid"], "u");
        let changed = would_be_updated(&live, &json!({"kind":"K","metadata":{"name":"a"},"spec":{"x":2}}), false);
        assert_eq!(changed["metadata"]["generation"], 3);
        let status = would_be_updated(&live, &json!({"status":{"s":2},"spec":{"x":9}}), true);
        assert_eq!(status["spec"], json!({"x":1}));
        assert_eq!(status["status"], json!({"s":2}));
    }

    #[test]
    fn flags_and_dry_run_parse_strictly() {
        assert_eq!(flag("watch", Some("true")).ok(), Some(true));
        assert_eq!(flag("watch", None).ok(), Some(false));
        assert!(flag("watch", Some("yes")).is_err());
        assert_eq!(dry_run(Some("All")).ok(), Some(true));
        assert!(dry_run(Some("Some")).is_err());
    }
}
