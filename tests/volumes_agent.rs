//! Local persistent volumes on a real agent, with runc containers: data outlives the
//! task that wrote it, usage and enforcement are reported, `Delete` reclaims the data
//! and `Retain` keeps it, host paths only from the agent's allow-list, and no name or
//! link leads out of its root.
//!
//! Volumes are created here already bound (`spec.nodeName`), and with the finalizer
//! the server gives `Delete` volumes (`corral.dev/volume-data`): binding and finalizers
//! are the control plane's, tested with it; this is the agent's half.

mod agent_support;

use std::time::Duration;

use agent_support::Cluster;
use serde_json::{Value, json};

const VOLUMES: &str = "/apis/corral.dev/v1/namespaces/default/volumes";

/// POSTs `body` to `path` as the administrator; the status and the answer.
async fn post(c: &Cluster, path: &str, body: &Value) -> (reqwest::StatusCode, Value) {
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{}{path}", c.url))
        .bearer_auth(c.admin_token())
        .json(body)
        .send()
        .await
        .expect("POST");
    let code = r.status();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn volume_path(name: &str) -> String {
    format!("{VOLUMES}/{name}")
}

/// Creates volume `name` bound to the cluster's node, with `spec` added.
async fn create_volume(c: &Cluster, name: &str, spec: Value) -> Value {
    let mut full = json!({"size": 16, "nodeName": c.node});
    for (k, v) in spec.as_object().expect("an object") {
        full[k] = v.clone();
    }
    let delete = full["reclaimPolicy"] == json!("Delete");
    let finalizers = if delete { json!(["corral.dev/volume-data"]) } else { json!([]) };
    let v = json!({"apiVersion": "corral.dev/v1", "kind": "Volume",
                   "metadata": {"name": name, "finalizers": finalizers}, "spec": full});
    c.send(reqwest::Method::POST, VOLUMES, Some(&v)).await
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn mounted(path: &std::path::Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.display().to_string();
    info.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_outlives_its_tasks_and_delete_reclaims_it() {
    let mut c = Cluster::start("vols", Duration::from_secs(60)).await;
    create_volume(&c, "data", json!({"reclaimPolicy": "Delete"})).await;
    // Made as soon as the agent sees it, before any task uses it.
    let v =
        c.wait_for(&volume_path("data"), "the volume is made", |v| v.pointer("/status/enforcement").is_some()).await;
    assert_eq!(text(&v, "/status/enforcement"), "filesystem", "{v:#}");
    let dir = c.work_dir().join("volumes/default/data");
    let image = c.work_dir().join("volumes/default/data.img");
    assert!(mounted(&dir) && image.exists());

    let mount = |read_only: bool| json!([{"volume": "data", "mountPath": "/data", "readOnly": read_only}]);
    c.create_task(
        "writer",
        json!({"image": "busybox", "volumeMounts": mount(false),
               "command": ["sh", "-c", "echo hello > /data/file && dd if=/dev/zero of=/data/blob bs=1M count=4 && \
                                        ! dd if=/dev/zero of=/data/huge bs=1M count=32 2>/dev/null"]}),
    )
    .await;
    let t = c.wait_phase("writer", "FINISHED").await;
    assert_eq!(text(&t, "/status/reason"), "Completed", "the size held: {t:#}");
    // A second task, after the first, reads what it left; read-only is honoured.
    c.create_task(
        "reader",
        json!({"image": "busybox", "volumeMounts": mount(true),
               "command": ["sh", "-c", "grep -q hello /data/file && ! touch /data/other 2>/dev/null"]}),
    )
    .await;
    let t = c.wait_phase("reader", "FINISHED").await;
    assert_eq!(text(&t, "/status/reason"), "Completed", "{t:#}");
    assert_eq!(std::fs::read_to_string(dir.join("file")).expect("on the node"), "hello\n");
    // A native task finds it at a path in its sandbox.
    c.create_task(
        "native",
        json!({"volumeMounts": [{"volume": "data", "mountPath": "vol"}],
               "command": ["/bin/sh", "-c", "grep -q hello vol/file"]}),
    )
    .await;
    let t = c.wait_phase("native", "FINISHED").await;
    assert_eq!(text(&t, "/status/reason"), "Completed", "{t:#}");

    // The host rebooted meanwhile (the agent is gone, its mount too): the next agent
    // mounts the image again, data and all.
    c.kill_agent();
    let umount = std::process::Command::new("umount").arg(&dir).status().expect("umount runs");
    assert!(umount.success() && !mounted(&dir));
    c.start_agent();
    c.until("the restarted agent mounts the volume again", || mounted(&dir)).await;
    assert_eq!(std::fs::read_to_string(dir.join("file")).expect("on the node"), "hello\n");

    // Measured once the writer ended (the huge file was cut at the size, then the
    // shell's `!` succeeded; what stayed is the 4 MiB blob and what the huge one got).
    let v = c
        .wait_for(&volume_path("data"), "the usage is reported", |v| {
            v.pointer("/status/used").and_then(Value::as_u64).is_some_and(|u| u >= 4)
        })
        .await;
    let used = v.pointer("/status/used").and_then(Value::as_u64).expect("used");
    assert!(used <= 16, "{v:#}");

    // Deleted once unused: the agent removes the data, then its finalizer.
    c.send(reqwest::Method::DELETE, &volume_path("data"), None).await;
    c.wait_gone(&volume_path("data")).await;
    assert!(!dir.exists() && !image.exists(), "the data is gone");
    assert!(!mounted(&dir));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_volume_keeps_its_data_for_a_volume_of_the_same_name() {
    let c = Cluster::start("keep", Duration::from_secs(60)).await;
    create_volume(&c, "keep", json!({})).await;
    let mount = json!([{"volume": "keep", "mountPath": "/data"}]);
    c.create_task(
        "writer",
        json!({"image": "busybox", "volumeMounts": mount, "command": ["sh", "-c", "echo kept > /data/file"]}),
    )
    .await;
    c.wait_phase("writer", "FINISHED").await;
    let dir = c.work_dir().join("volumes/default/keep");
    assert!(mounted(&dir));

    // Retain: the object goes at once; the agent unmounts the image and keeps it.
    c.send(reqwest::Method::DELETE, &volume_path("keep"), None).await;
    c.wait_gone(&volume_path("keep")).await;
    c.until("the deleted volume is unmounted", || !mounted(&dir)).await;
    assert!(c.work_dir().join("volumes/default/keep.img").exists(), "the data is kept");

    create_volume(&c, "keep", json!({})).await;
    c.create_task(
        "reader",
        json!({"image": "busybox", "volumeMounts": mount, "command": ["grep", "-q", "kept", "/data/file"]}),
    )
    .await;
    let t = c.wait_phase("reader", "FINISHED").await;
    assert_eq!(text(&t, "/status/reason"), "Completed", "{t:#}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_paths_come_only_from_the_allow_list_and_nothing_escapes() {
    let host = tempfile::tempdir().expect("tempdir");
    let root = host.path().canonicalize().expect("resolves");
    let (allowed, outside) = (root.join("allowed"), root.join("outside"));
    std::fs::create_dir_all(allowed.join("app")).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    // Tasks run as an unprivileged user, and the agent never changes a host
    // directory's owner: the operator opens it to them.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(allowed.join("app"), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::os::unix::fs::symlink(&outside, allowed.join("link")).expect("symlink");
    let allow = allowed.display().to_string();
    let c = Cluster::start_with("hosts", Duration::from_secs(60), &["--host-path-allow", &allow]).await;

    let hp = |p: &std::path::Path| json!({"hostPath": p.display().to_string()});
    create_volume(&c, "app", hp(&allowed.join("app"))).await;
    create_volume(&c, "out", hp(&outside)).await;
    create_volume(&c, "via-link", hp(&allowed.join("link"))).await;
    // A path that is not normalized is refused by the server's admission already
    // (the agent's own resolution, above, is the defence behind it).
    let up = json!({"apiVersion": "corral.dev/v1", "kind": "Volume", "metadata": {"name": "up"},
        "spec": {"size": 16, "nodeName": c.node, "hostPath": allowed.join("app/../../outside").display().to_string()}});
    let (code, body) = post(&c, VOLUMES, &up).await;
    assert_eq!(code, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let uses = |v: &str| json!([{"volume": v, "mountPath": "/data"}]);
    c.create_task(
        "app",
        json!({"image": "busybox", "volumeMounts": uses("app"), "command": ["sh", "-c", "echo hi > /data/f"]}),
    )
    .await;
    let t = c.wait_phase("app", "FINISHED").await;
    assert_eq!(text(&t, "/status/reason"), "Completed", "{t:#}");
    assert_eq!(std::fs::read_to_string(allowed.join("app/f")).expect("written on the host"), "hi\n");
    let v = c
        .wait_for(&volume_path("app"), "the host path is reported", |v| v.pointer("/status/enforcement").is_some())
        .await;
    assert_eq!(text(&v, "/status/enforcement"), "none", "{v:#}");
    assert!(text(&v, "/status/message").contains("neither enforced nor measured"), "{v:#}");

    for name in ["out", "via-link"] {
        c.create_task(
            name,
            json!({"image": "busybox", "volumeMounts": uses(name), "command": ["touch", "/data/escaped"]}),
        )
        .await;
        let t = c.wait_phase(name, "FAILED").await;
        assert_eq!(text(&t, "/status/reason"), "VolumeFailed", "{t:#}");
        assert!(text(&t, "/status/message").contains("outside this node's allowed host paths"), "{name}: {t:#}");
        let v = c.get(&volume_path(name)).await.expect("volume");
        assert_eq!(text(&v, "/status/phase"), "Failed", "{v:#}");
    }
    assert_eq!(std::fs::read_dir(&outside).expect("readable").count(), 0, "nothing was written outside");

    // A missing volume, and a name that would lead out of the volumes' directory:
    // the server refuses both tasks, in the write that would bind them.
    for (name, volume) in [("missing", "nosuch"), ("dots", "../../etc")] {
        let task = json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": name},
            "spec": {"image": "busybox", "nodeName": c.node, "volumeMounts": uses(volume), "command": ["true"]}});
        let (code, body) = post(&c, "/apis/corral.dev/v1/namespaces/default/tasks", &task).await;
        assert_eq!(code, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_images_a_volume_is_measured_and_its_overuse_reported() {
    let c = Cluster::start_with("measured", Duration::from_secs(60), &["--no-volume-images"]).await;
    create_volume(&c, "loose", json!({"reclaimPolicy": "Delete"})).await;
    let mount = json!([{"volume": "loose", "mountPath": "/data"}]);
    c.create_task(
        "spill",
        json!({"image": "busybox", "volumeMounts": mount, "command": ["dd", "if=/dev/zero", "of=/data/blob", "bs=1M", "count=20"]}),
    )
    .await;
    let t = c.wait_phase("spill", "FINISHED").await;
    assert_eq!(text(&t, "/status/reason"), "Completed", "nothing holds the size: {t:#}");
    let v = c
        .wait_for(&volume_path("loose"), "the overuse is reported", |v| {
            v.pointer("/status/used").and_then(Value::as_u64).is_some_and(|u| u >= 20)
        })
        .await;
    assert_eq!(text(&v, "/status/enforcement"), "measured", "{v:#}");
    let message = text(&v, "/status/message");
    assert!(message.contains("--no-volume-images") && message.contains("over its size"), "{v:#}");
    assert!(!mounted(&c.work_dir().join("volumes/default/loose")));
    c.send(reqwest::Method::DELETE, &volume_path("loose"), None).await;
    c.wait_gone(&volume_path("loose")).await;
    assert!(!c.work_dir().join("volumes/default/loose").exists());
    c.stop().await;
}
