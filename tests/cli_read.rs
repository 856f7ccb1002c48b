//! `corral get` (including `--watch`), `describe`, `explain` and `api-resources`
//! driven through the real binary against a real server.

mod cli_support;

use cli_support::{Env, configmap};
use serde_json::Value;

/// Applies ConfigMaps `web` (app=web, 2 entries) and `db` (app=db, 1 entry) in
/// `default`, and `other` in namespace `extra`.
fn seed(env: &Env) {
    let text = format!(
        "apiVersion: corral.dev/v1\nkind: Namespace\nmetadata:\n  name: extra\n---\n{}---\n{}---\n{}",
        configmap("web", None, &[("app", "web"), ("tier", "front")], &[("a", "1"), ("b", "2")]),
        configmap("db", None, &[("app", "db")], &[("a", "1")]),
        configmap("other", Some("extra"), &[("app", "web")], &[]),
    );
    let path = env.write("seed.yaml", &text);
    env.ok(&["apply", "-f", path.to_str().unwrap()]);
}

/// Whitespace-separated cells of each line.
fn cells(out: &str) -> Vec<Vec<String>> {
    out.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

#[test]
fn get_prints_tables_names_yaml_and_json() {
    let env = Env::start();
    seed(&env);

    let table = env.ok(&["get", "configmaps"]);
    let rows = cells(&table);
    assert_eq!(rows[0], ["NAME", "DATA", "AGE"], "{table}");
    assert_eq!(
        rows.iter().skip(1).map(|r| (r[0].as_str(), r[1].as_str())).collect::<Vec<_>>(),
        [("db", "1"), ("web", "2")]
    );
    // Aligned: every line has its second column at the same offset.
    let offsets: Vec<usize> = table.lines().map(|l| l.find(|c: char| c.is_whitespace()).unwrap()).collect();
    let col2: Vec<usize> =
        table.lines().zip(&offsets).map(|(l, o)| o + l[*o..].find(|c: char| !c.is_whitespace()).unwrap()).collect();
    assert!(col2.windows(2).all(|w| w[0] == w[1]), "{table}");

    let wide = env.ok(&["get", "cm", "web", "-o", "wide"]);
    let rows = cells(&wide);
    assert_eq!(rows[0], ["NAME", "DATA", "AGE", "LABELS", "GENERATION", "RESOURCEVERSION"], "{wide}");
    assert_eq!(rows[1][3], "app=web,tier=front", "{wide}");

    assert_eq!(env.ok(&["get", "ConfigMap", "-o", "name"]), "configmap/db\nconfigmap/web\n");

    let one: Value = serde_json::from_str(&env.ok(&["get", "cm", "web", "-o", "json"])).unwrap();
    assert_eq!(one["kind"], "ConfigMap");
    assert_eq!(one["spec"]["data"]["b"], "2");

    let list: Value = serde_json::from_str(&env.ok(&["get", "cm", "-o", "json"])).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));

    let yaml = env.ok(&["get", "configmap", "db", "-o", "yaml"]);
    assert!(yaml.starts_with("apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: db\n"), "{yaml}");
    let yaml_list = env.ok(&["get", "cm", "-o", "yaml"]);
    assert!(yaml_list.contains("kind: List\n") && yaml_list.contains("items:\n"), "{yaml_list}");

    // Cluster-scoped kinds by short name.
    let ns = env.ok(&["get", "ns", "-o", "name"]);
    assert_eq!(ns, "namespace/corral-frameworks\nnamespace/corral-system\nnamespace/default\nnamespace/extra\n");
}

