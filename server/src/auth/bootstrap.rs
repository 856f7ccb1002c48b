//! What a server writes at start so that it can be used at all: the built-in roles
//! and their bindings, and an administrator's credential.
//!
//! Built-in roles carry the label [`BOOTSTRAP_LABEL`]; while they do, every start
//! puts back their rules as this version defines them (as Kubernetes' auto-update
//! annotation). An administrator who changes one removes the label to keep the change.

use std::path::Path;

use corral_api::kinds::{
    ClusterRoleBindingSpec, ClusterRoleSpec, PolicyRule, RoleRef, Subject, TokenPurpose, TokenSpec,
};
use corral_api::{API_VERSION, GROUP};
use corral_client::{BearerToken, Config};
use corral_store::{Error as StoreError, Key, Storage};
use serde_json::{Value, json};

use super::rbac::SENSITIVE;
use super::{CONTROLLER_MANAGER, MASTERS, NODE_USER_PREFIX, NODES};

/// Label of the roles and bindings the server keeps as it defines them.
pub const BOOTSTRAP_LABEL: &str = "corral.dev/bootstrap";
/// Label of a node's credential, naming the node.
pub const NODE_LABEL: &str = "corral.dev/node";
/// The administrator's user name.
pub const ADMIN_USER: &str = "admin";
/// The volumes controller's user, role and binding name.
pub const VOLUMES_CONTROLLER: &str = "system:controller:volumes";

/// The DNS controller's user (bound to `dns-controller`): it runs beside every API
/// server, outside leader election, and needs only to read what it serves.
pub const DNS_CONTROLLER_USER: &str = "system:controller:dns";

/// The sync controller's user, bound to `sync-controller`: what a Sync without a
/// service account applies as (the controller manager impersonates it).
pub use corral_api::kinds::sync::SYNC_CONTROLLER_USER;

/// The namespaced built-in kinds users work with.
const WORKLOAD: &[&str] =
    &["configmaps", "events", "leases", "tasks", "services", "jobs", "jobruns", "volumes", "dnsrecords"];
/// What a namespace's admin manages: its workload and who may touch it.
const ADMIN: &[&str] = &[
    "configmaps",
    "events",
    "leases",
    "tasks",
    "services",
    "jobs",
    "jobruns",
    "roles",
    "rolebindings",
    "volumes",
    "dnsrecords",
    // Not in `edit`: a Sync applies with more rights than its creator may have.
    "syncs",
    "syncs/trigger",
];
/// What a viewer reads.
const VIEW: &[&str] = &[
    "configmaps",
    "events",
    "leases",
    "tasks",
    "tasks/status",
    "tasks/log",
    "services",
    "services/status",
    "jobs",
    "jobs/status",
    "jobruns",
    "jobruns/status",
    "volumes",
    "volumes/status",
    "dnsrecords",
    "dnsrecords/status",
];

fn rule(verbs: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        api_groups: vec![GROUP.to_string()],
        resources: resources.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];

/// Every resource, credentials and permissions included (for reading).
fn sensitive_read() -> PolicyRule {
    let mut resources: Vec<String> = SENSITIVE.iter().map(|s| s.to_string()).collect();
    resources.push("*".into());
    PolicyRule { resources, ..Default::default() }
}

