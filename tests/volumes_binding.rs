//! Local persistent volumes through the real server (real sled, on 127.0.0.1:0) and
//! the built-in controllers: a volume is bound to a node on first use, in the task's
//! own write; it takes one live task at a time, also when creates race; its size is
//! reserved on its node as disk while bound; it cannot go while a task holds it; a
//! host path needs a namespace whose task policy allows it.

mod api_support;

use std::sync::Arc;

use api_support::{TestServer, causes};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NODES: &str = "/apis/corral.dev/v1/nodes";
const TASKS: &str = "/apis/corral.dev/v1/namespaces/default/tasks";
const VOLUMES: &str = "/apis/corral.dev/v1/namespaces/default/volumes";

/// Registers a Ready node with `disk` MiB of disk.
async fn node(s: &TestServer, name: &str, disk: u64) {
    let n = json!({"apiVersion": "corral.dev/v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"attributes": {"hostname": name}}});
    let (code, mut n) = s.post(NODES, &n).await;
    assert_eq!(code, StatusCode::CREATED, "{n}");
    n["status"] = json!({"phase": "Ready", "capacity": {"cpus": 4.0, "mem": 4096, "disk": disk},
        "portRanges": [{"begin": 31000, "end": 31099}]});
    let (code, body) = s.put(&format!("{NODES}/{name}/status"), &n).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

fn volume(name: &str, size: u64) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Volume", "metadata": {"name": name, "namespace": "default"},
        "spec": {"size": size}})
}

async fn create_volume(s: &TestServer, name: &str, size: u64) -> Value {
    let (code, body) = s.post(VOLUMES, &volume(name, size)).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body
}

fn task(name: &str, node: Option<&str>, volumes: &[&str]) -> Value {
    let mut t = json!({"apiVersion": "corral.dev/v1", "kind": "Task",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"command": ["/bin/true"], "resources": {"cpus": 0.1, "mem": 16, "disk": 10},
            "volumeMounts": volumes.iter().map(|v| json!({"volume": v, "mountPath": format!("/data/{v}")}))
                .collect::<Vec<_>>()}});
    if let Some(n) = node {
        t["spec"]["nodeName"] = json!(n);
    }
    t
}

