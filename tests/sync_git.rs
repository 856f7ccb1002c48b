//! GitOps with real git repositories: local bare repositories over `file://`, pushed
//! to from a clone as a user would, synced by the sync controller of a real server.

mod api_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use api_support::TestServer;
use corral_client::credentials::sha256_hex;
use reqwest::StatusCode;
use serde_json::{Value, json};

const V1: &str = "/apis/corral.dev/v1";
const SYNCS: &str = "/apis/corral.dev/v1/namespaces/default/syncs";

/// A bare repository and a clone of it to commit from.
struct Repo {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Tester", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let bare = dir.path().join("origin.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bare).expect("dir");
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        std::fs::create_dir_all(&work).expect("dir");
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().expect("utf-8 path")]);
        Repo { _dir: dir, bare, work }
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.work.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(p, text).expect("write");
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.work.join(rel)).expect("remove");
    }

    /// Commits everything and pushes; the commit id.
    fn push(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

fn cm_yaml(name: &str, value: &str) -> String {
    format!(
        "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: {name}\nspec:\n  data:\n    k: \"{value}\"\n"
    )
}

fn sync(name: &str, url: &str, extra: Value) -> Value {
    let mut spec = json!({"source": {"git": {"url": url, "branch": "main"}}, "prune": true, "wait": false,
        "intervalSeconds": 3600});
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "corral.dev/v1", "kind": "Sync", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn cm_path(ns: &str, name: &str) -> String {
    format!("{V1}/namespaces/{ns}/configmaps/{name}")
}

async fn data(s: &TestServer, name: &str) -> Option<String> {
    let (code, v) = s.get(&cm_path("default", name)).await;
    (code == StatusCode::OK).then(|| v["spec"]["data"]["k"].as_str().unwrap_or_default().to_string())
}

async fn wait_applied(s: &TestServer, name: &str, commit: &str) -> Value {
    s.wait_for(&format!("{SYNCS}/{name}"), &format!("revision {commit} applied"), |v| {
        v["status"]["lastAppliedRevision"] == commit && v["status"]["conditions"][0]["status"] == "True"
    })
    .await
}

#[tokio::test]
async fn a_repository_is_applied_then_pruned_by_inventory_and_a_bad_commit_changes_nothing() {
    let s = TestServer::start().await;
    let repo = Repo::new();
    repo.write("apps/a.yaml", &format!("{}---\n{}", cm_yaml("a1", "one"), cm_yaml("a2", "one")));
    repo.write("apps/b.yaml", &cm_yaml("b1", "one"));
    repo.write("README.md", "not a manifest\n");
    let first = repo.push("first");
    // Someone else's object, of the same kind, in the same namespace.
    let (code, out) =
        s.post(&format!("{V1}/namespaces/default/configmaps"), &api_support::cm("mine", json!({"k": "v"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let mine_rv = api_support::rv(&out);

    let (code, out) = s.post(SYNCS, &sync("site", &repo.url(), json!({"path": "apps", "intervalSeconds": 1}))).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let st = wait_applied(&s, "site", &first).await;
    assert_eq!(st["status"]["objects"], 3, "{st:#}");
    for n in ["a1", "a2", "b1"] {
        assert_eq!(data(&s, n).await.as_deref(), Some("one"), "{n}");
    }
    let (_, a1) = s.get(&cm_path("default", "a1")).await;
    assert_eq!(a1["metadata"]["labels"]["corral.dev/sync"], "default.site");

    // A commit deletes a file and changes an object: applied within the interval.
    repo.remove("apps/b.yaml");
    repo.write("apps/a.yaml", &format!("{}---\n{}", cm_yaml("a1", "two"), cm_yaml("a2", "one")));
    let second = repo.push("second");
    let st = wait_applied(&s, "site", &second).await;
    assert_eq!(data(&s, "a1").await.as_deref(), Some("two"));
    assert_eq!(data(&s, "b1").await, None, "b1's file is gone, so is b1");
    let inventory: Vec<&str> =
        st["status"]["inventory"].as_array().expect("inventory").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(inventory, ["a1", "a2"]);
    let (_, mine) = s.get(&cm_path("default", "mine")).await;
    assert_eq!(api_support::rv(&mine), mine_rv, "an object the Sync did not create is never touched");

    // A bad commit: one manifest with a field the kind does not have, beside a
    // change that is fine. Nothing of it is applied.
    repo.write("apps/a.yaml", &format!("{}---\n{}", cm_yaml("a1", "three"), cm_yaml("a2", "one")));
    repo.write("apps/c.yaml", "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: c1\nspec:\n  nope: 1\n");
    let bad = repo.push("bad");
    let st = s
        .wait_for(&format!("{SYNCS}/site"), "the bad commit attempted", |v| v["status"]["lastAttemptedRevision"] == bad)
        .await;
    let status = &st["status"];
    assert_eq!(status["lastAppliedRevision"], second, "{status:#}");
    assert_eq!(status["conditions"][0]["status"], "False", "{status:#}");
    let err = &status["errors"][0];
    assert_eq!(err["file"], "apps/c.yaml", "{status:#}");
    assert!(err["field"].as_str().unwrap_or_default().starts_with("spec"), "{status:#}");
    assert!(err.to_string().contains("nope"), "{status:#}");
    let message = status["conditions"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&bad[..12]) && message.contains(&second[..12]), "{message}");
    assert_eq!(data(&s, "a1").await.as_deref(), Some("two"), "the good half of a bad commit is not applied");
    assert_eq!(data(&s, "c1").await, None);

    // Fixed: applied whole.
    repo.remove("apps/c.yaml");
    let fixed = repo.push("fixed");
    wait_applied(&s, "site", &fixed).await;
    assert_eq!(data(&s, "a1").await.as_deref(), Some("three"));

    // A pruning Sync deleted takes what it applied with it, and only that.
    let (code, out) = s.delete(&format!("{SYNCS}/site")).await;
    assert!(code.is_success(), "{out}");
    s.wait_for(&format!("{V1}/namespaces/default/configmaps"), "the Sync's objects deleted with it", |v| {
        v["items"]
            .as_array()
            .is_some_and(|items| items.iter().all(|o| !o["metadata"]["name"].as_str().unwrap_or("").starts_with('a')))
    })
    .await;
    corral_testkit::eventually("the Sync gone once its objects are", async || {
        (s.get(&format!("{SYNCS}/site")).await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let (_, mine) = s.get(&cm_path("default", "mine")).await;
    assert_eq!(api_support::rv(&mine), mine_rv);
    s.stop().await;
}

#[tokio::test]
async fn a_webhook_syncs_at_once_and_a_hand_edit_is_reported_then_healed() {
    let s = TestServer::start().await;
    let repo = Repo::new();
    repo.write("site.yaml", &cm_yaml("web-config", "v1"));
    let first = repo.push("first");
    let token = "push-token-0123456789";
    let spec = json!({"webhook": {"tokenSha256": sha256_hex(token)}});
    let (code, out) = s.post(SYNCS, &sync("hooked", &repo.url(), spec)).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    wait_applied(&s, "hooked", &first).await;

    // The interval is an hour: only the push notification brings the commit now.
    repo.write("site.yaml", &cm_yaml("web-config", "v2"));
    let second = repo.push("second");
    let anonymous = reqwest::Client::builder().no_proxy().build().expect("client");
    let trigger = format!("{}{SYNCS}/hooked/trigger", s.base);
    let wrong = anonymous.post(&trigger).bearer_auth("wrong").send().await.expect("answer");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let resp = anonymous
        .post(&trigger)
        .bearer_auth(token)
        .body("{\"ref\": \"refs/heads/main\"}")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    wait_applied(&s, "hooked", &second).await;
    assert_eq!(data(&s, "web-config").await.as_deref(), Some("v2"));

    // A hand edit: reported at the next sync, not reverted without self-heal.
    let (_, mut live) = s.get(&cm_path("default", "web-config")).await;
    live["spec"]["data"]["k"] = json!("by hand");
    let (code, out) = s.put(&cm_path("default", "web-config"), &live).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    let resp = anonymous.post(&trigger).bearer_auth(token).send().await.expect("answer");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let st = s
        .wait_for(&format!("{SYNCS}/hooked"), "drift reported", |v| {
            v["status"]["drift"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    let drift = &st["status"]["drift"][0];
    assert_eq!(drift["object"]["name"], "web-config", "{st:#}");
    assert_eq!(drift["fields"], json!(["spec.data.k"]), "{st:#}");
    assert_eq!(data(&s, "web-config").await.as_deref(), Some("by hand"));

    // With self-heal (a spec change syncs at once), it is applied back.
    let (code, out) =
        s.patch(&format!("{SYNCS}/hooked"), "application/merge-patch+json", r#"{"spec": {"selfHeal": true}}"#).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    s.wait_for(&format!("{SYNCS}/hooked"), "drift healed", |v| {
        v["status"]["drift"].as_array().is_none_or(|d| d.is_empty()) && v["status"]["lastWrites"] == 1
    })
    .await;
    assert_eq!(data(&s, "web-config").await.as_deref(), Some("v2"));
    s.stop().await;
}

#[tokio::test]
async fn a_service_account_may_change_only_what_it_is_allowed_to() {
    let s = TestServer::start().await;
    let ns = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "other"}});
    let (code, out) = s.post(&format!("{V1}/namespaces"), &ns).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let binding = json!({"apiVersion": "corral.dev/v1", "kind": "RoleBinding", "metadata": {"name": "deployer-edits"},
        "spec": {"roleRef": {"kind": "ClusterRole", "name": "edit"},
                 "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "default"}]}});
    let (code, out) = s.post(&format!("{V1}/namespaces/default/rolebindings"), &binding).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");

    let repo = Repo::new();
    repo.write("mine.yaml", &cm_yaml("allowed", "x"));
    repo.write(
        "theirs.yaml",
        &cm_yaml("elsewhere", "x").replace("  name: elsewhere\n", "  name: elsewhere\n  namespace: other\n"),
    );
    let commit = repo.push("reaches into another namespace");
    let (code, out) = s.post(SYNCS, &sync("tenant", &repo.url(), json!({"serviceAccountName": "deployer"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let st = s
        .wait_for(&format!("{SYNCS}/tenant"), "the commit attempted", |v| {
            v["status"]["lastAttemptedRevision"] == commit
        })
        .await;
    let status = &st["status"];
    assert_eq!(status["conditions"][0]["reason"], "Forbidden", "{status:#}");
    let errors = status["errors"].to_string();
    assert!(errors.contains("theirs.yaml") && errors.contains("other"), "{status:#}");
    assert!(status.get("lastAppliedRevision").is_none(), "{status:#}");
    // Not even what it may touch: the revision is applied whole or not at all.
    assert_eq!(data(&s, "allowed").await, None);
    let (code, _) = s.get(&cm_path("other", "elsewhere")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Within its rights, it applies.
    repo.remove("theirs.yaml");
    let fine = repo.push("only its own namespace");
    let (code, _) = s
        .patch(&format!("{SYNCS}/tenant"), "application/merge-patch+json", r#"{"spec": {"intervalSeconds": 1}}"#)
        .await;
    assert_eq!(code, StatusCode::OK);
    wait_applied(&s, "tenant", &fine).await;
    assert_eq!(data(&s, "allowed").await.as_deref(), Some("x"));
    s.stop().await;
}

#[tokio::test]
async fn a_revision_brings_its_namespace_first_waits_for_its_dependencies_and_can_be_suspended() {
    let s = TestServer::start().await;
    let repo = Repo::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitops/site");
    repo.write("site/namespace.yaml", &std::fs::read_to_string(example.join("namespace.yaml")).expect("example"));
    repo.write("site/apps/config.yaml", &std::fs::read_to_string(example.join("apps/config.yaml")).expect("example"));
    repo.write("extra/more.yaml", &cm_yaml("more", "x").replace("  name: more\n", "  name: more\n  namespace: shop\n"));
    let first = repo.push("first");

    // The dependent Sync first: it waits for the one it depends on.
    let after = sync("after", &repo.url(), json!({"path": "extra", "dependsOn": ["base"]}));
    let (code, out) = s.post(SYNCS, &after).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let st = s
        .wait_for(&format!("{SYNCS}/after"), "waiting for base", |v| {
            v["status"]["conditions"][0]["reason"] == "DependencyNotReady"
        })
        .await;
    assert!(st["status"]["conditions"][0]["message"].as_str().unwrap_or_default().contains("default/base"), "{st:#}");
    let (code, out) = s.post(SYNCS, &sync("base", &repo.url(), json!({"path": "site"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    wait_applied(&s, "base", &first).await;
    wait_applied(&s, "after", &first).await;

    // One transaction, in order: the namespace, then wave 0, then wave 1.
    let rv = |v: &Value| api_support::rv(v).parse::<u64>().expect("revision");
    let (_, ns) = s.get(&format!("{V1}/namespaces/shop")).await;
    let (_, settings) = s.get(&cm_path("shop", "shop-settings")).await;
    let (_, flags) = s.get(&cm_path("shop", "shop-flags")).await;
    assert!(rv(&ns) < rv(&settings) && rv(&settings) < rv(&flags), "{ns}\n{settings}\n{flags}");
    let (code, _) = s.get(&cm_path("shop", "more")).await;
    assert_eq!(code, StatusCode::OK);

    // Suspended, it says so; resumed, it applies what was pushed meanwhile.
    let (code, _) =
        s.patch(&format!("{SYNCS}/base"), "application/merge-patch+json", r#"{"spec": {"suspend": true}}"#).await;
    assert_eq!(code, StatusCode::OK);
    s.wait_for(&format!("{SYNCS}/base"), "suspended", |v| v["status"]["conditions"][0]["reason"] == "Suspended").await;
    repo.write(
        "site/apps/config.yaml",
        &std::fs::read_to_string(example.join("apps/config.yaml")).expect("example").replace("EUR", "CHF"),
    );
    let second = repo.push("second");
    let (code, _) =
        s.patch(&format!("{SYNCS}/base"), "application/merge-patch+json", r#"{"spec": {"suspend": false}}"#).await;
    assert_eq!(code, StatusCode::OK);
    wait_applied(&s, "base", &second).await;
    let (_, settings) = s.get(&cm_path("shop", "shop-settings")).await;
    assert_eq!(settings["spec"]["data"]["currency"], "CHF");
    s.stop().await;
}

#[tokio::test]
async fn a_sync_naming_two_sources_or_refs_or_a_bad_token_hash_is_refused_naming_each_field() {
    let s = TestServer::start_with(|o| {
        o.without("sync");
    })
    .await;
    let bad = json!({"apiVersion": "corral.dev/v1", "kind": "Sync", "metadata": {"name": "two", "namespace": "default"},
        "spec": {"source": {"git": {"url": "file:///x", "branch": "main", "tag": "v1"}, "directory": "/srv"},
                 "webhook": {"tokenSha256": "not-hex"}}});
    let (code, out) = s.post(SYNCS, &bad).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let causes = api_support::causes(&out);
    for field in ["spec.source", "spec.source.git", "spec.webhook.tokenSha256"] {
        assert!(causes.iter().any(|c| c == field), "{field} in {causes:?}");
    }
    let (code, _) = s.get(&format!("{SYNCS}/two")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn a_sync_waits_for_its_services_and_stalls_when_they_do_not_run_in_time() {
    // No node: the service can never run its instance.
    let s = TestServer::start().await;
    let repo = Repo::new();
    repo.write(
        "web.yaml",
        "apiVersion: corral.dev/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  instances: 1\n  template:\n    \
         command: [sleep, '600']\n    resources: {cpus: 0.1, mem: 16}\n",
    );
    let commit = repo.push("a service");
    let (code, out) = s.post(SYNCS, &sync("apps", &repo.url(), json!({"wait": true, "timeoutSeconds": 2}))).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let st = s
        .wait_for(&format!("{SYNCS}/apps"), "the health wait to time out", |v| {
            v["status"]["conditions"][0]["reason"] == "HealthCheckTimeout"
        })
        .await;
    let status = &st["status"];
    assert_eq!(status["lastAppliedRevision"], commit, "applied, but not healthy: {status:#}");
    assert_eq!(status["health"][0]["object"]["name"], "web", "{status:#}");
    assert_eq!(status["health"][0]["health"], "Progressing", "{status:#}");
    let stalled = status["conditions"].as_array().expect("conditions").iter().find(|c| c["type"] == "Stalled");
    assert_eq!(stalled.map(|c| c["status"].clone()), Some(json!("True")), "{status:#}");
    assert!(status["conditions"][0]["message"].as_str().unwrap_or_default().contains("0 of 1"), "{status:#}");
    s.stop().await;
}

#[tokio::test]
async fn a_directory_source_is_synced_only_under_an_allowed_directory() {
    let allowed = tempfile::tempdir().expect("dir");
    let elsewhere = tempfile::tempdir().expect("dir");
    let root = allowed.path().to_path_buf();
    let s = TestServer::start_with(move |o| o.sync_directory_allow = vec![root]).await;
    let site = allowed.path().join("site");
    std::fs::create_dir(&site).expect("dir");
    std::fs::write(site.join("a.yaml"), cm_yaml("from-dir", "1")).expect("write");
    let dir_sync = |name: &str, dir: &Path| {
        json!({"apiVersion": "corral.dev/v1", "kind": "Sync", "metadata": {"name": name, "namespace": "default"},
            "spec": {"source": {"directory": dir.display().to_string()}, "intervalSeconds": 1, "wait": false}})
    };
    let (code, out) = s.post(SYNCS, &dir_sync("local", &site)).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let st = s
        .wait_for(&format!("{SYNCS}/local"), "the directory applied", |v| {
            v["status"]["conditions"][0]["status"] == "True"
        })
        .await;
    assert!(st["status"]["lastAppliedRevision"].as_str().unwrap_or_default().starts_with("sha256:"), "{st:#}");
    assert_eq!(data(&s, "from-dir").await.as_deref(), Some("1"));
    // A saved change is a new revision, applied at the next interval.
    std::fs::write(site.join("a.yaml"), cm_yaml("from-dir", "2")).expect("write");
    corral_testkit::eventually("the changed file applied", async || {
        (data(&s, "from-dir").await.as_deref() == Some("2")).then_some(())
    })
    .await;

    std::fs::write(elsewhere.path().join("b.yaml"), cm_yaml("outside", "1")).expect("write");
    let (code, out) = s.post(SYNCS, &dir_sync("outside", elsewhere.path())).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let st = s
        .wait_for(&format!("{SYNCS}/outside"), "the directory refused", |v| {
            v["status"]["conditions"][0]["reason"] == "SourceFailed"
        })
        .await;
    assert!(
        st["status"]["conditions"][0]["message"].as_str().unwrap_or_default().contains("not under an allowed"),
        "{st:#}"
    );
    assert_eq!(data(&s, "outside").await, None);
    s.stop().await;
}
