//! The habits a kubectl user brings, through the real binary against a real server:
//! `get -w` event types, `get all`, "did you mean", `version`, `describe KIND`,
//! `delete KIND --all`, `logs` of a task that never started, and task specs refused
//! at apply time with the field named.

mod cli_support;

use cli_support::{Env, configmap};
use serde_json::Value;

/// Whitespace-separated cells of a line.
fn cells(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Byte offsets where each cell of `line` starts.
fn starts(line: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if !c.is_whitespace() && prev_space {
            out.push(i);
        }
        prev_space = c.is_whitespace();
    }
    out
}

fn apply(env: &Env, file: &str, text: &str) {
    let path = env.write(file, text);
    env.ok(&["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn get_watch_prints_event_types_widens_columns_and_skips_unchanged_rows() {
    let env = Env::start();
    apply(&env, "a.yaml", &configmap("a", None, &[], &[("k", "v")]));

    let mut watch = env.spawn_lines(&["get", "cm", "-w"]);
    let header = watch.wait_for("with the header", |l| l.starts_with("EVENT"));
    assert_eq!(cells(&header), ["EVENT", "NAME", "DATA", "AGE"]);
    let first = watch.wait_for("listing a", |l| !l.is_empty());
    assert_eq!(cells(&first)[..3], ["ADDED", "a", "1"], "{first}");
    assert_eq!(starts(&first), starts(&header), "rows line up with the header");

    // A label changes no printed column: no row. The data change after it does.
    apply(&env, "a.yaml", &configmap("a", None, &[("x", "y")], &[("k", "v")]));
    apply(&env, "a.yaml", &configmap("a", None, &[("x", "y")], &[("k", "v"), ("k2", "v2")]));
    let next = watch.wait_for("a's next row", |l| !l.is_empty());
    assert_eq!(cells(&next)[..3], ["MODIFIED", "a", "2"], "the label-only change must not be printed: {next}");

    // A name wider than the column: the header comes again, widened, then the row.
    let long = "a-name-much-wider-than-the-first";
    apply(&env, "b.yaml", &configmap(long, None, &[], &[]));
    let header2 = watch.wait_for("the header again", |l| !l.is_empty());
    assert_eq!(cells(&header2), ["EVENT", "NAME", "DATA", "AGE"], "{header2}");
    let row = watch.wait_for("the wide row", |l| !l.is_empty());
    assert_eq!(cells(&row)[..3], ["ADDED", long, "0"], "{row}");
    assert_eq!(starts(&row), starts(&header2), "the wide row lines up with the header above it:\n{header2}\n{row}");

    env.ok(&["delete", "cm", "a"]);
    let gone = watch.wait_for("a's deletion", |l| !l.is_empty());
    assert_eq!(cells(&gone)[..2], ["DELETED", "a"], "{gone}");
    assert_eq!(starts(&gone), starts(&header2), "{gone}");
}

#[test]
fn get_watch_json_lines_carry_the_event_type() {
    let env = Env::start();
    apply(&env, "a.yaml", &configmap("a", None, &[], &[("k", "v")]));
    let mut watch = env.spawn_lines(&["get", "cm", "-w", "-o", "json"]);
    let line = watch.wait_for("the listed a", |l| !l.is_empty());
    let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("one event per line: {e}: {line}"));
    assert_eq!((ev["type"].as_str(), ev["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("a")), "{ev}");
    env.ok(&["delete", "cm", "a"]);
    let line = watch.wait_for("a's deletion", |l| !l.is_empty());
    let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("one event per line: {e}: {line}"));
    assert_eq!((ev["type"].as_str(), ev["object"]["kind"].as_str()), (Some("DELETED"), Some("ConfigMap")), "{ev}");
}

/// A native task bound to node `node`, which is never run here (no agent).
fn task(name: &str, node: &str) -> String {
    format!(
        "apiVersion: corral.dev/v1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  command: [\"true\"]\n"
    )
}

#[test]
fn get_all_groups_the_workload_kinds_and_leaves_configuration_out() {
    let env = Env::start();
    let r = env.run(&["get", "all"]);
    assert_eq!(r.code(), 0, "{r}");
    assert!(r.stderr().starts_with("No resources found in namespace default"), "{r}");

    apply(&env, "t.yaml", &task("t1", "nowhere"));
    apply(&env, "cm.yaml", &configmap("settings", None, &[], &[]));
    let out = env.ok(&["get", "all"]);
    let blocks: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(blocks.len(), 1, "one kind has objects: {out}");
    let lines: Vec<&str> = blocks[0].lines().collect();
    assert_eq!(cells(lines[0])[..2], ["NAME", "STATUS"], "{out}");
    assert_eq!(cells(lines[1])[0], "task/t1", "{out}");
    assert!(!out.contains("settings"), "configuration is not in `all`: {out}");
    assert_eq!(env.ok(&["get", "all", "-o", "name"]), "task/t1\n");
}

#[test]
fn mistyped_kinds_and_commands_get_a_suggestion() {
    let env = Env::start();
    let r = env.run(&["get", "confgmaps"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().starts_with("error: the server does not serve a kind called \"confgmaps\""), "{r}");
    assert!(r.stderr().contains("did you mean \"configmaps\"?"), "{r}");
    let r = env.run(&["describe", "taks"]);
    assert!(r.stderr().contains("did you mean \"tasks\"?"), "{r}");
    let r = env.run(&["get", "zzzzzz"]);
    assert!(!r.stderr().contains("did you mean"), "nothing is close: {r}");

    // In a manifest too.
    let path = env.write("typo.yaml", &configmap("a", None, &[], &[]).replace("kind: ConfigMap", "kind: ConfigMpa"));
    let r = env.run(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("did you mean apiVersion corral.dev/v1 and kind ConfigMap?"), "{r}");

    let r = env.run(&["aply", "-f", "x.yaml"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("similar subcommand exists: 'apply'"), "{r}");
}

#[test]
fn version_prints_client_and_server_in_kubernetes_shape() {
    let env = Env::start();
    let out = env.ok(&["version"]);
    let version = env!("CARGO_PKG_VERSION");
    assert!(out.starts_with(&format!("Client Version: v{version} (")), "{out}");
    assert!(out.contains(&format!("\nServer Version: v{version} (")), "{out}");

    let both: Value = serde_json::from_str(&env.ok(&["version", "-o", "json"])).unwrap();
    let major = version.split('.').next().unwrap();
    assert_eq!(both["serverVersion"]["major"], major, "{both}");
    assert_eq!(both["serverVersion"]["gitVersion"], format!("v{version}"), "{both}");
    assert!(both["clientVersion"]["platform"].as_str().is_some_and(|p| p.starts_with("linux/")), "{both}");

    // Public, as Kubernetes' /version: no token needed.
    let body: Value = reqwest::blocking::get(format!("{}/version", env.url)).unwrap().json().unwrap();
    assert_eq!(body["gitVersion"], format!("v{version}"), "{body}");

    // --client alone does not need a server.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--server", &format!("http://127.0.0.1:{port}"), "version", "--client"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn describe_without_names_describes_all_and_delete_all_deletes_all() {
    let env = Env::start();
    apply(&env, "a.yaml", &configmap("a", None, &[], &[]));
    apply(&env, "b.yaml", &configmap("b", None, &[], &[]));
    apply(
        &env,
        "c.yaml",
        &format!(
            "apiVersion: corral.dev/v1\nkind: Namespace\nmetadata:\n  name: extra\n---\n{}",
            configmap("c", Some("extra"), &[], &[])
        ),
    );

    let out = env.ok(&["describe", "cm"]);
    let names: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("Name:")).map(str::trim).collect();
    assert_eq!(names, ["a", "b"], "{out}");

    let r = env.run(&["delete", "cm"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("--all"), "{r}");
    let out = env.ok(&["delete", "cm", "--all"]);
    assert_eq!(out, "configmap/a deleted\nconfigmap/b deleted\n");
    assert_eq!(env.ok(&["get", "cm", "-o", "name"]), "");
    assert_eq!(env.ok(&["get", "cm", "-n", "extra", "-o", "name"]), "configmap/c\n", "other namespaces are kept");
}

#[test]
fn logs_of_a_task_that_never_started_say_why() {
    let env = Env::start();
    apply(&env, "t.yaml", &task("stuck", "gone-node"));
    let r = env.run(&["logs", "stuck"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("task \"stuck\" never started") && r.stderr().contains("gone-node"), "{r}");

    // As an agent reports a task it could not start.
    let client = env.client();
    env.block_on(async {
        use corral_api::kinds::Task;
        let tasks: corral_client::Api<Task> = corral_client::Api::namespaced(client, "default");
        let mut t = tasks.get("stuck").await.unwrap();
        let status = t.status.get_or_insert_with(Default::default);
        status.phase = corral_api::kinds::task::TaskPhase::Failed;
        status.reason = Some("ImageNotFound".into());
        status.message = Some("image \"web:2\" is not in the agent's image store".into());
        tasks.update_status(&t).await.unwrap();
    });
    let r = env.run(&["logs", "stuck"]);
    assert_eq!(r.code(), 1, "{r}");
    let err = r.stderr();
    assert!(err.contains("never started") && err.contains("FAILED (ImageNotFound)"), "{r}");
    assert!(err.contains("is not in the agent's image store"), "{r}");
    assert_eq!(err.lines().count(), 1, "{r}");
}

#[test]
fn task_specs_judged_at_apply_time_name_the_field() {
    let env = Env::start();
    let bad = "apiVersion: corral.dev/v1\nkind: Task\nmetadata:\n  name: bad\nspec:\n  command: [\"true\"]\n  \
               resources: {cpus: -1}\n  ports:\n  - {name: http, hostPort: 8080}\n  - {name: http, hostPort: 8080}\n  \
               healthChecks:\n  - http: {portName: admin}\n";
    let path = env.write("bad.yaml", bad);
    let r = env.run(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(r.code(), 1, "{r}");
    let err = r.stderr();
    for field in
        ["spec.resources.cpus", "spec.ports[1].name", "spec.ports[1].hostPort", "spec.healthChecks[0].http.portName"]
    {
        assert!(err.contains(field), "{field} named: {r}");
    }
    assert_eq!(env.run(&["get", "task", "bad"]).code(), 1, "nothing was created");

    // A service's template is judged the same way.
    let svc = "apiVersion: corral.dev/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  instances: 1\n  template:\n    \
               command: [\"true\"]\n    ports:\n    - {name: http}\n    healthChecks:\n    - tcp: {portName: htp}\n";
    let path = env.write("svc.yaml", svc);
    let r = env.run(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("spec.template.healthChecks[0].tcp.portName"), "{r}");
}

#[test]
fn a_second_up_on_a_held_data_dir_names_the_holder_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = |config: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.args(["up", "--no-agent", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("CORRAL_CONFIG", dir.path().join(config))
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        cmd
    };
    let mut first =
        up("first").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let pid = first.id().to_string();
    corral_testkit::eventually_blocking("the first up to hold the data directory", || {
        let held = std::fs::read_to_string(data.join("corral.lock")).ok()?;
        (held.trim() == pid).then_some(())
    });
    let second = cli_support::Run(up("second").output().unwrap());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    let _ = first.wait();
    assert_eq!(second.code(), 1, "{second}");
    let err = second.stderr();
    assert_eq!(err.lines().count(), 1, "one line: {second}");
    assert!(err.starts_with(&format!("error: another Corral (pid {pid}) holds the data directory")), "{second}");
}

#[test]
fn connection_options_show_only_on_commands_that_connect() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral")).args(args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for cmd in ["get", "apply", "logs", "agent"] {
        let h = help(&[cmd, "--help"]);
        assert!(h.contains("--server <SERVER>") && h.contains("--token <TOKEN>"), "{cmd}: {h}");
    }
    let up = help(&["up", "--help"]);
    assert!(!up.contains("--server") && !up.contains("--token"), "{up}");
    assert!(up.contains("--kubeconfig"), "up writes the CLI's configuration: {up}");
    assert!(up.contains("a local node agent"), "{up}");
    for cmd in [&["server"][..], &["convert"], &["image", "import"], &["admin", "snapshot", "restore"]] {
        let h = help(&[cmd, &["--help"]].concat());
        assert!(!h.contains("--server <") && !h.contains(" --kubeconfig <"), "{cmd:?}: {h}");
    }
}

#[test]
fn objects_being_deleted_show_terminating_and_deletions_are_events() {
    let env = Env::start();
    let held = "apiVersion: corral.dev/v1\nkind: Task\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n\
                spec:\n  nodeName: nowhere\n  command: [\"true\"]\n";
    apply(&env, "held.yaml", held);
    apply(&env, "t.yaml", &task("brief", "nowhere"));
    let out = env.ok(&["delete", "task", "held", "brief"]);
    assert!(out.contains("task/held deletion requested") && out.contains("task/brief deleted"), "{out}");

    let table = env.ok(&["get", "tasks"]);
    let rows: Vec<Vec<&str>> = table.lines().map(cells).collect();
    assert_eq!(rows[0][..2], ["NAME", "STATUS"], "{table}");
    assert_eq!(rows[1][..2], ["held", "Terminating"], "{table}");
    let status = env.ok(&["get", "task", "held", "-o", "json"]);
    assert!(!status.contains("Terminating"), "the object itself is unchanged; the table says it: {status}");

    let events = env.ok(&["get", "events"]);
    let about = |task: &str, reason: &str| {
        events.lines().any(|l| {
            let c = cells(l);
            c.get(2) == Some(&reason) && c.get(3) == Some(&format!("task/{task}").as_str())
        })
    };
    assert!(about("held", "Deleting") && about("brief", "Deleted"), "{events}");
    assert!(events.contains("by admin"), "who asked: {events}");
}

/// An `EDITOR` script in the test's directory, running `body` with the file as `$1`.
fn editor(env: &Env, name: &str, body: &str) -> String {
    let path = env.write(name, &format!("#!/bin/sh\nset -e\n{body}\n"));
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path.to_str().unwrap().to_string()
}

fn edit(env: &Env, editor: &str, args: &[&str]) -> cli_support::Run {
    let mut cmd = env.command(&[&["edit"], args].concat());
    cmd.env("EDITOR", editor).env_remove("VISUAL").env("TMPDIR", env.write("tmp/.keep", "").parent().unwrap());
    cli_support::Run(cmd.stdin(std::process::Stdio::null()).output().unwrap())
}

#[test]
fn edit_opens_the_editor_writes_back_and_survives_a_concurrent_change() {
    let env = Env::start();
    apply(&env, "a.yaml", &configmap("a", None, &[], &[("k", "v")]));

    let sed = editor(&env, "sed.sh", r#"sed -i 's/k: v$/k: edited/' "$1""#);
    let r = edit(&env, &sed, &["cm/a"]);
    assert_eq!((r.code(), r.stdout().as_str()), (0, "configmap/a edited\n"), "{r}");
    let a: Value = serde_json::from_str(&env.ok(&["get", "cm", "a", "-o", "json"])).unwrap();
    assert_eq!(a["spec"]["data"]["k"], "edited", "{a}");

    // An editor that saves nothing new changes nothing.
    let r = edit(&env, &editor(&env, "true.sh", "true"), &["configmap", "a"]);
    assert_eq!(r.code(), 0, "{r}");
    assert!(r.stderr().contains("no changes made"), "{r}");

    // While the editor is open, someone else adds a label: both changes stay.
    let label = env.write("labelled.yaml", &configmap("a", None, &[("team", "blue")], &[("k", "edited")]));
    let bin = env!("CARGO_BIN_EXE_corral");
    let racing = editor(
        &env,
        "race.sh",
        &format!(
            "\"{bin}\" --server {} apply -f {} >/dev/null\nsed -i 's/k: edited$/k: again/' \"$1\"",
            env.url,
            label.display()
        ),
    );
    let r = edit(&env, &racing, &["cm/a"]);
    assert_eq!(r.code(), 0, "{r}");
    assert!(r.stderr().contains("changed while it was being edited"), "{r}");
    let a: Value = serde_json::from_str(&env.ok(&["get", "cm", "a", "-o", "json"])).unwrap();
    assert_eq!((&a["spec"]["data"]["k"], &a["metadata"]["labels"]["team"]), (&"again".into(), &"blue".into()), "{a}");
}

#[test]
fn a_refused_edit_is_kept_in_a_file_the_error_names() {
    let env = Env::start();
    apply(&env, "a.yaml", &configmap("a", None, &[], &[("k", "v")]));
    let bad = editor(&env, "bad.sh", r#"sed -i 's/^spec:$/spec:\n  colour: red/' "$1""#);
    let r = edit(&env, &bad, &["cm/a"]);
    assert_eq!(r.code(), 1, "{r}");
    let err = r.stderr();
    assert!(err.contains("spec.colour") && err.contains("configmap/a was not changed"), "{r}");
    let kept = err.split("the edit is kept in ").nth(1).and_then(|s| s.split(' ').next()).expect("a path");
    let text = std::fs::read_to_string(kept).unwrap_or_else(|e| panic!("{kept}: {e}"));
    assert!(text.contains("colour: red"), "{text}");
    let a: Value = serde_json::from_str(&env.ok(&["get", "cm", "a", "-o", "json"])).unwrap();
    assert!(a["spec"].get("colour").is_none(), "{a}");
}
