//! `POST /auth/task-token`: a node's agent asks for the credential of a task bound to
//! it, as kubelet asks for a pod's projected service-account token.
//!
//! The token authenticates as `system:serviceaccount:NAMESPACE:NAME` (the task's
//! `spec.serviceAccount`), in the groups `system:serviceaccounts` and
//! `system:serviceaccounts:NAMESPACE`; RoleBindings naming the service account say what
//! it may do. It is bound to the task (`spec.boundTo`, down to the task's uid): the
//! policy index forgets it, and deletes it, when the task is deleted
//! ([`super::index`]). A task incarnation holds one token: asking again (an agent that
//! restarted before the task started) revokes the earlier one.
//!
//! Only a node may ask, only for a task bound to it that names a service account and
//! is not being deleted: a node never gets a credential for another node's work.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use corral_api::GROUP;
use corral_api::kinds::TokenPurpose;
use corral_api::kinds::task::Task;
use corral_api::kinds::token::BoundObject;
use corral_store::{Key, Storage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Identity;
use super::rbac::service_account_user;
use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Where an agent asks for a task's token.
pub const PATH: &str = "/auth/task-token";
/// Every service account is in this group.
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// Label of a task's token: the task's namespace.
pub const TASK_NAMESPACE_LABEL: &str = "corral.dev/task-namespace";
/// Label of a task's token: the task's name.
pub const TASK_NAME_LABEL: &str = "corral.dev/task-name";
/// Label of a task's token: the task's uid (how earlier tokens of the task are found).
pub const TASK_UID_LABEL: &str = "corral.dev/task-uid";

/// Body of `POST /auth/task-token`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TaskTokenRequest {
    /// The task's namespace.
    pub namespace: String,
    /// The task's name.
    pub task: String,
    /// The uid of the task the agent is launching; if given and the task named is
    /// another one now (deleted and created again), the answer is 409 and no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Answer of `POST /auth/task-token`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct TaskTokenResponse {
    /// The bearer token, for the task alone.
    pub token: String,
    /// The user it authenticates as: `system:serviceaccount:NAMESPACE:NAME`.
    pub user: String,
}

/// The group of the service accounts of namespace `ns`.
pub fn namespace_group(ns: &str) -> String {
    format!("{SERVICE_ACCOUNTS}:{ns}")
}

/// `POST /auth/task-token`: mints the token of a task bound to the requesting node,
/// revoking the task's earlier one.
///
/// # Errors
/// 403 unless a node asks about a task bound to it; 400 for a malformed name or a
/// task naming no service account; 404 if the task does not exist; 409 if it is
/// being deleted or is another task than `uid`; 500 if the store fails.
pub async fn task_token(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    Json(req): Json<TaskTokenRequest>,
) -> ApiResult<Json<TaskTokenResponse>> {
    let Some(node) = who.node() else {
        return Err(ApiError::forbidden(format!(
            "user {:?} cannot ask for a task's token: only the agent of the node the task is bound to can",
            who.user
        )));
    };
    for (field, value) in [("namespace", &req.namespace), ("task", &req.task)] {
        corral_api::names::check_dns_label(value).map_err(|e| ApiError::bad_request(format!("{field}: {e}")))?;
    }
    let (ns, name) = (req.namespace.as_str(), req.task.as_str());
    let store = state.store.as_ref();
    let task = read_task(store, ns, name).await?;
    let bound = task.spec.node_name.as_deref();
    if bound != Some(node) {
        let where_ = bound.map_or_else(|| "no node".to_string(), |b| format!("node {b:?}"));
        return Err(ApiError::forbidden(format!(
            "node {node:?} may not have the token of task {ns}/{name}: the task is bound to {where_}, and a node gets \
             tokens only for its own tasks"
        )));
    }
    let uid = task.metadata.uid.clone().ok_or_else(|| ApiError::internal(format!("task {ns}/{name} has no uid")))?;
    if let Some(asked) = &req.uid
        && *asked != uid
    {
        return Err(ApiError::conflict(format!(
            "task {ns}/{name} is now another task (uid {uid}, not {asked}): the one asked about was deleted"
        )));
    }
    if task.metadata.deletion_timestamp.is_some() {
        return Err(ApiError::conflict(format!("task {ns}/{name} is being deleted: it gets no new token")));
    }
    let Some(account) = task.spec.service_account.as_deref() else {
        return Err(ApiError::bad_request(format!(
            "task {ns}/{name} asks for no service account (spec.serviceAccount), so it gets no token"
        )));
    };
    // The schema checked it when the task was written; a name that is not a label
    // must not reach a user name.
    corral_api::names::check_dns_label(account)
        .map_err(|e| ApiError::bad_request(format!("task {ns}/{name}: spec.serviceAccount: {e}")))?;
    let user = service_account_user(ns, account);
    let token = mint(store, &task, &uid, &user, node).await?;
    // The task may have gone while the token was written, after the index last looked
    // for its tokens: then nothing else would ever delete this one.
    match read_task(store, ns, name).await {
        Ok(now) if now.metadata.uid.as_deref() == Some(uid.as_str()) => {}
        Ok(_) | Err(_) => {
            revoke(store, &token.key).await;
            return Err(ApiError::conflict(format!(
                "task {ns}/{name} was deleted while its token was made; the token is revoked"
            )));
        }
    }
    state.auth.index.caught_up(store).await;
    tracing::info!(task = %format!("{ns}/{name}"), %uid, %user, %node, "task token minted");
    Ok(Json(TaskTokenResponse { token: token.secret, user }))
}

