//! The real kubectl against a real `corral server --tls-auto` (kubectl sends its bearer
//! token over HTTPS only), with the kubeconfig the server writes: discovery, server-side
//! tables, watch, the OpenAPI document (`explain`, server-side field validation),
//! client- and server-side apply, diff, label, annotate, edit, describe, scale and
//! delete.

mod tls_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tls_support::{Proc, corral, tls_server};

/// Runs kubectl against the server whose data dir is `data`: (succeeded, exit code,
/// stdout then stderr).
struct Kubectl {
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    fn new(dir: &Path, data: &Path) -> Kubectl {
        Kubectl { kubeconfig: data.join("admin.conf"), home: dir.to_path_buf() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        // HOME holds kubectl's discovery cache: a fresh one per test.
        c.args(args).env("KUBECONFIG", &self.kubeconfig).env("HOME", &self.home).stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> (bool, Option<i32>, String) {
        let out = self.command(args).output().expect("kubectl runs (scripts/setup.sh installs it)");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), out.status.code(), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, _, out) = self.run(args);
        assert!(ok, "kubectl {args:?} failed: {out}");
        out
    }
}

fn started(dir: &Path) -> (Proc, Kubectl) {
    let (server, kubectl, _) = started_in(dir);
    (server, kubectl)
}

