//! Stateful services end to end: the real server with its controllers (offers,
//! services, volumes, garbage collector), a real `corral agent` process and busybox
//! containers under runc. A service's instance writes a file to its volume; its
//! container is killed; the replacement lands on the volume's node — not on another
//! node offered beside it — and reads the file. Deleting a service keeps its `Retain`
//! volumes, object and data, and takes its `Delete` ones with it.

mod agent_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_support::Cluster;
use serde_json::{Value, json};

const GRACE: Duration = Duration::from_secs(60);
const SERVICES: &str = "/apis/corral.dev/v1/namespaces/default/services";
const VOLUMES: &str = "/apis/corral.dev/v1/namespaces/default/volumes";
const NODES: &str = "/apis/corral.dev/v1/nodes";

fn name_of(t: &Value) -> String {
    t.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn phase(t: &Value) -> &str {
    t.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

async fn service_tasks(c: &Cluster, name: &str) -> Vec<Value> {
    let path = format!("/apis/corral.dev/v1/namespaces/default/tasks?labelSelector=corral.dev/service%3D{name}");
    c.get(&path).await.and_then(|l| l["items"].as_array().cloned()).unwrap_or_default()
}

/// The running task of service `name` other than those named in `not`.
async fn running_task(c: &Cluster, name: &str, not: &[String]) -> Value {
    let mut last = Vec::new();
    let found = corral_testkit::within_patience(async || {
        last = service_tasks(c, name).await;
        last.iter().find(|t| phase(t) == "RUNNING" && !not.contains(&name_of(t))).cloned()
    })
    .await;
    found.unwrap_or_else(|| panic!("no running task of {name}; tasks: {last:#?}\nagent log:\n{}", c.agent_log()))
}

/// The file `file` in volume `volume` on the agent's host, wherever the agent keeps
/// the volume's directory under its work dir.
fn volume_file(work: &Path, volume: &str, file: &str) -> Option<PathBuf> {
    fn walk(dir: &Path, volume: &str, file: &str, depth: u32) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if e.file_name() == volume && p.join(file).is_file() {
                return Some(p.join(file));
            }
            if depth > 0
                && let Some(found) = walk(&p, volume, file, depth - 1)
            {
                return Some(found);
            }
        }
        None
    }
    walk(&work.join("volumes"), volume, file, 2)
}