/// The built-in cluster roles, by name, with their rules.
pub fn builtin_roles() -> Vec<(&'static str, Vec<PolicyRule>)> {
    let everything = PolicyRule { verbs: vec!["*".into()], resources: vec!["*".into()], ..Default::default() };
    let mut sensitive = PolicyRule { verbs: vec!["*".into()], ..Default::default() };
    sensitive.api_groups = vec![GROUP.into()];
    sensitive.resources = SENSITIVE.iter().map(|s| s.to_string()).collect();
    let urls = PolicyRule { verbs: vec!["*".into()], non_resource_urls: vec!["*".into()], ..Default::default() };
    let metrics =
        PolicyRule { verbs: vec!["get".into()], non_resource_urls: vec!["/metrics".into()], ..Default::default() };
    vec![
        ("cluster-admin", vec![everything.clone(), sensitive, urls]),
        ("admin", vec![rule(WRITE, ADMIN), rule(&["get"], &["tasks/log"]), rule(READ, &["tasks/status"])]),
        ("edit", vec![rule(WRITE, WORKLOAD), rule(&["get"], &["tasks/log"]), rule(READ, &["tasks/status"])]),
        ("view", vec![rule(READ, VIEW)]),
        (
            "node",
            vec![
                rule(&["get", "list", "watch", "create", "update", "patch"], &["nodes", "nodes/status", "leases"]),
                rule(&["get", "list", "watch", "update", "patch"], &["tasks"]),
                rule(&["get", "update", "patch"], &["tasks/status"]),
                // Its tasks' statuses, many in one report (see auth::node).
                rule(&["update"], &["nodes/taskstatus"]),
                rule(&["create", "get", "update", "patch"], &["events"]),
                // The volumes bound to the node (see auth::node): made, measured, and
                // their data finalizer dropped once their data is gone.
                rule(&["get", "list", "watch", "update", "patch"], &["volumes"]),
                rule(&["get", "update", "patch"], &["volumes/status"]),
                // The task security level of a task's namespace, checked at launch.
                rule(&["get"], &["namespaces"]),
                // Pulling a task's image from the control plane's registry.
                rule(&["get", "list"], &[crate::registry::RESOURCE]),
            ],
        ),
        (
            "controller-manager",
            vec![
                PolicyRule {
                    verbs: ["get", "list", "watch", "update", "patch", "delete"].map(String::from).to_vec(),
                    resources: vec!["*".into()],
                    ..Default::default()
                },
                rule(&["create"], &["events", "leases"]),
                // The offers controller makes offers and registers the built-in
                // frameworks; the services and jobs frameworks accept offers to
                // launch tasks; the jobs framework starts scheduled runs.
                rule(&["create"], &["offers", "offers/accept", "offers/decline", "frameworks", "tasks", "jobruns"]),
                // The services framework makes its instances' volumes from templates.
                rule(&["create"], &["volumes"]),
                // The collector follows every kind; on credentials and permissions it
                // may read and delete (revoking is never an escalation), not write.
                rule(&["get", "list", "watch", "delete"], SENSITIVE),
                metrics.clone(),
                // The Sync controller acts as a Sync's service account, or as its own
                // user; never as anyone else.
                rule(&["impersonate"], &["serviceaccounts"]),
                PolicyRule { resource_names: vec![SYNC_CONTROLLER_USER.into()], ..rule(&["impersonate"], &["users"]) },
            ],
        ),
        (
            "sync-controller",
            vec![
                // Whatever a Sync's source holds, but credentials and permissions
                // (a `*` resource never covers those), and never `impersonate`.
                PolicyRule {
                    verbs: ["get", "list", "watch", "create", "update", "patch", "delete"].map(String::from).to_vec(),
                    resources: vec!["*".into()],
                    ..Default::default()
                },
                // Reading everything: its drift report covers every kind.
                PolicyRule { verbs: READ.iter().map(|v| v.to_string()).collect(), ..sensitive_read() },
                rule(&["update"], &["syncs/status"]),
                rule(&["create", "update"], &["events"]),
            ],
        ),
        ("monitoring", vec![metrics]),
        // The volumes controller: phases, and releasing volumes no task holds.
        (
            VOLUMES_CONTROLLER,
            vec![
                rule(READ, &["volumes", "tasks"]),
                rule(&["update", "patch"], &["volumes", "volumes/status"]),
                rule(&["create", "patch", "update"], &["events"]),
            ],
        ),
        (
            "dns-controller",
            vec![
                rule(READ, &["tasks", "services", "nodes", "dnsrecords"]),
                rule(&["get", "update"], &["dnsrecords/status"]),
                // Names it cannot make are reported as Events (a repeat bumps a count).
                rule(&["get", "create", "update"], &["events"]),
            ],
        ),
        // A scheduler of one's own: bind it in the namespaces its tasks run in, and
        // with a RoleBinding in corral-frameworks for its liveness lease.
        (
            "framework",
            vec![
                rule(READ, &["offers", "nodes"]),
                rule(&["create"], &["offers/accept", "offers/decline"]),
                rule(&["get", "list", "watch", "create", "update", "patch"], &["frameworks", "leases"]),
                rule(WRITE, &["tasks"]),
                rule(READ, &["tasks/status", "tasks/log"]),
            ],
        ),
    ]
}

