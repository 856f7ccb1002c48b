//! `corral convert marathon` and `corral convert metronome` driven through the real
//! binary: Marathon apps become Service manifests, Metronome jobs Job manifests, that
//! the real server accepts; what cannot be carried is named on stderr; files that are
//! not definitions are errors naming the file.

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

/// `corral convert metronome`: Metronome jobs become Job manifests the real server
/// accepts and whose schedules the real jobs controller reads as Metronome did; what
/// cannot be carried is named on stderr; files that are not jobs are errors naming
/// the file.
mod metronome {
    use std::path::{Path, PathBuf};

    use chrono::{DateTime, Datelike as _, Timelike as _, Utc, Weekday};
    use corral_api::kinds::Job;
    use corral_api::kinds::job::{ConcurrencyPolicy, RestartPolicy};
    use corral_testkit::eventually_blocking;
    use serde_json::Value;

    use super::{Env, corral, text};

    /// `examples/metronome/NAME`.
    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/metronome").join(name)
    }

    /// Every YAML document of `yaml`, as a Job.
    fn jobs(yaml: &str) -> Vec<Job> {
        serde_norway::Deserializer::from_str(yaml)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("not a Job: {e}\n{yaml}")))
            .collect()
    }

    /// Converts the example `name`; requires exit 0. Returns the YAML and the stderr lines.
    fn convert_example(name: &str) -> (String, Vec<String>) {
        let path = example(name);
        let out = corral(&["convert", "metronome", path.to_str().unwrap()], "");
        assert_eq!(out.status.code(), Some(0), "stdout:\n{}stderr:\n{}", text(&out.stdout), text(&out.stderr));
        (text(&out.stdout), text(&out.stderr).lines().map(str::to_string).collect())
    }

    /// Applies `yaml` to the server, requiring `job/NAME created`, and waits for the jobs
    /// controller to say when the job's first schedule is next due. Returns the stored job
    /// and that time.
    fn apply_and_schedule(env: &Env, yaml: &str, name: &str) -> (Value, DateTime<Utc>) {
        let r = env.run_stdin(&["apply", "-f", "-"], yaml);
        assert_eq!(r.code(), 0, "{r}");
        assert_eq!(r.stdout(), format!("job/{name} created\n"));
        let stored = eventually_blocking(&format!("job {name} has a next schedule time"), || {
            let got: Value = serde_json::from_str(&env.ok(&["get", "job", name, "-o", "json"])).unwrap();
            got.pointer("/status/schedules/0/nextScheduleTime").and_then(Value::as_str).is_some().then_some(got)
        });
        let status = &stored["status"]["schedules"][0];
        assert!(status.get("error").is_none_or(Value::is_null), "the controller reads the schedule: {stored:#}");
        let next = status["nextScheduleTime"].as_str().unwrap_or_default();
        let next = DateTime::parse_from_rfc3339(next).unwrap_or_else(|e| panic!("{next:?}: {e}")).with_timezone(&Utc);
        (stored, next)
    }

    #[test]
    fn example_jobs_convert_to_jobs_the_server_accepts_and_schedules_as_metronome_did() {
        let env = Env::start();

        // A nightly backup at 02:30 in Berlin.
        let (yaml, stderr) = convert_example("nightly-backup.json");
        let warnings: Vec<_> = stderr.iter().filter(|l| l.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 1, "only the dotted id changes: {stderr:#?}");
        assert!(
            warnings[0].contains("field `id`: \"prod.db.nightly-backup\" became the name \"prod-db-nightly-backup\"")
        );
        assert!(stderr.iter().any(|l| l.contains("field `run.docker.image`") && l.contains("corral image import")));
        let [job] = jobs(&yaml).try_into().unwrap_or_else(|j: Vec<Job>| panic!("{} jobs", j.len()));
        assert_eq!(job.metadata.labels.get("team").map(String::as_str), Some("storage"));
        let (stored, next) = apply_and_schedule(&env, &yaml, "prod-db-nightly-backup");
        let spec = &stored["spec"];
        let task = &spec["run"]["task"];
        assert_eq!(task["image"], "postgres:16");
        assert_eq!((task["command"][0].as_str(), task["command"][1].as_str()), (Some("/bin/sh"), Some("-c")));
        assert!(task["command"][2].as_str().unwrap_or_default().starts_with("pg_dump "), "{task:#}");
        assert_eq!((task["resources"]["cpus"].as_f64(), task["resources"]["mem"].as_u64()), (Some(0.5), Some(512)));
        assert_eq!(task["resources"]["disk"], 2048);
        assert_eq!((task["user"].as_str(), task["killGracePeriodSeconds"].as_u64()), (Some("nobody"), Some(60)));
        assert_eq!(task["artifacts"][0]["extract"], true, "a .tgz is unpacked, as Mesos did");
        assert_eq!(task["env"]["BUCKET"], "https://backups.example.com/orders");
        assert_eq!(spec["run"]["restartPolicy"], "NEVER");
        let schedule = &spec["schedules"][0];
        assert_eq!((schedule["id"].as_str(), schedule["cron"].as_str()), (Some("nightly"), Some("30 2 * * *")));
        assert_eq!(schedule["timeZone"], "Europe/Berlin");
        assert_eq!(
            (schedule["startingDeadlineSeconds"].as_u64(), schedule["enabled"].as_bool()),
            (Some(3600), Some(true))
        );
        assert_eq!(
            stored["metadata"]["annotations"]["corral.dev/description"],
            "Dumps the orders database every night at 02:30 Berlin time and uploads the dump"
        );
        // 02:30 in Berlin is 00:30 or 01:30 UTC, by the season.
        assert!(matches!((next.hour(), next.minute()), (0 | 1, 30)), "{next}");

        // A weekly report, retried for two hours, placed by constraints.
        let (yaml, stderr) = convert_example("report-with-retries.json");
        assert!(!stderr.iter().any(|l| l.starts_with("warning:")), "nothing is lost: {stderr:#?}");
        assert!(
            stderr.iter().any(|l| l.starts_with("note: ")
                && l.contains("field `run.restart.policy`: Metronome retries a failed run without a limit")
                && l.contains("retryLimit is 1000")),
            "{stderr:#?}"
        );
        let [job] = jobs(&yaml).try_into().unwrap_or_else(|j: Vec<Job>| panic!("{} jobs", j.len()));
        assert_eq!(job.spec.run.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(job.spec.schedules[0].concurrency_policy, ConcurrencyPolicy::Allow);
        let (stored, next) = apply_and_schedule(&env, &yaml, "sales-report");
        let run = &stored["spec"]["run"];
        assert_eq!(run["restartPolicy"], "ON_FAILURE");
        assert_eq!((run["retryLimit"].as_u64(), run["activeDeadlineSeconds"].as_u64()), (Some(1000), Some(7200)));
        assert_eq!(run["constraints"][0], serde_json::json!(["rack", "IS", "rack-2"]), "Metronome's EQ is IS");
        assert_eq!(run["constraints"][1], serde_json::json!(["hostname", "UNLIKE", "spot-.*"]));
        assert_eq!(run["task"]["args"], serde_json::json!(["report", "--week", "last", "--out", "/reports"]));
        assert!(run["task"].get("command").is_none(), "args follow the image's entrypoint: {run:#}");
        // Monday 06:00 in New York is Monday 10:00 or 11:00 UTC.
        assert_eq!(next.weekday(), Weekday::Mon, "{next}");
        assert!(matches!((next.hour(), next.minute()), (10 | 11, 0)), "{next}");

        // The legacy job: day of the month and weekday both restrict, as they did in
        // Metronome: the first Monday of a month, at 04:00 UTC.
        let (yaml, _) = convert_example("legacy-etl.json");
        let (stored, next) = apply_and_schedule(&env, &yaml, "data-legacy-etl");
        assert_eq!(stored["spec"]["schedules"][0]["cron"], "0 4 1-7 * +1");
        assert_eq!((next.weekday(), next.hour(), next.minute()), (Weekday::Mon, 4, 0), "{next}");
        assert!(next.day() <= 7, "{next}");
    }

    #[test]
    fn fields_that_cannot_be_carried_are_named_on_stderr() {
        let (yaml, stderr) = convert_example("legacy-etl.json");
        let [job] = jobs(&yaml).try_into().unwrap_or_else(|j: Vec<Job>| panic!("{} jobs", j.len()));
        let task = &job.spec.run.task;
        assert_eq!(task.resources.mem, 4097);
        assert_eq!(task.env.keys().collect::<Vec<_>>(), ["MODE"], "the secret is left out");
        assert!(!task.artifacts[0].extract, "a .zip is kept as it is");
        assert_eq!(job.spec.run.retry_limit, 1000);
        assert_eq!(job.spec.schedules[0].id, "first-monday-of-the");

        let file = example("legacy-etl.json").display().to_string();
        let expected = [
            "warning: FILE: field `id`: \"data.legacy-etl\" became the name \"data-legacy-etl\": names are RFC 1123 \
             labels (lowercase letters, digits and '-')",
            "warning: FILE: field `run.docker.forcePullImage`: not converted: images are imported with `corral image \
             import`, not pulled",
            "warning: FILE: field `run.docker.privileged`: not converted: Corral runs no privileged containers",
            "warning: FILE: field `run.docker.parameters`: not converted: tasks run in runc, not Docker: Docker options \
             do not apply",
            "warning: FILE: field `run.gpus`: not converted: 1: Corral offers no GPUs",
            "warning: FILE: field `run.mem`: 4096.5 became 4097 MiB: Corral counts whole MiB",
            "warning: FILE: field `run.env.DB_PASSWORD`: not converted: a reference to the secret \"dbpass\", and Corral \
             has no secrets; set the variable by hand",
            "warning: FILE: field `run.secrets.dbpass`: not converted: the secret store's \"data/etl/db-password\": \
             Corral has no secrets",
            "warning: FILE: field `run.artifacts[0].extract`: not converted: the agent unpacks only .tar, .tar.gz and \
             .tgz archives; this one is kept as it is",
            "warning: FILE: field `run.artifacts[0].cache`: not converted: the agent fetches each task's artifacts anew \
             (no cache)",
            "warning: FILE: field `run.volumes[0]`: not converted: the host's /mnt/data at /data: Corral mounts no host \
             paths, only node-local named volumes (spec.run.task.volumeMounts); add one by hand",
            "warning: FILE: field `run.maxLaunchDelay`: not converted: 7200 s: Corral has no launch deadline; a run \
             waits for a place until its activeDeadlineSeconds (counted from the run's creation) pass, if it has them",
            "warning: FILE: field `run.networks`: not converted: container (dcos): tasks share the host's network (and \
             its ports)",
            "warning: FILE: field `run.cmd`: $MESOS_SANDBOX is not set by Corral: use $CORRAL_SANDBOX",
            "warning: FILE: field `schedules[0].cron`: \"0 4 1-7 * 1\" became \"0 4 1-7 * +1\": Metronome runs on days \
             that match both the day of the month and the weekday, which `+` asks of Corral (otherwise either would do, \
             as in Vixie cron)",
            "warning: FILE: field `schedules[0].id`: \"first-monday-of-the-month\" became \"first-monday-of-the\": \
             schedule ids have at most 20 characters",
            "note: FILE: field `run.restart.policy`: Metronome retries a failed run without a limit, for as long as it \
             takes (it has no activeDeadlineSeconds); Corral counts attempts, so retryLimit is 1000, the most it allows",
        ];
        for line in expected {
            let line = line.replace("FILE", &file);
            assert!(stderr.contains(&line), "missing {line:?} in:\n{}", stderr.join("\n"));
        }
        let warnings = stderr.iter().filter(|l| l.starts_with("warning:")).count();
        assert_eq!(warnings, expected.iter().filter(|l| l.starts_with("warning:")).count(), "{stderr:#?}");
    }

    #[test]
    fn a_list_of_jobs_becomes_one_document_each_or_a_json_list() {
        let list = serde_json::json!([
            {"id": "cleanup", "run": {"cmd": "find /tmp -mtime +7 -delete", "cpus": 0.1, "mem": 32},
             "schedules": [{"id": "hourly", "cron": "0 * * * *"}], "activeRuns": [], "historySummary": {"successCount": 9}},
            {"id": "reindex", "run": {"ucr": {"image": {"id": "search/indexer:5", "kind": "docker"}}, "args": ["--all"]}}
        ]);
        let out = corral(&["convert", "metronome", "-"], &list.to_string());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let converted = jobs(&text(&out.stdout));
        let names: Vec<_> = converted.iter().map(|j| j.metadata.name.as_str()).collect();
        assert_eq!(names, ["cleanup", "reindex"]);
        assert_eq!(converted[0].spec.schedules[0].cron, "0 * * * *");
        assert_eq!(converted[1].spec.run.task.image.as_deref(), Some("search/indexer:5"));
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("warning:"), "state fields are skipped quietly: {stderr}");
        assert!(
            stderr.contains(
                "note: <stdin>: field `[0].run.cmd`: the job has no image: its tasks run natively on the host"
            ),
            "{stderr}"
        );

        let out = corral(&["convert", "metronome", "-", "-o", "json"], &list.to_string());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!((doc["kind"].as_str(), doc["items"].as_array().map(Vec::len)), (Some("List"), Some(2)));
        let one = corral(&["convert", "metronome", "-", "-o", "json"], &list[1].to_string());
        let job: Job = serde_json::from_slice(&one.stdout).expect("one Job as JSON");
        assert_eq!(job.metadata.name, "reindex");
    }

    #[test]
    fn files_that_are_not_jobs_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\n  \"id\": \"backup\",\n  \"run\": {\"cmd\": \"x\" \"cpus\": 1}\n}\n").unwrap();
        let out = corral(&["convert", "metronome", bad.to_str().unwrap()], "");
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with(&format!("error: {}:3:", bad.display())), "line:column of the JSON error: {stderr}");
        assert!(stderr.contains("not valid JSON"), "{stderr}");

        let not_job = dir.path().join("task.json");
        std::fs::write(&not_job, r#"{"apiVersion": "corral.dev/v1", "kind": "Task"}"#).unwrap();
        let out = corral(&["convert", "metronome", not_job.to_str().unwrap()], "");
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(
            stderr
                .starts_with(&format!("error: {}: not a Metronome job definition: `id` is missing", not_job.display())),
            "{stderr}"
        );

        let app = dir.path().join("app.json");
        std::fs::write(&app, r#"{"id": "/web", "cmd": "httpd", "instances": 2}"#).unwrap();
        let out = corral(&["convert", "metronome", app.to_str().unwrap()], "");
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with(&format!("error: {}: not a Metronome job definition", app.display())), "{stderr}");
        assert!(stderr.contains("corral convert marathon"), "{stderr}");

        let out = corral(&["convert", "metronome", "missing.json"], "");
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).starts_with("error: cannot read missing.json: "), "{}", text(&out.stderr));
    }
}
