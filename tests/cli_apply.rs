//! `corral apply`, `diff` and `delete` driven through the real binary against a real
//! server.

mod cli_support;

use cli_support::{Env, configmap};
use serde_json::Value;

fn get_json(env: &Env, args: &[&str]) -> Value {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&env.ok(&full)).unwrap()
}

#[test]
fn apply_reports_created_unchanged_configured_and_removes_dropped_fields() {
    let env = Env::start();
    let path = env.write("web.yaml", &configmap("web", None, &[("app", "web")], &[("a", "1"), ("b", "2")]));
    let path = path.to_str().unwrap();

    assert_eq!(env.ok(&["apply", "-f", path]), "configmap/web created\n");
    assert_eq!(env.ok(&["apply", "-f", path]), "configmap/web unchanged\n");

    env.write("web.yaml", &configmap("web", None, &[("app", "web")], &[("a", "10")]));
    assert_eq!(env.ok(&["apply", "-f", path]), "configmap/web configured\n");

    let obj = get_json(&env, &["configmap", "web"]);
    assert_eq!(obj["spec"]["data"], serde_json::json!({"a": "10"}), "b was removed from the manifest: {obj:#}");
    assert_eq!(obj["metadata"]["namespace"], "default");
    assert_eq!(obj["metadata"]["labels"]["app"], "web");
}