#[test]
fn get_filters_by_label_selector_and_namespace() {
    let env = Env::start();
    seed(&env);
    assert_eq!(env.ok(&["get", "cm", "-l", "app=web", "-o", "name"]), "configmap/web\n");
    assert_eq!(env.ok(&["get", "cm", "-l", "app in (web,db),tier!=front", "-o", "name"]), "configmap/db\n");
    assert_eq!(env.ok(&["get", "cm", "-l", "!tier", "-o", "name"]), "configmap/db\n");
    assert_eq!(env.ok(&["get", "cm", "-n", "extra", "-o", "name"]), "configmap/other\n");

    let all = env.ok(&["get", "cm", "-A", "-l", "app=web"]);
    let rows = cells(&all);
    assert_eq!(rows[0], ["NAMESPACE", "NAME", "DATA", "AGE"], "{all}");
    let found: Vec<(&str, &str)> = rows.iter().skip(1).map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(found, [("default", "web"), ("extra", "other")], "{all}");

    let r = env.run(&["get", "cm", "-l", "app in web"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().starts_with("error: invalid label selector"), "{r}");
}

#[test]
fn get_watch_prints_changes_made_after_it_started() {
    let env = Env::start();
    let path = env.write("a.yaml", &configmap("a", None, &[], &[("k", "v")]));
    env.ok(&["apply", "-f", path.to_str().unwrap()]);

    let mut watch = env.spawn_lines(&["get", "cm", "--watch"]);
    watch.wait_for("with the header", |l| l.starts_with("EVENT"));
    watch.wait_for("listing a", |l| l.split_whitespace().take(3).eq(["ADDED", "a", "1"]));

    // Changes made only now, once the list has been printed.
    env.write("a.yaml", &configmap("a", None, &[], &[("k", "v"), ("k2", "v2")]));
    env.ok(&["apply", "-f", path.to_str().unwrap()]);
    watch.wait_for("showing a with 2 entries", |l| l.split_whitespace().take(3).eq(["MODIFIED", "a", "2"]));

    let b = env.write("b.yaml", &configmap("b", None, &[], &[]));
    env.ok(&["apply", "-f", b.to_str().unwrap()]);
    watch.wait_for("showing the new b", |l| l.split_whitespace().take(2).eq(["ADDED", "b"]));
    // Dropping `watch` kills the process.
}

#[test]
fn get_watch_by_name_in_name_format_skips_other_objects() {
    let env = Env::start();
    seed(&env);
    let mut watch = env.spawn_lines(&["get", "cm", "db", "-w", "-o", "name"]);
    watch.wait_for("listing db", |l| l == "configmap/db");
    env.ok(&["delete", "cm", "web"]);
    env.ok(&["delete", "cm", "db"]);
    let next = watch.wait_for("about db's deletion", |l| !l.is_empty());
    assert_eq!(next, "configmap/db", "web's deletion must not be shown");
}

#[test]
fn describe_shows_metadata_labels_and_spec() {
    let env = Env::start();
    seed(&env);
    let out = env.ok(&["describe", "configmap", "web"]);
    assert!(
        out.starts_with(
            "Name:             web\nNamespace:        default\nKind:             ConfigMap (corral.dev/v1)\n"
        ),
        "{out}"
    );
    assert!(out.contains("Labels:           app=web\n                  tier=front\n"), "{out}");
    assert!(out.contains("Annotations:      <none>\n"), "the last-applied annotation is noise: {out}");
    assert!(out.contains("Spec:\n  data:\n    a: '1'\n    b: '2'\n"), "{out}");
    let r = env.run(&["describe", "cm", "nope"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("ConfigMap \"nope\" not found in namespace \"default\""), "{r}");
}

#[test]
fn explain_walks_nested_fields_and_names_unknown_paths() {
    let env = Env::start();
    let out = env.ok(&["explain", "configmap.spec.data"]);
    assert!(out.contains("KIND:     ConfigMap\n"), "{out}");
    assert!(out.contains("FIELD:    data <map[string]string>\n"), "{out}");
    assert!(out.contains("Configuration entries"), "{out}");

    let meta = env.ok(&["explain", "CM.metadata"]);
    assert!(meta.contains("FIELDS:\n"), "{meta}");
    assert!(meta.lines().any(|l| l.trim_start().starts_with("labels") && l.ends_with("<map[string]string>")), "{meta}");

    let owner = env.ok(&["explain", "cm.metadata.ownerReferences.uid"]);
    assert!(owner.contains("FIELD:    uid <string>"), "{owner}");

    let r = env.run(&["explain", "configmap.spec.colour"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().starts_with("error: field \"spec.colour\" does not exist in ConfigMap"), "{r}");
}

#[test]
fn api_resources_lists_kinds_with_short_names() {
    let env = Env::start();
    let out = env.ok(&["api-resources"]);
    let rows = cells(&out);
    assert_eq!(rows[0], ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], "{out}");
    assert!(
        rows.contains(&["configmaps", "cm", "corral.dev/v1", "true", "ConfigMap"].map(String::from).to_vec()),
        "{out}"
    );
    assert!(
        rows.contains(&["namespaces", "ns", "corral.dev/v1", "false", "Namespace"].map(String::from).to_vec()),
        "{out}"
    );
}

#[test]
fn errors_say_what_and_what_to_do_without_debug_output() {
    let env = Env::start();
    let r = env.run(&["get", "widgets"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().starts_with("error: the server does not serve a kind called \"widgets\""), "{r}");
    assert!(r.stderr().contains("corral api-resources"), "{r}");

    // A port nothing listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r = cli_support::Run(
        std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["--server", &format!("http://127.0.0.1:{port}"), "get", "cm"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code(), 1, "{r}");
    let err = r.stderr();
    assert!(err.starts_with("error: cannot connect to the Corral server at http://127.0.0.1:"), "{r}");
    assert!(err.contains("corral up"), "{r}");
    assert!(!err.contains("Error {") && !err.contains("kind:"), "no debug formatting: {r}");
    assert_eq!(err.lines().count(), 1, "{r}");
}

#[test]
fn get_selects_by_field_and_rejects_a_bad_field_selector() {
    let env = Env::start();
    seed(&env);
    assert_eq!(env.ok(&["get", "cm", "-A", "--field-selector", "metadata.name=web", "-o", "name"]), "configmap/web\n");
    assert_eq!(
        env.ok(&["get", "cm", "-A", "--field-selector", "metadata.namespace!=default", "-o", "name"]),
        "configmap/other\n"
    );
    let r = env.run(&["get", "cm", "--field-selector", "metadata.name"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("metadata.name") && r.stderr().contains("field selector"), "{r}");
}