/// The server, kubectl, and the server's data dir.
fn started_in(dir: &Path) -> (Proc, Kubectl, PathBuf) {
    let (server, _listen, data) = tls_server(dir);
    let kubectl = Kubectl::new(dir, &data);
    corral_testkit::eventually_blocking("kubectl discovers the served kinds", || {
        let (ok, _, out) = kubectl.run(&["api-resources"]);
        (ok && out.contains("configmaps")).then_some(())
    });
    (server, kubectl, data)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const CONFIGMAP: &str =
    "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: demo\nspec:\n  data: {greeting: hello}\n";

#[test]
fn kubectl_discovers_lists_in_the_kind_s_columns_applies_labels_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = started(dir.path());
    let resources = kubectl.ok(&["api-resources"]);
    let configmaps = resources.lines().find(|l| l.starts_with("configmaps ")).unwrap_or_default();
    let cells: Vec<&str> = configmaps.split_whitespace().collect();
    assert_eq!(cells, ["configmaps", "cm", "corral.dev/v1", "true", "ConfigMap"], "{resources}");
    assert!(resources.lines().any(|l| l.starts_with("jobs ")), "{resources}");

    let version = kubectl.ok(&["version"]);
    let server_version = format!("Server Version: v{}", env!("CARGO_PKG_VERSION"));
    assert!(version.lines().any(|l| l == server_version), "{version}");

    // Server-side tables: kubectl prints the kind's own columns, as `corral get` does.
    let out = kubectl.ok(&["get", "namespaces"]);
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert!(header == ["NAME", "STATUS", "AGE"], "{out}");
    assert!(out.lines().any(|l| l.split_whitespace().take(2).eq(["default", "Active"])), "{out}");

    // Validated (the default): the server says it checks fields itself.
    let manifest = write(dir.path(), "cm.yaml", CONFIGMAP);
    let out = kubectl.ok(&["apply", "-f", &manifest]);
    assert!(out.contains("configmap.corral.dev/demo created"), "{out}");
    let out = kubectl.ok(&["get", "configmaps"]);
    assert!(out.lines().any(|l| l.starts_with("demo ")), "{out}");
    assert_eq!(kubectl.ok(&["get", "cm", "demo", "-o", "jsonpath={.spec.data.greeting}"]), "hello");
    let yaml = kubectl.ok(&["get", "cm", "demo", "-o", "yaml"]);
    assert!(yaml.contains("kind: ConfigMap") && yaml.contains("greeting: hello"), "{yaml}");
    assert!(kubectl.ok(&["label", "cm", "demo", "tier=web"]).contains("labeled"));
    assert_eq!(kubectl.ok(&["get", "cm", "-l", "tier=web", "-o", "name"]).trim(), "configmap.corral.dev/demo");
    assert!(kubectl.ok(&["annotate", "cm", "demo", "owner=ops"]).contains("annotated"));
    // `edit` is a GET, the user's editor, then a patch.
    let editor = write(dir.path(), "editor.sh", "#!/bin/sh\nsed -i 's/greeting: hello/greeting: edited/' \"$1\"\n");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edited = kubectl.command(&["edit", "cm", "demo"]).env("EDITOR", &editor).output().unwrap();
    assert!(edited.status.success(), "{}", String::from_utf8_lossy(&edited.stderr));
    assert_eq!(kubectl.ok(&["get", "cm", "demo", "-o", "jsonpath={.spec.data.greeting}"]), "edited");
    let described = kubectl.ok(&["describe", "cm", "demo"]);
    assert!(described.contains("tier=web") && described.contains("owner: ops"), "{described}");

    // A field the schema does not have is refused, naming it.
    let typo = write(dir.path(), "typo.yaml", &CONFIGMAP.replace("\n  data:", "\n  dta:"));
    let (ok, _, out) = kubectl.run(&["apply", "-f", &typo]);
    assert!(!ok && out.contains(r#"The ConfigMap "demo" is invalid: spec.dta: unknown field"#), "{out}");
    // Errors reach the user with the server's message (a `v1` Status).
    let (ok, _, out) = kubectl.run(&["get", "cm", "nothere"]);
    assert!(!ok && out.contains(r#"ConfigMap "nothere" not found"#), "{out}");

    assert!(kubectl.ok(&["delete", "cm", "demo"]).contains("deleted"));
    assert!(kubectl.ok(&["get", "configmaps", "-o", "name"]).trim().is_empty());
}

#[test]
fn kubectl_get_watch_prints_each_change_as_a_row_with_its_event_type() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = started(dir.path());
    kubectl.ok(&["apply", "-f", &write(dir.path(), "cm.yaml", CONFIGMAP)]);
    let log = dir.path().join("watch.out");
    let watch = Proc(
        kubectl
            .command(&["get", "cm", "-w", "--output-watch-events"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    // The watch is open once the current object has been listed.
    corral_testkit::eventually_blocking("the watch lists demo", || read().contains("demo").then_some(()));
    kubectl.ok(&["label", "cm", "demo", "tier=web"]);
    kubectl.ok(&["delete", "cm", "demo"]);
    let out = corral_testkit::eventually_blocking("the watch prints the change and the deletion", || {
        let out = read();
        out.lines().any(|l| l.starts_with("DELETED ")).then_some(out)
    });
    drop(watch);
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["EVENT", "NAME", "DATA", "AGE"], "{out}");
    let events: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(events.first(), Some(&"ADDED"), "{out}");
    assert!(events.contains(&"MODIFIED"), "{out}");
    assert!(out.lines().skip(1).all(|l| l.split_whitespace().nth(1) == Some("demo")), "{out}");
}

#[test]
fn kubectl_explain_diff_and_server_side_apply_use_the_served_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = started(dir.path());
    let out = kubectl.ok(&["explain", "tasks.spec.resources"]);
    assert!(out.contains("KIND:       Task") && out.contains("cpus") && out.contains("<number>"), "{out}");
    let out = kubectl.ok(&["explain", "jobs"]);
    assert!(out.contains("FIELDS:") && out.contains("spec"), "{out}");
    // A custom kind is in the document as soon as it is served.
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/crd-example.yaml");
    kubectl.ok(&["apply", "-f", &crd.display().to_string()]);
    let out = corral_testkit::eventually_blocking("kubectl explains the custom kind", || {
        let (ok, _, out) = kubectl.run(&["explain", "widgets.spec.size"]);
        ok.then_some(out)
    });
    assert!(out.contains("How big the widget is, in centimetres."), "{out}");

    // Client-side apply first, then server-side apply of a change: the object keeps
    // its spec (kubectl also applies, as a second manager, its client-side annotation).
    let v1 = write(dir.path(), "v1.yaml", CONFIGMAP);
    let v2 = write(dir.path(), "v2.yaml", &CONFIGMAP.replace("hello", "bonjour"));
    kubectl.ok(&["apply", "-f", &v1]);
    let (_, code, out) = kubectl.run(&["diff", "-f", &v1]);
    assert_eq!(code, Some(0), "no difference: {out}");
    let (_, code, out) = kubectl.run(&["diff", "-f", &v2]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("-    greeting: hello") && out.contains("+    greeting: bonjour"), "{out}");
    assert_eq!(kubectl.ok(&["get", "cm", "demo", "-o", "jsonpath={.spec.data.greeting}"]), "hello", "diff wrote");
    assert!(kubectl.ok(&["apply", "--server-side", "-f", &v2]).contains("serverside-applied"));
    assert_eq!(kubectl.ok(&["get", "cm", "demo", "-o", "jsonpath={.spec.data.greeting}"]), "bonjour");
    let (_, code, out) = kubectl.run(&["diff", "--server-side", "-f", &v2]);
    assert_eq!(code, Some(0), "{out}");
    // Corral's CLI is another field manager: a value kubectl applied conflicts until
    // taken over, and then kubectl's apply conflicts in turn.
    let corral_apply = |extra: &[&str]| {
        let mut c = corral();
        c.arg("--kubeconfig").arg(&kubectl.kubeconfig).args(["apply", "-f", &v1]).args(extra);
        c.output().unwrap()
    };
    let refused = corral_apply(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains(r#".spec.data.greeting: conflict with "kubectl""#),
        "{stderr}"
    );
    assert_eq!(kubectl.ok(&["get", "cm", "demo", "-o", "jsonpath={.spec.data.greeting}"]), "bonjour");
    let forced = corral_apply(&["--force-conflicts"]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    assert_eq!(kubectl.ok(&["get", "cm", "demo", "-o", "jsonpath={.spec.data.greeting}"]), "hello");
    let (ok, code, out) = kubectl.run(&["apply", "--server-side", "-f", &v2]);
    assert!(!ok && code == Some(1) && out.contains(r#"conflict with "corral-cli": .spec.data.greeting"#), "{out}");
    kubectl.ok(&["apply", "--server-side", "--force-conflicts", "-f", &v2]);
    assert_eq!(kubectl.ok(&["get", "cm", "demo", "-o", "jsonpath={.spec.data.greeting}"]), "bonjour");

    // A key dropped from the manifest is dropped from the object.
    let fresh = "apiVersion: corral.dev/v1\nkind: ConfigMap\nmetadata:\n  name: ssa\nspec:\n  data: {a: '1', b: '2'}\n";
    kubectl.ok(&["apply", "--server-side", "-f", &write(dir.path(), "s1.yaml", fresh)]);
    kubectl.ok(&["apply", "--server-side", "-f", &write(dir.path(), "s2.yaml", &fresh.replace(", b: '2'", ""))]);
    assert_eq!(kubectl.ok(&["get", "cm", "ssa", "-o", "jsonpath={.spec.data}"]), r#"{"a":"1"}"#);
}

#[test]
fn kubectl_scales_a_service_and_get_all_lists_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = started(dir.path());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    kubectl.ok(&["apply", "-f", &examples.join("services/web.yaml").display().to_string()]);
    assert!(kubectl.ok(&["scale", "services.corral.dev", "web", "--replicas=5"]).contains("scaled"));
    assert_eq!(kubectl.ok(&["get", "services.corral.dev", "web", "-o", "jsonpath={.spec.instances}"]), "5");
    // A precondition that does not hold changes nothing.
    let (ok, _, out) = kubectl.run(&["scale", "services.corral.dev", "web", "--replicas=1", "--current-replicas=3"]);
    assert!(!ok && out.contains("Expected replicas to be 3, was 5"), "{out}");
    assert_eq!(kubectl.ok(&["get", "services.corral.dev", "web", "-o", "jsonpath={.spec.instances}"]), "5");
    // A kind without a scale subresource cannot be scaled.
    kubectl.ok(&["apply", "-f", &write(dir.path(), "cm.yaml", CONFIGMAP)]);
    let (ok, _, _) = kubectl.run(&["scale", "cm", "demo", "--replicas=2"]);
    assert!(!ok);

    let all = kubectl.ok(&["get", "all"]);
    assert!(all.lines().any(|l| l.starts_with("web ")), "{all}");
    assert!(!all.contains("demo"), "configmaps are not in `all`: {all}");
}

#[test]
fn kubectl_auth_whoami_and_can_i_answer_from_corral_s_rbac() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl, data) = started_in(dir.path());
    let out = kubectl.ok(&["auth", "whoami"]);
    assert!(out.lines().any(|l| l.split_whitespace().eq(["Username", "admin"])), "{out}");
    assert_eq!(kubectl.ok(&["auth", "can-i", "create", "configmaps"]).trim(), "yes");

    // A user no role is bound to (kubectl sends this review as protobuf).
    let token = corral()
        .arg("--kubeconfig")
        .arg(data.join("admin.conf"))
        .args(["token", "create", "--user", "eve", "--ttl", "1h"])
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let out = kubectl.ok(&["--token", &token, "auth", "whoami"]);
    assert!(out.lines().any(|l| l.split_whitespace().eq(["Username", "eve"])), "{out}");
    let (ok, code, out) = kubectl.run(&["--token", &token, "auth", "can-i", "list", "configmaps", "-n", "default"]);
    assert!(!ok && code == Some(1) && out.starts_with("no"), "{out}");
    let (ok, _, out) = kubectl.run(&["--token", &token, "get", "configmaps"]);
    assert!(!ok && out.contains("Forbidden"), "can-i agrees with what the server does: {out}");
}
