//! `corral token` and `corral auth`, driving the real binary against a real server:
//! tokens made for people and service accounts work with the rights bound to them,
//! `can-i` answers as the server decides, and a revoked token stops working.

mod cli_support;

use cli_support::Env;

#[test]
fn a_token_made_for_a_user_carries_the_rights_bound_to_that_user_until_revoked() {
    let env = Env::start();
    assert_eq!(env.ok(&["auth", "whoami"]).lines().next(), Some("user:   admin"));
    let token = env.ok(&["token", "create", "--user", "vera", "--ttl", "1h", "--description", "test"]);
    let token = token.trim();
    assert!(corral_client::BearerToken::parse(token).is_some(), "{token}");
    let as_vera = |args: &[&str]| {
        let mut all = vec!["--token", token];
        all.extend_from_slice(args);
        env.run(&all)
    };
    // No binding yet: refused, and the message says who and what.
    let r = as_vera(&["get", "configmaps"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("\"vera\" cannot list configmaps"), "{r}");
    let r = as_vera(&["auth", "can-i", "list", "configmaps"]);
    assert_eq!((r.code(), r.stdout().trim()), (1, "no"), "{r}");

    let binding = env.write(
        "bind.yaml",
        "apiVersion: corral.dev/v1\nkind: RoleBinding\nmetadata: {name: vera-views, namespace: default}\n\
         spec:\n  roleRef: {kind: ClusterRole, name: view}\n  subjects: [{kind: User, name: vera}]\n",
    );
    env.ok(&["apply", "-f", binding.to_str().unwrap()]);
    let r = as_vera(&["auth", "can-i", "list", "configmaps"]);
    assert_eq!((r.code(), r.stdout().trim()), (0, "yes"), "{r}");
    assert!(r.stderr().contains("RoleBinding/default/vera-views"), "{r}");
    let r = as_vera(&["auth", "can-i", "delete", "configmaps"]);
    assert_eq!((r.code(), r.stdout().trim()), (1, "no"), "{r}");
    let r = as_vera(&["auth", "can-i", "list", "configmaps", "-n", "kube-system"]);
    assert_eq!(r.stdout().trim(), "no", "{r}");
    assert_eq!(as_vera(&["get", "configmaps"]).code(), 0);
    // Asking for someone else needs cluster-admin: the admin may, vera may not.
    let r = env.run(&["auth", "can-i", "list", "configmaps", "--as", "vera"]);
    assert_eq!(r.stdout().trim(), "yes", "{r}");
    assert_eq!(as_vera(&["auth", "can-i", "list", "configmaps", "--as", "admin"]).code(), 1);

    let listed = env.ok(&["token", "list"]);
    let id = token.split('.').next().unwrap();
    assert!(listed.lines().any(|l| l.starts_with(id) && l.contains("vera") && l.contains("test")), "{listed}");
    assert!(!listed.contains(token.split('.').nth(1).unwrap()), "a secret is listed");
    env.ok(&["token", "revoke", id]);
    let r = as_vera(&["get", "configmaps"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("not valid"), "{r}");
}

#[test]
fn tokens_for_service_accounts_and_joins_are_what_they_say() {
    let env = Env::start();
    let sa = env.ok(&["token", "create", "--service-account", "ci/deployer"]);
    let r = env.run(&["--token", sa.trim(), "auth", "whoami"]);
    assert!(r.stdout().contains("system:serviceaccount:ci:deployer"), "{r}");
    let join = env.run(&["token", "create", "--join", "--ttl", "10m"]);
    assert_eq!(join.code(), 0, "{join}");
    assert!(join.stderr().contains("corral agent --server"), "{join}");
    // A join token is good for joining only.
    let r = env.run(&["--token", join.stdout().trim(), "get", "configmaps"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("join token"), "{r}");
    let r = env.run(&["token", "create"]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("--user"), "{r}");
}
