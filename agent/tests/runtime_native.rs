//! Native tasks: processes on the host in their own cgroups, process group, user and
//! sandbox, supervised by the shim.

mod runtime_support;

use std::time::Duration;

use runtime_support::{
    LIMIT, assert_dd_oom_killed, assert_killed_after_grace, kill_and_wait, launch_and_wait, launch_failure, setup,
    with_argv,
};

fn cgroup(controller: &str, uid: &str, file: &str) -> String {
    // A missing cgroup is an error, so that "no process left" cannot pass vacuously.
    let path = format!("/sys/fs/cgroup/{controller}/corral/{uid}/{file}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

#[tokio::test]
async fn native_exit_code_env_cwd_and_user() {
    let (env, rt, uid) = setup("nexit");
    let sandbox = env.task_dir(&uid).join("sandbox");
    let mut spec = env.native(&uid, "echo \"$GREETING\"; pwd; /bin/busybox id -u; /bin/busybox id -g; exit 4");
    spec.env.push(("GREETING".into(), "hi there".into()));
    spec.cwd = Some("work".into());
    spec.user = Some((4321, 765));
    std::fs::create_dir_all(sandbox.join("work")).unwrap();
    let exit = launch_and_wait(&rt, spec).await;
    assert_eq!(exit.exit_code, Some(4), "{exit:?} stderr: {}", env.log(&uid, "stderr"));
    let out = env.log(&uid, "stdout");
    let want = format!("hi there\n{}\n4321\n765\n", sandbox.join("work").display());
    assert_eq!(out, want);
    rt.cleanup(&uid).await.unwrap();
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/corral/{uid}")).exists());
}

#[tokio::test]
async fn native_task_runs_in_its_limited_cgroups() {
    let (env, rt, uid) = setup("ncg");
    let mut spec = with_argv(env.native(&uid, ""), &["/bin/busybox", "sleep", "1000"]);
    spec.cpus = 0.25;
    spec.mem_mib = 32;
    let started = rt.launch(spec).await.unwrap();
    assert_eq!(cgroup("memory", &uid, "memory.limit_in_bytes").trim(), (32u64 << 20).to_string());
    assert_eq!(cgroup("memory", &uid, "memory.memsw.limit_in_bytes").trim(), (32u64 << 20).to_string());
    assert_eq!(cgroup("cpu", &uid, "cpu.cfs_quota_us").trim(), "25000");
    assert_eq!(cgroup("cpu", &uid, "cpu.cfs_period_us").trim(), "100000");
    assert_eq!(cgroup("pids", &uid, "pids.max").trim(), "4096");
    for c in ["memory", "cpu", "pids"] {
        assert!(cgroup(c, &uid, "cgroup.procs").lines().any(|l| l == started.pid.to_string()), "{c}");
    }
    // exec runs in the same cgroups, sandbox and environment.
    let sandbox = env.task_dir(&uid).join("sandbox");
    let check = format!(
        "/bin/busybox grep -q 'memory:/corral/{uid}$' /proc/self/cgroup && test \"$PWD\" = {} && exit 9",
        sandbox.display()
    );
    let argv = vec!["/bin/busybox".to_string(), "sh".into(), "-c".into(), check];
    assert_eq!(rt.exec(&uid, &argv, LIMIT).await.unwrap(), 9);
    let exit = kill_and_wait(&rt, &uid, LIMIT).await;
    assert_eq!(exit.signal, Some(libc::SIGTERM), "{exit:?}");
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn native_memory_hog_is_oom_killed() {
    let (env, rt, uid) = setup("noom");
    assert_dd_oom_killed(&rt, env.native(&uid, ""), &["/bin/busybox", "dd"]).await;
}

#[tokio::test]
async fn native_task_ignoring_term_is_killed_after_grace_with_its_children() {
    let (env, rt, uid) = setup("nstub");
    let script = "trap '' TERM; /bin/busybox sleep 1000 & echo ready; while true; do /bin/busybox sleep 1; done";
    assert_killed_after_grace(&env, &rt, env.native(&uid, script), Duration::from_millis(300)).await;
    assert_eq!(cgroup("pids", &uid, "cgroup.procs"), "", "nothing outlives the task");
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn native_leftovers_are_killed_when_the_main_process_exits() {
    let (env, rt, uid) = setup("nleft");
    let exit = launch_and_wait(&rt, env.native(&uid, "/bin/busybox sleep 1000 & exit 0")).await;
    assert_eq!(exit.exit_code, Some(0), "{exit:?}");
    assert_eq!(cgroup("pids", &uid, "cgroup.procs"), "");
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn native_exec_failure_is_a_launch_error() {
    let (env, rt, uid) = setup("nfail");
    let (err, exit) = launch_failure(&rt, with_argv(env.native(&uid, ""), &["/no/such/program"])).await;
    assert!(err.contains("/no/such/program"), "{err}");
    assert!(exit.message.is_some_and(|m| m.contains("/no/such/program")));
    rt.cleanup(&uid).await.unwrap();
}

#[tokio::test]
async fn invalid_specs_are_rejected_before_anything_is_written() {
    let (env, rt, uid) = setup("ninv");
    let mut spec = env.native(&uid, "true");
    spec.cwd = Some("../escape".into());
    assert!(rt.launch(spec).await.is_err());
    assert!(!rt.launched(&uid));
    let mut spec = env.container(&uid, "true");
    spec.mounts.push(corral_agent::runtime::Mount {
        source: "/tmp".into(),
        destination: "relative".into(),
        read_only: false,
    });
    assert!(rt.launch(spec).await.is_err());
    let mut spec = env.native("bad/uid", "true");
    spec.uid = "bad/uid".into();
    assert!(rt.launch(spec).await.is_err());
    assert!(!rt.launched(&uid));
}