/// A stored token: where it is, and the bearer token to hand out.
struct Minted {
    key: Key,
    secret: String,
}

/// Stores a new token for `task` (uid `uid`) as `user`, then deletes its earlier ones.
async fn mint(store: &dyn Storage, task: &Task, uid: &str, user: &str, node: &str) -> ApiResult<Minted> {
    let ns = task.metadata.namespace.as_deref().unwrap_or_default();
    let name = task.metadata.name.as_str();
    let selector = corral_api::Selector::parse(&format!("{TASK_UID_LABEL}={uid}")).map_err(ApiError::internal)?;
    let earlier = store.list(&format!("{GROUP}/tokens"), None, &selector).await.map_err(ApiError::from)?;
    let ns_group = namespace_group(ns);
    let (key, mut object, token) = super::bootstrap::mint(
        user,
        &[SERVICE_ACCOUNTS, &ns_group],
        TokenPurpose::Authentication,
        format!("token of task {ns}/{name} (uid {uid}), handed to node {node}; deleted with the task"),
        &[(TASK_NAMESPACE_LABEL, ns), (TASK_NAME_LABEL, name), (TASK_UID_LABEL, uid)],
    )
    .map_err(ApiError::internal)?;
    let bound = BoundObject { kind: "Task".into(), namespace: ns.into(), name: name.into(), uid: uid.into() };
    object["spec"]["boundTo"] = serde_json::to_value(bound).map_err(ApiError::internal)?;
    store.create(key.clone(), object).await.map_err(ApiError::from)?;
    // Labels can be edited: only what the token itself says it is bound to counts.
    for old in earlier.items.iter().filter(|o| bound_uid(o.value().ok().as_ref()) == Some(uid)) {
        revoke(store, &old.key).await;
    }
    Ok(Minted { key, secret: token.expose() })
}

fn bound_uid(token: Option<&Value>) -> Option<&str> {
    token?.pointer("/spec/boundTo/uid").and_then(Value::as_str)
}

/// Deletes a token; a failure is logged (the index still drops it with its task).
async fn revoke(store: &dyn Storage, key: &Key) {
    match store.delete(key.clone(), None).await {
        Ok(_) | Err(corral_store::Error::NotFound(_)) => {}
        Err(e) => tracing::warn!(%key, error = %e, "cannot revoke a task's earlier token"),
    }
}

