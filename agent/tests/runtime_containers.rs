//! runc containers from a busybox rootfs: exit status, environment, logs, OOM, kill,
//! exec and cleanup. Real runc, real cgroups; run as root.

mod runtime_support;

use std::time::Duration;

use corral_agent::runtime::Mount;
use runtime_support::{
    Env, LIMIT, assert_dd_oom_killed, assert_killed_after_grace, eventually, kill_and_wait, launch_and_wait,
    launch_failure, launch_ready, setup, wait, with_argv,
};

#[tokio::test]
async fn container_exit_code_is_reported() {
    let (env, rt, uid) = setup("exit3");
    let started = rt.launch(env.container(&uid, "exit 3")).await.unwrap();
    assert_eq!(started.container_id.as_deref(), Some(uid.as_str()));
    assert!(rt.launched(&uid));
    let exit = wait(&rt, &uid).await;
    assert_eq!(exit.exit_code, Some(3), "{exit:?}");
    assert_eq!(exit.signal, None);
    assert!(!exit.oom_killed);
    // Never launched twice.
    assert!(rt.launch(env.container(&uid, "exit 0")).await.is_err());
    rt.cleanup(&uid).await.unwrap();
    assert!(!env.task_dir(&uid).join("bundle/rootfs").exists());
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/corral/{uid}")).exists());
    rt.remove(&uid).await.unwrap();
    assert!(!env.task_dir(&uid).exists());
}

#[tokio::test]
async fn container_gets_env_cwd_user_and_mounts() {
    let (env, rt, uid) = setup("env");
    let volume = env.tmp.path().join("vol");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("data"), "from-volume").unwrap();
    let mut spec = env.container(&uid, "echo \"$GREETING\"; pwd; id -u; id -g; cat /data/data; ls /mnt/sandbox");
    spec.env.push(("GREETING".into(), "hello world".into()));
    spec.cwd = Some("/srv".into());
    spec.user = Some((1234, 567));
    spec.mounts.push(Mount { source: volume, destination: "/data".into(), read_only: true });
    let exit = launch_and_wait(&rt, spec).await;
    assert_eq!(exit.exit_code, Some(0), "{exit:?} stderr: {}", env.log(&uid, "stderr"));
    let out = env.log(&uid, "stdout");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..5], ["hello world", "/srv", "1234", "567", "from-volume"], "{out}");
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn container_start_failure_is_an_error_with_runc_message() {
    let (env, rt, uid) = setup("nobin");
    let (err, exit) = launch_failure(&rt, with_argv(env.container(&uid, ""), &["/bin/does-not-exist"])).await;
    assert!(err.contains("does-not-exist") || err.contains("no such file"), "{err}");
    assert!(exit.message.is_some(), "{exit:?}");
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn container_logs_are_captured_and_rotated() {
    let env = Env::new();
    let rt = env.runtime(1000, 2);
    let uid = env.uid("logs");
    // 100 lines of 51 bytes to stdout (about 5 files' worth), one line to stderr.
    let script =
        "for i in $(seq 1 100); do echo \"line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; done; echo oops >&2";
    assert_eq!(launch_and_wait(&rt, env.container(&uid, script)).await.exit_code, Some(0));
    let logs = env.task_dir(&uid).join("logs");
    assert_eq!(env.log(&uid, "stderr"), "oops\n");
    let current = env.log(&uid, "stdout");
    assert!(current.ends_with("line 100 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"), "{current}");
    for f in ["stdout", "stdout.1", "stdout.2"] {
        let len = std::fs::metadata(logs.join(f)).unwrap().len();
        assert!(len <= 1000 && len > 0, "{f} has {len} bytes");
    }
    assert!(!logs.join("stdout.3").exists(), "only 2 rotations are kept");
    // Rotations are contiguous: .1 continues where .2 stopped, and the current file after .1.
    let joined = [logs.join("stdout.2"), logs.join("stdout.1"), logs.join("stdout")]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    assert!(joined.ends_with(&current));
    assert!(joined.contains("line 70 "), "{joined}");
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn container_memory_hog_is_oom_killed() {
    let (env, rt, uid) = setup("oom");
    assert_dd_oom_killed(&rt, env.container(&uid, ""), &["/bin/dd"]).await;
}

#[tokio::test]
async fn container_ignoring_term_is_killed_after_grace() {
    let (env, rt, uid) = setup("stubborn");
    let spec = env.container(&uid, "trap '' TERM; echo ready; while true; do sleep 1; done");
    assert_killed_after_grace(&env, &rt, spec, Duration::from_millis(500)).await;
    // Idempotent once ended.
    rt.kill(&uid, Duration::from_millis(10)).await.unwrap();
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn container_handling_term_exits_on_its_own_terms() {
    let (env, rt, uid) = setup("polite");
    launch_ready(
        &env,
        &rt,
        env.container(&uid, "trap 'echo bye; exit 7' TERM; echo ready; while true; do sleep 1; done"),
    )
    .await;
    let exit = kill_and_wait(&rt, &uid, LIMIT).await;
    assert_eq!(exit.exit_code, Some(7), "{exit:?}");
    assert!(env.log(&uid, "stdout").contains("bye"));
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn exec_returns_the_exit_code_inside_a_running_container() {
    let (env, rt, uid) = setup("exec");
    let mut spec = env.container(&uid, "echo inside > /tmp/marker; sleep 1000");
    spec.env.push(("MARK".into(), "m1".into()));
    rt.launch(spec).await.unwrap();
    let sh = |s: &str| vec!["/bin/sh".to_string(), "-c".to_string(), s.to_string()];
    eventually("the marker", || env.task_dir(&uid).join("bundle/upper/tmp/marker").exists()).await;
    assert_eq!(rt.exec(&uid, &sh("test -f /tmp/marker"), LIMIT).await.unwrap(), 0);
    assert_eq!(rt.exec(&uid, &sh("test \"$MARK\" = m1 && exit 5"), LIMIT).await.unwrap(), 5);
    assert!(rt.exec(&uid, &sh("sleep 1000"), Duration::from_millis(300)).await.is_err());
    let exit = kill_and_wait(&rt, &uid, Duration::ZERO).await;
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert!(rt.exec(&uid, &sh("true"), LIMIT).await.is_err(), "nothing to exec in after the end");
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn failure_to_prepare_or_spawn_is_recorded_as_the_end() {
    let (env, rt, uid) = setup("noimage");
    let mut spec = env.container(&uid, "true");
    spec.rootfs = Some(env.tmp.path().join("no-such-image"));
    assert!(rt.launch(spec).await.is_err());
    assert!(rt.launched(&uid), "the checkpoint was written first");
    let exit = wait(&rt, &uid).await;
    assert!(exit.message.as_deref().is_some_and(|m| m.contains("cannot prepare")), "{exit:?}");
    rt.cleanup(&uid).await.unwrap();

    let broken = env.runtime_with_shim(env.tmp.path().join("no-such-shim"));
    let uid = env.uid("noshim");
    let err = broken.launch(env.container(&uid, "true")).await.unwrap_err().to_string();
    assert!(err.contains("cannot start the shim"), "{err}");
    assert!(wait(&rt, &uid).await.message.is_some_and(|m| m.contains("cannot start the shim")));
    rt.cleanup(&uid).await.unwrap();
    assert!(!env.task_dir(&uid).join("bundle/rootfs").exists());
}
