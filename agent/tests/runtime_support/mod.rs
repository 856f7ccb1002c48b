//! Shared set-up of the runtime tests: a busybox rootfs, a runtime over a temp work
//! dir, and a guard that tears down every container, process, mount and cgroup a test
//! made, even when it fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corral_agent::Layout;
use corral_agent::runtime::{ExitInfo, LaunchSpec, Runtime, RuntimeConfig, Started};

/// The applets the tests use.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "dd", "true", "false", "id", "pwd", "env", "ls", "kill", "head", "yes", "seq", "test",
];

/// Bounded wait for anything a test awaits.
pub const LIMIT: Duration = corral_testkit::PATIENCE;

/// A temp work dir with a busybox rootfs and the tasks a test launched.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub layout: Layout,
    pub rootfs: PathBuf,
    uids: Mutex<Vec<String>>,
}

impl Env {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(tmp.path().join("work")).expect("layout");
        let rootfs = tmp.path().join("image");
        busybox_rootfs(&rootfs);
        Env { tmp, layout, rootfs, uids: Mutex::new(Vec::new()) }
    }

    pub fn runtime(&self, log_max_bytes: u64, log_max_files: usize) -> Runtime {
        runtime(self.layout.clone(), shim_exe(), log_max_bytes, log_max_files)
    }

    /// A runtime on this work dir (1 MiB logs, 2 rotations) that starts `shim` as its shim.
    pub fn runtime_with_shim(&self, shim: impl Into<PathBuf>) -> Runtime {
        runtime(self.layout.clone(), shim.into(), 1 << 20, 2)
    }

    /// A fresh uid, remembered for teardown.
    pub fn uid(&self, name: &str) -> String {
        let uid = format!("t{}-{name}", std::process::id());
        self.uids.lock().unwrap().push(uid.clone());
        uid
    }

    pub fn container(&self, uid: &str, script: &str) -> LaunchSpec {
        container(uid, &self.rootfs, script)
    }

    pub fn native(&self, uid: &str, script: &str) -> LaunchSpec {
        LaunchSpec {
            uid: uid.into(),
            name: format!("test/{uid}"),
            rootfs: None,
            argv: vec!["/bin/busybox".into(), "sh".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/bin:/usr/bin".into())],
            cwd: None,
            user: None,
            cpus: 0.5,
            mem_mib: 64,
            mounts: vec![],
        }
    }

    /// `runc --root <this work dir's runc state>`.
    pub fn runc(&self) -> Command {
        let mut cmd = Command::new("/usr/sbin/runc");
        cmd.arg("--root").arg(self.layout.root().join("runc"));
        cmd
    }

    pub fn task_dir(&self, uid: &str) -> PathBuf {
        self.layout.task(uid)
    }

    pub fn log(&self, uid: &str, name: &str) -> String {
        std::fs::read_to_string(self.task_dir(uid).join("logs").join(name)).unwrap_or_default()
    }
}

/// A fresh env, the runtime most tests use (1 MiB logs, 2 rotations) and a uid for
/// `name`.
pub fn setup(name: &str) -> (Env, Runtime, String) {
    let env = Env::new();
    let rt = env.runtime(1 << 20, 2);
    let uid = env.uid(name);
    (env, rt, uid)
}

/// A runtime over `layout` with real runc.
pub fn runtime(layout: Layout, shim_exe: PathBuf, log_max_bytes: u64, log_max_files: usize) -> Runtime {
    Runtime::new(RuntimeConfig {
        layout,
        runc: PathBuf::from("/usr/sbin/runc"),
        shim_exe,
        log_max_bytes,
        log_max_files,
    })
    .expect("runtime")
}

