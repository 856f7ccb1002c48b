//! Shared set-up of the runtime tests: a busybox rootfs, a runtime over a temp work
//! dir, and a guard that tears down every container, process, mount and cgroup a test
//! made, even when it fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corral_agent::Layout;
use corral_agent::runtime::{ExitInfo, LaunchSpec, Runtime, RuntimeConfig};

/// The applets the tests use.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "dd", "true", "false", "id", "pwd", "env", "ls", "kill", "head", "yes", "seq", "test",
];

/// Bounded wait for anything a test awaits.
pub const LIMIT: Duration = Duration::from_secs(60);

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
        Runtime::new(RuntimeConfig {
            layout: self.layout.clone(),
            runc: PathBuf::from("/usr/sbin/runc"),
            shim_exe: shim_exe(),
            log_max_bytes,
            log_max_files,
        })
        .expect("runtime")
    }

    /// A fresh uid, remembered for teardown.
    pub fn uid(&self, name: &str) -> String {
        let uid = format!("t{}-{name}", std::process::id());
        self.uids.lock().unwrap().push(uid.clone());
        uid
    }

    pub fn container(&self, uid: &str, script: &str) -> LaunchSpec {
        LaunchSpec {
            uid: uid.into(),
            name: format!("test/{uid}"),
            rootfs: Some(self.rootfs.clone()),
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/bin".into())],
            cwd: None,
            user: None,
            cpus: 0.5,
            mem_mib: 64,
            mounts: vec![],
        }
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

    pub fn task_dir(&self, uid: &str) -> PathBuf {
        self.layout.task(uid)
    }

    pub fn log(&self, uid: &str, name: &str) -> String {
        std::fs::read_to_string(self.task_dir(uid).join("logs").join(name)).unwrap_or_default()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let root = self.layout.root().join("runc");
        for uid in self.uids.lock().unwrap().iter() {
            let _ = Command::new("/usr/sbin/runc")
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", uid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
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

/// Polls (bounded) until `f` holds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The shim: `CORRAL_TEST_SHIM` (e.g. the `corral` binary, to test its `__shim`
/// dispatch) or this crate's `test-shim`.
pub fn shim_exe() -> PathBuf {
    std::env::var_os("CORRAL_TEST_SHIM").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_test-shim")), PathBuf::from)
}
