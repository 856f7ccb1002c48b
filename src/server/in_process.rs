//! The in-process transport: controllers inside `corral up` talk to the API through
//! the router itself — same validation and semantics as over HTTP, no socket.

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use corral_runtime::transport::{Response, Transport};
use futures::StreamExt;
use tower::ServiceExt;

/// A [`Transport`] that hands requests straight to the server's router.
#[derive(Clone)]
pub struct InProcess {
    router: Router,
}

impl InProcess {
    /// A transport to the API served by `router` (see [`super::app`]).
    pub fn new(router: Router) -> Self {
        InProcess { router }
    }
}

#[async_trait]
impl Transport for InProcess {
    async fn send(&self, request: http::Request<Bytes>) -> corral_runtime::Result<Response> {
        let request = request.map(Body::from);
        let resp = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| corral_runtime::Error::Transport(format!("in-process request failed: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .into_data_stream()
            .map(|c| c.map_err(|e| corral_runtime::Error::Transport(e.to_string())))
            .boxed();
        Ok(Response { status, body })
    }
}
