//! Who is asking, and whether they may: bearer-token authentication on every
//! endpoint but `/healthz`, RBAC authorization ([`rbac`]), the node restriction
//! ([`node`]), and an audit record of every request ([`audit`]).
//!
//! Requests from inside the process (the controller manager through
//! [`crate::in_process::InProcess`]) carry their [`Identity`] as a request extension;
//! a request from the network never does (hyper creates its extensions empty), so an
//! identity is only ever established by a token or by the process itself.

pub mod audit;
pub mod bootstrap;
pub mod certificates;
pub mod guard;
pub mod index;
pub mod join;
pub mod node;
pub mod rbac;
pub mod reviews;
pub mod task_token;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use corral_api::kinds::TokenPurpose;
use corral_client::BearerToken;

use crate::AppState;
use crate::error::ApiError;
use crate::path::{self, Parts, Target};
pub use rbac::{Attributes, Decision};

/// Every authenticated requester is in this group.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Members are cluster administrators (bound to `cluster-admin`).
pub const MASTERS: &str = "system:masters";
/// Members are nodes (bound to `node`, and restricted to their own objects).
pub const NODES: &str = "system:nodes";
/// The prefix of a node's user name, before the node's name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Holders of join tokens: they may only join a node.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The controller manager's user (bound to `controller-manager`).
pub const CONTROLLER_MANAGER: &str = "system:controller-manager";

/// An authenticated requester.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user name (`admin`, `system:node:n1`, `system:serviceaccount:ns:name`).
    pub user: String,
    /// The groups the user is in.
    pub groups: Vec<String>,
}

impl Identity {
    /// The controller manager running in the server's process.
    pub fn controller_manager() -> Self {
        Identity { user: CONTROLLER_MANAGER.into(), groups: vec![AUTHENTICATED.into()] }
    }

    /// A cluster administrator (in `system:masters`), for tests and tools running a
    /// server in their own process.
    pub fn admin() -> Self {
        Identity { user: bootstrap::ADMIN_USER.into(), groups: vec![MASTERS.into(), AUTHENTICATED.into()] }
    }

    /// The node this identity is, if it is a node's.
    pub fn node(&self) -> Option<&str> {
        if !self.groups.iter().any(|g| g == NODES) {
            return None;
        }
        self.user.strip_prefix(NODE_USER_PREFIX).filter(|n| !n.is_empty())
    }
}

/// What [`admit`] decided about a request.
pub(crate) enum Admission {
    /// Not checked (`/healthz`, `/version`).
    Open,
    /// Refused: the answer to send.
    Refused(Response),
    /// Allowed; the request now carries the identity. Finish with [`Admitted::finish`].
    Admitted(Admitted),
}

/// An allowed request, until it is answered. Its attributes are worked out again
/// only if the answer is audited: most reads are not, and keep nothing.
pub(crate) struct Admitted {
    /// Who the request acts as.
    identity: Arc<Identity>,
    /// Who sent it, when it impersonates `identity`.
    impersonator: Option<Arc<Identity>>,
    method: Method,
    uri: axum::http::Uri,
    by: rbac::AllowedBy,
    /// Audited whatever the answer.
    audited: bool,
    writes_policy: bool,
}

