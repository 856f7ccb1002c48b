//! An image import that holds the image store's lock for a long time stalls only the
//! launches that need an image — never the agent's heartbeat: its node stays Ready
//! with a grace period far shorter than the lock is held.

mod agent_support;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use agent_support::Cluster;
use serde_json::{Value, json};

/// How long the "import" holds the store lock: the 30 s.
const HOLD: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_holding_the_image_lock_does_not_stop_heartbeats() {
    // A node silent for 3 s is Unreachable: ten times less than the lock is held.
    let c = Cluster::start("locked", Duration::from_secs(3)).await;
    let node_path = format!("/apis/corral.dev/v1/nodes/{}", c.node);
    let phase = |n: &Value| n.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default().to_string();
    c.wait_for(&node_path, "the node to be Ready", |n| phase(n) == "Ready").await;

    // What an import does for its whole duration: hold the store lock exclusively.
    let lock = std::fs::File::open(c.work_dir().join("images/lock")).expect("the store's lock file");
    // SAFETY: flock(2) on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0, "lock the image store");

    // More launches needing the image than the agent has workers and reconcile slots.
    for i in 0..12 {
        c.create_task(&format!("waits-{i}"), json!({"image": "busybox", "command": ["true"]})).await;
    }
    let held = Instant::now();
    let mut phases = std::collections::BTreeSet::new();
    let mut renewals = std::collections::BTreeSet::new();
    let lease_path = format!("/apis/corral.dev/v1/namespaces/corral-system/leases/{}", c.node);
    // Bounded by the hold itself: every look is recorded, none is judged by time.
    while held.elapsed() < HOLD {
        if let Some(n) = c.get(&node_path).await {
            phases.insert(phase(&n));
        }
        if let Some(l) = c.get(&lease_path).await {
            renewals.insert(l.pointer("/spec/renewTime").and_then(Value::as_str).unwrap_or_default().to_string());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let first = c.get(&Cluster::task_path("waits-0")).await.expect("task");
    drop(lock);

    assert_eq!(phases, ["Ready".to_string()].into(), "the node left Ready while the lock was held\n{}", c.agent_log());
    assert!(renewals.len() > 3, "the heartbeat stopped while the lock was held: renewals seen {renewals:?}");
    assert!(first.pointer("/status/startTime").is_none(), "a launch needing the image went ahead: {first:#}");
    // Released: the launches that waited go ahead.
    for i in 0..12 {
        c.wait_phase(&format!("waits-{i}"), "FINISHED").await;
    }
    c.stop().await;
}
