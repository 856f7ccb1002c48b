//! Agent restarts: shims outlive the runtime that spawned them, a new runtime on the
//! same work dir re-adopts running tasks, learns how finished ones ended, and never
//! starts a task whose launch was interrupted.

mod runtime_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use corral_agent::runtime::{Recovered, Runtime, RuntimeConfig};
use runtime_support::{Env, eventually, wait};

fn find(found: &[(String, Recovered)], uid: &str) -> Recovered {
    found.iter().find(|(u, _)| u == uid).map(|(_, r)| r.clone()).unwrap_or_else(|| panic!("{uid} not recovered"))
}

/// A runtime whose "shim" never starts anything: the agent died right after writing
/// the checkpoint, before a real shim could take over.
fn runtime_with_dead_shim(env: &Env) -> Runtime {
    Runtime::new(RuntimeConfig {
        layout: env.layout.clone(),
        runc: PathBuf::from("/usr/sbin/runc"),
        shim_exe: PathBuf::from("/bin/true"),
        log_max_bytes: 1 << 20,
        log_max_files: 2,
    })
    .unwrap()
}

/// The agent that saw its shim fail records that; one killed at that moment does not.
fn forget_the_failed_start(env: &Env, uid: &str) {
    std::fs::remove_file(env.task_dir(uid).join("exit.json")).unwrap();
}

fn runc_state(env: &Env, uid: &str) -> Option<String> {
    let out = Command::new("/usr/sbin/runc")
        .arg("--root")
        .arg(env.layout.root().join("runc"))
        .args(["state", uid])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    out.status.success().then(|| {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["status"].as_str().unwrap().to_owned()
    })
}