/// Marks task `name` ended, as its agent would.
async fn finish(s: &TestServer, name: &str) {
    let (_, mut t) = s.get(&format!("{TASKS}/{name}")).await;
    t["status"] = json!({"phase": "FINISHED", "exitCode": 0});
    let (code, body) = s.put(&format!("{TASKS}/{name}/status"), &t).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

fn message(body: &Value) -> String {
    body["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_volume_is_bound_on_first_use_and_refuses_tasks_of_another_node() {
    let s = TestServer::start().await;
    node(&s, "n1", 1000).await;
    node(&s, "n2", 1000).await;
    let v = create_volume(&s, "data", 100).await;
    assert_eq!(v["metadata"]["finalizers"], json!(["corral.dev/volume-protection"]), "{v}");
    s.wait_for(&format!("{VOLUMES}/data"), "Pending", |v| v["status"]["phase"] == "Pending").await;

    let (code, body) = s.post(TASKS, &task("t1", Some("n1"), &["data"])).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (_, v) = s.get(&format!("{VOLUMES}/data")).await;
    assert_eq!(v["spec"]["nodeName"], "n1", "bound in the task's own write: {v}");
    s.wait_for(&format!("{VOLUMES}/data"), "InUse by t1", |v| {
        v["status"]["phase"] == "InUse" && v["status"]["task"] == "t1"
    })
    .await;
    finish(&s, "t1").await;
    s.wait_for(&format!("{VOLUMES}/data"), "Bound and free", |v| {
        v["status"]["phase"] == "Bound" && v["status"].get("task").is_none()
    })
    .await;

    let (code, body) = s.post(TASKS, &task("t2", Some("n2"), &["data"])).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(causes(&body), vec!["spec.volumeMounts[0].volume".to_string()], "{body}");
    let why = message(&body);
    assert!(why.contains("\"n1\"") && why.contains("\"n2\""), "names both nodes: {body}");
    let (code, _) = s.get(&format!("{TASKS}/t2")).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "nothing of a refused task is stored");

    // Its node is fixed once bound.
    let (_, mut v) = s.get(&format!("{VOLUMES}/data")).await;
    v["spec"]["nodeName"] = json!("n2");
    let (code, body) = s.put(&format!("{VOLUMES}/data"), &v).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(causes(&body).join(";").contains("spec.nodeName"), "{body}");

    // A replacement on the volume's node mounts it again.
    let (code, body) = s.post(TASKS, &task("t3", Some("n1"), &["data"])).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn a_volume_takes_one_live_task_and_of_racing_creates_exactly_one_wins() {
    let s = TestServer::start().await;
    node(&s, "n1", 10_000).await;
    create_volume(&s, "solo", 10).await;
    let (code, body) = s.post(TASKS, &task("first", Some("n1"), &["solo"])).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, body) = s.post(TASKS, &task("second", Some("n1"), &["solo"])).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("in use by task \"first\""), "{body}");
    finish(&s, "first").await;
    let (code, body) = s.post(TASKS, &task("second", Some("n1"), &["solo"])).await;
    assert_eq!(code, StatusCode::CREATED, "free once its task ended: {body}");

    // Sixteen creates racing for one fresh, unbound volume.
    create_volume(&s, "contested", 10).await;
    let s = Arc::new(s);
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.post(TASKS, &task(&format!("racer-{i}"), Some("n1"), &["contested"])).await })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        let (code, body) = r.await.expect("racer");
        match code {
            StatusCode::CREATED => won += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(won, 1, "exactly one task holds the volume");
    let (_, list) = s.get(TASKS).await;
    let holders = list["items"]
        .as_array()
        .map(|ts| ts.iter().filter(|t| t["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("racer-"))).count())
        .unwrap_or_default();
    assert_eq!(holders, 1, "{list}");
    if let Ok(s) = Arc::try_unwrap(s) {
        s.stop().await;
    }
}

#[tokio::test]
async fn a_missing_volume_is_refused_naming_the_field_and_the_namespace() {
    let s = TestServer::start().await;
    node(&s, "n1", 1000).await;
    for (name, node) in [("bound", Some("n1")), ("unbound", None)] {
        let (code, body) = s.post(TASKS, &task(name, node, &["nowhere"])).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(causes(&body), vec!["spec.volumeMounts[0].volume".to_string()], "{body}");
        let why = message(&body);
        assert!(why.contains("\"nowhere\"") && why.contains("\"default\""), "{body}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_node_whose_disk_is_reserved_by_volumes_takes_no_more_volume_bearing_tasks() {
    let s = TestServer::start().await;
    node(&s, "n1", 300).await;
    create_volume(&s, "a", 200).await;
    create_volume(&s, "b", 200).await;
    let (code, body) = s.post(TASKS, &task("ta", Some("n1"), &["a"])).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, body) = s.post(TASKS, &task("tb", Some("n1"), &["b"])).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("200 MiB for the volumes"), "{body}");
    let (_, b) = s.get(&format!("{VOLUMES}/b")).await;
    assert!(b["spec"].get("nodeName").is_none(), "a refused task binds nothing: {b}");

    // The reservation outlives the task: with ta ended, b still does not fit…
    finish(&s, "ta").await;
    let (code, body) = s.post(TASKS, &task("tb", Some("n1"), &["b"])).await;
    assert_eq!(code, StatusCode::CONFLICT, "a bound volume keeps its disk reserved: {body}");
    // …and a's next task asks only for its own disk: the volume is not counted twice.
    let (code, body) = s.post(TASKS, &task("ta2", Some("n1"), &["a"])).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");

    // Once a is gone, its disk is free again.
    finish(&s, "ta2").await;
    let (code, body) = s.delete(&format!("{VOLUMES}/a")).await;
    assert!(code.is_success(), "{body}");
    s.wait_for(VOLUMES, "volume a gone", |l| {
        l["items"].as_array().is_some_and(|vs| vs.iter().all(|v| v["metadata"]["name"] != "a"))
    })
    .await;
    let mut placed = false;
    for _ in 0..100 {
        let (code, _) = s.post(TASKS, &task("tb", Some("n1"), &["b"])).await;
        if code == StatusCode::CREATED {
            placed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(placed, "b fits once a is gone");
    s.stop().await;
}

#[tokio::test]
async fn a_volume_in_use_is_deleted_only_once_its_task_has_ended() {
    let s = TestServer::start().await;
    node(&s, "n1", 1000).await;
    create_volume(&s, "held", 10).await;
    let (code, body) = s.post(TASKS, &task("user", Some("n1"), &["held"])).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    s.wait_for(&format!("{VOLUMES}/held"), "InUse", |v| v["status"]["phase"] == "InUse").await;
    let (code, body) = s.delete(&format!("{VOLUMES}/held")).await;
    assert!(code.is_success(), "{body}");
    let (code, v) = s.get(&format!("{VOLUMES}/held")).await;
    assert_eq!(code, StatusCode::OK, "kept while its task runs: {v}");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    let (code, body) = s.post(TASKS, &task("late", Some("n1"), &["held"])).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("being deleted"), "{body}");

    finish(&s, "user").await;
    s.wait_for(VOLUMES, "volume gone", |l| l["items"].as_array().is_some_and(Vec::is_empty)).await;
    s.stop().await;
}

#[tokio::test]
async fn volume_admission_checks_size_host_path_and_the_namespace_policy() {
    let s = TestServer::start().await;
    let mut zero = volume("zero", 0);
    zero["metadata"]["name"] = json!("zero");
    let (code, body) = s.post(VOLUMES, &zero).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(causes(&body).join(";").contains("spec.size"), "{body}");

    let mut escaping = volume("escaping", 10);
    escaping["spec"]["hostPath"] = json!("/srv/../etc");
    let (code, body) = s.post(VOLUMES, &escaping).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(causes(&body).join(";").contains("spec.hostPath"), "{body}");

    // `default` is privileged in these tests: a host path is allowed there, and
    // gets no data finalizer (the agent never removes a host's directory).
    let mut host = volume("host", 10);
    host["spec"]["hostPath"] = json!("/srv/data");
    host["spec"]["reclaimPolicy"] = json!("Delete");
    let (code, body) = s.post(VOLUMES, &host).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["metadata"]["finalizers"], json!(["corral.dev/volume-protection"]), "{body}");
    let mut deleting = volume("deleting", 10);
    deleting["spec"]["reclaimPolicy"] = json!("Delete");
    let (code, body) = s.post(VOLUMES, &deleting).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["metadata"]["finalizers"],
        json!(["corral.dev/volume-protection", "corral.dev/volume-data"]),
        "{body}"
    );

    // A namespace without the label is restricted: no host path there.
    let ns = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "locked"}});
    let (code, body) = s.post("/apis/corral.dev/v1/namespaces", &ns).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let mut locked = volume("host", 10);
    locked["metadata"]["namespace"] = json!("locked");
    locked["spec"]["hostPath"] = json!("/srv/data");
    let (code, body) = s.post("/apis/corral.dev/v1/namespaces/locked/volumes", &locked).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("hostPath") && message(&body).contains("locked"), "{body}");
    locked["spec"].as_object_mut().map(|m| m.remove("hostPath"));
    let (code, body) = s.post("/apis/corral.dev/v1/namespaces/locked/volumes", &locked).await;
    assert_eq!(code, StatusCode::CREATED, "an agent-made volume is fine there: {body}");
    s.stop().await;
}

