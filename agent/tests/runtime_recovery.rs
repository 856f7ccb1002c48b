//! Agent restarts: shims outlive the runtime that spawned them, a new runtime on the
//! same work dir re-adopts running tasks, learns how finished ones ended, and never
//! starts a task whose launch was interrupted.

mod runtime_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use corral_agent::runtime::{ExitInfo, Recovered, Runtime};
use runtime_support::{Env, eventually, kill_and_wait, launch_failure, launch_ready, setup, wait, with_argv};

/// A container that prints `ready` once its TERM trap is set and exits 4 on TERM.
const EXIT_4_ON_TERM: &str = "trap 'exit 4' TERM; echo ready; while true; do sleep 1; done";

fn find(found: &[(String, Recovered)], uid: &str) -> Recovered {
    found.iter().find(|(u, _)| u == uid).map(|(_, r)| r.clone()).unwrap_or_else(|| panic!("{uid} not recovered"))
}

/// The restarted agent: a new runtime on the same work dir, and what it recovered of
/// `uid`.
async fn restart(env: &Env, uid: &str) -> (Runtime, Recovered) {
    let b = env.runtime(1 << 20, 2);
    let found = b.recover().await.unwrap();
    let recovered = find(&found, uid);
    (b, recovered)
}

/// Restarts, then stops (TERM, 30s grace) and cleans up the task `uid`; returns what
/// was recovered of it and how it ended.
async fn restart_and_stop(env: &Env, uid: &str) -> (Recovered, ExitInfo) {
    let (b, recovered) = restart(env, uid).await;
    let exit = kill_and_wait(&b, uid, Duration::from_secs(30)).await;
    b.cleanup(uid).await.unwrap();
    (recovered, exit)
}

/// A runtime whose "shim" never starts anything: the agent died right after writing
/// the checkpoint, before a real shim could take over.
fn runtime_with_dead_shim(env: &Env) -> Runtime {
    env.runtime_with_shim("/bin/true")
}

/// An env with a task `name` whose launch (a container that would create
/// `/mnt/sandbox/ran`) was interrupted: the checkpoint is written, no shim took over,
/// and the agent died before recording that; with the dead-shim runtime.
async fn interrupted_launch(name: &str) -> (Env, Runtime, String) {
    let env = Env::new();
    let uid = env.uid(name);
    let dead = runtime_with_dead_shim(&env);
    assert!(dead.launch(env.container(&uid, "echo started > /mnt/sandbox/ran")).await.is_err());
    // The agent that saw its shim fail records that; one killed at that moment does not.
    std::fs::remove_file(env.task_dir(&uid).join("exit.json")).unwrap();
    (env, dead, uid)
}

fn runc_state(env: &Env, uid: &str) -> Option<String> {
    let out = env.runc().args(["state", uid]).stderr(Stdio::null()).output().unwrap();
    out.status.success().then(|| {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["status"].as_str().unwrap().to_owned()
    })
}

#[tokio::test]
async fn running_container_is_readopted_by_a_new_runtime() {
    let (env, a, uid) = setup("radopt");
    let started = launch_ready(&env, &a, env.container(&uid, EXIT_4_ON_TERM)).await;
    drop(a);

    let (recovered, exit) = restart_and_stop(&env, &uid).await;
    assert_eq!(recovered, Recovered::Running(started));
    assert_eq!(exit.exit_code, Some(4), "{exit:?}");
}

#[tokio::test]
async fn running_native_task_is_readopted_by_a_new_runtime() {
    let (env, a, uid) = setup("rnative");
    let started = a.launch(with_argv(env.native(&uid, ""), &["/bin/busybox", "sleep", "1000"])).await.unwrap();
    drop(a);

    let (recovered, exit) = restart_and_stop(&env, &uid).await;
    assert_eq!(recovered, Recovered::Running(started));
    assert_eq!(exit.signal, Some(libc::SIGTERM), "{exit:?}");
}