/// Who the built-in roles are granted to: binding name, role, subject.
fn builtin_bindings() -> Vec<(&'static str, &'static str, Subject)> {
    let group = |name: &str| Subject { kind: "Group".into(), name: name.into(), namespace: None };
    let user = |name: &str| Subject { kind: "User".into(), name: name.into(), namespace: None };
    vec![
        ("cluster-admin", "cluster-admin", group(MASTERS)),
        ("node", "node", group(NODES)),
        ("controller-manager", "controller-manager", user(CONTROLLER_MANAGER)),
        (VOLUMES_CONTROLLER, VOLUMES_CONTROLLER, user(VOLUMES_CONTROLLER)),
        ("dns-controller", "dns-controller", user(DNS_CONTROLLER_USER)),
        ("sync-controller", "sync-controller", user(SYNC_CONTROLLER_USER)),
    ]
}

/// A policy holding just the built-in roles and bindings (what a server without a
/// store of its own, in a test, authorizes with).
pub fn builtin_policy() -> super::rbac::Policy {
    let mut p = super::rbac::Policy::default();
    for (name, rules) in builtin_roles() {
        p.cluster_roles.insert(name.into(), rules);
    }
    for (name, role, subject) in builtin_bindings() {
        let spec = ClusterRoleBindingSpec {
            role_ref: RoleRef { kind: "ClusterRole".into(), name: role.into() },
            subjects: vec![subject],
        };
        p.cluster_bindings.insert(name.into(), spec);
    }
    p
}

/// Creates the built-in roles and bindings, or puts back those still labelled.
///
/// # Errors
/// The store's.
pub async fn ensure_roles(store: &dyn Storage) -> Result<(), StoreError> {
    for (name, rules) in builtin_roles() {
        let spec = serde_json::to_value(ClusterRoleSpec { rules }).unwrap_or_default();
        ensure(store, "ClusterRole", "clusterroles", name, spec).await?;
    }
    for (name, role, subject) in builtin_bindings() {
        let spec = ClusterRoleBindingSpec {
            role_ref: RoleRef { kind: "ClusterRole".into(), name: role.into() },
            subjects: vec![subject],
        };
        ensure(
            store,
            "ClusterRoleBinding",
            "clusterrolebindings",
            name,
            serde_json::to_value(spec).unwrap_or_default(),
        )
        .await?;
    }
    Ok(())
}

async fn ensure(store: &dyn Storage, kind: &str, plural: &str, name: &str, spec: Value) -> Result<(), StoreError> {
    let key = Key::cluster(format!("{GROUP}/{plural}"), name);
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "labels": {BOOTSTRAP_LABEL: "true"}},
        "spec": spec,
    });
    match store.get(&key).await? {
        None => match store.create(key, object).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        },
        Some(live) => {
            let live = live.value()?;
            let labelled = live.pointer(&format!("/metadata/labels/{}", BOOTSTRAP_LABEL.replace('/', "~1")))
                == Some(&json!("true"));
            if !labelled || live.get("spec") == Some(&object["spec"]) {
                return Ok(());
            }
            let mut updated = live.clone();
            updated["spec"] = object["spec"].clone();
            store.update(key, updated, None).await.map(|_| ())
        }
    }
}

/// A new token object for `user`, and the token to hand out.
pub fn mint(
    user: &str,
    groups: &[&str],
    purpose: TokenPurpose,
    description: String,
    labels: &[(&str, &str)],
) -> Result<(Key, Value, BearerToken), corral_client::Error> {
    let token = BearerToken::generate()?;
    let spec = TokenSpec {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        purpose,
        expiration: None,
        secret_hash: token.secret_hash(),
        description: Some(description),
        bound_to: None,
    };
    let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": "Token",
        "metadata": {"name": token.id, "labels": labels},
        "spec": spec,
    });
    Ok((Key::cluster(format!("{GROUP}/tokens"), &token.id), object, token))
}

