//! The agent's fault tolerance, against real runc: kill -9 of the agent while its tasks
//! run, and a heartbeat that stops.

mod agent_support;

use std::time::Duration;

use agent_support::Cluster;
use serde_json::{Value, json};

fn field<'a>(t: &'a Value, p: &str) -> &'a Value {
    t.pointer(p).unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_readopts_its_tasks_without_restarting_them() {
    let mut c = Cluster::start("recover", Duration::from_secs(120)).await;
    // Each start leaves a line in the task's sandbox: a restart would show as two.
    let stay = json!({"image": "busybox", "command": ["sh", "-c", "echo started >> /mnt/sandbox/starts; exec sleep 1000"],
                      "killGracePeriodSeconds": 1});
    for name in ["stay-1", "stay-2", "stay-3"] {
        c.create_task(name, stay.clone()).await;
    }
    c.create_task(
        "stay-native",
        json!({"command": ["/bin/sh", "-c", "echo started >> starts; exec sleep 1000"], "killGracePeriodSeconds": 1}),
    )
    .await;
    // Ends while the agent is dead, once the test says so.
    c.create_task("ends", json!({"image": "busybox", "command": ["sh", "-c", "while [ ! -e /mnt/sandbox/go ]; do sleep 0.1; done; exit 7"]}))
        .await;
    let mut before = Vec::new();
    for name in ["stay-1", "stay-2", "stay-3", "stay-native", "ends"] {
        before.push(c.wait_phase(name, "RUNNING").await);
    }

    c.kill_agent();
    let ends_uid = field(&before[4], "/metadata/uid").as_str().expect("uid").to_string();
    let ends_dir = c.work_dir().join("tasks").join(&ends_uid);
    std::fs::write(ends_dir.join("sandbox/go"), "").expect("signal the task");
    // The task's shim records its end on its own, with nobody watching.
    c.until("the shim records the exit", || ends_dir.join("exit.json").exists()).await;

    c.start_agent();
    let ended = c.wait_phase("ends", "FAILED").await;
    assert_eq!(field(&ended, "/status/exitCode"), &json!(7), "{ended:#}");

    for (i, name) in ["stay-1", "stay-2", "stay-3", "stay-native"].iter().enumerate() {
        let now = c.get(&Cluster::task_path(name)).await.expect("task");
        assert_eq!(field(&now, "/status/phase"), &json!("RUNNING"), "{name}: {now:#}");
        assert_eq!(field(&now, "/status/startTime"), field(&before[i], "/status/startTime"), "{name} restarted");
        let uid = field(&now, "/metadata/uid").as_str().expect("uid");
        let starts =
            std::fs::read_to_string(c.work_dir().join("tasks").join(uid).join("sandbox/starts")).expect("starts file");
        assert_eq!(starts, "started\n", "{name} was started more than once");
    }
    // The re-adopted tasks are under the new agent's control.
    c.send(reqwest::Method::DELETE, &Cluster::task_path("stay-1"), None).await;
    c.wait_gone(&Cluster::task_path("stay-1")).await;
    let mut t = c.get(&Cluster::task_path("stay-native")).await.expect("task");
    t["spec"]["kill"] = json!(true);
    c.send(reqwest::Method::PUT, &Cluster::task_path("stay-native"), Some(&t)).await;
    c.wait_phase("stay-native", "KILLED").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_heartbeat_makes_the_node_unreachable_and_its_tasks_lost() {
    let c = Cluster::start("silent", Duration::from_secs(3)).await;
    let node_path = format!("/apis/corral.dev/v1/nodes/{}", c.node);
    c.wait_for(&node_path, "the node to be Ready", |n| field(n, "/status/phase") == &json!("Ready")).await;
    c.create_task("lost", json!({"image": "busybox", "command": ["sleep", "1000"], "killGracePeriodSeconds": 1})).await;
    let running = c.wait_phase("lost", "RUNNING").await;
    let container = field(&running, "/status/containerId").as_str().expect("container").to_string();

    // A stopped agent sends no heartbeat, exactly like a partitioned one.
    c.signal_agent(libc::SIGSTOP);
    let node = c
        .wait_for(&node_path, "the node to be Unreachable", |n| field(n, "/status/phase") == &json!("Unreachable"))
        .await;
    assert!(field(&node, "/status/message").as_str().is_some_and(|m| m.contains("heartbeat")), "{node:#}");
    let lost = c.wait_phase("lost", "LOST").await;
    assert_eq!(field(&lost, "/status/reason"), &json!("NodeUnreachable"));

    // Back again: the node is Ready, and its agent kills the task that was given up,
    // leaving its record LOST.
    c.signal_agent(libc::SIGCONT);
    c.wait_for(&node_path, "the node to be Ready again", |n| field(n, "/status/phase") == &json!("Ready")).await;
    c.until("the agent kills its LOST task", || !c.containers().contains(&container)).await;
    let after = c.get(&Cluster::task_path("lost")).await.expect("task");
    assert_eq!(field(&after, "/status/phase"), &json!("LOST"), "{after:#}");
    c.stop().await;
}