/// Authenticates and authorizes `req` (synchronously: the policy is in memory), and
/// on success attaches the requester's identity to it.
pub(crate) fn admit(state: &AppState, req: &mut Request) -> Admission {
    // As Kubernetes' `system:public-info-viewer`: health and the build are public.
    if matches!(req.uri().path(), "/healthz" | "/version") {
        return Admission::Open;
    }
    // Cheap copies (the path is reference-counted) that the attributes borrow, so
    // that the request itself stays free to carry the identity on.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let attrs = attributes(&method, &uri);
    // One look at the policy for every question: who, whom they act as, and may they.
    let checked = {
        let policy = state.auth.policy.read();
        let identity = match req.extensions().get::<Arc<Identity>>() {
            Some(i) => Ok(i.clone()),
            None => authenticate(&policy, req),
        };
        identity.map(|identity| match impersonation(&policy, &identity, req.headers()) {
            Err(refusal) => Err((identity, refusal)),
            Ok(acting) => {
                let subject = acting.as_ref().unwrap_or(&identity);
                let decision = match &attrs {
                    // Discovery and one's own identity are open to every authenticated user.
                    Some(a) if !open_to_all(a) => policy.authorize(subject, a),
                    _ => Decision::Allow(rbac::AllowedBy::Everyone),
                };
                Ok((identity, acting, decision))
            }
        })
    };
    let (identity, acting, decision) = match checked {
        Ok(Ok(c)) => c,
        Ok(Err((identity, refusal))) => {
            state.auth.denied.inc();
            state.auth.audit.record(Some(identity), attrs, refusal.code.as_u16(), None);
            return Admission::Refused(refusal.into_response());
        }
        // Without a credential of the API, a trigger may still carry its Sync's
        // webhook token: its handler checks it and audits the answer.
        Err(_) if crate::trigger::is_trigger(&method, uri.path()) => return Admission::Open,
        Err(e) => {
            state.auth.unauthenticated.inc();
            state.auth.audit.record(None, attrs, 401, None);
            if crate::registry::is_registry_path(uri.path()) {
                // Registry clients learn from the challenge that they may send
                // credentials, and read errors in the distribution format.
                let e = crate::registry::RegistryError::Unauthorized(format!(
                    "{}; registry clients log in with any user name and a Corral token as the password",
                    e.message
                ));
                return Admission::Refused(e.into_response());
            }
            return Admission::Refused(e.into_response());
        }
    };
    // Who the request acts as: the impersonated identity, when there is one.
    let subject = acting.clone().unwrap_or_else(|| identity.clone());
    let impersonator = acting.is_some().then(|| identity.clone());
    match decision {
        Decision::Allow(by) => {
            req.extensions_mut().insert(subject.clone());
            let audited = state.auth.audit.enabled() && state.auth.audit.keeps(attrs.as_ref(), 200);
            let writes_policy = attrs.as_ref().is_some_and(index::changes_policy);
            Admission::Admitted(Admitted { identity: subject, impersonator, method, uri, by, audited, writes_policy })
        }
        Decision::Deny => {
            state.auth.denied.inc();
            let refusal = if crate::registry::is_registry_path(uri.path()) {
                let e = forbidden(&subject, attrs.as_ref());
                crate::registry::RegistryError::Denied(e.message).into_response()
            } else {
                forbidden(&subject, attrs.as_ref()).into_response()
            };
            audit(state, subject, impersonator, attrs, 403, None);
            Admission::Refused(refusal)
        }
    }
}

/// Records a request: by `who`, or by `impersonator` acting as `who`.
fn audit(
    state: &AppState,
    who: Arc<Identity>,
    impersonator: Option<Arc<Identity>>,
    attrs: Option<Attributes<'_>>,
    code: u16,
    by: Option<rbac::AllowedBy>,
) {
    match impersonator {
        Some(real) => state.auth.audit.record_as(Some(real), Some(who), attrs, code, by),
        None => state.auth.audit.record(Some(who), attrs, code, by),
    }
}

/// The header naming the user a request impersonates.
pub const IMPERSONATE_USER: &str = "impersonate-user";
/// The header, repeatable, naming a group a request impersonates.
pub const IMPERSONATE_GROUP: &str = "impersonate-group";

/// The identity a request impersonates (`Impersonate-User`, `Impersonate-Group`), as
/// Kubernetes: `who` needs the RBAC verb `impersonate` on `users` named as the user
/// (on `serviceaccounts` named NAME in namespace NS for
/// `system:serviceaccount:NS:NAME`) and on `groups` named as each group. `None`
/// without the headers; a 403 naming what may not be impersonated otherwise.
fn impersonation(
    policy: &rbac::Policy,
    who: &Identity,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Arc<Identity>>, ApiError> {
    let text = |v: &HeaderValue| {
        v.to_str().map(str::to_string).map_err(|_| ApiError::bad_request("an impersonation header is not text"))
    };
    let user = headers.get(IMPERSONATE_USER).map(text).transpose()?;
    let groups = headers.get_all(IMPERSONATE_GROUP).iter().map(text).collect::<Result<Vec<_>, _>>()?;
    let Some(user) = user else {
        if groups.is_empty() {
            return Ok(None);
        }
        return Err(ApiError::bad_request("Impersonate-Group needs Impersonate-User: name the user too"));
    };
    if user.is_empty() {
        return Err(ApiError::bad_request("Impersonate-User is empty"));
    }
    let may = |resource: &'static str, namespace: Option<&str>, name: &str| {
        let attrs = Attributes::Resource {
            verb: "impersonate".into(),
            group: corral_api::GROUP.into(),
            resource: resource.into(),
            subresource: None,
            namespace: namespace.map(|n| n.to_string().into()),
            name: Some(name.to_string().into()),
        };
        policy.authorize(who, &attrs).allowed()
    };
    let refuse = |what: String| {
        ApiError::forbidden(format!(
            "user {:?} may not impersonate {what}: no role bound to it allows the verb impersonate on it",
            who.user
        ))
    };
    let mut acting_groups = Vec::new();
    match user.strip_prefix(rbac::SERVICE_ACCOUNT_USER_PREFIX).and_then(|r| r.split_once(':')) {
        Some((ns, name)) => {
            if !may("serviceaccounts", Some(ns), name) {
                return Err(refuse(format!("the service account {name:?} of the namespace {ns:?}")));
            }
            // As the tokens of service accounts (task tokens) carry.
            acting_groups.push(task_token::SERVICE_ACCOUNTS.to_string());
            acting_groups.push(task_token::namespace_group(ns));
        }
        None => {
            if !may("users", None, &user) {
                return Err(refuse(format!("the user {user:?}")));
            }
        }
    }
    for g in groups {
        if !may("groups", None, &g) {
            return Err(refuse(format!("the group {g:?}")));
        }
        if !acting_groups.contains(&g) {
            acting_groups.push(g);
        }
    }
    if !acting_groups.iter().any(|g| g == AUTHENTICATED) {
        acting_groups.push(AUTHENTICATED.to_string());
    }
    Ok(Some(Arc::new(Identity { user, groups: acting_groups })))
}

