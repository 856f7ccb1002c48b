//! `POST /transactions` (many writes, one store transaction), impersonation, and a
//! Sync's trigger, against a real server on loopback with a real sled store.

mod api_support;

use std::sync::Arc;

use api_support::{CMS, TestServer, cm};
use corral_api::kinds::TokenPurpose;
use corral_api::transaction::{Operation, Outcome, Target, Transaction, split_cause};
use corral_client::TransactParams;
use reqwest::StatusCode;
use serde_json::{Value, json};

const V1: &str = "/apis/corral.dev/v1";

/// A control plane without controllers: nothing but the test writes, so the store's
/// revision tells exactly what the test wrote.
async fn quiet() -> TestServer {
    TestServer::start_with(|o| o.controllers = corral_controllers::Selection::Only(vec![])).await
}

fn cm_in(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
        "spec": {"data": data}})
}

fn cm_target(ns: &str, name: &str) -> Target {
    Target {
        api_version: "corral.dev/v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some(ns.into()),
        name: name.into(),
        ..Default::default()
    }
}

fn txn(operations: Vec<Operation>) -> Transaction {
    Transaction { operations }
}

fn manager() -> TransactParams {
    TransactParams { field_manager: Some("sync".into()), ..Default::default() }
}

/// The names of the ConfigMaps in `default`.
async fn cm_names(s: &TestServer) -> Vec<String> {
    let (code, list) = s.get(CMS).await;
    assert_eq!(code, StatusCode::OK, "{list}");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").into())
        .collect()
}

