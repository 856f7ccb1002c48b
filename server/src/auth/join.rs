//! The `/auth/...` endpoints: joining a node (a join token buys the node's own
//! credential), who-am-I, and asking whether a user may do something (`corral auth
//! can-i`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};

use super::rbac::Attributes;
use super::{BOOTSTRAPPERS, Identity, MASTERS};
use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Where a node joins.
pub const PATH: &str = "/auth/join";
/// Asking about another user than oneself needs this non-resource permission.
pub const REVIEW_OTHERS: &str = "/auth/review";

/// Body of `POST /auth/join`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// The node's name.
    pub node: String,
    /// Base64 of the node's P-256 public key (an uncompressed point): asks for a
    /// client certificate instead of a bearer token. Only over TLS.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// Answer of `POST /auth/join`: a bearer token, or a client certificate for the
/// key the node sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// The node's own bearer token; the agent keeps it and uses nothing else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// PEM of the node's client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// When the certificate expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// The user the credential authenticates as.
    pub user: String,
}

/// `POST /auth/join`: with a join token (or as an administrator), mints the node's
/// credential — a client certificate for the key it sent, or a bearer token —
/// revoking any earlier one of that node.
pub async fn join(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    Json(req): Json<JoinRequest>,
) -> ApiResult<Json<JoinResponse>> {
    if !who.groups.iter().any(|g| g == BOOTSTRAPPERS || g == MASTERS) {
        return Err(ApiError::forbidden(format!(
            "user {:?} cannot join a node: send a join token (`corral token create --join`)",
            who.user
        )));
    }
    if let Err(e) = corral_api::names::check_dns_label(&req.node) {
        return Err(ApiError::bad_request(format!("node: {e}")));
    }
    let why = format!("joined by {}", who.user);
    let user = format!("{}{}", super::NODE_USER_PREFIX, req.node);
    let answer = match &req.public_key {
        Some(b64) => {
            let Some(authority) = state.auth.node_authority.get() else {
                return Err(ApiError::bad_request(
                    "publicKey: this server does not speak TLS, so it signs no client certificates; join without a \
                     key to get a bearer token",
                ));
            };
            let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim())
                .map_err(|e| ApiError::bad_request(format!("publicKey: not base64: {e}")))?;
            let signed = authority.sign(&user, super::NODES, &raw).map_err(ApiError::bad_request)?;
            super::bootstrap::node_certificate(state.store.as_ref(), &req.node, &signed, &why)
                .await
                .map_err(ApiError::internal)?;
            JoinResponse { token: None, certificate: Some(signed.pem), expiration: Some(signed.not_after), user }
        }
        None => {
            let token = super::bootstrap::node_credential(state.store.as_ref(), &req.node, &why)
                .await
                .map_err(ApiError::internal)?;
            JoinResponse { token: Some(token), certificate: None, expiration: None, user }
        }
    };
    state.auth.index.caught_up(state.store.as_ref()).await;
    tracing::info!(node = %req.node, by = %who.user, certificate = answer.certificate.is_some(), "node joined");
    Ok(Json(answer))
}

/// Answer of `GET /auth/whoami`.
#[derive(Serialize)]
pub struct WhoAmI {
    /// User name.
    pub user: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// `GET /auth/whoami`: the requester's identity.
pub async fn whoami(Extension(who): Extension<Arc<Identity>>) -> Json<WhoAmI> {
    Json(WhoAmI { user: who.user.clone(), groups: who.groups.clone() })
}

/// Body of `POST /auth/can-i`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanIRequest {
    /// The verb.
    pub verb: String,
    /// Plural resource, optionally with `/subresource`; or a non-resource path
    /// starting with `/`.
    pub resource: String,
    /// API group; `corral.dev` when absent.
    #[serde(default)]
    pub group: Option<String>,
    /// Namespace, for namespaced resources.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Object name.
    #[serde(default)]
    pub name: Option<String>,
    /// Ask for this user instead of oneself (needs cluster-admin).
    #[serde(default)]
    pub user: Option<String>,
    /// That user's groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Answer of `POST /auth/can-i`.
#[derive(Serialize)]
pub struct CanIResponse {
    /// Whether RBAC allows it.
    pub allowed: bool,
    /// Which binding allows it, or why not.
    pub reason: String,
}

/// `POST /auth/can-i`: whether RBAC lets the requester (or another user) do it.
pub async fn can_i(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    Json(req): Json<CanIRequest>,
) -> ApiResult<Json<CanIResponse>> {
    let policy = state.auth.policy.read();
    let subject = match &req.user {
        Some(user) => {
            let review = Attributes::NonResource { verb: "post".into(), path: REVIEW_OTHERS.into() };
            if !policy.authorize(&who, &review).allowed() {
                return Err(ApiError::forbidden(format!(
                    "user {:?} cannot ask about other users; that needs cluster-admin",
                    who.user
                )));
            }
            let mut groups = req.groups.clone();
            groups.push(super::AUTHENTICATED.into());
            Identity { user: user.clone(), groups }
        }
        None => (*who).clone(),
    };
    let attrs = if req.resource.starts_with('/') {
        Attributes::NonResource { verb: req.verb.as_str().into(), path: req.resource.as_str().into() }
    } else {
        let (resource, subresource) = match req.resource.split_once('/') {
            Some((r, s)) => (r, Some(s.into())),
            None => (req.resource.as_str(), None),
        };
        Attributes::Resource {
            verb: req.verb.as_str().into(),
            group: req.group.as_deref().unwrap_or(corral_api::GROUP).into(),
            resource: resource.into(),
            subresource,
            namespace: req.namespace.as_deref().map(Into::into),
            name: req.name.as_deref().map(Into::into),
        }
    };
    Ok(Json(match policy.authorize(&subject, &attrs) {
        super::Decision::Allow(by) => CanIResponse { allowed: true, reason: format!("allowed by {by}") },
        super::Decision::Deny => {
            CanIResponse { allowed: false, reason: "no role bound to the user or its groups allows it".into() }
        }
    }))
}
