//! An agent with an empty work dir runs a task whose image was pushed to the control
//! plane with the real skopeo: it pulls the image by digest, imports it and runs it
//! with real runc, without any `corral image import` (two tasks of it, one pull). An image the registry lacks
//! fails the task with a reason that says so.

mod agent_support;
mod registry_support;

use std::time::Duration;

use agent_support::Cluster;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_agent_pulls_a_pushed_image_and_runs_it() {
    let c = Cluster::start_empty("puller", Duration::from_secs(60)).await;
    let images = c.work_dir().join("images");
    let local = corral_agent::image::ImageStore::open(images.clone()).expect("the agent's image store");
    assert!(local.list().unwrap().is_empty(), "the work dir starts without images");

    let tmp = tempfile::tempdir().unwrap();
    registry_support::push_busybox(&c.url, &c.admin_token(), tmp.path(), "tools/busybox", "1").await;

    let created = c
        .create_task("pulled", json!({"image": "tools/busybox:1", "command": ["sh", "-c", "echo pulled-and-ran"]}))
        .await;
    let created_at = created.pointer("/metadata/resourceVersion").and_then(Value::as_str).expect("rv").to_string();
    c.create_task("pulled-too", json!({"image": "tools/busybox:1", "command": ["true"]})).await;
    let t = c
        .wait_for(&Cluster::task_path("pulled"), "the task to end", |t| {
            matches!(t.pointer("/status/phase").and_then(Value::as_str), Some("FINISHED" | "FAILED"))
        })
        .await;
    assert_eq!(t.pointer("/status/phase"), Some(&json!("FINISHED")), "{t:#}\nagent log:\n{}", c.agent_log());
    assert_eq!(t.pointer("/status/exitCode"), Some(&json!(0)), "{t:#}");
    let uid = t.pointer("/metadata/uid").and_then(Value::as_str).expect("uid");
    let out = std::fs::read_to_string(c.work_dir().join("tasks").join(uid).join("logs/stdout")).expect("stdout");
    assert_eq!(out, "pulled-and-ran\n");

    // Every status the tasks went through, replayed by a watch from the first one's
    // creation: the one that pulled (whichever took the image's pull lock first; the
    // other waited for it) was STAGING with the pull's progress before it ran.
    let mut seen = statuses(&c, "pulled", &created_at).await;
    seen.extend(statuses(&c, "pulled-too", &created_at).await);
    assert!(
        seen.iter().any(|(phase, message)| phase == "STAGING"
            && message.contains("pulling tools/busybox:1 from the control plane: layer 1/2")),
        "no STAGING with pull progress among {seen:#?}"
    );

    // The image is now in the node's store under the task's reference.
    let names: Vec<String> = local.list().unwrap().into_iter().flat_map(|i| i.names).collect();
    assert_eq!(names, ["tools/busybox:1"]);
    assert!(c.agent_log().contains("image pulled"), "{}", c.agent_log());
    // Two tasks of one image, launched together: one pull, one import.
    c.wait_phase("pulled-too", "FINISHED").await;
    assert_eq!(c.agent_log().matches("imported image").count(), 1, "{}", c.agent_log());

    // A reference naming the control plane's own address is the control plane's
    // (with the node's credential, not anonymously).
    let host = c.url.trim_start_matches("http://").to_string();
    c.create_task("by-host", json!({"image": format!("{host}/tools/busybox:1"), "command": ["true"]})).await;
    let t = c
        .wait_for(&Cluster::task_path("by-host"), "by-host to end", |t| {
            matches!(t.pointer("/status/phase").and_then(Value::as_str), Some("FINISHED" | "FAILED"))
        })
        .await;
    assert_eq!(t.pointer("/status/phase"), Some(&json!("FINISHED")), "{t:#}");

    // An image nobody pushed: the task fails and says why.
    c.create_task("missing", json!({"image": "tools/nosuch:1", "command": ["true"]})).await;
    let t = c.wait_phase("missing", "FAILED").await;
    assert_eq!(t.pointer("/status/reason"), Some(&json!("ImageNotFound")), "{t:#}");
    let message = t.pointer("/status/message").and_then(Value::as_str).unwrap_or_default();
    assert!(message.contains("tools/nosuch:1") && message.contains("MANIFEST_UNKNOWN"), "{message}");
    let work = c.work_dir().display().to_string();
    assert!(message.contains(&format!("--work-dir {work}")), "the hint names the agent's own work dir: {message}");
    c.stop().await;
}

/// `(phase, message)` of every status of task `name` written after revision `from`,
/// until it ends.
async fn statuses(c: &Cluster, name: &str, from: &str) -> Vec<(String, String)> {
    use futures::StreamExt;
    let config = corral_client::Config { server: c.url.clone(), token: Some(c.admin_token()), ..Default::default() };
    let client = corral_client::Client::from_config(&config).expect("client");
    let tasks: corral_client::Api<corral_api::kinds::task::Task> = corral_client::Api::namespaced(client, "default");
    let params = corral_client::WatchParams {
        field_selector: Some(format!("metadata.name={name}")),
        resource_version: Some(from.to_string()),
        ..Default::default()
    };
    let mut events = tasks.watch(&params).await.expect("watch");
    let mut seen = Vec::new();
    // The bound only keeps a broken build from hanging: the task has ended already.
    let replay = async {
        while let Some(event) = events.next().await {
            let task = match event.expect("watch event") {
                corral_client::WatchEvent::Added(t) | corral_client::WatchEvent::Modified(t) => t,
                _ => continue,
            };
            let status = task.status.unwrap_or_default();
            let phase = serde_json::to_value(status.phase).unwrap().as_str().unwrap_or_default().to_string();
            seen.push((phase.clone(), status.message.unwrap_or_default()));
            if phase == "FINISHED" || phase == "FAILED" {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(corral_testkit::PATIENCE, replay).await;
    seen
}