impl Admitted {
    /// Audits the answer; after a write of tokens or RBAC objects, first waits until
    /// the policy holds it, so that the client's next request already sees it.
    pub(crate) async fn finish(self, state: &AppState, resp: Response) -> Response {
        let code = resp.status().as_u16();
        if self.writes_policy && resp.status().is_success() {
            state.auth.index.caught_up(state.store.as_ref()).await;
        }
        if self.audited || code == 401 || code == 403 {
            let attrs = attributes(&self.method, &self.uri);
            audit(state, self.identity, self.impersonator, attrs, code, Some(self.by));
        }
        resp
    }
}

fn open_to_all(a: &Attributes<'_>) -> bool {
    match a {
        Attributes::NonResource { path, .. } => {
            path == "/api"
                || path == "/apis"
                || path == "/kinds"
                || path == "/v2/"
                || path.starts_with("/schemas/")
                || path.starts_with("/openapi/")
                || path.starts_with("/auth/")
                // Each operation of a transaction is authorized as its own request.
                || path == corral_api::transaction::TRANSACTIONS_PATH
        }
        // Asking about oneself (kubectl auth whoami, can-i).
        Attributes::Resource { group, resource, .. } => {
            (&**group, &**resource) == ("authentication.k8s.io", "selfsubjectreviews")
                || (&**group, &**resource) == ("authorization.k8s.io", "selfsubjectaccessreviews")
        }
    }
}

/// What the guard knows of a connection, put on each of its requests: the TLS
/// client certificate it presented, and what it last authenticated. A client sends
/// the same credential on every request of a connection, so its secret is hashed and
/// looked up once per connection — until the tokens change (the policy's generation
/// moves on) or the token expires — rather than once per request.
#[derive(Default)]
pub struct ConnectionCache {
    certificate: Option<certificates::ClientCertificate>,
    last: parking_lot::Mutex<Option<Cached>>,
}

struct Cached {
    header: HeaderValue,
    generation: u64,
    identity: Arc<Identity>,
    expires: Option<chrono::DateTime<chrono::Utc>>,
}

impl ConnectionCache {
    /// The state of a new connection, which presented `certificate` (verified by the
    /// TLS handshake), if any.
    pub fn new(certificate: Option<certificates::ClientCertificate>) -> Self {
        ConnectionCache { certificate, last: Default::default() }
    }

    fn get(&self, header: &HeaderValue, generation: u64) -> Option<Arc<Identity>> {
        let cached = self.last.lock();
        let c = cached.as_ref().filter(|c| c.generation == generation && c.header == header)?;
        if c.expires.is_some_and(|t| t <= chrono::Utc::now()) {
            return None;
        }
        Some(c.identity.clone())
    }

    /// Remembers `entry` for `header`; returns the identity the connection's requests
    /// carry from now on: a copy of the connection's own, so that they count their
    /// references on it rather than on one shared by every connection of the user.
    fn put(&self, header: &HeaderValue, generation: u64, entry: &rbac::TokenEntry) -> Arc<Identity> {
        let identity = Arc::new((*entry.identity).clone());
        *self.last.lock() =
            Some(Cached { header: header.clone(), generation, identity: identity.clone(), expires: entry.expires });
        identity
    }
}

