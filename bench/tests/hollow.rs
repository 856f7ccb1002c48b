//! Hollow nodes (a simulation) against the real API server and controllers: they
//! register, their heartbeats make them Ready, and a task bound to one is reported
//! RUNNING — marked as simulated — and lets go once deleted.

use std::time::Duration;

use corral_api::kinds::Node;
use corral_api::kinds::node::NodePhase;
use corral_api::kinds::task::{Task, TaskPhase, TaskSpec};
use corral_bench::hollow::{AGENT_VERSION, HollowOptions, SIMULATED, run_hollow};
use corral_client::Api;
use corral_runtime::CancellationToken;
use corral_testkit::{TestServer, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_become_ready_and_run_tasks_on_paper() {
    let server = TestServer::start().await;
    let client = server.client();
    let shutdown = CancellationToken::new();
    let opts = HollowOptions { nodes: 3, heartbeat: Duration::from_secs(1), ..Default::default() };
    let hollow = tokio::spawn(run_hollow(client.clone(), opts, shutdown.clone()));

    let nodes: Api<Node> = Api::all(client.clone());
    eventually("three simulated nodes, Ready", async || {
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
        (ready == 3).then_some(())
    })
    .await;

    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    let spec = TaskSpec {
        node_name: Some("hollow-1".into()),
        image: Some("busybox".into()),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    };
    tasks.create(&Task::namespaced("default", "paper", spec)).await.expect("task created");
    let running = eventually("the task RUNNING on paper", async || {
        let t = tasks.get("paper").await.ok()?;
        t.status.filter(|s| s.phase == TaskPhase::Running)
    })
    .await;
    assert!(running.message.as_deref().is_some_and(|m| m.contains("simulated")), "{running:?}");

    tasks.delete("paper", &Default::default()).await.expect("delete requested");
    eventually("the task gone", async || tasks.get_opt("paper").await.ok()?.is_none().then_some(())).await;

    shutdown.cancel();
    hollow.await.expect("the hollow nodes stop").expect("and stop cleanly");
}
