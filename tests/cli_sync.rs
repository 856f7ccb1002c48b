//! `corral sync DIR`: a directory applied whole, pruned by what it applied before,
//! and with `--watch`, applied again on every saved change; `corral sync status` and
//! `diff` on it.

mod cli_support;

use cli_support::{Env, configmap};

fn data_of(env: &Env, name: &str) -> Option<String> {
    let r = env.run(&["get", "configmap", name, "-o", "json"]);
    if r.code() != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).expect("json");
    v["spec"]["data"]["k"].as_str().map(str::to_string)
}

#[test]
fn a_directory_is_synced_pruned_and_a_bad_one_changes_nothing() {
    let env = Env::start();
    env.write("site/a.yaml", &configmap("a", None, &[], &[("k", "1")]));
    env.write("site/nested/b.yaml", &configmap("b", None, &[], &[("k", "1")]));
    let out = env.ok(&["sync", "site", "--prune"]);
    assert!(out.contains("sync/site:") && out.contains("2 objects (2 created"), "{out}");
    assert_eq!(data_of(&env, "a").as_deref(), Some("1"));

    // Unchanged: nothing written.
    let out = env.ok(&["sync", "site", "--prune"]);
    assert!(out.contains("0 written"), "{out}");

    // b's file goes: so does b; a bad manifest keeps everything as it was.
    std::fs::remove_file(env.write("site/nested/b.yaml", "")).expect("remove");
    env.write("site/a.yaml", &configmap("a", None, &[], &[("k", "2")]));
    env.write("site/c.yaml", "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: c\nspec:\n  bogus: 1\n");
    let r = env.run(&["sync", "site", "--prune"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stderr().contains("c.yaml") && r.stderr().contains("bogus"), "{r}");
    assert_eq!(data_of(&env, "a").as_deref(), Some("1"), "nothing of a refused revision is applied");
    assert!(data_of(&env, "b").is_some());

    std::fs::remove_file(env.write("site/c.yaml", "")).expect("remove");
    let out = env.ok(&["sync", "site", "--prune"]);
    assert!(out.contains("1 configured") && out.contains("1 pruned"), "{out}");
    assert_eq!(data_of(&env, "a").as_deref(), Some("2"));
    assert_eq!(data_of(&env, "b"), None);

    let status = env.ok(&["sync", "status"]);
    assert!(status.lines().any(|l| l.starts_with("site ") && l.contains("True")), "{status}");
    // The diff of an applied directory is empty (exit 0); an edit shows (exit 1).
    let r = env.run(&["sync", "diff", "site"]);
    assert_eq!(r.code(), 0, "{r}");
    env.write("site/a.yaml", &configmap("a", None, &[], &[("k", "3")]));
    let r = env.run(&["sync", "diff", "site"]);
    assert_eq!(r.code(), 1, "{r}");
    assert!(r.stdout().contains("~ ConfigMap/default/a: spec.data.k"), "{r}");
}

#[test]
fn sync_watch_applies_every_saved_change() {
    let env = Env::start();
    env.write("live/a.yaml", &configmap("watched", None, &[], &[("k", "first")]));
    let mut run = env.spawn_lines(&["sync", "live", "--watch", "--prune"]);
    run.wait_for("the first sync", |l| l.contains("sync/live:") && l.contains("1 created"));
    env.write("live/a.yaml", &configmap("watched", None, &[], &[("k", "second")]));
    run.wait_for("the saved change applied", |l| l.contains("1 configured"));
    assert_eq!(data_of(&env, "watched").as_deref(), Some("second"));
    env.write("live/b.yaml", &configmap("added", None, &[], &[("k", "x")]));
    run.wait_for("the new file applied", |l| l.contains("1 created"));
    assert_eq!(data_of(&env, "added").as_deref(), Some("x"));
}