/// Makes sure `path` holds a working administrator credential for `server`: keeps
/// the one there if the store still knows it, else mints one and writes the file.
/// Returns the token.
///
/// # Errors
/// A message naming what failed.
pub async fn ensure_admin(
    store: &dyn Storage,
    path: &Path,
    server: &str,
    ca_pem: Option<Vec<u8>>,
) -> Result<String, String> {
    if let Ok(cfg) = Config::from_kubeconfig(path)
        && let Some(token) = cfg.token.as_deref().and_then(BearerToken::parse)
        && let Ok(Some(stored)) = store.get(&Key::cluster(format!("{GROUP}/tokens"), &token.id)).await
        && let Ok(v) = stored.value()
        && v.pointer("/spec/secretHash").and_then(Value::as_str).is_some_and(|h| token.matches(h))
    {
        if cfg.server != server {
            Config { server: server.into(), ..cfg }.write_kubeconfig(path, "corral").map_err(|e| e.to_string())?;
        }
        return Ok(token.expose());
    }
    let description = format!("administrator credential written to {}", path.display());
    let (key, object, token) =
        mint(ADMIN_USER, &[MASTERS], TokenPurpose::Authentication, description, &[]).map_err(|e| e.to_string())?;
    store.create(key, object).await.map_err(|e| format!("cannot store the administrator token: {e}"))?;
    Config { server: server.into(), token: Some(token.expose()), ca_pem, client_identity: None }
        .write_kubeconfig(path, "corral")
        .map_err(|e| e.to_string())?;
    Ok(token.expose())
}

/// Mints a node's own credential (`system:node:NAME` in `system:nodes`), revoking
/// the node's earlier ones. Returns the token.
///
/// # Errors
/// The store's, or a message if no token could be made.
pub async fn node_credential(store: &dyn Storage, node: &str, why: &str) -> Result<String, String> {
    let user = format!("{NODE_USER_PREFIX}{node}");
    let (key, object, token) = mint(
        &user,
        &[NODES],
        TokenPurpose::Authentication,
        format!("credential of node {node}, {why}"),
        &[(NODE_LABEL, node)],
    )
    .map_err(|e| e.to_string())?;
    replace_node_credential(store, node, key, object).await?;
    Ok(token.expose())
}

/// Records `signed`, a client certificate of node `node`, as its credential (a token
/// of purpose `Certificate` holding the certificate's SHA-256, expiring with it),
/// revoking the node's earlier ones.
///
/// # Errors
/// The store's, or a message if no id could be made.
pub async fn node_certificate(
    store: &dyn Storage,
    node: &str,
    signed: &super::certificates::Signed,
    why: &str,
) -> Result<(), String> {
    let user = format!("{NODE_USER_PREFIX}{node}");
    // Only the id of a fresh token is used: the record's hash is the certificate's.
    let (key, mut object, _) = mint(
        &user,
        &[NODES],
        TokenPurpose::Certificate,
        format!("client certificate of node {node}, {why}"),
        &[(NODE_LABEL, node)],
    )
    .map_err(|e| e.to_string())?;
    object["spec"]["secretHash"] = json!(corral_client::credentials::hex(&signed.sha256));
    object["spec"]["expiration"] = json!(signed.not_after);
    replace_node_credential(store, node, key, object).await
}

/// Stores a node's new credential, then deletes its earlier ones.
async fn replace_node_credential(store: &dyn Storage, node: &str, key: Key, object: Value) -> Result<(), String> {
    let selector = corral_api::Selector::parse(&format!("{NODE_LABEL}={node}")).map_err(|e| e.to_string())?;
    let earlier = store.list(&format!("{GROUP}/tokens"), None, &selector).await.map_err(|e| e.to_string())?;
    store.create(key, object).await.map_err(|e| format!("cannot store the node's credential: {e}"))?;
    for old in earlier.items {
        if let Err(e) = store.delete(old.key.clone(), None).await {
            tracing::warn!(key = %old.key, error = %e, "cannot revoke a node's earlier credential");
        }
    }
    Ok(())
}

