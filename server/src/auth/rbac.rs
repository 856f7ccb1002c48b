//! Role-based authorization, as Kubernetes RBAC: a request is allowed when a binding
//! naming the requester grants a role with a rule that covers it; everything else is
//! denied. Pure: it works on a [`Policy`] snapshot, so it is tested by tables.
//!
//! One rule is stricter than Kubernetes': a `*` in `resources` never covers tokens
//! and the RBAC kinds. A rule must name them, so that a wide role given to a
//! controller cannot be turned into a way to mint credentials or grant itself more.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use corral_api::kinds::{
    ClusterRoleBindingSpec, PolicyRule, RoleBindingSpec, RoleRef, Subject, TokenPurpose, TokenSpec,
};

use super::Identity;

/// Kinds a `*` resource never covers: they hand out credentials and permissions.
pub const SENSITIVE: &[&str] = &["tokens", "roles", "clusterroles", "rolebindings", "clusterrolebindings"];

/// What a request asks to do, in RBAC's terms. Borrowed from the request while it
/// is checked (so that checking allocates nothing); [`Attributes::into_owned`] for
/// what outlives it (the audit record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes<'a> {
    /// A request on a kind under `/apis`.
    Resource {
        /// `get`, `list`, `watch`, `create`, `update`, `patch` or `delete`.
        verb: Cow<'a, str>,
        /// The kind's API group.
        group: Cow<'a, str>,
        /// The kind's plural.
        resource: Cow<'a, str>,
        /// `status` or `log`, when the request addresses one.
        subresource: Option<Cow<'a, str>>,
        /// The namespace from the path; `None` for cluster-scoped kinds and lists
        /// across namespaces.
        namespace: Option<Cow<'a, str>>,
        /// The object's name; `None` for lists, watches and creates.
        name: Option<Cow<'a, str>>,
    },
    /// A request outside `/apis` (`/metrics`, `/admin/compact`).
    NonResource {
        /// `get`, `post`, … (the HTTP method, lowercase).
        verb: Cow<'a, str>,
        /// The path.
        path: Cow<'a, str>,
    },
}

impl Attributes<'_> {
    /// The verb.
    pub fn verb(&self) -> &str {
        match self {
            Attributes::Resource { verb, .. } | Attributes::NonResource { verb, .. } => verb,
        }
    }

    /// `resource` or `resource/subresource`, or the path.
    pub fn what(&self) -> String {
        match self {
            Attributes::Resource { resource, subresource: Some(sub), .. } => format!("{resource}/{sub}"),
            Attributes::Resource { resource, .. } => resource.to_string(),
            Attributes::NonResource { path, .. } => path.to_string(),
        }
    }

    /// The same attributes, owning their text.
    pub fn into_owned(self) -> Attributes<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        match self {
            Attributes::Resource { verb, group, resource, subresource, namespace, name } => Attributes::Resource {
                verb: own(verb),
                group: own(group),
                resource: own(resource),
                subresource: subresource.map(own),
                namespace: namespace.map(own),
                name: name.map(own),
            },
            Attributes::NonResource { verb, path } => Attributes::NonResource { verb: own(verb), path: own(path) },
        }
    }
}

/// A stored token, ready to check a request against: what every request needs is
/// computed once, when the token is read from the store.
#[derive(Clone, Debug)]
pub struct TokenEntry {
    /// SHA-256 of the secret.
    pub secret_hash: [u8; 32],
    /// Whom it authenticates (with `system:authenticated` among the groups).
    pub identity: Arc<Identity>,
    /// What it is good for.
    pub purpose: TokenPurpose,
    /// When it stops working; `None`: never.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    /// As stored, for messages.
    pub expiration: Option<String>,
}