#[tokio::test]
async fn task_that_ended_while_nobody_watched_reports_its_real_status() {
    let (env, a, uid) = setup("rended");
    a.launch(env.container(&uid, "while [ ! -f /mnt/sandbox/go ]; do sleep 0.1; done; exit 6")).await.unwrap();
    drop(a);
    std::fs::write(env.task_dir(&uid).join("sandbox/go"), "").unwrap();
    eventually("the shim to record the end", || env.task_dir(&uid).join("exit.json").exists()).await;

    let (b, recovered) = restart(&env, &uid).await;
    match recovered {
        Recovered::Exited(exit) => assert_eq!(exit.exit_code, Some(6), "{exit:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(wait(&b, &uid).await.exit_code, Some(6));
    b.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn interrupted_launch_is_never_started() {
    let (env, dead, uid) = interrupted_launch("rintr").await;
    assert!(dead.launched(&uid));

    let (b, recovered) = restart(&env, &uid).await;
    match recovered {
        Recovered::Interrupted { reason } => assert_eq!(reason, "launch interrupted by a restart"),
        other => panic!("{other:?}"),
    }
    // A shim that shows up late (the one the dead agent spawned) must not start it.
    let status = Command::new(runtime_support::shim_exe())
        .arg(corral_agent::runtime::SHIM_ARG)
        .arg(env.task_dir(&uid))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!env.task_dir(&uid).join("started.json").exists());
    assert!(!env.task_dir(&uid).join("sandbox/ran").exists());
    assert_eq!(runc_state(&env, &uid), None);
    // Every later look agrees.
    assert!(matches!(find(&b.recover().await.unwrap(), &uid), Recovered::Interrupted { .. }));
    assert!(b.launch(env.container(&uid, "true")).await.is_err());
    b.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn shim_that_exits_without_starting_is_a_launch_error_and_interrupts() {
    let env = Env::new();
    let uid = env.uid("rnoshim");
    let dead = runtime_with_dead_shim(&env);
    let (err, exit) = launch_failure(&dead, env.container(&uid, "true")).await;
    assert!(err.contains("shim exited without starting"), "{err}");
    assert!(exit.message.is_some_and(|m| m.contains("shim exited without starting")));
    let (b, recovered) = restart(&env, &uid).await;
    assert!(matches!(recovered, Recovered::Interrupted { .. }), "{recovered:?}");
    b.cleanup(&uid).await.unwrap();
    assert!(!env.task_dir(&uid).join("bundle/rootfs").exists());
}

#[tokio::test]
async fn container_created_but_not_started_is_deleted_not_started() {
    let (env, _dead, uid) = interrupted_launch("rcreated").await;
    // The shim died between runc's create and start.
    let created = env
        .runc()
        .args(["create", "--bundle"])
        .arg(env.task_dir(&uid).join("bundle"))
        .arg(&uid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(created.success());
    assert_eq!(runc_state(&env, &uid).as_deref(), Some("created"));

    let (b, recovered) = restart(&env, &uid).await;
    assert!(matches!(recovered, Recovered::Interrupted { .. }), "{recovered:?}");
    assert_eq!(runc_state(&env, &uid), None);
    assert!(!env.task_dir(&uid).join("sandbox/ran").exists());
    b.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn container_whose_shim_was_killed_is_stopped_and_reported_lost() {
    let (env, a, uid) = setup("rlost");
    a.launch(env.container(&uid, "sleep 1000")).await.unwrap();
    let shim: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.task_dir(&uid).join("shim.json")).unwrap()).unwrap();
    let pid = shim["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // Its lock, not its /proc entry, says it is gone: a zombie leader's threads may
    // still hold its files for a moment.
    let lock = env.task_dir(&uid).join("shim.lock");
    eventually("the shim to die", || {
        let f = std::fs::File::open(&lock).unwrap();
        // SAFETY: flock on a descriptor we own; closing it releases the lock at once.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    })
    .await;
    drop(a);

    let (b, recovered) = restart(&env, &uid).await;
    match recovered {
        Recovered::Exited(exit) => assert_eq!(exit.message.as_deref(), Some("shim lost"), "{exit:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(runc_state(&env, &uid), None);
    b.cleanup(&uid).await.unwrap();
}

/// Set in the child process that plays the agent in
/// [`tasks_survive_the_agent_being_killed`].
const AGENT_WORK: &str = "CORRAL_TEST_AGENT_WORK";

#[tokio::test]
async fn tasks_survive_the_agent_being_killed() {
    if let Some(work) = std::env::var_os(AGENT_WORK) {
        return play_agent(PathBuf::from(work)).await;
    }
    let env = Env::new();
    let uid = env.uid("ragent");
    let mut agent = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tasks_survive_the_agent_being_killed", "--nocapture", "--test-threads=1"])
        .env(AGENT_WORK, env.layout.root())
        .env("CORRAL_TEST_UID", &uid)
        .env("CORRAL_TEST_ROOTFS", &env.rootfs)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the agent to launch", || env.log(&uid, "stdout").contains("ready")).await;
    agent.kill().await.unwrap();

    let (recovered, exit) = restart_and_stop(&env, &uid).await;
    assert!(matches!(recovered, Recovered::Running(_)), "{recovered:?}");
    assert_eq!(exit.exit_code, Some(4), "{exit:?}");
}

/// The agent: launches one task, then waits to be killed.
async fn play_agent(work: PathBuf) {
    let layout = corral_agent::Layout::new(work).unwrap();
    let rt = runtime_support::runtime(layout, runtime_support::shim_exe(), 1 << 20, 2);
    let uid = std::env::var("CORRAL_TEST_UID").unwrap();
    let rootfs = PathBuf::from(std::env::var_os("CORRAL_TEST_ROOTFS").unwrap());
    rt.launch(runtime_support::container(&uid, &rootfs, EXIT_4_ON_TERM)).await.unwrap();
    tokio::time::sleep(runtime_support::LIMIT).await;
}