/// A container from `rootfs` running `sh -c script`.
pub fn container(uid: &str, rootfs: &Path, script: &str) -> LaunchSpec {
    LaunchSpec {
        uid: uid.into(),
        name: format!("test/{uid}"),
        rootfs: Some(rootfs.to_path_buf()),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin".into())],
        cwd: None,
        user: None,
        cpus: 0.5,
        mem_mib: 64,
        mounts: vec![],
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for uid in self.uids.lock().unwrap().iter() {
            let _ = self.runc().args(["delete", "--force", uid]).stdout(Stdio::null()).stderr(Stdio::null()).status();
            let procs = format!("/sys/fs/cgroup/pids/corral/{uid}/cgroup.procs");
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Ok(s) = std::fs::read_to_string(&procs) {
                let pids: Vec<i32> = s.lines().filter_map(|l| l.parse().ok()).collect();
                if pids.is_empty() || Instant::now() > deadline {
                    break;
                }
                for p in pids {
                    // SAFETY: kill(2) has no memory effects.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            unmount(&self.task_dir(uid).join("bundle/rootfs"));
            if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
                for e in entries.flatten() {
                    let _ = std::fs::remove_dir(e.path().join("corral").join(uid));
                }
            }
        }
    }
}

fn unmount(path: &Path) {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return };
    // SAFETY: a valid NUL-terminated path; failure (not mounted) is fine.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// A minimal image rootfs: static busybox and the applets the tests call.
pub fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    for d in ["etc", "tmp", "proc", "dev", "sys", "srv"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
}

/// Waits (bounded) for the task's end.
pub async fn wait(rt: &Runtime, uid: &str) -> ExitInfo {
    tokio::time::timeout(LIMIT, rt.wait(uid)).await.expect("task did not end in time").expect("wait")
}

/// `spec` running `argv` instead of its script.
pub fn with_argv(mut spec: LaunchSpec, argv: &[&str]) -> LaunchSpec {
    spec.argv = argv.iter().map(|a| a.to_string()).collect();
    spec
}

/// Launches `spec`, which must start, and waits (bounded) for its end.
pub async fn launch_and_wait(rt: &Runtime, spec: LaunchSpec) -> ExitInfo {
    let uid = spec.uid.clone();
    rt.launch(spec).await.expect("launch");
    wait(rt, &uid).await
}

/// Launches `spec`, which must fail; returns the error and the end recorded for it.
pub async fn launch_failure(rt: &Runtime, spec: LaunchSpec) -> (String, ExitInfo) {
    let uid = spec.uid.clone();
    let err = rt.launch(spec).await.expect_err("launch should fail").to_string();
    (err, wait(rt, &uid).await)
}

/// Launches `spec`, whose script prints `ready` once it is set up (e.g. its TERM
/// trap), and waits (bounded) for that.
pub async fn launch_ready(env: &Env, rt: &Runtime, spec: LaunchSpec) -> Started {
    let uid = spec.uid.clone();
    let started = rt.launch(spec).await.expect("launch");
    eventually("the task to be ready", || env.log(&uid, "stdout").contains("ready")).await;
    started
}

/// Stops the task (TERM, then KILL after `grace`) and waits (bounded) for its end.
pub async fn kill_and_wait(rt: &Runtime, uid: &str, grace: Duration) -> ExitInfo {
    rt.kill(uid, grace).await.expect("kill");
    wait(rt, uid).await
}

/// `spec`, whose script ignores TERM and prints `ready` once its trap is set, is
/// killed (SIGKILL) when `grace` has passed after the TERM.
pub async fn assert_killed_after_grace(env: &Env, rt: &Runtime, spec: LaunchSpec, grace: Duration) {
    let uid = spec.uid.clone();
    launch_ready(env, rt, spec).await;
    let exit = kill_and_wait(rt, &uid, grace).await;
    assert_eq!(exit.signal, Some(9), "{exit:?}");
}

/// `spec` running `dd` (the command that runs busybox's dd) with a 64 MiB buffer
/// under a 16 MiB limit is OOM-killed (SIGKILL); cleans it up.
pub async fn assert_dd_oom_killed(rt: &Runtime, spec: LaunchSpec, dd: &[&str]) {
    let argv: Vec<&str> = dd.iter().copied().chain(["if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]).collect();
    let mut spec = with_argv(spec, &argv);
    spec.mem_mib = 16;
    let uid = spec.uid.clone();
    let exit = launch_and_wait(rt, spec).await;
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    rt.cleanup(&uid).await.unwrap();
}

/// Waits (bounded by the test kit's patience) until `f` holds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    corral_testkit::eventually(what, async || f().then_some(())).await
}

/// The shim: `CORRAL_TEST_SHIM` (e.g. the `corral` binary, to test its `__shim`
/// dispatch) or this crate's `test-shim`.
pub fn shim_exe() -> PathBuf {
    std::env::var_os("CORRAL_TEST_SHIM").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_test-shim")), PathBuf::from)
}