impl TokenEntry {
    /// The entry of a stored token; `None` if its hash or expiry cannot be read (it
    /// then authenticates nobody).
    pub fn new(spec: &TokenSpec) -> Option<Self> {
        let mut secret_hash = [0u8; 32];
        let hex = spec.secret_hash.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        for (i, pair) in hex.chunks(2).enumerate() {
            secret_hash[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        let expires = match &spec.expiration {
            Some(e) => Some(chrono::DateTime::parse_from_rfc3339(e).ok()?.with_timezone(&chrono::Utc)),
            None => None,
        };
        let mut groups = spec.groups.clone();
        groups.push(super::AUTHENTICATED.into());
        Some(TokenEntry {
            secret_hash,
            identity: Arc::new(Identity { user: spec.user.clone(), groups }),
            purpose: spec.purpose,
            expires,
            expiration: spec.expiration.clone(),
        })
    }
}

/// The stored tokens, roles and bindings, as the authorizer reads them.
#[derive(Default, Clone, Debug)]
pub struct Policy {
    /// Tokens by id.
    pub tokens: HashMap<String, TokenEntry>,
    /// Ids of the certificate tokens, by the SHA-256 of their certificate.
    pub certificates: HashMap<[u8; 32], String>,
    /// Changes with every change to the tokens; never the same in two policies, so
    /// that what was authenticated under one generation is known stale under another.
    pub generation: u64,
    /// Cluster roles by name.
    pub cluster_roles: HashMap<String, Vec<PolicyRule>>,
    /// Roles by namespace, then name.
    pub roles: HashMap<String, HashMap<String, Vec<PolicyRule>>>,
    /// Cluster role bindings by name.
    pub cluster_bindings: BTreeMap<Arc<str>, ClusterRoleBindingSpec>,
    /// Role bindings by namespace, then name.
    pub bindings: HashMap<String, BTreeMap<Arc<str>, RoleBindingSpec>>,
}

/// A generation no policy has had yet.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Policy {
    /// Adds or replaces the token `id`.
    pub fn insert_token(&mut self, id: String, entry: TokenEntry) {
        self.remove_token(&id);
        self.generation = next_generation();
        if entry.purpose == TokenPurpose::Certificate {
            self.certificates.insert(entry.secret_hash, id.clone());
        }
        self.tokens.insert(id, entry);
    }

    /// Removes the token `id`, if known.
    pub fn remove_token(&mut self, id: &str) {
        self.generation = next_generation();
        if let Some(old) = self.tokens.remove(id)
            && old.purpose == TokenPurpose::Certificate
        {
            self.certificates.remove(&old.secret_hash);
        }
    }

    /// The certificate token whose certificate has SHA-256 `digest`.
    pub fn certificate(&self, digest: &[u8; 32]) -> Option<&TokenEntry> {
        self.certificates.get(digest).and_then(|id| self.tokens.get(id))
    }
}

/// What allowed a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedBy {
    /// Open to every authenticated user (discovery, one's own identity).
    Everyone,
    /// A cluster role binding, by name.
    ClusterRoleBinding(Arc<str>),
    /// A role binding: namespace, name.
    RoleBinding(Arc<str>, Arc<str>),
    /// Not RBAC: a Sync's webhook token, which opens that Sync's trigger alone.
    WebhookToken,
}

impl std::fmt::Display for AllowedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowedBy::Everyone => f.write_str("every authenticated user"),
            AllowedBy::ClusterRoleBinding(name) => write!(f, "ClusterRoleBinding/{name}"),
            AllowedBy::RoleBinding(ns, name) => write!(f, "RoleBinding/{ns}/{name}"),
            AllowedBy::WebhookToken => f.write_str("the Sync's webhook token"),
        }
    }
}

/// Why a request was allowed, or that it was not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, and by what.
    Allow(AllowedBy),
    /// No binding grants it.
    Deny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

