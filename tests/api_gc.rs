//! Garbage collection through the real server: cascading deletion in the background,
//! foreground and orphan modes, dependents with several owners, namespace deletion,
//! and cascades that survive a restart of the server.

mod api_support;

use api_support::{CMS, TestServer, cm, cm_path};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Waits until `check` holds; panics naming `what` when the test kit's patience ends.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    corral_testkit::eventually(what, async || check().await.then_some(())).await
}

/// A reference to the ConfigMap `owner` for an ownerReferences list.
fn owner_ref(owner: &Value, block: bool) -> Value {
    json!({
        "apiVersion": "corral.dev/v1",
        "kind": "ConfigMap",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": block,
    })
}

/// Creates the ConfigMap `name` in `default` owned by `owners`.
async fn create(s: &TestServer, name: &str, owners: &[Value]) -> Value {
    let mut body = cm(name, json!({"k": name}));
    if !owners.is_empty() {
        body["metadata"]["ownerReferences"] = Value::Array(owners.to_vec());
    }
    let (code, v) = s.post(CMS, &body).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    v
}

async fn gone(s: &TestServer, name: &str) -> bool {
    let (code, v) = s.get(&cm_path(name)).await;
    assert!(code == StatusCode::OK || code == StatusCode::NOT_FOUND, "{v}");
    code == StatusCode::NOT_FOUND
}

async fn live(s: &TestServer, name: &str) -> Value {
    let (code, v) = s.get(&cm_path(name)).await;
    assert_eq!(code, StatusCode::OK, "{name}: {v}");
    v
}