#[test]
fn invalid_document_in_directory_writes_nothing_and_names_file_document_field() {
    let env = Env::start();
    env.write("bundle/a-good.yaml", &configmap("good", None, &[], &[("k", "v")]));
    let bad = format!(
        "{}---\n{}",
        configmap("fine", None, &[], &[]),
        "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: broken\nspec:\n  data: {}\n  extra: true\n"
    );
    env.write("bundle/nested/b-bad.yaml", &bad);

    let r = env.run(&["apply", "-f", "bundle"]);
    assert_eq!(r.code(), 1, "{r}");
    let err = r.stderr();
    assert!(err.contains("bundle/nested/b-bad.yaml: document 2 (ConfigMap/broken): spec.extra: unknown field"), "{r}");
    assert!(!err.contains("a-good.yaml"), "only the bad document is reported: {r}");
    assert!(r.stdout().is_empty(), "nothing may be reported as applied: {r}");

    // Nothing was written: not the good file, not the good document of the bad file.
    assert_eq!(env.ok(&["get", "configmaps", "-o", "name"]), "");
    let r = env.run(&["get", "configmap", "good"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("not found"), "{r}");
}

#[test]
fn yaml_syntax_error_names_file_document_and_line() {
    let env = Env::start();
    let text = format!(
        "{}---\napiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
        configmap("ok", None, &[], &[])
    );
    env.write("broken.yaml", &text);
    let r = env.run(&["apply", "-f", "broken.yaml"]);
    assert_eq!(r.code(), 1, "{r}");
    let err = r.stderr();
    assert!(err.contains("broken.yaml: document 2: invalid YAML"), "{r}");
    // The unterminated flow sequence is noticed at the end of the file, line 12.
    assert!(err.contains("line 12"), "{r}");
    assert_eq!(env.ok(&["get", "cm", "-o", "name"]), "", "nothing was applied");
}

#[test]
fn example_manifests_apply_namespaces_first() {
    let env = Env::start();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");
    let out = env.ok(&["apply", "-f", dir]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("namespace/demo created"), "{out}");
    assert!(lines.contains(&"configmap/web-config created"), "{out}");
    assert!(lines.iter().all(|l| l.ends_with(" created")), "{out}");
    assert_eq!(env.ok(&["get", "cm", "-n", "demo", "-o", "name"]), "configmap/web-config\nconfigmap/worker-config\n");
    assert!(env.ok(&["apply", "-f", dir]).lines().all(|l| l.ends_with(" unchanged")));
}

/// The README's `corral apply -f examples/tasks/`: `native.yaml` makes a privileged
/// namespace and, in the same file, a native task in it. The task's policy depends on
/// a namespace that does not exist yet, so it must not be judged against its absence.
#[test]
fn example_tasks_apply_with_their_privileged_namespace() {
    let env = Env::start();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks");
    let out = env.ok(&["apply", "-f", dir]);
    assert!(out.lines().any(|l| l == "namespace/host-tasks created"), "{out}");
    assert!(out.lines().any(|l| l == "task/native created"), "{out}");
    assert!(out.lines().all(|l| l.ends_with(" created")), "{out}");
}

#[test]
fn apply_reads_multi_document_stdin_and_defaults_the_namespace() {
    let env = Env::start();
    let input = format!(
        "apiVersion: corral.dev/v1\nkind: Namespace\nmetadata:\n  name: team\n---\n{}---\n{}",
        configmap("one", None, &[], &[]),
        configmap("two", Some("default"), &[], &[])
    );
    let r = env.run_stdin(&["apply", "-n", "team", "-f", "-"], &input);
    assert_eq!(r.code(), 1, "-n team disagrees with the namespace written in document 3: {r}");
    assert!(r.stderr().contains("<stdin>: document 3 (ConfigMap/two): metadata.namespace"), "{r}");

    let input = format!(
        "apiVersion: corral.dev/v1\nkind: Namespace\nmetadata:\n  name: team\n---\n{}",
        configmap("one", None, &[], &[])
    );
    let r = env.run_stdin(&["apply", "-n", "team", "-f", "-"], &input);
    assert_eq!(r.code(), 0, "{r}");
    assert_eq!(r.stdout(), "namespace/team created\nconfigmap/one created\n");
    assert_eq!(env.ok(&["get", "cm", "-n", "team", "-o", "name"]), "configmap/one\n");
}

#[test]
fn apply_dry_run_validates_and_writes_nothing() {
    let env = Env::start();
    let path = env.write(
        "cm.json",
        r#"{"apiVersion":"corral.dev/v1","kind":"ConfigMap","metadata":{"name":"j"},"spec":{"data":{"k":"v"}}}"#,
    );
    let path = path.to_str().unwrap();
    assert_eq!(env.ok(&["apply", "--dry-run", "-f", path]), "configmap/j created (dry run)\n");
    assert_eq!(env.ok(&["get", "cm", "-o", "name"]), "");
    env.ok(&["apply", "-f", path]);
    assert_eq!(env.ok(&["apply", "--dry-run", "-f", path]), "configmap/j unchanged (dry run)\n");
}

#[test]
fn diff_exit_codes_mean_same_different_error() {
    let env = Env::start();
    let path = env.write("d.yaml", &configmap("d", None, &[], &[("level", "info")]));
    let path = path.to_str().unwrap();

    let r = env.run(&["diff", "-f", path]);
    assert_eq!(r.code(), 1, "a missing object differs: {r}");
    assert!(r.stdout().contains("+    level: info"), "{r}");

    env.ok(&["apply", "-f", path]);
    let r = env.run(&["diff", "-f", path]);
    assert_eq!(r.code(), 0, "{r}");
    assert_eq!(r.stdout(), "");

    env.write("d.yaml", &configmap("d", None, &[], &[("level", "debug")]));
    let r = env.run(&["diff", "-f", path]);
    assert_eq!(r.code(), 1, "{r}");
    let out = r.stdout();
    assert!(out.contains("--- live/configmap/default/d\n+++ merged/configmap/default/d\n"), "{r}");
    assert!(out.contains("-    level: info\n+    level: debug\n"), "{r}");
    assert!(!out.contains("resourceVersion"), "noise is ignored: {r}");

    env.write("d.yaml", "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: d\nspec:\n  nope: 1\n");
    let r = env.run(&["diff", "-f", path]);
    assert_eq!(r.code(), 2, "{r}");
    assert!(r.stderr().contains("spec.nope"), "{r}");
    assert_eq!(env.run(&["diff", "-f", "missing.yaml"]).code(), 2);
}

#[test]
fn delete_by_name_and_by_manifest() {
    let env = Env::start();
    let path =
        env.write("two.yaml", &format!("{}---\n{}", configmap("x", None, &[], &[]), configmap("y", None, &[], &[])));
    let path = path.to_str().unwrap();
    env.ok(&["apply", "-f", path]);

    assert_eq!(env.ok(&["delete", "cm", "x"]), "configmap/x deleted\n");
    let r = env.run(&["delete", "cm", "x"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().starts_with("error: configmap/x not found"), "{r}");
    assert_eq!(env.ok(&["delete", "cm", "x", "--ignore-not-found"]), "");

    let r = env.run(&["delete", "-f", path]);
    assert_eq!(r.code(), 1, "x is already gone: {r}");
    assert_eq!(r.stdout(), "configmap/y deleted\n", "{r}");
    assert_eq!(env.ok(&["get", "cm", "-o", "name"]), "");
}