#[tokio::test]
async fn offers_show_the_disk_left_after_bound_volumes_and_a_stateful_instance_that_does_not_fit_waits() {
    let s = TestServer::start().await;
    node(&s, "n1", 300).await;
    create_volume(&s, "a", 200).await;
    let (code, body) = s.post(TASKS, &task("ta", Some("n1"), &["a"])).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    // A service whose instance needs a new 200 MiB volume: 90 MiB are left on n1
    // (300, less the volume's 200 and the task's own 10).
    let svc = json!({"apiVersion": "corral.dev/v1", "kind": "Service", "metadata": {"name": "big"},
        "spec": {"instances": 1,
            "template": {"command": ["sleep", "3600"], "resources": {"cpus": 0.1, "mem": 16}},
            "volumes": [{"name": "data", "mountPath": "/data", "size": 200}]}});
    let (code, body) = s.post("/apis/corral.dev/v1/namespaces/default/services", &svc).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let offers = s
        .wait_for("/apis/corral.dev/v1/offers", "an offer of n1", |l| {
            l["items"].as_array().is_some_and(|os| os.iter().any(|o| o["spec"]["node"] == "n1"))
        })
        .await;
    for o in offers["items"].as_array().into_iter().flatten().filter(|o| o["spec"]["node"] == "n1") {
        assert_eq!(o["spec"]["resources"]["disk"], 90, "the volume's and the task's disk are taken out: {o}");
    }
    let svc = s
        .wait_for("/apis/corral.dev/v1/namespaces/default/services/big", "the instance waiting for disk", |v| {
            v["status"]["waiting"]["refusals"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["reason"] == "insufficient disk"))
        })
        .await;
    let (_, v) = s.get(&format!("{VOLUMES}/big-data-0")).await;
    assert_eq!(v["metadata"]["labels"]["corral.dev/service"], "big", "made before placing: {v}");
    assert!(v["spec"].get("nodeName").is_none(), "and bound nowhere: {v} {svc}");
    let (_, tasks) = s.get(&format!("{TASKS}?labelSelector=corral.dev/service%3Dbig")).await;
    assert_eq!(tasks["items"], json!([]), "{tasks}");
    s.stop().await;
}

