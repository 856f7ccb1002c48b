//! Corral's web interface, served by the API server's own binary: the TypeScript in
//! `ui/web/` is type-checked and bundled when this crate builds (`build.rs`), and the
//! bundles are embedded here, so the interface needs no install of its own and loads
//! nothing from elsewhere.
//!
//! [`router`] serves it under [`PREFIX`]: the bundles under hashed names (kept by
//! browsers for good), and `index.html` for every other path, so that each page of the
//! interface has a link of its own (`/ui/k/configmaps/default/web`) that loads it
//! directly. The pages call the API with the user's bearer token; the files
//! themselves carry no secret and are served without one.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the interface is served.
pub const PREFIX: &str = "/ui/";

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its path under [`PREFIX`], e.g. `assets/app-0123456789abcdef.js`.
    pub path: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
    /// A strong validator of its bytes, quoted as the `ETag` header carries it.
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The embedded bundles (script and style sheet), under their hashed names.
pub fn assets() -> &'static [Asset] {
    ASSETS
}

/// Routes serving the interface: `/` and `/ui` redirect to `/ui/`, the bundles are
/// served from `/ui/assets/`, and any other path under `/ui/` answers the interface's
/// page (its script then shows what the path names).
///
/// Mount these where no authentication is asked: a browser loading a page sends no
/// bearer token, and the files carry no secret.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to(PREFIX) }))
        .route("/ui", get(|| async { Redirect::to(PREFIX) }))
        .route("/ui/", get(|headers: HeaderMap| async move { serve(&INDEX, &headers, NO_CACHE) }))
        .route("/ui/{*path}", get(file))
}

/// Cache policy of `index.html`: asked again each time (cheaply, with its ETag), so a
/// new build is picked up at once.
const NO_CACHE: &str = "no-cache";
/// Cache policy of the hashed bundles: their names change with their bytes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The page may load only its own bundles and talk only to this server.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if let Some(asset) = ASSETS.iter().find(|a| a.path == path) {
        return serve(asset, &headers, IMMUTABLE);
    }
    if path.starts_with("assets/") {
        // A bundle of another build: answering the page instead would be run as script.
        return (StatusCode::NOT_FOUND, format!("no such file of the web interface: /ui/{path}\n")).into_response();
    }
    serve(&INDEX, &headers, NO_CACHE)
}

fn serve(asset: &Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    resp
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    async fn get_path(path: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn text(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn header_of(resp: &Response, name: header::HeaderName) -> &str {
        resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[tokio::test]
    async fn every_page_path_answers_the_page_naming_the_embedded_bundles() {
        for path in ["/ui/", "/ui/k/configmaps", "/ui/k/configmaps/default/web", "/ui/login"] {
            let resp = get_path(path, None).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&resp, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(header_of(&resp, header::CACHE_CONTROL), NO_CACHE);
            let page = text(resp).await;
            for asset in assets() {
                assert!(page.contains(&format!("/ui/{}", asset.path)), "{path} names {}: {page}", asset.path);
            }
        }
    }

    #[tokio::test]
    async fn bundles_have_their_media_type_and_are_kept_for_good() {
        assert_eq!(assets().len(), 2);
        for asset in assets() {
            let resp = get_path(&format!("/ui/{}", asset.path), None).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header_of(&resp, header::CONTENT_TYPE), asset.content_type);
            assert_eq!(header_of(&resp, header::CACHE_CONTROL), IMMUTABLE);
            assert!(!text(resp).await.is_empty());
            let again = get_path(&format!("/ui/{}", asset.path), Some(asset.etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        }
        assert!(assets().iter().any(|a| a.content_type.starts_with("text/javascript")));
        assert!(assets().iter().any(|a| a.content_type.starts_with("text/css")));
    }

    #[tokio::test]
    async fn an_unknown_bundle_is_not_found_rather_than_the_page() {
        let resp = get_path("/ui/assets/app-0000000000000000.js", None).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_root_leads_to_the_interface() {
        for path in ["/", "/ui"] {
            let resp = get_path(path, None).await;
            assert!(resp.status().is_redirection(), "{path}: {}", resp.status());
            assert_eq!(header_of(&resp, header::LOCATION), PREFIX);
        }
    }

    #[tokio::test]
    async fn the_page_may_load_only_its_own_files() {
        let resp = get_path("/ui/", None).await;
        let csp = header_of(&resp, header::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
        assert_eq!(header_of(&resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }
}