/// The identity a request's bearer token (or client certificate) proves.
fn authenticate(policy: &rbac::Policy, req: &Request) -> Result<Arc<Identity>, ApiError> {
    let connection = req.extensions().get::<Arc<ConnectionCache>>();
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        if let Some(cert) = connection.and_then(|c| c.certificate.as_ref()) {
            return authenticate_certificate(policy, cert);
        }
        return Err(ApiError::unauthorized(
            "this request carries no credential: send `Authorization: Bearer TOKEN` (`corral up` writes an admin \
             token to ~/.corral/config; `corral token create` makes more)",
        ));
    };
    // The same header the connection sent before, under the same tokens: the same
    // answer, without parsing or hashing again.
    if let Some(hit) = connection.and_then(|c| c.get(value, policy.generation)) {
        return Ok(hit);
    }
    let invalid = || ApiError::unauthorized("the bearer token is not valid (unknown, revoked, expired or malformed)");
    let text = value.to_str().map_err(|_| invalid())?;
    let token = match text.strip_prefix("Basic ").or_else(|| text.strip_prefix("basic ")) {
        // Registry clients (skopeo, docker, containerd) send credentials as HTTP Basic:
        // the password is the token, the user name is anything.
        Some(encoded) => basic_password(encoded).as_deref().and_then(BearerToken::parse),
        None => text.strip_prefix("Bearer ").or_else(|| text.strip_prefix("bearer ")).and_then(BearerToken::parse),
    }
    .ok_or_else(invalid)?;
    let digest = token.secret_digest();
    let entry = policy
        .tokens
        .get(&token.id)
        .filter(|e| corral_client::credentials::constant_time_eq(&e.secret_hash, &digest))
        .ok_or_else(invalid)?;
    if entry.expires.is_some_and(|t| t <= chrono::Utc::now()) {
        let at = entry.expiration.as_deref().unwrap_or_default();
        return Err(ApiError::unauthorized(format!("the bearer token {} expired at {at}", token.id)));
    }
    match entry.purpose {
        TokenPurpose::Authentication => match connection {
            Some(c) => Ok(c.put(value, policy.generation, entry)),
            None => Ok(entry.identity.clone()),
        },
        TokenPurpose::Join if req.uri().path() == join::PATH && req.method() == Method::POST => {
            Ok(Arc::new(Identity {
                user: format!("system:bootstrap:{}", token.id),
                groups: vec![BOOTSTRAPPERS.into()],
            }))
        }
        TokenPurpose::Join => Err(ApiError::unauthorized(format!(
            "the bearer token {} is a join token: it only joins a node (`corral agent --token`)",
            token.id
        ))),
        // Its hash is a certificate's: it stands for that certificate, never a secret.
        TokenPurpose::Certificate => Err(invalid()),
    }
}

/// The password of an HTTP Basic credential (`base64(user:password)`).
fn basic_password(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.split_once(':').map(|(_, password)| password.to_string())
}

/// The identity a TLS client certificate proves: one the node authority signed
/// (the handshake checked that) and whose record is still stored.
fn authenticate_certificate(
    policy: &rbac::Policy,
    cert: &certificates::ClientCertificate,
) -> Result<Arc<Identity>, ApiError> {
    let entry = policy.certificate(&cert.0).ok_or_else(|| {
        ApiError::unauthorized("the client certificate is not valid (revoked, or replaced when its node joined again)")
    })?;
    if entry.expires.is_some_and(|t| t <= chrono::Utc::now()) {
        let at = entry.expiration.as_deref().unwrap_or_default();
        return Err(ApiError::unauthorized(format!("the client certificate expired at {at}")));
    }
    Ok(entry.identity.clone())
}

