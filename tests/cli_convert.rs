//! `corral convert marathon` driven through the real binary: Marathon apps become
//! Service manifests the real server accepts; what cannot be carried is named on
//! stderr; files that are not apps are errors naming the file.

mod cli_support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cli_support::Env;
use corral_api::kinds::Service;

/// `examples/marathon/NAME`.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/marathon").join(name)
}

/// Runs `corral args...` without a server, `stdin` as its input.
fn corral(args: &[&str], stdin: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("CORRAL_SERVER")
        .env_remove("RUST_LOG")
        // No configuration file of the machine's user is read.
        .env("CORRAL_CONFIG", dir.path().join("no-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every YAML document of `yaml`, as a Service.
fn services(yaml: &str) -> Vec<Service> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("not a Service: {e}\n{yaml}")))
        .collect()
}

/// Converts `app` (Marathon JSON), read from stdin; requires exit 0. Returns the
/// services and the stderr lines.
fn convert(app: &serde_json::Value) -> (Vec<Service>, Vec<String>) {
    let out = corral(&["convert", "marathon", "-"], &app.to_string());
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}stderr:\n{}", text(&out.stdout), text(&out.stderr));
    (services(&text(&out.stdout)), text(&out.stderr).lines().map(str::to_string).collect())
}

#[test]
fn example_web_app_converts_to_a_service_the_server_accepts() {
    let path = example("web.json");
    let out = corral(&["convert", "marathon", path.to_str().unwrap()], "");
    let (yaml, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Only the reminder that images are imported, not pulled: nothing is lost.
    assert!(!stderr.contains("warning:"), "{stderr}");
    assert!(stderr.contains("field `container.docker.image`") && stderr.contains("corral image import"), "{stderr}");

    let [svc] = services(&yaml).try_into().unwrap_or_else(|s: Vec<Service>| panic!("{} services", s.len()));
    assert_eq!((svc.metadata.name.as_str(), svc.metadata.namespace.as_deref()), ("web", None));
    assert_eq!(svc.spec.instances, 2);
    let t = &svc.spec.template;
    assert_eq!(t.image.as_deref(), Some("busybox"));
    assert_eq!(t.command[..2], ["/bin/sh", "-c"]);
    assert!(t.command[2].contains("httpd -f -p $PORT0"), "{:?}", t.command);
    assert_eq!((t.ports[0].name.as_str(), t.ports[0].host_port), ("http", None), "port 0: picked from the offer");
    let http = t.health_checks[0].http.as_ref().expect("an HTTP check");
    assert_eq!((http.port_name.as_deref(), http.path.as_deref()), (Some("http"), Some("/index.html")));
    assert_eq!(svc.spec.readiness_check.as_ref().map(|r| r.port_name.as_str()), Some("http"));
    assert_eq!(svc.spec.constraints[0].0, ["hostname", "UNIQUE"]);
    assert_eq!(svc.spec.upgrade_strategy.minimum_health_capacity, 0.5);
    assert_eq!(svc.metadata.labels.get("app").map(String::as_str), Some("web"));

    // The server validates it against the schema it serves.
    let env = Env::start();
    let r = env.run_stdin(&["apply", "--dry-run", "-f", "-"], &yaml);
    assert_eq!(r.code(), 0, "{r}");
    assert_eq!(r.stdout(), "service/web created (dry run)\n");

    // JSON too, for machines.
    let out = corral(&["convert", "marathon", path.to_str().unwrap(), "-o", "json"], "");
    let svc: Service = serde_json::from_slice(&out.stdout).expect("one Service as JSON");
    assert_eq!(svc.metadata.name, "web");
}

#[test]
fn fields_that_cannot_be_carried_are_named_on_stderr() {
    let app = serde_json::json!({
        "id": "/prod/My_App",
        "cmd": "cd $MESOS_SANDBOX && exec ./server",
        "mem": 32.5,
        "container": {"type": "DOCKER", "docker": {"image": "nginx:1.25"},
            "volumes": [{"containerPath": "/data", "hostPath": "/srv", "mode": "RW"}]},
        "portDefinitions": [{"port": 10000}],
        "env": {"MODE": "prod", "DB_PASSWORD": {"secret": "db"}},
        "healthChecks": [{"protocol": "HTTPS", "portIndex": 0}, {"protocol": "COMMAND", "command": {"value": "true"}}],
        "constraints": ["hostname:UNIQUE"],
        "labels": {"HAPROXY_0_VHOST": "web.example.com", "owner": "team a"},
        "acceptedResourceRoles": ["slave_public"],
        "killSelection": "OLDEST_FIRST",
        "unreachableStrategy": "disabled",
        "version": "2024-01-01T00:00:00.000Z",
        "tasksRunning": 3
    });
    let (svcs, stderr) = convert(&app);
    let svc = &svcs[0];
    assert_eq!((svc.metadata.name.as_str(), svc.metadata.namespace.as_deref()), ("my-app", Some("prod")));
    assert_eq!(svc.spec.template.resources.mem, 33);
    assert_eq!(svc.spec.template.env.len(), 1, "the secret is left out");
    assert_eq!(svc.spec.template.health_checks.len(), 1, "the HTTPS check is left out");
    assert_eq!(svc.spec.template.ports[0].name, "port0", "a name is made up for an unnamed port");
    assert_eq!(svc.spec.constraints[0].0, ["hostname", "UNIQUE"], "the legacy string form");
    assert_eq!(svc.metadata.labels.get("owner").map(String::as_str), Some("team-a"));

    let expected = [
        "warning: <stdin>: field `id`: \"My_App\" became the name \"my-app\": names are RFC 1123 labels",
        "note: <stdin>: field `id`: the group /prod became the namespace \"prod\", which must exist before the \
         service is applied",
        "warning: <stdin>: field `container.volumes`: not converted: Corral mounts node-local named volumes \
         (spec.template.volumeMounts); add them by hand",
        "warning: <stdin>: field `portDefinitions[0].port`: not converted: service port 10000: Corral has no service \
         ports; the host port is picked from the offer (give hostPort for a fixed one, as requirePorts did)",
        "warning: <stdin>: field `mem`: 32.5 became 33 MiB: Corral counts whole MiB",
        "warning: <stdin>: field `env.DB_PASSWORD`: not converted: a secret reference, and Corral has no secrets; \
         set the variable by hand",
        "warning: <stdin>: field `healthChecks[0]`: not converted: HTTPS checks are not supported (Corral's HTTP \
         checks speak plain HTTP); use a TCP or command check",
        "warning: <stdin>: field `labels.owner`: the value \"team a\" became \"team-a\": label values are at most 63 \
         letters, digits, '-', '_' and '.'",
        "warning: <stdin>: field `cmd`: $MESOS_SANDBOX is not set by Corral: use $CORRAL_SANDBOX",
        "warning: <stdin>: field `acceptedResourceRoles`: not converted: a service takes the resources of one role: \
         set spec.role",
    ];
    for line in expected {
        assert!(stderr.iter().any(|l| l == line), "missing {line:?} in:\n{}", stderr.join("\n"));
    }
    let warnings = stderr.iter().filter(|l| l.starts_with("warning:")).count();
    assert_eq!(warnings, expected.iter().filter(|l| l.starts_with("warning:")).count(), "{stderr:#?}");
    assert!(!stderr.iter().any(|l| l.contains("tasksRunning") || l.contains("`version`")), "state is not definition");
}

#[test]
fn a_group_becomes_one_document_per_app() {
    let group = serde_json::json!({"id": "/shop", "apps": [
        {"id": "web", "cmd": "./web", "instances": 3},
        {"id": "/shop/worker", "cmd": "./worker", "instances": 0}
    ]});
    let (svcs, stderr) = convert(&group);
    let names: Vec<_> =
        svcs.iter().map(|s| (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone())).collect();
    assert_eq!(names, [("shop".to_string(), "web".to_string()), ("shop".to_string(), "worker".to_string())]);
    assert_eq!((svcs[0].spec.instances, svcs[1].spec.instances), (3, 0));
    assert!(stderr.iter().all(|l| l.starts_with("note:")), "{stderr:#?}");
}

#[test]
fn files_that_are_not_apps_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"id\": \"/web\",\n  \"cmd\": \"x\" \"mem\": 1\n}\n").unwrap();
    let out = corral(&["convert", "marathon", bad.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with(&format!("error: {}:3:", bad.display())), "line:column of the JSON error: {stderr}");
    assert!(stderr.contains("not valid JSON"), "{stderr}");

    let not_app = dir.path().join("task.json");
    std::fs::write(&not_app, r#"{"apiVersion": "corral.dev/v1", "kind": "Task"}"#).unwrap();
    let out = corral(&["convert", "marathon", not_app.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("error: {}: not a Marathon app definition: `id` is missing", not_app.display())),
        "{stderr}"
    );

    let out = corral(&["convert", "marathon", "missing.json"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: cannot read missing.json: "), "{}", text(&out.stderr));
}
