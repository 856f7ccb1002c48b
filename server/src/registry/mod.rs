//! An OCI distribution registry (`/v2/…`) served by the control plane, so that
//! images are pushed once (by `skopeo`, `corral image push`) and pulled by the
//! agents that need them, rather than copied onto every node.
//!
//! - [`names`]: repository names, tags, digests and what a path addresses;
//! - [`storage`]: content-addressed files in the data directory, written so that a
//!   crash never leaves part of a blob under its digest;
//! - [`blobs`], [`uploads`], [`manifests`]: the handlers;
//! - [`error`]: errors in the distribution format.
//!
//! Authentication is the API's (a bearer token, or HTTP Basic whose password is a
//! token, as registry clients send); authorization is RBAC on the resource
//! `images` of group `corral.dev`, named by repository: `get`/`list` to pull,
//! `create` to push, `delete` to cancel an upload.

pub mod blobs;
pub mod error;
pub mod manifests;
pub mod names;
pub mod storage;
pub mod uploads;

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::Attributes;
pub use error::RegistryError;
use names::Route;
pub use storage::Storage;

/// The RBAC resource registry requests are checked against.
pub const RESOURCE: &str = "images";

/// Whether `path` is the registry's.
pub fn is_registry_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// What a registry request asks, in RBAC's terms: the version check is open to
/// every authenticated user; the rest act on `images` named by repository.
pub fn attributes<'a>(method: &'a Method, path: &'a str) -> Attributes<'a> {
    let route = Route::parse(path);
    let verb = match (&route, method.as_str()) {
        (Some(Route::Base), _) => return Attributes::NonResource { verb: "get".into(), path: "/v2/".into() },
        (Some(Route::Catalog | Route::Tags(_)), _) => "list",
        (_, "GET" | "HEAD") => "get",
        (Some(Route::Upload(..)), "DELETE") => "delete",
        (Some(Route::Manifest(..) | Route::Blob(..)), "DELETE") => "delete",
        _ => "create",
    };
    Attributes::Resource {
        verb: verb.into(),
        group: Cow::Borrowed(corral_api::GROUP),
        resource: RESOURCE.into(),
        subresource: None,
        namespace: None,
        name: route.as_ref().and_then(Route::name).map(|n| Cow::Owned(n.to_string())),
    }
}

/// Every `/v2` request.
pub async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut resp = match serve(&state, &method, &uri, &headers, body).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(path = %uri.path(), error = %e, "registry request refused");
            e.into_response()
        }
    };
    resp.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    resp
}

async fn serve(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> error::Result<Response> {
    let route = Route::parse(uri.path())
        .ok_or_else(|| RegistryError::NameUnknown(format!("{} addresses nothing in this registry", uri.path())))?;
    if route == Route::Base {
        return match *method {
            Method::GET | Method::HEAD => Ok(axum::Json(serde_json::json!({})).into_response()),
            _ => Err(unsupported(method, uri)),
        };
    }
    let storage =
        state.images.get().ok_or_else(|| RegistryError::Unavailable("this server keeps no image storage".into()))?;
    if let Some(name) = route.name() {
        names::check_name(name)?;
    }
    let metrics = &state.metrics;
    match (route, method.as_str()) {
        (Route::Catalog, "GET") => manifests::catalog(storage, uri).await,
        (Route::Tags(name), "GET") => manifests::tags(storage, &name, uri).await,
        (Route::Manifest(name, reference), "GET" | "HEAD") => {
            manifests::get(storage, metrics, &name, &reference, method == Method::HEAD).await
        }
        (Route::Manifest(name, reference), "PUT") => {
            manifests::put(storage, metrics, &name, &reference, headers, body).await
        }
        (Route::Blob(_, digest), "GET" | "HEAD") => blobs::get(storage, metrics, &digest, method == Method::HEAD).await,
        (Route::Uploads(name), "POST") => uploads::start(storage, metrics, &name, uri, body).await,
        (Route::Upload(name, id), "PATCH") => uploads::patch(storage, metrics, &name, &id, headers, body).await,
        (Route::Upload(name, id), "PUT") => uploads::finish(storage, metrics, &name, &id, uri, body).await,
        (Route::Upload(name, id), "GET") => uploads::status(storage, &name, &id).await,
        (Route::Upload(_, id), "DELETE") => uploads::cancel(storage, &id).await,
        _ => Err(unsupported(method, uri)),
    }
}

fn unsupported(method: &Method, uri: &Uri) -> RegistryError {
    RegistryError::Unsupported(format!("{method} {} is not an operation of this registry", uri.path()))
}

/// The query parameters of `uri`.
pub(crate) fn query(uri: &Uri) -> std::collections::HashMap<String, String> {
    axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// A header value from text this module formats (digests, paths, ranges), which is
/// always valid; an empty value should it ever not be.
pub(crate) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}