async fn bind(s: &TestServer, ns: &str, name: &str, role: &str, subject: Value) {
    let binding = json!({"apiVersion": "corral.dev/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "spec": {"roleRef": {"kind": "ClusterRole", "name": role}, "subjects": [subject]}});
    let (code, body) = s.post(&format!("{V1}/namespaces/{ns}/rolebindings"), &binding).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

async fn namespace(s: &TestServer, name: &str) {
    let ns = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {}});
    let (code, body) = s.post(&format!("{V1}/namespaces"), &ns).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn creates_and_an_apply_commit_together_with_consecutive_revisions_seen_in_order() {
    let s = quiet().await;
    let api = s.api();
    let (code, body) = s.post(CMS, &cm("d", json!({"k": "old"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let before = s.revision().await;
    let mut watch = s.watch(&format!("{CMS}?watch=true&resourceVersion={before}")).await;
    let t = txn(vec![
        Operation::create(cm("a", json!({"k": "1"}))),
        Operation::create(cm("b", json!({"k": "2"}))),
        Operation::create(cm("c", json!({"k": "3"}))),
        Operation::apply(cm("d", json!({"k": "new"}))),
    ]);
    let result = api.transact(&t, &manager()).await.expect("the transaction commits");
    let outcomes: Vec<Outcome> = result.results.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [Outcome::Created, Outcome::Created, Outcome::Created, Outcome::Configured]);
    assert_eq!(result.writes, 4);
    assert_eq!(result.revision, before + 4);
    let revisions: Vec<u64> = result
        .results
        .iter()
        .map(|r| {
            r.object.as_ref().expect("object")["metadata"]["resourceVersion"].as_str().expect("rv").parse().expect("n")
        })
        .collect();
    assert_eq!(revisions, [before + 1, before + 2, before + 3, before + 4]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let ev = watch.next_change().await;
        seen.push((
            ev["type"].as_str().unwrap_or("").to_string(),
            ev["object"]["metadata"]["name"].as_str().unwrap_or("").to_string(),
        ));
    }
    let expected: Vec<(String, String)> = [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c"), ("MODIFIED", "d")]
        .iter()
        .map(|(t, n)| (t.to_string(), n.to_string()))
        .collect();
    assert_eq!(seen, expected);
    let (_, d) = s.get(&format!("{CMS}/d")).await;
    assert_eq!(d["spec"]["data"]["k"], "new");
    let (_, metrics) = s.get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(metrics.contains(r#"corral_transactions_total{result="committed"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"corral_transaction_operations_total{result="committed"} 4"#), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn one_invalid_object_refuses_the_whole_transaction_and_names_its_field() {
    let s = quiet().await;
    let api = s.api();
    let names = cm_names(&s).await;
    let before = s.revision().await;
    let mut bad = cm("bad", json!({}));
    bad["spec"]["data"] = json!(5);
    let t = txn(vec![
        Operation::create(cm("one", json!({"k": "1"}))),
        Operation::apply(cm("two", json!({"k": "2"}))),
        Operation::create(cm("three", json!({"k": "3"}))),
        Operation::create(bad),
        Operation::create(cm("five", json!({"k": "5"}))),
    ]);
    let e = api.transact(&t, &manager()).await.expect_err("refused");
    assert_eq!(e.code(), Some(422), "{e}");
    let causes: Vec<(usize, String)> =
        e.causes().iter().filter_map(|c| split_cause(&c.field).map(|(i, f)| (i, f.to_string()))).collect();
    assert!(causes.iter().all(|(i, _)| *i == 3), "{causes:?}");
    assert!(causes.iter().any(|(_, f)| f.starts_with("spec.data")), "{causes:?}");
    assert!(e.causes().iter().all(|c| c.message.contains("ConfigMap/default/bad")), "{:?}", e.causes());
    assert_eq!(cm_names(&s).await, names);
    assert_eq!(s.revision().await, before);
    s.stop().await;
}

#[tokio::test]
async fn an_unchanged_apply_writes_nothing() {
    let s = quiet().await;
    let api = s.api();
    let t = txn(vec![Operation::apply(cm("same", json!({"k": "v"})))]);
    let first = api.transact(&t, &manager()).await.expect("created");
    assert_eq!(first.results[0].outcome, Outcome::Created);
    let before = s.revision().await;
    let again = api.transact(&t, &manager()).await.expect("applied again");
    assert_eq!(again.results[0].outcome, Outcome::Unchanged);
    assert_eq!(again.writes, 0);
    assert_eq!(again.revision, before);
    assert_eq!(s.revision().await, before);
    s.stop().await;
}

#[tokio::test]
async fn a_delete_whose_label_no_longer_holds_leaves_the_object() {
    let s = quiet().await;
    let api = s.api();
    let mut object = cm("kept", json!({"k": "v"}));
    object["metadata"]["labels"] = json!({"corral.dev/sync": "other"});
    let (code, body) = s.post(CMS, &object).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let before = s.revision().await;
    let target = Target { label: Some("corral.dev/sync=mine".into()), ..cm_target("default", "kept") };
    let r = api.transact(&txn(vec![Operation::delete(target)]), &manager()).await.expect("answered");
    assert_eq!(r.results[0].outcome, Outcome::Absent);
    assert_eq!(r.writes, 0);
    assert_eq!(s.revision().await, before);
    let (code, _) = s.get(&format!("{CMS}/kept")).await;
    assert_eq!(code, StatusCode::OK);
    let target = Target { label: Some("corral.dev/sync=other".into()), ..cm_target("default", "kept") };
    let r = api.transact(&txn(vec![Operation::delete(target)]), &manager()).await.expect("answered");
    assert_eq!(r.results[0].outcome, Outcome::Deleted);
    let (code, _) = s.get(&format!("{CMS}/kept")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let r = api.transact(&txn(vec![Operation::delete(cm_target("default", "kept"))]), &manager()).await.expect("ok");
    assert_eq!(r.results[0].outcome, Outcome::Absent);
    s.stop().await;
}

#[tokio::test]
async fn a_namespace_and_an_object_in_it_are_created_together() {
    let s = quiet().await;
    let api = s.api();
    let ns = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "fresh"}, "spec": {}});
    let t = txn(vec![Operation::apply(ns), Operation::apply(cm_in("fresh", "inside", json!({"k": "v"})))]);
    let r = api.transact(&t, &manager()).await.expect("commits");
    assert_eq!(r.writes, 2);
    let (code, body) = s.get(&format!("{V1}/namespaces/fresh/configmaps/inside")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // Without the namespace, the same object is refused, naming the operation.
    let e = api
        .transact(&txn(vec![Operation::apply(cm_in("nowhere", "x", json!({})))]), &manager())
        .await
        .expect_err("no namespace");
    assert_eq!(e.code(), Some(422), "{e}");
    assert_eq!(e.causes().first().map(|c| c.field.as_str()), Some("operations[0]"));
    s.stop().await;
}

#[tokio::test]
async fn a_dry_run_answers_results_and_writes_nothing() {
    let s = quiet().await;
    let api = s.api();
    let before = s.revision().await;
    let t =
        txn(vec![Operation::create(cm("dry", json!({"k": "v"}))), Operation::delete(cm_target("default", "nothing"))]);
    let params = TransactParams { dry_run: true, ..manager() };
    let r = api.transact(&t, &params).await.expect("answered");
    assert_eq!(r.results[0].outcome, Outcome::Created);
    assert_eq!(r.results[0].object.as_ref().expect("object")["spec"]["data"]["k"], "v");
    assert_eq!(r.results[1].outcome, Outcome::Absent);
    assert_eq!(s.revision().await, before);
    let (code, _) = s.get(&format!("{CMS}/dry")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn a_forbidden_operation_refuses_the_transaction_with_403() {
    let s = quiet().await;
    namespace(&s, "mine").await;
    namespace(&s, "theirs").await;
    let (code, body) = s.post(&format!("{V1}/namespaces/theirs/configmaps"), &cm_in("theirs", "x", json!({}))).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    bind(&s, "mine", "ed", "edit", json!({"kind": "User", "name": "ed"})).await;
    let token = s.kit().create_token("ed", &[], TokenPurpose::Authentication, None).await;
    let ed = s.kit().client_with(Some(&token));
    let before = s.revision().await;
    let t = txn(vec![Operation::create(cm_in("mine", "ok", json!({}))), Operation::delete(cm_target("theirs", "x"))]);
    let e = ed.transact(&t, &manager()).await.expect_err("forbidden");
    assert_eq!(e.code(), Some(403), "{e}");
    assert_eq!(e.causes().len(), 1, "{:?}", e.causes());
    assert_eq!(e.causes()[0].field, "operations[1]");
    assert!(e.causes()[0].message.contains("ConfigMap/theirs/x"), "{:?}", e.causes());
    assert_eq!(s.revision().await, before);
    let (code, _) = s.get(&format!("{V1}/namespaces/theirs/configmaps/x")).await;
    assert_eq!(code, StatusCode::OK);
    // What ed may do alone commits.
    let r =
        ed.transact(&txn(vec![Operation::create(cm_in("mine", "ok", json!({})))]), &manager()).await.expect("allowed");
    assert_eq!(r.writes, 1);
    s.stop().await;
}

#[tokio::test]
async fn an_admin_impersonating_a_viewer_service_account_cannot_create_and_others_may_not_impersonate() {
    let s = quiet().await;
    namespace(&s, "team").await;
    bind(
        &s,
        "team",
        "deployer-view",
        "view",
        json!({"kind": "ServiceAccount", "name": "deployer", "namespace": "team"}),
    )
    .await;
    let admin = s.api();
    let as_sa = admin.impersonating("system:serviceaccount:team:deployer", &[]);
    let cms = as_sa.kind("configmaps").await.expect("kinds are open to all");
    as_sa.list(&cms, Some("team"), &Default::default()).await.expect("a viewer lists");
    let e = as_sa
        .create(&cms, &cm_in("team", "nope", json!({})), &Default::default())
        .await
        .expect_err("a viewer does not create");
    assert_eq!(e.code(), Some(403), "{e}");
    assert!(e.to_string().contains("system:serviceaccount:team:deployer"), "{e}");
    // In a transaction too: each operation is authorized as the impersonated identity.
    let e = as_sa
        .transact(&txn(vec![Operation::create(cm_in("team", "nope", json!({})))]), &manager())
        .await
        .expect_err("403");
    assert_eq!(e.code(), Some(403), "{e}");
    // A user without the verb impersonate is refused, naming whom.
    bind(&s, "team", "ed", "edit", json!({"kind": "User", "name": "ed"})).await;
    let token = s.kit().create_token("ed", &[], TokenPurpose::Authentication, None).await;
    let ed = s.kit().client_with(Some(&token));
    let e = ed.impersonating("admin", &[]).list(&cms, Some("team"), &Default::default()).await.expect_err("refused");
    assert_eq!(e.code(), Some(403), "{e}");
    assert!(e.to_string().contains("impersonate") && e.to_string().contains("\"admin\""), "{e}");
    let e = ed
        .impersonating("system:serviceaccount:team:deployer", &["system:masters"])
        .list(&cms, Some("team"), &Default::default())
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Some(403), "{e}");
    // The controller manager may act as the Sync controller, or as a service account,
    // but as no one else.
    let token = s.kit().create_token("system:controller-manager", &[], TokenPurpose::Authentication, None).await;
    let manager_client = s.kit().client_with(Some(&token));
    let as_sync = manager_client.impersonating("system:controller:sync", &[]);
    as_sync
        .create(&cms, &cm_in("team", "synced", json!({})), &Default::default())
        .await
        .expect("the sync user creates");
    let e = manager_client.impersonating("admin", &[]).list(&cms, None, &Default::default()).await.expect_err("no");
    assert_eq!(e.code(), Some(403), "{e}");
    s.stop().await;
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST` the trigger of Sync `name` in `team` with `token` (none: no header).
async fn trigger(s: &TestServer, name: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(s.url(&format!("{V1}/namespaces/team/syncs/{name}/trigger")))
        .body(vec![b'x'; 4096]);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("answered");
    let code = resp.status();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_sync_is_triggered_by_its_webhook_token_and_by_nothing_else() {
    let s = quiet().await;
    namespace(&s, "team").await;
    let sync = json!({"apiVersion": "corral.dev/v1", "kind": "Sync", "metadata": {"name": "app"},
        "spec": {"source": {"directory": "/srv/app"}, "webhook": {"tokenSha256": sha256_hex("s3cret")}}});
    let (code, body) = s.post(&format!("{V1}/namespaces/team/syncs"), &sync).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let path = format!("{V1}/namespaces/team/syncs/app");
    let (code, answer) = trigger(&s, "app", Some("s3cret")).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{answer}");
    let at = answer["requestedAt"].as_str().expect("requestedAt").to_string();
    assert!(chrono::DateTime::parse_from_rfc3339(&at).is_ok(), "{at}");
    let (_, live) = s.get(&path).await;
    assert_eq!(live["metadata"]["annotations"]["corral.dev/sync-requested-at"], at.as_str());
    let (code, _) = trigger(&s, "app", Some("wrong")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = trigger(&s, "app", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // A Sync that does not exist answers as a wrong token does.
    let (code, _) = trigger(&s, "absent", Some("s3cret")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // The webhook token authenticates nothing else, not even reading its Sync.
    let resp = reqwest::Client::builder().no_proxy().build().expect("client").get(s.url(&path)).bearer_auth("s3cret");
    assert_eq!(resp.send().await.expect("answered").status(), StatusCode::UNAUTHORIZED);
    // A user of the API triggers through RBAC: the administrator may.
    let again = s.api().trigger_sync("team", "app").await.expect("triggered");
    assert!(again > at, "{again} after {at}");
    s.stop().await;
}

#[tokio::test]
async fn an_apply_conflicting_with_another_manager_is_refused_unless_forced() {
    let s = quiet().await;
    let api = s.api();
    let other = TransactParams { field_manager: Some("someone-else".into()), ..Default::default() };
    api.transact(&txn(vec![Operation::apply(cm("shared", json!({"k": "theirs"})))]), &other).await.expect("applied");
    let before = s.revision().await;
    let mine = txn(vec![Operation::create(cm("new", json!({}))), Operation::apply(cm("shared", json!({"k": "mine"})))]);
    let e = api.transact(&mine, &manager()).await.expect_err("conflict");
    assert_eq!(e.code(), Some(409), "{e}");
    assert!(e.causes().iter().all(|c| c.field.starts_with("operations[1]")), "{:?}", e.causes());
    assert_eq!(s.revision().await, before);
    let forced = TransactParams { force: true, ..manager() };
    let r = api.transact(&mine, &forced).await.expect("forced");
    assert_eq!(r.writes, 2);
    assert_eq!(r.results[1].object.as_ref().expect("object")["spec"]["data"]["k"], "mine");
    s.stop().await;
}

#[tokio::test]
async fn too_many_operations_are_refused_before_anything_is_planned() {
    let s = quiet().await;
    let before = s.revision().await;
    let ops = (0..=corral_api::transaction::MAX_OPERATIONS)
        .map(|i| Operation::create(cm(&format!("c{i}"), json!({}))))
        .collect();
    let e = s.api().transact(&txn(ops), &manager()).await.expect_err("too many");
    assert_eq!(e.code(), Some(413), "{e}");
    assert!(e.to_string().contains("at most"), "{e}");
    assert_eq!(s.revision().await, before);
    s.stop().await;
}

#[tokio::test]
async fn deleting_a_namespace_marks_it_with_its_finalizer_in_the_same_transaction() {
    let s = quiet().await;
    namespace(&s, "doomed").await;
    let before = s.revision().await;
    let target = Target {
        api_version: "corral.dev/v1".into(),
        kind: "Namespace".into(),
        name: "doomed".into(),
        ..Default::default()
    };
    let r = s.api().transact(&txn(vec![Operation::delete(target)]), &manager()).await.expect("deleted");
    assert_eq!(r.results[0].outcome, Outcome::Deleted);
    // The finalizer, then the mark: two writes, as DELETE makes.
    assert_eq!((r.writes, r.revision), (2, before + 2));
    let (code, ns) = s.get(&format!("{V1}/namespaces/doomed")).await;
    assert_eq!(code, StatusCode::OK, "{ns}");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    // The system's own namespaces stay.
    let default = Target { name: "default".into(), ..Target { kind: "Namespace".into(), ..cm_target("", "") } };
    let e = s.api().transact(&txn(vec![Operation::delete(Target { namespace: None, ..default })]), &manager()).await;
    assert_eq!(e.expect_err("refused").code(), Some(403));
    s.stop().await;
}

#[tokio::test]
async fn an_impersonated_request_is_audited_with_both_identities() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.log");
    let path = log.clone();
    let s = TestServer::start_with(move |o| {
        o.controllers = corral_controllers::Selection::Only(vec![]);
        o.server.audit_log = Some(path);
    })
    .await;
    let as_sync = s.api().impersonating("system:controller:sync", &[]);
    as_sync.transact(&txn(vec![Operation::create(cm("by-sync", json!({})))]), &manager()).await.expect("allowed");
    let entry = corral_testkit::eventually("the transaction is audited", async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["resource"] == corral_api::transaction::TRANSACTIONS_PATH)
    })
    .await;
    assert_eq!(entry["user"], "admin", "{entry}");
    assert_eq!(entry["impersonatedUser"]["username"], "system:controller:sync", "{entry}");
    assert_eq!(entry["code"], 200, "{entry}");
    s.stop().await;
}

#[tokio::test]
async fn objects_of_a_kind_defined_in_the_same_transaction_are_validated_against_its_schema() {
    let s = quiet().await;
    let api = s.api();
    let crd = json!({
        "apiVersion": "corral.dev/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "version": "v1", "kind": "Widget", "plural": "widgets", "scope": "Namespaced",
            "schema": {"spec": {"type": "object", "additionalProperties": false, "required": ["size"],
                "properties": {"size": {"type": "integer", "minimum": 1}}}}}
    });
    let widget = |name: &str, size: i64| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "namespace": "default"},
            "spec": {"size": size}})
    };
    let before = s.revision().await;
    let bad =
        txn(vec![Operation::apply(crd.clone()), Operation::apply(widget("w1", 2)), Operation::apply(widget("w2", 0))]);
    let e = api.transact(&bad, &manager()).await.expect_err("invalid widget");
    assert_eq!(e.code(), Some(422), "{e}");
    assert!(e.causes().iter().any(|c| c.field == "operations[2].spec.size"), "{:?}", e.causes());
    assert_eq!(s.revision().await, before);
    let good = txn(vec![Operation::apply(crd), Operation::apply(widget("w1", 2))]);
    let r = api.transact(&good, &manager()).await.expect("commits");
    assert_eq!(r.writes, 2);
    // Served once the answer is given.
    let (code, w) = s.get("/apis/example.com/v1/namespaces/default/widgets/w1").await;
    assert_eq!(code, StatusCode::OK, "{w}");
    assert_eq!(w["spec"]["size"], 2);
    s.stop().await;
}

/// A real sled store where someone else writes once between a transaction's
/// planning and its commit: the first transaction it sees first updates the object
/// its first update names, as another client would.
struct Racing {
    inner: Arc<corral_store::SledStore>,
    raced: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl corral_store::Storage for Racing {
    async fn create(
        &self,
        key: corral_store::Key,
        object: Value,
    ) -> corral_store::Result<Arc<corral_store::StoredObject>> {
        self.inner.create(key, object).await
    }
    async fn update(
        &self,
        key: corral_store::Key,
        object: Value,
        expected: Option<u64>,
    ) -> corral_store::Result<corral_store::UpdateOutcome> {
        self.inner.update(key, object, expected).await
    }
    async fn update_status(
        &self,
        key: corral_store::Key,
        object: Value,
        expected: Option<u64>,
    ) -> corral_store::Result<corral_store::UpdateOutcome> {
        self.inner.update_status(key, object, expected).await
    }
    async fn delete(
        &self,
        key: corral_store::Key,
        expected: Option<u64>,
    ) -> corral_store::Result<corral_store::DeleteOutcome> {
        self.inner.delete(key, expected).await
    }
    async fn transact(&self, ops: Vec<corral_store::TxnOp>) -> corral_store::Result<Vec<corral_store::TxnOutcome>> {
        let first_update = ops.iter().find_map(|op| match op {
            corral_store::TxnOp::Update { key, .. } => Some(key.clone()),
            _ => None,
        });
        if let Some(key) = first_update
            && !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let live = self.inner.get(&key).await?.expect("the object exists");
            let mut v = live.value()?;
            v["spec"]["data"]["racer"] = json!("was here");
            self.inner.update(key, v, Some(live.revision)).await?;
        }
        self.inner.transact(ops).await
    }
    async fn get(&self, key: &corral_store::Key) -> corral_store::Result<Option<Arc<corral_store::StoredObject>>> {
        self.inner.get(key).await
    }
    async fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        selector: &corral_api::Selector,
    ) -> corral_store::Result<corral_store::ListResult> {
        self.inner.list(resource, namespace, selector).await
    }
    fn request_progress(&self) {
        self.inner.request_progress()
    }
    async fn watch(&self, request: corral_store::WatchRequest) -> corral_store::Result<corral_store::WatchStream> {
        self.inner.watch(request).await
    }
    async fn compact(&self, revision: u64) -> corral_store::Result<()> {
        self.inner.compact(revision).await
    }
    fn stats(&self) -> corral_store::StoreStats {
        self.inner.stats()
    }
}

#[tokio::test]
async fn a_transaction_that_lost_a_race_is_computed_again_on_the_new_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = Arc::new(corral_store::SledStore::open(dir.path(), Default::default()).expect("store opens"));
    let store = Arc::new(Racing { inner: inner.clone(), raced: Default::default() });
    let state = corral_server::AppState::new(store, Arc::new(corral_api::Registry::builtin()));
    // This state loads no policy from its store: the built-in one is set by hand.
    *state.auth.policy.write() = corral_server::auth::bootstrap::builtin_policy();
    let router = corral_server::app(state);
    let transport = corral_server::in_process::InProcess::new(router, corral_server::auth::Identity::admin());
    let api = corral_client::Client::new(Arc::new(transport));
    let ns = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "default"}, "spec": {}});
    api.transact(&txn(vec![Operation::apply(ns), Operation::apply(cm("r", json!({"k": "old"})))]), &manager())
        .await
        .expect("created");
    let r =
        api.transact(&txn(vec![Operation::apply(cm("r", json!({"k": "new"})))]), &manager()).await.expect("applied");
    assert_eq!(r.results[0].outcome, Outcome::Configured);
    let data = &r.results[0].object.as_ref().expect("object")["spec"]["data"];
    // Neither write is lost: the apply was merged into the racer's object.
    assert_eq!(data, &json!({"k": "new", "racer": "was here"}));
    assert!(store_raced(&inner).await);
}

/// Whether the racer's write is in the store.
async fn store_raced(store: &corral_store::SledStore) -> bool {
    use corral_store::Storage as _;
    let key = corral_store::Key::namespaced("corral.dev/configmaps", "default", "r");
    let live = store.get(&key).await.ok().flatten().and_then(|o| o.value().ok()).unwrap_or_default();
    live["spec"]["data"]["racer"] == "was here"
}