/// Registers a Ready node with no agent behind it, roomier than the real one: the
/// offers controller offers it too.
async fn decoy_node(c: &Cluster, name: &str) {
    let n = json!({"apiVersion": "corral.dev/v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"attributes": {"hostname": name}}});
    let mut n = c.send(reqwest::Method::POST, NODES, Some(&n)).await;
    n["status"] = json!({"phase": "Ready", "capacity": {"cpus": 64.0, "mem": 65536, "disk": 1_000_000},
        "portRanges": [{"begin": 30350, "end": 30399}]});
    c.send(reqwest::Method::PUT, &format!("{NODES}/{name}/status"), Some(&n)).await;
}

#[tokio::test]
async fn a_stateful_services_replacement_lands_on_its_volumes_node_and_reads_what_was_written() {
    let c = Cluster::start_with("vol-svc", GRACE, &["--resources", "ports:[30300-30349]"]).await;
    // Instance 0's volume, made (as the services framework would) and bound to the
    // real node ahead: a roomier node without an agent is offered beside it, and
    // neither the first task nor its replacement may go there.
    let volume = json!({"apiVersion": "corral.dev/v1", "kind": "Volume",
        "metadata": {"name": "db-data-0", "labels": {"corral.dev/service": "db"}},
        "spec": {"size": 16, "nodeName": "vol-svc"}});
    c.send(reqwest::Method::POST, VOLUMES, Some(&volume)).await;
    decoy_node(&c, "decoy").await;
    let template = json!({
        "image": "busybox",
        "command": ["sh", "-c",
            "if [ -f /data/hello ]; then cat /data/hello > /data/seen; else echo written-by-the-first > /data/hello; fi; exec sleep 3600"],
        "resources": {"cpus": 0.1, "mem": 32},
        "killGracePeriodSeconds": 1
    });
    let svc = json!({"apiVersion": "corral.dev/v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"instances": 1, "template": template,
            "volumes": [{"name": "data", "mountPath": "/data", "size": 16}]}});
    c.send(reqwest::Method::POST, SERVICES, Some(&svc)).await;

    let first = running_task(&c, "db", &[]).await;
    assert_eq!(first.pointer("/spec/nodeName"), Some(&json!("vol-svc")), "{first:#}");
    assert_eq!(first.pointer("/metadata/labels/corral.dev~1instance"), Some(&json!("0")), "{first:#}");
    assert_eq!(first.pointer("/spec/volumeMounts/0/volume"), Some(&json!("db-data-0")), "{first:#}");
    c.wait_for(&format!("{VOLUMES}/db-data-0"), "the volume in use by the first task", |v| {
        v["status"]["phase"] == "InUse" && v["status"]["task"] == json!(name_of(&first))
    })
    .await;
    let work = c.work_dir();
    c.until("the first task wrote its file", || volume_file(&work, "db-data-0", "hello").is_some()).await;

    // A crash, from outside: the container's init is killed.
    let container = first.pointer("/status/containerId").and_then(Value::as_str).expect("container id").to_string();
    c.kill_container(&container);

    let second = running_task(&c, "db", &[name_of(&first)]).await;
    assert_eq!(second.pointer("/spec/nodeName"), Some(&json!("vol-svc")), "on the volume's node: {second:#}");
    assert_eq!(second.pointer("/metadata/labels/corral.dev~1instance"), Some(&json!("0")), "{second:#}");
    c.until("the replacement read the file", || volume_file(&work, "db-data-0", "seen").is_some()).await;
    let seen = volume_file(&work, "db-data-0", "seen").and_then(|p| std::fs::read_to_string(p).ok());
    assert_eq!(seen.as_deref(), Some("written-by-the-first\n"));
    let tasks = service_tasks(&c, "db").await;
    assert!(tasks.iter().all(|t| t.pointer("/spec/nodeName") != Some(&json!("decoy"))), "{tasks:#?}");
    c.stop().await;
}

#[tokio::test]
async fn deleting_a_service_keeps_its_retain_volumes_and_takes_its_delete_ones() {
    let c = Cluster::start_with("vol-gc", GRACE, &["--resources", "ports:[30400-30449]"]).await;
    let template = json!({
        "image": "busybox",
        "command": ["sh", "-c", "echo kept > /kept/file; echo gone > /gone/file; exec sleep 3600"],
        "resources": {"cpus": 0.1, "mem": 32},
        "killGracePeriodSeconds": 1
    });
    let svc = json!({"apiVersion": "corral.dev/v1", "kind": "Service", "metadata": {"name": "st"},
        "spec": {"instances": 1, "template": template, "volumes": [
            {"name": "kept", "mountPath": "/kept", "size": 8},
            {"name": "gone", "mountPath": "/gone", "size": 8, "reclaimPolicy": "Delete"}]}});
    c.send(reqwest::Method::POST, SERVICES, Some(&svc)).await;
    running_task(&c, "st", &[]).await;
    let work = c.work_dir();
    c.until("the task wrote both files", || {
        volume_file(&work, "st-kept-0", "file").is_some() && volume_file(&work, "st-gone-0", "file").is_some()
    })
    .await;
    let kept = c.get(&format!("{VOLUMES}/st-kept-0")).await.expect("the Retain volume");
    assert_eq!(kept.pointer("/metadata/ownerReferences"), None, "a Retain volume is not owned: {kept:#}");
    let gone = c.get(&format!("{VOLUMES}/st-gone-0")).await.expect("the Delete volume");
    assert_eq!(gone.pointer("/metadata/ownerReferences/0/name"), Some(&json!("st")), "{gone:#}");
    assert_eq!(
        gone.pointer("/metadata/finalizers"),
        Some(&json!(["corral.dev/volume-protection", "corral.dev/volume-data"])),
        "{gone:#}"
    );

    c.send(reqwest::Method::DELETE, &format!("{SERVICES}/st"), None).await;
    c.wait_gone(&format!("{VOLUMES}/st-gone-0")).await;
    c.until("the Delete volume's data is removed", || volume_file(&work, "st-gone-0", "file").is_none()).await;
    let path = "/apis/corral.dev/v1/namespaces/default/tasks?labelSelector=corral.dev/service%3Dst";
    c.wait_for(path, "the service's tasks gone", |l| l["items"].as_array().is_some_and(Vec::is_empty)).await;
    let kept = c.get(&format!("{VOLUMES}/st-kept-0")).await.expect("the Retain volume stays");
    assert!(kept.pointer("/metadata/deletionTimestamp").is_none(), "{kept:#}");
    let data = volume_file(&work, "st-kept-0", "file").and_then(|p| std::fs::read_to_string(p).ok());
    assert_eq!(data.as_deref(), Some("kept\n"), "its data stays");
    c.wait_for(&format!("{VOLUMES}/st-kept-0"), "the Retain volume free", |v| v["status"]["phase"] == "Bound").await;
    c.stop().await;
}