#[tokio::test]
async fn a_task_that_mounts_volumes_is_not_moved_nor_remounted_by_an_update() {
    let s = TestServer::start().await;
    node(&s, "n1", 1000).await;
    node(&s, "n2", 1000).await;
    create_volume(&s, "v", 10).await;
    create_volume(&s, "w", 10).await;
    let (code, body) = s.post(TASKS, &task("pending", None, &["v"])).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let mut bound = body.clone();
    bound["spec"]["nodeName"] = json!("n2");
    let (code, body) = s.put(&format!("{TASKS}/pending"), &bound).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "binding by update would skip the claim: {body}");
    assert_eq!(causes(&body), vec!["spec.nodeName".to_string()], "{body}");

    let (code, placed) = s.post(TASKS, &task("placed", Some("n1"), &["w"])).await;
    assert_eq!(code, StatusCode::CREATED, "{placed}");
    let mut remounted = placed.clone();
    remounted["spec"]["volumeMounts"][0]["volume"] = json!("v");
    let (code, body) = s.put(&format!("{TASKS}/placed"), &remounted).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(causes(&body), vec!["spec.volumeMounts".to_string()], "{body}");
    let mut labelled = placed.clone();
    labelled["metadata"]["labels"] = json!({"team": "db"});
    labelled["spec"]["volumeMounts"][0]["readOnly"] = json!(false);
    let (code, body) = s.put(&format!("{TASKS}/placed"), &labelled).await;
    assert_eq!(code, StatusCode::OK, "other changes go through: {body}");
    s.stop().await;
}