/// Removes every finalizer of ConfigMap `name` (a controller finishing its cleanup).
async fn clear_finalizers(s: &TestServer, name: &str) {
    let (code, v) =
        s.patch(&cm_path(name), "application/merge-patch+json", r#"{"metadata":{"finalizers":null}}"#).await;
    assert_eq!(code, StatusCode::OK, "{v}");
}

fn finalizers(v: &Value) -> Vec<String> {
    v["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn background_deletion_collects_a_three_level_chain() {
    let s = TestServer::start().await;
    let a = create(&s, "a", &[]).await;
    let b = create(&s, "b", &[owner_ref(&a, false)]).await;
    create(&s, "c", &[owner_ref(&b, false)]).await;
    create(&s, "bystander", &[]).await;

    let (code, v) = s.delete(&cm_path("a")).await;
    assert_eq!(code, StatusCode::OK, "background deletes the owner at once: {v}");
    assert!(gone(&s, "a").await);
    until("b and c are collected", async || gone(&s, "b").await && gone(&s, "c").await).await;
    assert!(!gone(&s, "bystander").await);
    s.stop().await;
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone() {
    let s = TestServer::start().await;
    let owner = create(&s, "owner", &[]).await;
    // `held` blocks its owner and has a finalizer of its own, so it stays (deleting)
    // until the test removes it: the owner must wait for it.
    let mut held = cm("held", json!({}));
    held["metadata"]["ownerReferences"] = json!([owner_ref(&owner, true)]);
    held["metadata"]["finalizers"] = json!(["test.corral.dev/hold"]);
    let (code, v) = s.post(CMS, &held).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    let mid = create(&s, "mid", &[owner_ref(&owner, true)]).await;
    create(&s, "leaf", &[owner_ref(&mid, true)]).await;
    create(&s, "loose", &[owner_ref(&owner, false)]).await;

    // The policy in a DeleteOptions body, as kubectl sends it.
    let (code, v) = s
        .call(
            reqwest::Method::DELETE,
            &cm_path("owner"),
            Some(&json!({"apiVersion":"v1","kind":"DeleteOptions","propagationPolicy":"Foreground"})),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    assert!(finalizers(&v).contains(&"foregroundDeletion".to_string()), "{v}");

    until("the dependents are deleted, in foreground down the chain", async || {
        gone(&s, "mid").await && gone(&s, "leaf").await && gone(&s, "loose").await
    })
    .await;
    until("held is being deleted", async || live(&s, "held").await["metadata"]["deletionTimestamp"].is_string()).await;
    // `held` still exists and blocks: the owner is still there, marked for deletion.
    let o = live(&s, "owner").await;
    assert!(o["metadata"]["deletionTimestamp"].is_string(), "{o}");
    assert!(finalizers(&o).contains(&"foregroundDeletion".to_string()), "{o}");

    clear_finalizers(&s, "held").await;
    until("the owner goes once nothing blocks it", async || gone(&s, "owner").await && gone(&s, "held").await).await;
    s.stop().await;
}

#[tokio::test]
async fn orphan_deletion_leaves_dependents_without_the_reference() {
    let s = TestServer::start().await;
    let owner = create(&s, "owner", &[]).await;
    let other = create(&s, "other", &[]).await;
    create(&s, "d1", &[owner_ref(&owner, true)]).await;
    create(&s, "d2", &[owner_ref(&owner, false), owner_ref(&other, false)]).await;

    let (code, v) = s.delete(&format!("{}?propagationPolicy=Orphan", cm_path("owner"))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");
    assert!(finalizers(&v).contains(&"orphan".to_string()), "{v}");
    until("the owner is gone", async || gone(&s, "owner").await).await;

    let d1 = live(&s, "d1").await;
    assert!(d1["metadata"].get("ownerReferences").is_none(), "{d1}");
    let d2 = live(&s, "d2").await;
    assert_eq!(d2["metadata"]["ownerReferences"], json!([owner_ref(&other, false)]), "{d2}");
    s.stop().await;
}

#[tokio::test]
async fn dependents_made_after_their_owner_was_found_present_go_with_it_and_none_outlives_it() {
    // The collector checks an owner once and trusts it until it sees it go: every
    // dependent made meanwhile must still go with it, and one made after must not
    // be taken for the dependent of a present owner.
    let s = TestServer::start().await;
    let owner = create(&s, "owner", &[]).await;
    for i in 0..20 {
        create(&s, &format!("d{i}"), &[owner_ref(&owner, false)]).await;
    }
    let (code, v) = s.delete(&cm_path("owner")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    until("every dependent goes with its owner", async || {
        for i in 0..20 {
            if !gone(&s, &format!("d{i}")).await {
                return false;
            }
        }
        true
    })
    .await;
    create(&s, "late", &[owner_ref(&owner, false)]).await;
    until("a dependent of an owner already gone is collected", async || gone(&s, "late").await).await;
    s.stop().await;
}

#[tokio::test]
async fn a_dependent_with_several_owners_goes_with_the_last_one() {
    let s = TestServer::start().await;
    let a = create(&s, "a", &[]).await;
    let b = create(&s, "b", &[]).await;
    create(&s, "shared", &[owner_ref(&a, false), owner_ref(&b, false)]).await;

    let (code, v) = s.delete(&cm_path("a")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    until("the dangling reference to a is dropped", async || {
        live(&s, "shared").await["metadata"]["ownerReferences"] == json!([owner_ref(&b, false)])
    })
    .await;

    let (code, v) = s.delete(&format!("{}?propagationPolicy=Background", cm_path("b"))).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    until("shared goes with its last owner", async || gone(&s, "shared").await).await;
    s.stop().await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_objects_then_itself() {
    let s = TestServer::start().await;
    let ns_path = "/apis/corral.dev/v1/namespaces/doomed";
    let (code, v) = s
        .post(
            "/apis/corral.dev/v1/namespaces",
            &json!({"apiVersion":"corral.dev/v1","kind":"Namespace","metadata":{"name":"doomed"}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    let in_ns = "/apis/corral.dev/v1/namespaces/doomed/configmaps";
    for name in ["x", "y"] {
        let mut body = cm(name, json!({}));
        body["metadata"]["namespace"] = json!("doomed");
        if name == "y" {
            body["metadata"]["finalizers"] = json!(["test.corral.dev/hold"]);
        }
        let (code, v) = s.post(in_ns, &body).await;
        assert_eq!(code, StatusCode::CREATED, "{v}");
    }
    create(&s, "elsewhere", &[]).await;

    let (code, v) = s.delete(ns_path).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"]["phase"], "Terminating", "{v}");
    assert!(finalizers(&v).contains(&"corral.dev/namespace".to_string()), "{v}");

    until("x is deleted", async || s.get(&format!("{in_ns}/x")).await.0 == StatusCode::NOT_FOUND).await;
    // `y` is held by its finalizer, so the namespace stays Terminating.
    let (code, ns) = s.get(ns_path).await;
    assert_eq!(code, StatusCode::OK, "{ns}");
    assert_eq!(ns["status"]["phase"], "Terminating", "{ns}");
    let mut late = cm("late", json!({}));
    late["metadata"]["namespace"] = json!("doomed");
    let (code, v) = s.post(in_ns, &late).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("being deleted")), "{v}");

    let (code, v) =
        s.patch(&format!("{in_ns}/y"), "application/merge-patch+json", r#"{"metadata":{"finalizers":null}}"#).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    until("the namespace is gone", async || s.get(ns_path).await.0 == StatusCode::NOT_FOUND).await;
    let (code, list) = s.get(in_ns).await;
    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(list["items"], json!([]));
    assert!(!gone(&s, "elsewhere").await);
    // Neither `default` nor `corral-system` (every node's heartbeat lease: deleting it
    // marked every node unreachable and every task lost, issue 10 finding 1) can go.
    for system in ["default", "corral-system"] {
        let path = format!("/apis/corral.dev/v1/namespaces/{system}");
        let (code, v) = s.delete(&path).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| m.contains(system)), "{v}");
        let (code, v) = s.get(&path).await;
        assert_eq!(code, StatusCode::OK, "{v}");
        assert!(v["metadata"]["deletionTimestamp"].is_null(), "not even marked for deletion: {v}");
    }
    s.stop().await;
}

#[tokio::test]
async fn dry_run_and_bad_policies_change_nothing() {
    let s = TestServer::start().await;
    let owner = create(&s, "owner", &[]).await;
    create(&s, "dep", &[owner_ref(&owner, true)]).await;

    let (code, v) = s.delete(&format!("{}?propagationPolicy=Foreground&dryRun=All", cm_path("owner"))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");
    assert!(finalizers(&v).contains(&"foregroundDeletion".to_string()), "{v}");
    let (code, v) = s.delete(&format!("{}?dryRun=All", cm_path("owner"))).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let (code, v) = s.delete(&format!("{}?propagationPolicy=Sideways", cm_path("owner"))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("Foreground")), "{v}");

    let o = live(&s, "owner").await;
    assert!(o["metadata"].get("deletionTimestamp").is_none(), "{o}");
    assert!(finalizers(&o).is_empty(), "{o}");
    assert!(!gone(&s, "dep").await);
    let (code, metrics) = s.get("/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert!(metrics.as_str().is_some_and(|m| m.contains("corral_gc_objects_waiting_on_finalizers")), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn cascades_left_undone_finish_after_a_restart() {
    // The first server runs without a collector, so every cascade is certainly
    // unfinished when it stops; the restarted server must finish all of them.
    let s = TestServer::start_with(|o| {
        o.without(corral_controllers::gc::NAME);
    })
    .await;
    let a = create(&s, "a", &[]).await;
    let b = create(&s, "b", &[owner_ref(&a, false)]).await;
    create(&s, "c", &[owner_ref(&b, false)]).await;
    let f = create(&s, "f", &[]).await;
    create(&s, "g", &[owner_ref(&f, true)]).await;
    let o = create(&s, "o", &[]).await;
    create(&s, "kept", &[owner_ref(&o, false)]).await;

    assert_eq!(s.delete(&cm_path("a")).await.0, StatusCode::OK);
    assert_eq!(s.delete(&format!("{}?propagationPolicy=Foreground", cm_path("f"))).await.0, StatusCode::ACCEPTED);
    assert_eq!(s.delete(&format!("{}?propagationPolicy=Orphan", cm_path("o"))).await.0, StatusCode::ACCEPTED);
    assert!(!gone(&s, "b").await && !gone(&s, "f").await && !gone(&s, "o").await);

    let s = s.restart().await;
    until("every cascade completes", async || {
        gone(&s, "b").await && gone(&s, "c").await && gone(&s, "f").await && gone(&s, "g").await && gone(&s, "o").await
    })
    .await;
    let kept = live(&s, "kept").await;
    assert!(kept["metadata"].get("ownerReferences").is_none(), "{kept}");
    s.stop().await;
}

#[tokio::test]
async fn a_cascade_interrupted_by_a_restart_completes() {
    let s = TestServer::start().await;
    let root = create(&s, "root", &[]).await;
    let mut mids = Vec::new();
    for i in 0..8 {
        mids.push(create(&s, &format!("mid-{i}"), &[owner_ref(&root, true)]).await);
    }
    for (i, m) in mids.iter().enumerate() {
        for j in 0..4 {
            create(&s, &format!("leaf-{i}-{j}"), &[owner_ref(m, true)]).await;
        }
    }
    let (code, v) = s.delete(&format!("{}?propagationPolicy=Foreground", cm_path("root"))).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");
    // Stop at once, most likely mid-cascade; wherever it stopped, the restarted
    // server finishes.
    let s = s.restart().await;
    until("the whole tree is gone", async || {
        let (code, list) = s.get(CMS).await;
        assert_eq!(code, StatusCode::OK, "{list}");
        list["items"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn cli_cascade_flag_passes_the_policy() {
    let s = TestServer::start().await;
    let owner = create(&s, "owner", &[]).await;
    create(&s, "dep", &[owner_ref(&owner, false)]).await;
    let run = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.arg("--server").arg(&s.base).args(args).env_remove("CORRAL_SERVER").env("CORRAL_TOKEN", s.token());
        cmd.output()
    };
    let bad = run(&["delete", "cm", "owner", "--cascade=sideways"]).await.expect("corral runs");
    assert!(!bad.status.success());
    let out = run(&["delete", "cm", "owner", "--cascade=orphan"]).await.expect("corral runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("configmap/owner deletion requested (finalizers: orphan)"), "{stdout}");
    until("the owner is gone", async || gone(&s, "owner").await).await;
    let dep = live(&s, "dep").await;
    assert!(dep["metadata"].get("ownerReferences").is_none(), "{dep}");
    s.stop().await;
}

#[tokio::test]
async fn dependents_of_a_kind_defined_after_the_start_are_collected_too() {
    let s = TestServer::start().await;
    let crd = json!({"apiVersion": "corral.dev/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "version": "v1", "kind": "Gadget", "plural": "gadgets"}});
    let (code, v) = s.post("/apis/corral.dev/v1/customresourcedefinitions", &crd).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    let owner = create(&s, "holder", &[]).await;
    let gadgets = "/apis/example.com/v1/namespaces/default/gadgets";
    let gadget = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "g", "namespace": "default", "ownerReferences": [owner_ref(&owner, false)]},
        "spec": {}});
    let (code, v) = s.post(gadgets, &gadget).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    // A gadget owned by a gadget: both sides of the reference of the new kind.
    let parent = s
        .post(
            gadgets,
            &json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "parent", "namespace": "default"}, "spec": {}}),
        )
        .await
        .1;
    let child = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "child", "namespace": "default", "ownerReferences": [{"apiVersion": "example.com/v1",
            "kind": "Gadget", "name": "parent", "uid": parent["metadata"]["uid"]}]},
        "spec": {}});
    assert_eq!(s.post(gadgets, &child).await.0, StatusCode::CREATED);

    assert_eq!(s.delete(&cm_path("holder")).await.0, StatusCode::OK);
    assert_eq!(s.delete(&format!("{gadgets}/parent")).await.0, StatusCode::OK);
    until("the gadgets whose owners went are collected", async || {
        s.get(&format!("{gadgets}/g")).await.0 == StatusCode::NOT_FOUND
            && s.get(&format!("{gadgets}/child")).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn the_collector_keeps_in_memory_only_objects_with_owners() {
    let s = TestServer::start().await;
    let owner = create(&s, "owner", &[]).await;
    for i in 0..40 {
        create(&s, &format!("plain-{i}"), &[]).await;
    }
    create(&s, "dep-1", &[owner_ref(&owner, false)]).await;
    create(&s, "dep-2", &[owner_ref(&owner, true)]).await;
    let tracked = async || {
        let text = s.client.get(s.url("/metrics")).send().await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("corral_gc_tracked_objects "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    until("the collector tracks the two dependents, and nothing else", async || tracked().await == Some(2)).await;
    s.stop().await;
}

const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";

/// Creates task `name` holding `finalizers`, its status at `phase`.
async fn task_at(s: &TestServer, name: &str, finalizers: &[&str], phase: &str) {
    let body = json!({"apiVersion": "corral.dev/v1", "kind": "Task",
        "metadata": {"name": name, "finalizers": finalizers}, "spec": {"command": ["true"]}});
    let (code, mut t) = s.post(TASKS, &body).await;
    assert_eq!(code, StatusCode::CREATED, "{t}");
    t["status"] = json!({"phase": phase});
    let (code, t) = s.put(&format!("{TASKS}/{name}/status"), &t).await;
    assert_eq!(code, StatusCode::OK, "{t}");
}

/// A task that ended holds nothing its agent must stop: deleting it lets go of the
/// agent's finalizer in the same request (DELETE, a dry run, and a transaction's
/// delete alike), as Kubernetes deletes a pod that ended without a grace period.
/// A task not ended still waits for its agent, and other finalizers still hold.
#[tokio::test]
async fn a_task_that_ended_is_deleted_without_waiting_for_its_agent() {
    use corral_api::kinds::task::AGENT_FINALIZER;
    use corral_api::transaction::{Operation, Outcome, Target, Transaction};
    let s = TestServer::start_with(|o| o.controllers = corral_controllers::Selection::Only(vec![])).await;
    task_at(&s, "running", &[AGENT_FINALIZER], "RUNNING").await;
    task_at(&s, "ended", &[AGENT_FINALIZER], "FINISHED").await;
    task_at(&s, "held", &[AGENT_FINALIZER, "example.com/hold"], "FAILED").await;
    task_at(&s, "lost", &[AGENT_FINALIZER], "LOST").await;

    let (code, v) = s.delete(&format!("{TASKS}/running")).await;
    assert_eq!(code, StatusCode::ACCEPTED, "a running task waits for its agent: {v}");
    let (code, v) = s.get(&format!("{TASKS}/running")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(finalizers(&v), [AGENT_FINALIZER], "{v}");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");

    let (code, v) = s.delete(&format!("{TASKS}/ended?dryRun=All")).await;
    assert_eq!(code, StatusCode::OK, "a dry run says it would go at once: {v}");
    let (code, v) = s.get(&format!("{TASKS}/ended")).await;
    assert_eq!(code, StatusCode::OK, "a dry run deletes nothing: {v}");
    let (code, v) = s.delete(&format!("{TASKS}/ended")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let (code, v) = s.get(&format!("{TASKS}/ended")).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");

    let (code, v) = s.delete(&format!("{TASKS}/held")).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{v}");
    let (_, v) = s.get(&format!("{TASKS}/held")).await;
    assert_eq!(finalizers(&v), ["example.com/hold"], "only the agent's is let go: {v}");

    let target = Target {
        api_version: "corral.dev/v1".into(),
        kind: "Task".into(),
        namespace: Some("default".into()),
        name: "lost".into(),
        ..Default::default()
    };
    let t = Transaction { operations: vec![Operation::delete(target)] };
    let r = s.api().transact(&t, &Default::default()).await.expect("the transaction commits");
    assert_eq!(r.results[0].outcome, Outcome::Deleted);
    let (code, v) = s.get(&format!("{TASKS}/lost")).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    s.stop().await;
}