impl Policy {
    /// Whether `who` may do what `attrs` describe.
    pub fn authorize(&self, who: &Identity, attrs: &Attributes<'_>) -> Decision {
        for (name, b) in &self.cluster_bindings {
            if b.role_ref.kind == "ClusterRole"
                && b.subjects.iter().any(|s| subject_matches(s, who, None))
                && self.cluster_roles.get(&b.role_ref.name).is_some_and(|rules| covers(rules, attrs))
            {
                return Decision::Allow(AllowedBy::ClusterRoleBinding(name.clone()));
            }
        }
        // A RoleBinding grants only namespaced requests inside its own namespace.
        let Attributes::Resource { namespace: Some(ns), .. } = attrs else { return Decision::Deny };
        let ns: &str = ns;
        for (name, b) in self.bindings.get(ns).into_iter().flatten() {
            if b.subjects.iter().any(|s| subject_matches(s, who, Some(ns)))
                && self.rules_of(&b.role_ref, ns).is_some_and(|rules| covers(rules, attrs))
            {
                return Decision::Allow(AllowedBy::RoleBinding(Arc::from(ns), name.clone()));
            }
        }
        Decision::Deny
    }

    fn rules_of(&self, role: &RoleRef, ns: &str) -> Option<&Vec<PolicyRule>> {
        match role.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&role.name),
            "Role" => self.roles.get(ns).and_then(|r| r.get(&role.name)),
            _ => None,
        }
    }
}

/// What the user name of a service account starts with, before `NAMESPACE:NAME`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// The user name of a service account, as tokens and bindings spell it.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

fn subject_matches(s: &Subject, who: &Identity, binding_ns: Option<&str>) -> bool {
    match s.kind.as_str() {
        "User" => s.name == who.user,
        "Group" => who.groups.contains(&s.name),
        "ServiceAccount" => match s.namespace.as_deref().or(binding_ns) {
            // Compared in place: this runs for every binding a request is checked against.
            Some(ns) => who
                .user
                .strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(n, name)| n == ns && name == s.name),
            None => false,
        },
        _ => false,
    }
}

fn covers(rules: &[PolicyRule], attrs: &Attributes<'_>) -> bool {
    rules.iter().any(|r| rule_covers(r, attrs))
}

fn any_or(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

fn rule_covers(rule: &PolicyRule, attrs: &Attributes<'_>) -> bool {
    if !any_or(&rule.verbs, attrs.verb()) {
        return false;
    }
    match attrs {
        Attributes::NonResource { path, .. } => rule.non_resource_urls.iter().any(|u| match u.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => u == path,
        }),
        Attributes::Resource { group, resource, subresource, name, .. } => {
            (rule.api_groups.is_empty() || any_or(&rule.api_groups, group))
                && rule.resources.iter().any(|r| resource_matches(r, group, resource, subresource.as_deref()))
                && (rule.resource_names.is_empty()
                    || name.as_deref().is_some_and(|n| rule.resource_names.iter().any(|r| r == n)))
        }
    }
}

