//! `corral up` end to end through the CLI, as the README shows it: the server with
//! its local agent, an image imported into the agent's store, a task applied from a
//! manifest, `get`, `logs`, `describe`, and a clean stop on SIGTERM.

mod agent_support;

use std::process::{Command, Stdio};

use serde_json::Value;

/// `corral --server URL args...` with the configuration file `corral up` wrote.
fn corral(url: &str, config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("--server")
        .arg(url)
        .args(args)
        .env("CORRAL_CONFIG", config)
        .env_remove("CORRAL_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("corral runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool, log: &std::path::Path) {
    let what = format!("{what}\ncorral up log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
    corral_testkit::eventually_blocking(&what, || check().then_some(()));
}

#[test]
fn corral_up_runs_a_local_agent_that_runs_applied_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("up.log");
    // Where `corral up` writes the CLI's credential (by default ~/.corral/config).
    let config = dir.path().join("config");
    let mut up = Command::new(env!("CARGO_BIN_EXE_corral"))
        .env("CORRAL_CONFIG", &config)
        .arg("up")
        .arg("--data-dir")
        .arg(&data)
        // A port of its own choosing: one picked beforehand could be taken by a
        // parallel test's process first, whose answers would then be taken for ours.
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("CORRAL_NODE_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("corral up starts");
    let work = data.join("agent");
    // Its address, in the configuration it writes once it listens.
    let url = corral_testkit::eventually_blocking("corral up to write the CLI's configuration", || {
        if let Some(status) = up.try_wait().expect("wait") {
            panic!("corral up exited with {status}:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        corral_client::Config::from_kubeconfig(&config).ok().map(|c| c.server)
    });

    wait_until(
        "the local node to be Ready",
        || {
            let (code, out, _) = corral(&url, &config, &["get", "node", "local", "-o", "json"]);
            code == 0 && serde_json::from_str::<Value>(&out).is_ok_and(|n| n["status"]["phase"] == "Ready")
        },
        &log,
    );

    let archive = dir.path().join("busybox.tar");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/images/busybox-image.sh");
    let st = Command::new("sh").arg(script).arg(&archive).stdout(Stdio::null()).status().expect("script");
    assert!(st.success(), "the example image script builds an archive");
    // As the README: pushed to the cluster, pulled by the agent when a task needs it.
    let (code, out, err) = corral(&url, &config, &["image", "push", archive.to_str().expect("path")]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, images, _) = corral(&url, &config, &["image", "ls"]);
    assert!(images.lines().any(|l| l.starts_with("busybox ") && l.contains(" latest ")), "{images}");

    // The README's example task, bound to the node `corral up` names `local`.
    let manifest = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks/hello.yaml"));
    let (code, out, err) = corral(&url, &config, &["apply", "-f", manifest.to_str().expect("path")]);
    assert_eq!(code, 0, "{out}{err}");

    wait_until(
        "hello to finish",
        || {
            let (_, out, _) = corral(&url, &config, &["get", "task", "hello", "-o", "json"]);
            serde_json::from_str::<Value>(&out).is_ok_and(|t| t["status"]["phase"] == "FINISHED")
        },
        &log,
    );
    let (_, table, _) = corral(&url, &config, &["get", "tasks"]);
    assert!(table.contains("FINISHED") && table.contains("local"), "{table}");
    let (code, out, err) = corral(&url, &config, &["logs", "hello"]);
    assert_eq!((code, out.as_str()), (0, "hello 1 from hello\nhello 2 from hello\nhello 3 from hello\n"), "{err}");
    let (_, described, _) = corral(&url, &config, &["describe", "task", "hello"]);
    assert!(described.contains("Completed"), "{described}");

    // SIGTERM stops server and agent cleanly.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(up.id() as i32, libc::SIGTERM) };
    let status = corral_testkit::eventually_blocking("corral up stops on SIGTERM", || up.try_wait().expect("wait"));
    assert!(status.success(), "corral up exited with {status}");
    agent_support::cleanup_work_dir(&work);
}