/// Task `ns/name` as stored; 404 if there is none.
async fn read_task(store: &dyn Storage, ns: &str, name: &str) -> ApiResult<Task> {
    let key = Key::namespaced(format!("{GROUP}/tasks"), ns, name);
    let Some(stored) = store.get(&key).await.map_err(ApiError::from)? else {
        return Err(ApiError::not_found(format!("task {ns}/{name} does not exist")));
    };
    serde_json::from_slice(&stored.json).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use corral_api::Registry;
    use corral_store::{Key, SledStore, Storage};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::auth::{AUTHENTICATED, NODE_USER_PREFIX, NODES};

    struct Fixture {
        _dir: tempfile::TempDir,
        state: AppState,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Storage> = Arc::new(SledStore::open(dir.path(), Default::default()).expect("store"));
        let state = AppState::new(store, Arc::new(Registry::builtin()));
        state.load_policy().await.expect("policy loads");
        Fixture { _dir: dir, state }
    }

    fn node(name: &str) -> Identity {
        Identity { user: format!("{NODE_USER_PREFIX}{name}"), groups: vec![NODES.into(), AUTHENTICATED.into()] }
    }

    async fn put_task(state: &AppState, name: &str, spec: Value) -> String {
        let task = json!({"apiVersion": "corral.dev/v1", "kind": "Task",
            "metadata": {"name": name, "namespace": "team"}, "spec": spec});
        let key = Key::namespaced(format!("{GROUP}/tasks"), "team", name);
        let stored = state.store.create(key, task).await.expect("task stored");
        stored.value().expect("decodes")["metadata"]["uid"].as_str().expect("uid").to_string()
    }

    async fn ask(state: &AppState, who: Identity, body: Value) -> (StatusCode, Value) {
        let req = Request::post(PATH)
            .header("content-type", "application/json")
            .extension(Arc::new(who))
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = crate::app(state.clone()).oneshot(req).await.expect("answered");
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn tokens_of(state: &AppState, uid: &str) -> Vec<Value> {
        let selector = corral_api::Selector::parse(&format!("{TASK_UID_LABEL}={uid}")).expect("selector");
        let list = state.store.list(&format!("{GROUP}/tokens"), None, &selector).await.expect("list");
        list.items.iter().map(|o| o.value().expect("decodes")).collect()
    }

    #[tokio::test]
    async fn a_node_gets_a_token_of_the_service_account_bound_to_its_task() {
        let f = fixture().await;
        let uid = put_task(&f.state, "web", json!({"nodeName": "n1", "serviceAccount": "reader"})).await;
        let (code, body) = ask(&f.state, node("n1"), json!({"namespace": "team", "task": "web"})).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(body["user"], "system:serviceaccount:team:reader");
        let stored = tokens_of(&f.state, &uid).await;
        assert_eq!(stored.len(), 1, "{stored:?}");
        let spec = &stored[0]["spec"];
        assert_eq!(spec["boundTo"], json!({"kind": "Task", "namespace": "team", "name": "web", "uid": uid}));
        assert_eq!(spec["groups"], json!(["system:serviceaccounts", "system:serviceaccounts:team"]));
        assert_eq!(stored[0]["metadata"]["labels"][TASK_NAME_LABEL], "web");
        // Usable at once: the answer waited for the policy to hold it.
        let token = corral_client::BearerToken::parse(body["token"].as_str().expect("token")).expect("a token");
        let policy = f.state.auth.policy.read();
        let entry = policy.tokens.get(&token.id).expect("the policy knows the token");
        assert_eq!(entry.identity.user, "system:serviceaccount:team:reader");
    }

    #[tokio::test]
    async fn asking_again_replaces_the_task_token() {
        let f = fixture().await;
        let uid = put_task(&f.state, "web", json!({"nodeName": "n1", "serviceAccount": "reader"})).await;
        let (_, first) = ask(&f.state, node("n1"), json!({"namespace": "team", "task": "web", "uid": uid})).await;
        let (code, second) = ask(&f.state, node("n1"), json!({"namespace": "team", "task": "web"})).await;
        assert_eq!(code, StatusCode::OK, "{second}");
        assert_ne!(first["token"], second["token"]);
        let stored = tokens_of(&f.state, &uid).await;
        assert_eq!(stored.len(), 1, "one token per task: {stored:?}");
        let id = |v: &Value| v["token"].as_str().and_then(|t| t.split('.').next()).map(str::to_string);
        assert_eq!(stored[0]["metadata"]["name"].as_str().map(str::to_string), id(&second));
    }

    #[tokio::test]
    async fn only_the_node_of_a_task_that_asks_for_an_account_gets_a_token() {
        let f = fixture().await;
        let uid = put_task(&f.state, "web", json!({"nodeName": "n1", "serviceAccount": "reader"})).await;
        put_task(&f.state, "plain", json!({"nodeName": "n1"})).await;
        let body = json!({"namespace": "team", "task": "web"});

        let (code, answer) = ask(&f.state, node("n2"), body.clone()).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{answer}");
        assert!(answer["message"].as_str().unwrap_or_default().contains("bound to node \"n1\""), "{answer}");
        let (code, answer) = ask(&f.state, Identity::admin(), body.clone()).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "not even an administrator: {answer}");
        let (code, answer) = ask(&f.state, node("n1"), json!({"namespace": "team", "task": "plain"})).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer["message"].as_str().unwrap_or_default().contains("spec.serviceAccount"), "{answer}");
        let (code, answer) = ask(&f.state, node("n1"), json!({"namespace": "team", "task": "gone"})).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{answer}");
        let (code, answer) = ask(&f.state, node("n1"), json!({"namespace": "team", "task": "web", "uid": "x"})).await;
        assert_eq!(code, StatusCode::CONFLICT, "another incarnation: {answer}");
        let (code, answer) = ask(&f.state, node("n1"), json!({"namespace": "Team", "task": "web"})).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{answer}");
        assert!(tokens_of(&f.state, &uid).await.is_empty(), "no refusal minted anything");
    }

    #[tokio::test]
    async fn a_task_being_deleted_gets_no_token() {
        let f = fixture().await;
        let spec = json!({"nodeName": "n1", "serviceAccount": "reader"});
        let task = json!({"apiVersion": "corral.dev/v1", "kind": "Task",
            "metadata": {"name": "web", "namespace": "team", "finalizers": ["corral.dev/agent"]}, "spec": spec});
        let key = Key::namespaced(format!("{GROUP}/tasks"), "team", "web");
        f.state.store.create(key.clone(), task).await.expect("stored");
        f.state.store.delete(key, None).await.expect("deletion requested");
        let (code, answer) = ask(&f.state, node("n1"), json!({"namespace": "team", "task": "web"})).await;
        assert_eq!(code, StatusCode::CONFLICT, "{answer}");
        assert!(answer["message"].as_str().unwrap_or_default().contains("being deleted"), "{answer}");
    }
}
