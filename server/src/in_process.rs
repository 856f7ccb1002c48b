//! The in-process transport: controllers inside `corral up` talk to the API through
//! the router itself — same validation and semantics as over HTTP, no socket.

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use corral_client::{Response, Transport, TransportFailure};
use futures::StreamExt;
use tower::ServiceExt;

use crate::auth::Identity;
use std::sync::Arc;

/// A [`Transport`] that hands requests straight to the server's router, as one
/// identity: no token is needed, and none could be forged from outside (a request
/// from the network never carries one in its extensions).
#[derive(Clone)]
pub struct InProcess {
    router: Router,
    identity: Arc<Identity>,
}

impl InProcess {
    /// A transport to the API served by `router` (see [`crate::app`]), acting as
    /// `identity`.
    pub fn new(router: Router, identity: Identity) -> Self {
        InProcess { router, identity: Arc::new(identity) }
    }
}

fn broken(e: impl std::error::Error + Send + Sync + 'static) -> corral_client::Error {
    corral_client::Error::Transport {
        server: "in-process".into(),
        failure: TransportFailure::Broken,
        source: Box::new(e),
    }
}

#[async_trait]
impl Transport for InProcess {
    async fn send(&self, request: http::Request<Bytes>) -> corral_client::Result<Response> {
        let mut request = request.map(Body::from);
        request.extensions_mut().insert(self.identity.clone());
        let resp = self.router.clone().oneshot(request).await.map_err(broken)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().into_data_stream().map(|c| c.map_err(broken)).boxed();
        Ok(Response { status, headers, body })
    }

    fn server(&self) -> String {
        "in-process".to_string()
    }
}