#[cfg(test)]
mod dns_controller_tests {
    use super::*;
    use crate::auth::rbac::{Attributes, Decision};
    use crate::auth::{AUTHENTICATED, Identity};

    fn may(verb: &str, resource: &str, subresource: Option<&str>) -> bool {
        let who = Identity { user: DNS_CONTROLLER_USER.into(), groups: vec![AUTHENTICATED.into()] };
        let attrs = Attributes::Resource {
            verb: verb.into(),
            group: GROUP.into(),
            resource: resource.into(),
            subresource: subresource.map(Into::into),
            namespace: None,
            name: None,
        };
        matches!(builtin_policy().authorize(&who, &attrs), Decision::Allow(_))
    }

    #[test]
    fn the_dns_controller_reads_what_it_serves_and_writes_only_dns_record_status_and_events() {
        for resource in ["tasks", "services", "nodes", "dnsrecords"] {
            for verb in ["get", "list", "watch"] {
                assert!(may(verb, resource, None), "{verb} {resource}");
            }
        }
        assert!(may("update", "dnsrecords", Some("status")));
        assert!(may("create", "events", None));
        for (verb, resource, sub) in [
            ("update", "dnsrecords", None),
            ("create", "tasks", None),
            ("update", "tasks", Some("status")),
            ("delete", "services", None),
            ("list", "configmaps", None),
            ("list", "tokens", None),
            ("update", "nodes", Some("status")),
        ] {
            assert!(!may(verb, resource, sub), "{verb} {resource} {sub:?} must be refused");
        }
    }
}

#[cfg(test)]
mod sync_controller_tests {
    use super::*;
    use crate::auth::rbac::{Attributes, Decision};
    use crate::auth::{AUTHENTICATED, Identity};

    fn may(user: &str, verb: &str, resource: &str, sub: Option<&str>, name: Option<&str>) -> bool {
        let who = Identity { user: user.into(), groups: vec![AUTHENTICATED.into()] };
        let attrs = Attributes::Resource {
            verb: verb.into(),
            group: GROUP.into(),
            resource: resource.into(),
            subresource: sub.map(Into::into),
            namespace: Some("team".into()),
            name: name.map(Into::into),
        };
        matches!(builtin_policy().authorize(&who, &attrs), Decision::Allow(_))
    }

    #[test]
    fn the_sync_controller_writes_workloads_reads_everything_and_never_writes_credentials() {
        let sync = SYNC_CONTROLLER_USER;
        for (verb, resource) in [("create", "services"), ("delete", "configmaps"), ("patch", "namespaces")] {
            assert!(may(sync, verb, resource, None, Some("x")), "{verb} {resource}");
        }
        assert!(may(sync, "update", "syncs", Some("status"), Some("s")));
        assert!(may(sync, "create", "events", None, None));
        for resource in SENSITIVE {
            assert!(may(sync, "list", resource, None, None), "list {resource}");
            assert!(!may(sync, "create", resource, None, None), "create {resource} must be refused");
        }
        assert!(!may(sync, "impersonate", "users", None, Some("admin")));
    }

    #[test]
    fn the_controller_manager_impersonates_service_accounts_and_the_sync_controller_only() {
        let cm = CONTROLLER_MANAGER;
        assert!(may(cm, "impersonate", "serviceaccounts", None, Some("deployer")));
        assert!(may(cm, "impersonate", "users", None, Some(SYNC_CONTROLLER_USER)));
        assert!(!may(cm, "impersonate", "users", None, Some("admin")));
        assert!(!may(cm, "impersonate", "groups", None, Some(MASTERS)));
    }

    #[test]
    fn namespace_admins_manage_syncs_and_editors_do_not() {
        let policy = builtin_policy();
        let rules = |role: &str| policy.cluster_roles.get(role).cloned().unwrap_or_default();
        let names = |role: &str| -> Vec<String> { rules(role).into_iter().flat_map(|r| r.resources).collect() };
        assert!(names("admin").iter().any(|r| r == "syncs"));
        assert!(!names("edit").iter().any(|r| r.starts_with("syncs")));
    }
}