/// What a request asks, in RBAC's terms, borrowed from its method and path; `None`
/// for paths that mean nothing (the router answers them 404).
pub fn attributes<'a>(method: &'a Method, uri: &'a axum::http::Uri) -> Option<Attributes<'a>> {
    let p = uri.path();
    if crate::registry::is_registry_path(p) {
        return Some(crate::registry::attributes(method, p));
    }
    // The cluster DNS's records: whoever may list every DnsRecord may see them all.
    if p == crate::DNS_RECORDS_PATH && matches!(*method, Method::GET | Method::HEAD) {
        return Some(Attributes::Resource {
            verb: "list".into(),
            group: corral_api::GROUP.into(),
            resource: "dnsrecords".into(),
            subresource: None,
            namespace: None,
            name: None,
        });
    }
    let Some(rest) = p.strip_prefix("/apis/") else {
        return Some(Attributes::NonResource { verb: method.as_str().to_ascii_lowercase().into(), path: p.into() });
    };
    let (group, plural, namespace, name, target) = match path::parse_parts(rest)? {
        Parts::GroupVersion { .. } => {
            return Some(Attributes::NonResource { verb: "get".into(), path: "/apis".into() });
        }
        Parts::Resource { group, plural, namespace, name, target, .. } => (group, plural, namespace, name, target),
    };
    let watch = uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match (target, method.as_str()) {
        (Target::Collection, "GET" | "HEAD") if watch => "watch",
        (Target::Collection, "GET" | "HEAD") => "list",
        (Target::Collection | Target::Accept | Target::Decline, "POST") => "create",
        // Syncing now changes the Sync (an annotation): `update` on `syncs/trigger`.
        (Target::Trigger, "POST") => "update",
        // A report writes statuses: `update` on `nodes/taskstatus`.
        (Target::TaskStatus, "POST") => "update",
        (_, "GET" | "HEAD") => "get",
        (_, "PUT") => "update",
        (_, "PATCH") => "patch",
        (_, "DELETE") => "delete",
        (_, other) => {
            return Some(Attributes::NonResource { verb: other.to_ascii_lowercase().into(), path: p.into() });
        }
    };
    let subresource = match target {
        Target::Status => Some("status".into()),
        Target::Log => Some("log".into()),
        Target::Scale => Some("scale".into()),
        Target::Accept => Some("accept".into()),
        Target::Decline => Some("decline".into()),
        Target::Trigger => Some("trigger".into()),
        Target::TaskStatus => Some(corral_api::task_report::SUBRESOURCE.into()),
        Target::Collection | Target::Object => None,
    };
    // `GET /apis/corral.dev/v1/namespaces/NAME` addresses the Namespace object.
    Some(Attributes::Resource {
        verb: verb.into(),
        group: group.into(),
        resource: plural.into(),
        subresource,
        namespace: namespace.map(Into::into),
        name: name.map(Into::into),
    })
}

pub(crate) fn forbidden(who: &Identity, attrs: Option<&Attributes<'_>>) -> ApiError {
    let message = match attrs {
        Some(a @ Attributes::Resource { verb, group, namespace, name, .. }) => {
            let what = a.what();
            let object = name.as_ref().map(|n| format!(" {n:?}")).unwrap_or_default();
            let scope = match namespace {
                Some(ns) => format!(" in the namespace {ns:?}"),
                None => " at the cluster scope".into(),
            };
            format!(
                "user {:?} cannot {verb} {what}{object} in API group {group:?}{scope}; no role bound to the user or \
                 its groups allows it (`corral auth can-i {verb} {what}` checks)",
                who.user
            )
        }
        Some(Attributes::NonResource { verb, path }) => {
            format!("user {:?} cannot {verb} {path}; it needs cluster-admin", who.user)
        }
        None => format!("user {:?} may not do that", who.user),
    };
    ApiError::forbidden(message)
}

/// What the server keeps to authenticate and authorize.
pub struct Auth {
    /// Tokens, roles and bindings, kept up to date from the store.
    pub policy: Arc<parking_lot::RwLock<rbac::Policy>>,
    /// The task that keeps `policy` up to date.
    pub index: Arc<index::PolicyIndex>,
    /// Where audit records go.
    pub audit: audit::AuditLog,
    /// Signs joining nodes' client certificates; set when the server speaks TLS.
    pub node_authority: std::sync::OnceLock<certificates::NodeAuthority>,
    denied: prometheus_client::metrics::counter::Counter,
    unauthenticated: prometheus_client::metrics::counter::Counter,
}

impl Auth {
    /// Empty policy (everything denied), no audit log.
    pub fn new() -> Self {
        let policy = Arc::new(parking_lot::RwLock::new(rbac::Policy::default()));
        Auth {
            index: Arc::new(index::PolicyIndex::new(policy.clone())),
            policy,
            audit: audit::AuditLog::disabled(),
            node_authority: std::sync::OnceLock::new(),
            denied: Default::default(),
            unauthenticated: Default::default(),
        }
    }

    /// Requests refused as forbidden, for `/metrics`.
    pub fn denied_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.denied.clone()
    }

    /// Requests refused as unauthenticated, for `/metrics`.
    pub fn unauthenticated_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.unauthenticated.clone()
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self::new()
    }
}
