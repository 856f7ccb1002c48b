//! Hollow nodes (a simulation) against the real API server and controllers: they
//! register, their heartbeats make them Ready, and a task bound to one is reported
//! RUNNING — marked as simulated — is reported KILLED on `spec.kill`, and lets go once
//! deleted; many tasks over many nodes at once all get there.

use std::time::Duration;

use corral_api::kinds::Node;
use corral_api::kinds::node::NodePhase;
use corral_api::kinds::task::{AGENT_FINALIZER, Task, TaskPhase, TaskSpec};
use corral_bench::hollow::{AGENT_VERSION, HollowOptions, SIMULATED, run_hollow};
use corral_client::{Api, Client};
use corral_runtime::CancellationToken;
use corral_testkit::{TestServer, eventually};
use futures::StreamExt;

/// Waits until `n` simulated nodes are Ready with the hollow agent version.
async fn ready_nodes(client: &Client, n: usize) {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(&format!("{n} simulated nodes, Ready"), async || {
        let list = nodes.list(&Default::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|n| n.spec.attributes.get(SIMULATED).map(String::as_str) == Some("true"))
            .filter(|n| {
                n.status.as_ref().is_some_and(|s| {
                    s.phase == NodePhase::Ready
                        && s.agent_version.as_deref() == Some(AGENT_VERSION)
                        && s.capacity.cpus == 4.0
                })
            })
            .count();
        (ready == n).then_some(())
    })
    .await;
}

fn sleeper(node: &str) -> TaskSpec {
    TaskSpec {
        node_name: Some(node.into()),
        image: Some("busybox".into()),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_become_ready_and_run_tasks_on_paper() {
    let server = TestServer::start().await;
    let client = server.client();
    let shutdown = CancellationToken::new();
    let opts = HollowOptions { nodes: 3, heartbeat: Duration::from_secs(1), ..Default::default() };
    let hollow = tokio::spawn(run_hollow(client.clone(), opts, shutdown.clone()));
    ready_nodes(&client, 3).await;

    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    tasks.create(&Task::namespaced("default", "paper", sleeper("hollow-1"))).await.expect("task created");
    let running = eventually("the task RUNNING on paper", async || {
        let t = tasks.get("paper").await.ok()?;
        t.status.filter(|s| s.phase == TaskPhase::Running)
    })
    .await;
    assert!(running.message.as_deref().is_some_and(|m| m.contains("simulated")), "{running:?}");

    tasks.delete("paper", &Default::default()).await.expect("delete requested");
    eventually("the task gone", async || tasks.get_opt("paper").await.ok()?.is_none().then_some(())).await;

    // spec.kill: KILLED as a real agent reports it, the record kept with the
    // finalizer, whose deletion then does not wait (nothing runs any more).
    tasks.create(&Task::namespaced("default", "doomed", sleeper("hollow-2"))).await.expect("task created");
    let taken = eventually("the task RUNNING and taken", async || {
        let t = tasks.get("doomed").await.ok()?;
        let running = t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Running);
        (running && t.metadata.finalizers.iter().any(|f| f == AGENT_FINALIZER)).then_some(t)
    })
    .await;
    let mut kill = taken;
    kill.spec.kill = true;
    tasks.update(&kill).await.expect("kill requested");
    let killed = eventually("the task KILLED", async || {
        let t = tasks.get("doomed").await.ok()?;
        t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Killed).then_some(t)
    })
    .await;
    assert_eq!(killed.metadata.finalizers, [AGENT_FINALIZER], "{killed:?}");
    let st = killed.status.expect("a status");
    assert_eq!(st.reason.as_deref(), Some("Killed"), "{st:?}");
    assert!(st.finish_time.is_some(), "{st:?}");
    assert!(st.message.as_deref().is_some_and(|m| m.contains("on request") && m.contains("simulated")), "{st:?}");
    let gone = tasks.delete("doomed", &Default::default()).await.expect("deleted");
    assert!(matches!(gone, corral_client::Deleted::Gone(_)), "an ended task goes at once: {gone:?}");

    // A task asked to die before any node took it never runs.
    let spec = TaskSpec { kill: true, ..sleeper("hollow-0") };
    tasks.create(&Task::namespaced("default", "stillborn", spec)).await.expect("task created");
    let st = eventually("the task KILLED before it started", async || {
        tasks.get("stillborn").await.ok()?.status.filter(|s| s.phase == TaskPhase::Killed)
    })
    .await;
    assert!(
        st.start_time.is_none() && st.message.as_deref().is_some_and(|m| m.contains("before it started")),
        "{st:?}"
    );

    shutdown.cancel();
    hollow.await.expect("the hollow nodes stop").expect("and stop cleanly");
}

/// 200 tasks over 20 nodes, created at once: every one RUNNING and taken, then every
/// one killed and gone once deleted. Small for CI; the rate is `corral-bench`'s job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_realize_many_tasks_at_once() {
    const NODES: usize = 20;
    const TASKS: usize = 200;
    let server = TestServer::start().await;
    let client = server.client();
    let shutdown = CancellationToken::new();
    let opts = HollowOptions { nodes: NODES, heartbeat: Duration::from_secs(1), ..Default::default() };
    let hollow = tokio::spawn(run_hollow(client.clone(), opts, shutdown.clone()));
    ready_nodes(&client, NODES).await;

    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    let created = futures::stream::iter(0..TASKS)
        .map(|i| {
            let tasks = tasks.clone();
            async move {
                tasks
                    .create(&Task::namespaced(
                        "default",
                        format!("many-{i}"),
                        sleeper(&format!("hollow-{}", i % NODES)),
                    ))
                    .await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(created.iter().all(Result::is_ok), "creates failed: {:?}", created.iter().find(|r| r.is_err()));

    eventually("every task RUNNING and taken", async || {
        let list = tasks.list(&Default::default()).await.ok()?;
        let done = list
            .items
            .iter()
            .filter(|t| t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Running))
            .filter(|t| t.metadata.finalizers.iter().any(|f| f == AGENT_FINALIZER))
            .count();
        (done == TASKS).then_some(())
    })
    .await;

    let deleted = futures::stream::iter(0..TASKS)
        .map(|i| {
            let tasks = tasks.clone();
            async move { tasks.delete(&format!("many-{i}"), &Default::default()).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(deleted.iter().all(Result::is_ok), "deletes failed");
    eventually("every task gone", async || tasks.list(&Default::default()).await.ok()?.items.is_empty().then_some(()))
        .await;

    shutdown.cancel();
    hollow.await.expect("the hollow nodes stop").expect("and stop cleanly");
}