#[tokio::test]
async fn running_container_is_readopted_by_a_new_runtime() {
    let env = Env::new();
    let uid = env.uid("radopt");
    let a = env.runtime(1 << 20, 2);
    let started =
        a.launch(env.container(&uid, "trap 'exit 4' TERM; echo ready; while true; do sleep 1; done")).await.unwrap();
    eventually("the trap to be set", || env.log(&uid, "stdout").contains("ready")).await;
    drop(a);

    let b = env.runtime(1 << 20, 2);
    let found = b.recover().await.unwrap();
    assert_eq!(find(&found, &uid), Recovered::Running(started));
    b.kill(&uid, Duration::from_secs(30)).await.unwrap();
    let exit = wait(&b, &uid).await;
    assert_eq!(exit.exit_code, Some(4), "{exit:?}");
    b.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn running_native_task_is_readopted_by_a_new_runtime() {
    let env = Env::new();
    let uid = env.uid("rnative");
    let a = env.runtime(1 << 20, 2);
    let mut spec = env.native(&uid, "");
    spec.argv = ["/bin/busybox", "sleep", "1000"].map(String::from).to_vec();
    let started = a.launch(spec).await.unwrap();
    drop(a);

    let b = env.runtime(1 << 20, 2);
    assert_eq!(find(&b.recover().await.unwrap(), &uid), Recovered::Running(started));
    b.kill(&uid, Duration::from_secs(30)).await.unwrap();
    assert_eq!(wait(&b, &uid).await.signal, Some(libc::SIGTERM));
    b.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn task_that_ended_while_nobody_watched_reports_its_real_status() {
    let env = Env::new();
    let uid = env.uid("rended");
    let a = env.runtime(1 << 20, 2);
    a.launch(env.container(&uid, "while [ ! -f /mnt/sandbox/go ]; do sleep 0.1; done; exit 6")).await.unwrap();
    drop(a);
    std::fs::write(env.task_dir(&uid).join("sandbox/go"), "").unwrap();
    eventually("the shim to record the end", || env.task_dir(&uid).join("exit.json").exists()).await;

    let b = env.runtime(1 << 20, 2);
    match find(&b.recover().await.unwrap(), &uid) {
        Recovered::Exited(exit) => assert_eq!(exit.exit_code, Some(6), "{exit:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(wait(&b, &uid).await.exit_code, Some(6));
    b.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn interrupted_launch_is_never_started() {
    let env = Env::new();
    let uid = env.uid("rintr");
    let dead = runtime_with_dead_shim(&env);
    assert!(dead.launch(env.container(&uid, "echo started > /mnt/sandbox/ran")).await.is_err());
    forget_the_failed_start(&env, &uid);
    assert!(dead.launched(&uid));

    let b = env.runtime(1 << 20, 2);
    match find(&b.recover().await.unwrap(), &uid) {
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
    let err = dead.launch(env.container(&uid, "true")).await.unwrap_err().to_string();
    assert!(err.contains("shim exited without starting"), "{err}");
    let exit = wait(&dead, &uid).await;
    assert!(exit.message.is_some_and(|m| m.contains("shim exited without starting")));
    let b = env.runtime(1 << 20, 2);
    assert!(matches!(find(&b.recover().await.unwrap(), &uid), Recovered::Interrupted { .. }));
    b.cleanup(&uid).await.unwrap();
    assert!(!env.task_dir(&uid).join("bundle/rootfs").exists());
}

#[tokio::test]
async fn container_created_but_not_started_is_deleted_not_started() {
    let env = Env::new();
    let uid = env.uid("rcreated");
    let dead = runtime_with_dead_shim(&env);
    assert!(dead.launch(env.container(&uid, "echo started > /mnt/sandbox/ran")).await.is_err());
    forget_the_failed_start(&env, &uid);
    // The shim died between runc's create and start.
    let created = Command::new("/usr/sbin/runc")
        .arg("--root")
        .arg(env.layout.root().join("runc"))
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

    let b = env.runtime(1 << 20, 2);
    assert!(matches!(find(&b.recover().await.unwrap(), &uid), Recovered::Interrupted { .. }));
    assert_eq!(runc_state(&env, &uid), None);
    assert!(!env.task_dir(&uid).join("sandbox/ran").exists());
    b.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn container_whose_shim_was_killed_is_stopped_and_reported_lost() {
    let env = Env::new();
    let uid = env.uid("rlost");
    let a = env.runtime(1 << 20, 2);
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

    let b = env.runtime(1 << 20, 2);
    match find(&b.recover().await.unwrap(), &uid) {
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

    let b = env.runtime(1 << 20, 2);
    assert!(matches!(find(&b.recover().await.unwrap(), &uid), Recovered::Running(_)));
    b.kill(&uid, Duration::from_secs(30)).await.unwrap();
    assert_eq!(wait(&b, &uid).await.exit_code, Some(4));
    b.cleanup(&uid).await.unwrap();
}

/// The agent: launches one task, then waits to be killed.
async fn play_agent(work: PathBuf) {
    let rt = Runtime::new(RuntimeConfig {
        layout: corral_agent::Layout::new(work).unwrap(),
        runc: PathBuf::from("/usr/sbin/runc"),
        shim_exe: runtime_support::shim_exe(),
        log_max_bytes: 1 << 20,
        log_max_files: 2,
    })
    .unwrap();
    let spec = corral_agent::runtime::LaunchSpec {
        uid: std::env::var("CORRAL_TEST_UID").unwrap(),
        name: "test/agent".into(),
        rootfs: Some(std::env::var_os("CORRAL_TEST_ROOTFS").unwrap().into()),
        argv: ["/bin/sh", "-c", "trap 'exit 4' TERM; echo ready; while true; do sleep 1; done"]
            .map(String::from)
            .to_vec(),
        env: vec![("PATH".into(), "/bin".into())],
        cwd: None,
        user: None,
        cpus: 0.0,
        mem_mib: 0,
        mounts: vec![],
    };
    rt.launch(spec).await.unwrap();
    tokio::time::sleep(runtime_support::LIMIT).await;
}
