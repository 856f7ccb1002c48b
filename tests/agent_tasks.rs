//! The node agent end to end, against real runc: a real API server, a real `corral
//! agent` process, busybox containers and native processes.

mod agent_support;

use std::time::Duration;

use agent_support::Cluster;
use serde_json::{Value, json};

fn phase(t: &Value) -> &str {
    t.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_and_their_exits_are_reported() {
    let c = Cluster::start("exits", Duration::from_secs(60)).await;
    c.create_task("fails", json!({"image": "busybox", "command": ["sh", "-c", "echo hello; exit 3"]})).await;
    c.create_task("works", json!({"image": "busybox:latest", "command": ["true"]})).await;
    c.create_task(
        "native",
        json!({"command": ["/bin/sh", "-c", "test \"$CORRAL_TASK_NAME\" = native && pwd > where"], "resources": {"mem": 64}}),
    )
    .await;

    let failed = c.wait_phase("fails", "FAILED").await;
    assert_eq!(failed.pointer("/status/exitCode"), Some(&json!(3)), "{failed:#}");
    assert_eq!(failed.pointer("/status/reason"), Some(&json!("Error")));
    assert!(failed.pointer("/status/startTime").is_some() && failed.pointer("/status/finishTime").is_some());
    let uid = failed.pointer("/metadata/uid").and_then(Value::as_str).expect("uid");
    let out = std::fs::read_to_string(c.work_dir().join("tasks").join(uid).join("logs/stdout")).expect("stdout log");
    assert_eq!(out, "hello\n");

    let ok = c.wait_phase("works", "FINISHED").await;
    assert_eq!(ok.pointer("/status/exitCode"), Some(&json!(0)));
    assert_eq!(ok.pointer("/status/reason"), Some(&json!("Completed")));

    let native = c.wait_phase("native", "FINISHED").await;
    let uid = native.pointer("/metadata/uid").and_then(Value::as_str).expect("uid");
    let sandbox = c.work_dir().join("tasks").join(uid).join("sandbox");
    let cwd = std::fs::read_to_string(sandbox.join("where")).expect("the native task ran in its sandbox");
    assert_eq!(std::path::Path::new(cwd.trim()), std::fs::canonicalize(&sandbox).expect("sandbox"));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_oom_killed_and_reported_so() {
    let c = Cluster::start("oom", Duration::from_secs(60)).await;
    c.create_task(
        "hog",
        json!({"image": "busybox", "resources": {"mem": 16},
               "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]}),
    )
    .await;
    c.create_task(
        "native-hog",
        json!({"resources": {"mem": 16}, "command": ["/bin/busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]}),
    )
    .await;
    for name in ["hog", "native-hog"] {
        let t = c.wait_phase(name, "FAILED").await;
        assert_eq!(t.pointer("/status/reason"), Some(&json!("OOMKilled")), "{name}: {t:#}");
        assert_eq!(t.pointer("/status/signal"), Some(&json!(9)), "{name}: {t:#}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_kills_its_task() {
    let c = Cluster::start("health", Duration::from_secs(60)).await;
    let check = |cmd: &str| {
        json!([{"command": ["sh", "-c", cmd], "gracePeriodSeconds": 0, "intervalSeconds": 1,
                "timeoutSeconds": 5, "maxConsecutiveFailures": 2}])
    };
    c.create_task(
        "sick",
        json!({"image": "busybox", "command": ["sleep", "1000"], "healthChecks": check("exit 1"),
               "killGracePeriodSeconds": 1}),
    )
    .await;
    c.create_task(
        "well",
        json!({"image": "busybox", "command": ["sleep", "1000"], "healthChecks": check("test -d /mnt/sandbox")}),
    )
    .await;
    let sick = c.wait_phase("sick", "FAILED").await;
    assert_eq!(sick.pointer("/status/reason"), Some(&json!("HealthCheckFailed")), "{sick:#}");
    assert_eq!(sick.pointer("/status/health/healthy"), Some(&json!(false)), "{sick:#}");
    let well = c
        .wait_for(&Cluster::task_path("well"), "the healthy task to report health", |t| {
            t.pointer("/status/health/healthy") == Some(&json!(true))
        })
        .await;
    assert_eq!(phase(&well), "RUNNING");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_or_killing_a_task_stops_it_with_term_then_kill() {
    let c = Cluster::start("kills", Duration::from_secs(60)).await;
    // Ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    c.create_task(
        "stubborn",
        json!({"image": "busybox", "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
               "killGracePeriodSeconds": 1}),
    )
    .await;
    c.create_task("polite", json!({"image": "busybox", "command": ["sleep", "1000"], "killGracePeriodSeconds": 30}))
        .await;
    // The agent's finalizer follows RUNNING (it is written after the start).
    let running = c
        .wait_for(&Cluster::task_path("stubborn"), "stubborn running, with the agent's finalizer", |t| {
            phase(t) == "RUNNING" && t.pointer("/metadata/finalizers") == Some(&json!(["corral.dev/agent"]))
        })
        .await;
    let container = running.pointer("/status/containerId").and_then(Value::as_str).expect("container id").to_string();
    c.wait_phase("polite", "RUNNING").await;

    let mut t = c.get(&Cluster::task_path("stubborn")).await.expect("task");
    t["spec"]["kill"] = json!(true);
    c.send(reqwest::Method::PUT, &Cluster::task_path("stubborn"), Some(&t)).await;
    let killed = c.wait_phase("stubborn", "KILLED").await;
    assert_eq!(killed.pointer("/status/signal"), Some(&json!(9)), "TERM was trapped: {killed:#}");

    c.send(reqwest::Method::DELETE, &Cluster::task_path("polite"), None).await;
    c.wait_gone(&Cluster::task_path("polite")).await;
    let list = c.containers();
    assert!(!list.contains(&container), "killed container still listed: {list}");

    // Kills and deletions are recorded as Events, found after the task is gone.
    let events = c.get("/apis/corral.dev/v1/namespaces/default/events").await.expect("events");
    let seen: Vec<(String, String, String)> = events["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            let text = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
            (text("/spec/involvedObject/name"), text("/spec/reason"), text("/spec/message"))
        })
        .collect();
    let has = |task: &str, reason: &str, says: &str| {
        seen.iter().any(|(t, r, m)| t == task && r == reason && m.contains(says))
    };
    assert!(has("stubborn", "Killing", "spec.kill"), "{seen:#?}");
    assert!(has("polite", "Deleting", "requested by"), "{seen:#?}");
    assert!(has("polite", "Killing", "deleted"), "{seen:#?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_cannot_start_fails_with_a_reason() {
    let c = Cluster::start("bad", Duration::from_secs(60)).await;
    c.create_task("no-image", json!({"image": "nosuch:1", "command": ["true"]})).await;
    c.create_task("no-binary", json!({"image": "busybox", "command": ["/nonexistent"]})).await;
    // A volume name leading out of the agent's volumes: refused by the server, which
    // finds no such volume, in the write that would bind the task (the agent's own
    // check of the name is the defence behind it).
    let escape = json!({"apiVersion": "corral.dev/v1", "kind": "Task", "metadata": {"name": "escape"},
        "spec": {"image": "busybox", "command": ["true"], "nodeName": c.node,
            "volumeMounts": [{"volume": "../../etc", "mountPath": "/x"}]}});
    let refused = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{}/apis/corral.dev/v1/namespaces/default/tasks", c.url))
        .bearer_auth(c.admin_token())
        .json(&escape)
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let t = c.wait_phase("no-image", "FAILED").await;
    assert_eq!(t.pointer("/status/reason"), Some(&json!("ImageNotFound")), "{t:#}");
    let t = c.wait_phase("no-binary", "FAILED").await;
    assert!(t.pointer("/status/message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()), "{t:#}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_tasks_sandboxes_are_collected_after_their_retention() {
    let c = Cluster::start_with("gc", Duration::from_secs(60), &["--sandbox-retention", "1"]).await;
    c.create_task("brief", json!({"image": "busybox", "command": ["sh", "-c", "echo bye"]})).await;
    c.create_task("long", json!({"image": "busybox", "command": ["sleep", "1000"]})).await;
    let done = c.wait_phase("brief", "FINISHED").await;
    c.wait_phase("long", "RUNNING").await;
    let uid = done.pointer("/metadata/uid").and_then(Value::as_str).expect("uid").to_string();
    let dir = c.work_dir().join("tasks").join(&uid);
    c.until("the sandbox is collected", || !dir.exists()).await;
    // The record stays; the running task's directory is untouched.
    let still = c.get(&Cluster::task_path("brief")).await.expect("task object stays");
    assert_eq!(phase(&still), "FINISHED");
    let long = c.get(&Cluster::task_path("long")).await.expect("task");
    let long_uid = long.pointer("/metadata/uid").and_then(Value::as_str).expect("uid");
    assert!(c.work_dir().join("tasks").join(long_uid).join("launch.json").exists());
    assert_eq!(phase(&long), "RUNNING");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_a_running_tasks_lines_as_they_are_written() {
    use std::io::BufRead;
    let c = Cluster::start("follow", Duration::from_secs(60)).await;
    // Writes line N only once the test has seen line N-1 (it drops a file per line).
    let script = "for i in 1 2 3; do echo line $i; while [ ! -e /mnt/sandbox/ack$i ]; do sleep 0.05; done; done";
    c.create_task("chatty", json!({"image": "busybox", "command": ["sh", "-c", script]})).await;
    let running = c.wait_phase("chatty", "RUNNING").await;
    let uid = running.pointer("/metadata/uid").and_then(Value::as_str).expect("uid").to_string();
    let sandbox = c.work_dir().join("tasks").join(&uid).join("sandbox");

    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--server", &c.url, "--token", &c.admin_token(), "logs", "-f", "chatty"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("corral logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    for i in 1..=3 {
        // The task cannot write the next line before this one was received.
        let line = rx.recv_timeout(corral_testkit::PATIENCE).expect("a line while the task runs");
        assert_eq!(line, format!("line {i}"));
        std::fs::write(sandbox.join(format!("ack{i}")), "").expect("ack");
    }
    // The stream ends by itself once the task has ended.
    let status = tokio::task::spawn_blocking(move || follow.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "corral logs -f exited with {status}");
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_err(), "nothing after the last line");
    c.wait_phase("chatty", "FINISHED").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_fetched_and_checked_before_the_start() {
    let c = Cluster::start("artifacts", Duration::from_secs(60)).await;
    // The one directory the test agent serves file:// artifacts from.
    let served = c.dir.path().join("artifacts");
    std::fs::create_dir_all(&served).expect("artifacts dir");
    let script = served.join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho fetched and run\n").expect("script");
    let sum = std::process::Command::new("sha256sum").arg(&script).output().expect("sha256sum");
    let sum = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().expect("digest").to_string();
    let uri = format!("file://{}", script.display());
    c.create_task(
        "fetched",
        json!({"command": ["./hello.sh"], "artifacts": [{"uri": uri, "sha256": sum, "executable": true}]}),
    )
    .await;
    c.create_task(
        "tampered",
        json!({"command": ["./hello.sh"], "artifacts": [{"uri": uri, "sha256": "0".repeat(64), "executable": true}]}),
    )
    .await;
    // Issue 10, finding 3: any host file was copied, as root, into the sandbox.
    c.create_task("shadow", json!({"command": ["/bin/cat", "shadow"], "artifacts": [{"uri": "file:///etc/shadow"}]}))
        .await;
    let done = c.wait_phase("fetched", "FINISHED").await;
    let uid = done.pointer("/metadata/uid").and_then(Value::as_str).expect("uid");
    let out = std::fs::read_to_string(c.work_dir().join("tasks").join(uid).join("logs/stdout")).expect("log");
    assert_eq!(out, "fetched and run\n");
    let bad = c.wait_phase("tampered", "FAILED").await;
    assert_eq!(bad.pointer("/status/reason"), Some(&json!("ArtifactFetchFailed")), "{bad:#}");
    let refused = c.wait_phase("shadow", "FAILED").await;
    assert_eq!(refused.pointer("/status/reason"), Some(&json!("ArtifactFetchFailed")), "{refused:#}");
    let message = refused.pointer("/status/message").and_then(Value::as_str).unwrap_or_default();
    assert!(message.contains("--artifact-dir"), "{refused:#}");
    c.stop().await;
}

/// Issue 10, finding 5: an artifact unpacked with a link `esc -> /` and `workingDir:
/// esc/etc` ran a native task in the host's `/etc`. The working dir is now resolved
/// inside the sandbox, and one that leads out fails the task, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_dir_leading_out_of_the_sandbox_fails_the_task() {
    let c = Cluster::start("workdir", Duration::from_secs(60)).await;
    let src = c.dir.path().join("tree");
    std::fs::create_dir_all(src.join("inside")).expect("tree");
    std::os::unix::fs::symlink("/", src.join("esc")).expect("link");
    let tar = c.dir.path().join("artifacts/tree.tar");
    std::fs::create_dir_all(c.dir.path().join("artifacts")).expect("artifacts dir");
    let st =
        std::process::Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&src).args(["esc", "inside"]).status();
    assert!(st.expect("run tar").success());
    let uri = format!("file://{}", tar.display());
    let artifact = json!([{"uri": uri, "extract": true}]);
    c.create_task(
        "escape",
        json!({"command": ["/bin/sh", "-c", "pwd"], "workingDir": "esc/etc", "artifacts": artifact}),
    )
    .await;
    c.create_task(
        "inside",
        json!({"command": ["/bin/sh", "-c", "pwd"], "workingDir": "inside", "artifacts": artifact}),
    )
    .await;
    let t = c.wait_phase("escape", "FAILED").await;
    let message = t.pointer("/status/message").and_then(Value::as_str).unwrap_or_default();
    assert!(message.contains("leads out of the sandbox"), "{t:#}");
    let t = c.wait_phase("inside", "FINISHED").await;
    let uid = t.pointer("/metadata/uid").and_then(Value::as_str).expect("uid");
    let out = std::fs::read_to_string(c.work_dir().join("tasks").join(uid).join("logs/stdout")).expect("log");
    assert!(out.trim_end().ends_with("/sandbox/inside"), "ran in the sandbox: {out}");
    c.stop().await;
}

/// A launch writes the task's status several times (STAGING, STARTING, RUNNING) and
/// adds the agent's finalizer; a metadata change by someone else meanwhile (here a
/// label written on every task, as a framework labels its tasks) must not make those
/// writes fail with 409 Conflict and the reconcile log a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_do_not_log_conflicts_when_others_change_metadata() {
    let c = Cluster::start("calm", Duration::from_secs(60)).await;
    let names: Vec<String> = (0..12).map(|i| format!("calm-{i}")).collect();
    for n in &names {
        c.create_task(n, json!({"image": "busybox", "command": ["sleep", "1000"], "killGracePeriodSeconds": 1})).await;
    }
    for round in 0..4 {
        for n in &names {
            let mut t = c.get(&Cluster::task_path(n)).await.expect("task");
            t["metadata"]["labels"]["round"] = json!(round.to_string());
            // Unconditional: the test's own writes do not race with each other.
            t["metadata"].as_object_mut().expect("metadata").remove("resourceVersion");
            c.send(reqwest::Method::PUT, &Cluster::task_path(n), Some(&t)).await;
        }
    }
    for n in &names {
        c.wait_for(&Cluster::task_path(n), "running with the agent's finalizer", |t| {
            phase(t) == "RUNNING" && t.pointer("/metadata/finalizers") == Some(&json!(["corral.dev/agent"]))
        })
        .await;
    }
    let log = c.agent_log();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("reconcile failed")).collect();
    assert!(failed.is_empty(), "failed reconciles (conflicts) logged during launches:\n{}", failed.join("\n"));
    for n in &names {
        c.send(reqwest::Method::DELETE, &Cluster::task_path(n), None).await;
    }
    for n in &names {
        c.wait_gone(&Cluster::task_path(n)).await;
    }
    c.stop().await;
}

/// `corral exec` on the task's node: inside a container (its root, env, exit code; with
/// -i its stdin) and inside a native task (its env and sandbox); a wrong work dir is
/// named with the task's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_commands_inside_containers_and_native_tasks() {
    let c = Cluster::start("exec", Duration::from_secs(60)).await;
    c.create_task(
        "box",
        json!({"image": "busybox", "command": ["sleep", "1000"], "env": {"GREETING": "hi"}, "killGracePeriodSeconds": 1}),
    )
    .await;
    c.create_task(
        "host",
        json!({"command": ["sleep", "1000"], "env": {"GREETING": "native"}, "killGracePeriodSeconds": 1}),
    )
    .await;
    c.wait_phase("box", "RUNNING").await;
    c.wait_phase("host", "RUNNING").await;
    let work = c.work_dir();
    let exec = |args: Vec<String>, input: &'static str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.args(["--server", &c.url, "exec"])
            .args(args)
            .env("CORRAL_TOKEN", c.admin_token())
            .env("CORRAL_CONFIG", c.dir.path().join("no-config"))
            .env_remove("CORRAL_AGENT_DIR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut child = cmd.spawn().expect("corral runs");
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("stdin written");
            let out = child.wait_with_output().expect("corral ends");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let w = work.to_str().expect("utf-8").to_string();
    let args = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (code, out, err) =
        exec(args(&["box", "--work-dir", &w, "--", "sh", "-c", "echo $GREETING; ls /bin/busybox; exit 3"]), "")
            .await
            .expect("joined");
    assert_eq!((code, out.as_str()), (3, "hi\n/bin/busybox\n"), "the command's exit code passes through: {err}");

    let (code, out, err) =
        exec(args(&["box", "-i", "--work-dir", &w, "--", "cat"]), "piped in\n").await.expect("joined");
    assert_eq!((code, out.as_str()), (0, "piped in\n"), "{err}");
    let (_, out, _) = exec(args(&["box", "--work-dir", &w, "--", "cat"]), "not passed\n").await.expect("joined");
    assert_eq!(out, "", "without -i the command reads nothing");

    let (code, out, err) =
        exec(args(&["host", "--work-dir", &w, "--", "sh", "-c", "echo $GREETING; pwd"]), "").await.expect("joined");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"native"), "{out}");
    let canonical = std::fs::canonicalize(&work).expect("work dir");
    assert!(lines.get(1).is_some_and(|p| p.starts_with(canonical.to_str().expect("utf-8"))), "in its sandbox: {out}");

    // -t: the command gets a terminal of its own (under script(1), which gives this
    // corral one); without -t, it has none.
    let in_terminal = |tty: bool| {
        let flag = if tty { "-t" } else { "-i" };
        let line = format!(
            "'{}' --server {} exec {flag} box --work-dir '{w}' -- sh -c 'test -t 0 && echo terminal || echo none'",
            env!("CARGO_BIN_EXE_corral"),
            c.url
        );
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env("CORRAL_TOKEN", c.admin_token())
            .env("CORRAL_CONFIG", c.dir.path().join("no-config"))
            .stdin(std::process::Stdio::null());
        tokio::task::spawn_blocking(move || {
            let out = cmd.output().expect("script runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let with = in_terminal(true).await.expect("joined");
    assert!(with.contains("terminal"), "-t gives a terminal: {with:?}");
    let without = in_terminal(false).await.expect("joined");
    assert!(without.contains("none"), "no -t, no terminal of its own: {without:?}");

    let elsewhere = c.dir.path().join("elsewhere");
    let (code, _, err) =
        exec(args(&["box", "--work-dir", elsewhere.to_str().expect("utf-8"), "--", "true"]), "").await.expect("joined");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("runs on node \"exec\"") && err.contains("--work-dir"), "{err}");
    assert!(!elsewhere.exists(), "a wrong work dir is not created");

    for n in ["box", "host"] {
        c.send(reqwest::Method::DELETE, &Cluster::task_path(n), None).await;
    }
    for n in ["box", "host"] {
        c.wait_gone(&Cluster::task_path(n)).await;
    }
    c.stop().await;
}