fn resource_matches(entry: &str, group: &str, resource: &str, sub: Option<&str>) -> bool {
    let wildcard_ok = !(group == corral_api::GROUP && SENSITIVE.contains(&resource));
    let (e_res, e_sub) = match entry.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (entry, None),
    };
    let res_ok = e_res == resource || (e_res == "*" && wildcard_ok);
    let sub_ok = match (e_sub, sub) {
        (None, None) => true,
        // `*` alone covers every subresource too; `tasks` alone does not.
        (None, Some(_)) => e_res == "*",
        (Some(_), None) => false,
        (Some(es), Some(s)) => es == "*" || es == s,
    };
    res_ok && sub_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn res<'a>(
        verb: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        ns: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes::Resource {
            verb: verb.into(),
            group: corral_api::GROUP.into(),
            resource: resource.into(),
            subresource: sub.map(Into::into),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
        }
    }

    fn who(user: &str, groups: &[&str]) -> Identity {
        Identity { user: user.into(), groups: groups.iter().map(|s| s.to_string()).collect() }
    }

    fn subject(kind: &str, name: &str) -> Subject {
        Subject { kind: kind.into(), name: name.into(), namespace: None }
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.cluster_roles.insert("all".into(), vec![rule(&["*"], &["*"])]);
        p.cluster_roles.insert("reader".into(), vec![rule(&["get", "list", "watch"], &["tasks", "tasks/log"])]);
        p.cluster_bindings.insert(
            "ops".into(),
            ClusterRoleBindingSpec {
                role_ref: RoleRef { kind: "ClusterRole".into(), name: "all".into() },
                subjects: vec![subject("Group", "ops")],
            },
        );
        p.bindings.entry("web".into()).or_default().insert(
            "alice-reads".into(),
            RoleBindingSpec {
                role_ref: RoleRef { kind: "ClusterRole".into(), name: "reader".into() },
                subjects: vec![subject("User", "alice"), subject("ServiceAccount", "ci")],
            },
        );
        p
    }

    #[test]
    fn a_role_binding_grants_only_inside_its_namespace() {
        let p = policy();
        let alice = who("alice", &[]);
        assert!(p.authorize(&alice, &res("list", "tasks", None, Some("web"), None)).allowed());
        assert!(p.authorize(&alice, &res("get", "tasks", Some("log"), Some("web"), Some("t"))).allowed());
        assert!(!p.authorize(&alice, &res("list", "tasks", None, Some("db"), None)).allowed());
        assert!(!p.authorize(&alice, &res("list", "tasks", None, None, None)).allowed(), "across namespaces");
        assert!(!p.authorize(&alice, &res("delete", "tasks", None, Some("web"), Some("t"))).allowed());
        assert!(!p.authorize(&alice, &res("update", "tasks", Some("status"), Some("web"), Some("t"))).allowed());
        let ci = who(&service_account_user("web", "ci"), &[]);
        assert!(p.authorize(&ci, &res("watch", "tasks", None, Some("web"), None)).allowed());
        let other_ci = who(&service_account_user("db", "ci"), &[]);
        assert!(!p.authorize(&other_ci, &res("watch", "tasks", None, Some("web"), None)).allowed());
    }

    #[test]
    fn a_wildcard_never_covers_credentials_or_permissions() {
        let p = policy();
        let ops = who("bob", &["ops"]);
        assert_eq!(
            p.authorize(&ops, &res("delete", "tasks", None, Some("web"), Some("t"))),
            Decision::Allow(AllowedBy::ClusterRoleBinding("ops".into()))
        );
        assert!(p.authorize(&ops, &res("update", "tasks", Some("status"), Some("web"), Some("t"))).allowed());
        for sensitive in SENSITIVE {
            assert!(!p.authorize(&ops, &res("create", sensitive, None, None, None)).allowed(), "{sensitive}");
        }
    }

    #[test]
    fn names_and_non_resource_urls_limit_a_rule() {
        let mut p = Policy::default();
        let mut r = rule(&["get", "update"], &["nodes", "nodes/status"]);
        r.resource_names = vec!["n1".into()];
        let mut metrics = rule(&["get"], &[]);
        metrics.non_resource_urls = vec!["/metrics".into(), "/admin/*".into()];
        p.cluster_roles.insert("n1".into(), vec![r, metrics]);
        p.cluster_bindings.insert(
            "n1".into(),
            ClusterRoleBindingSpec {
                role_ref: RoleRef { kind: "ClusterRole".into(), name: "n1".into() },
                subjects: vec![subject("User", "system:node:n1")],
            },
        );
        let n1 = who("system:node:n1", &[]);
        assert!(p.authorize(&n1, &res("update", "nodes", Some("status"), None, Some("n1"))).allowed());
        assert!(!p.authorize(&n1, &res("update", "nodes", Some("status"), None, Some("n2"))).allowed());
        assert!(!p.authorize(&n1, &res("list", "nodes", None, None, None)).allowed(), "a list has no name");
        let get = |path: &'static str| Attributes::NonResource { verb: "get".into(), path: path.into() };
        assert!(p.authorize(&n1, &get("/metrics")).allowed());
        assert!(p.authorize(&n1, &get("/admin/revision")).allowed());
        assert!(!p.authorize(&n1, &get("/metricsx")).allowed());
        assert!(!p.authorize(&who("eve", &[]), &get("/metrics")).allowed());
    }
}
