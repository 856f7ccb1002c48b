//! The layer in front of every route: authenticates, authorizes and audits each
//! request ([`super::admit`]). A tower layer of its own rather than
//! `axum::middleware::from_fn`: the checks are synchronous, so the request is handed
//! to the route right away, and no copy of the route is made per request.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::BoxFuture;
use tower::{Layer, Service};

use super::Admission;
use crate::AppState;

/// Wraps each route in a [`Guard`].
#[derive(Clone)]
pub struct GuardLayer(AppState);

impl GuardLayer {
    /// Checks requests against `state`'s policy.
    pub fn new(state: AppState) -> Self {
        GuardLayer(state)
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { state: self.0.clone(), inner }
    }
}

/// A route behind the checks.
#[derive(Clone)]
pub struct Guard<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match super::admit(&self.state, &mut req) {
            Admission::Open => Box::pin(self.inner.call(req)),
            Admission::Refused(resp) => Box::pin(std::future::ready(Ok(resp))),
            Admission::Admitted(admitted) => {
                let answer = self.inner.call(req);
                let state = self.state.clone();
                Box::pin(async move {
                    let resp = answer.await?;
                    Ok(admitted.finish(&state, resp).await)
                })
            }
        }
    }
}
