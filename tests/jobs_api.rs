//! Jobs without an agent: `Job` and `JobRun` are served, validated against their
//! published schemas and admitted as the tasks they will launch would be; schedules
//! start runs named after their times; a time missed while the control plane was down
//! runs once when it is back, if its starting deadline allows.

mod api_support;

use api_support::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const JOBS: &str = "/apis/corral.dev/v1/namespaces/default/jobs";
const RUNS: &str = "/apis/corral.dev/v1/namespaces/default/jobruns";

fn job(name: &str) -> Value {
    json!({"apiVersion": "corral.dev/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
        "spec": {"run": {"task": {"command": ["sh", "-c", "echo hello"], "resources": {"cpus": 0.1, "mem": 32}},
                         "restartPolicy": "ON_FAILURE", "retryLimit": 3, "activeDeadlineSeconds": 120},
                 "schedules": [{"id": "nightly", "cron": "0 30 2 * * *", "timeZone": "Europe/Berlin",
                                "concurrencyPolicy": "FORBID"}]}})
}

/// A control plane whose nodes (registered by hand, without agents) are never
/// judged unreachable.
async fn server() -> TestServer {
    TestServer::start_with(|o| {
        o.without("node-lifecycle");
    })
    .await
}

#[tokio::test]
async fn a_job_is_stored_with_its_defaults_and_a_bad_one_is_refused_naming_the_field() {
    let s = server().await;
    let (code, out) = s.post(JOBS, &job("backup")).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let (code, stored) = s.get(&format!("{JOBS}/backup")).await;
    assert_eq!(code, StatusCode::OK, "{stored}");
    assert_eq!(stored["spec"]["schedules"][0]["cron"], "0 30 2 * * *");

    let mut bad = job("bad");
    bad["spec"]["schedules"][0]["concurrencyPolicy"] = json!("SOMETIMES");
    bad["spec"]["run"]["retryLimit"] = json!(0);
    let (code, out) = s.post(JOBS, &bad).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let text = out.to_string();
    assert!(text.contains("concurrencyPolicy") && text.contains("retryLimit"), "{out}");
    let (code, _) = s.get(&format!("{JOBS}/bad")).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "a refused job changes nothing");

    // Runs and their tasks are named after the job: a name that leaves no room is
    // refused now rather than failing at each run.
    let (code, out) = s.post(JOBS, &job(&"n".repeat(41))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out.to_string().contains("metadata.name") && out.to_string().contains("at most 40"), "{out}");
    let mut two = job(&"t".repeat(30));
    two["spec"]["schedules"] = json!([{"id": "a", "cron": "* * * * *"}, {"id": "rather-long-id", "cron": "* * * * *"}]);
    let (code, out) = s.post(JOBS, &two).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out.to_string().contains("spec.schedules[1].id") && !out.to_string().contains("schedules[0]"), "{out}");

    let run = json!({"apiVersion": "corral.dev/v1", "kind": "JobRun",
        "metadata": {"name": "backup-by-hand", "namespace": "default"}, "spec": {"job": "backup"}});
    let (code, out) = s.post(RUNS, &run).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
}

#[tokio::test]
async fn a_job_leaves_placement_to_the_scheduler_and_obeys_its_namespace_policy() {
    let s = server().await;
    let mut pinned = job("pinned");
    pinned["spec"]["run"]["task"]["nodeName"] = json!("n1");
    pinned["spec"]["run"]["task"]["role"] = json!("batch");
    let (code, out) = s.post(JOBS, &pinned).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let text = out.to_string();
    assert!(text.contains("spec.run.task.nodeName") && text.contains("spec.run.role"), "{out}");

    let ns = json!({"apiVersion": "corral.dev/v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    let (code, out) = s.post("/apis/corral.dev/v1/namespaces", &ns).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let mut native = job("native");
    native["metadata"]["namespace"] = json!("shop");
    let (code, out) = s.post("/apis/corral.dev/v1/namespaces/shop/jobs", &native).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "a restricted namespace refuses a native run template at once: {out}");
    assert!(out.to_string().contains("spec.run.task.image"), "{out}");
    // A run carrying its own template is judged the same way.
    let run = json!({"apiVersion": "corral.dev/v1", "kind": "JobRun",
        "metadata": {"name": "r", "namespace": "shop"},
        "spec": {"job": "native", "run": native["spec"]["run"].clone()}});
    let (code, out) = s.post("/apis/corral.dev/v1/namespaces/shop/jobruns", &run).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{out}");
}

#[tokio::test]
async fn a_seconds_cron_schedule_starts_runs_named_after_their_times() {
    let s = server().await;
    let mut tick = job("tick");
    tick["spec"]["schedules"] = json!([{"id": "tick", "cron": "*/2 * * * * *"}]);
    let (code, out) = s.post(JOBS, &tick).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let runs = s
        .wait_for(RUNS, "two runs started by the schedule", |v| v["items"].as_array().is_some_and(|i| i.len() >= 2))
        .await;
    for r in runs["items"].as_array().into_iter().flatten() {
        let due = r["spec"]["trigger"]["scheduledTime"].as_str().unwrap_or_default();
        let stamp: String = due.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(r["metadata"]["name"].as_str(), Some(format!("tick-{stamp}").as_str()), "{r:#}");
        assert_eq!(r["metadata"]["ownerReferences"][0]["name"], "tick", "{r:#}");
        assert_eq!(r["spec"]["run"]["restartPolicy"], "ON_FAILURE", "the run carries the job's template: {r:#}");
    }
    let job = s.wait_for(&format!("{JOBS}/tick"), "the job's status", |j| j["status"]["lastRun"].is_string()).await;
    assert!(job["status"]["schedules"][0]["nextScheduleTime"].is_string(), "{job:#}");

    // `corral get jobs`: schedule, last run, result, next run.
    let args =
        ["--server".to_string(), s.base.clone(), "--token".into(), s.token().to_string(), "get".into(), "jobs".into()];
    let got = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_corral")).args(&args).output().expect("corral get jobs")
    })
    .await
    .expect("corral get jobs ran");
    let out = String::from_utf8_lossy(&got.stdout);
    let header: Vec<&str> =
        out.lines().next().unwrap_or_default().split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["NAME", "SCHEDULE", "LAST RUN", "RESULT", "NEXT RUN", "AGE"], "{out}");
    let row = out.lines().find(|l| l.starts_with("tick ")).unwrap_or_default();
    assert!(row.contains("*/2 * * * * *") && row.contains("tick-"), "{out}");
}

#[tokio::test]
async fn a_time_missed_while_the_control_plane_was_down_runs_once_when_it_is_back_if_its_deadline_allows() {
    let s = server().await;
    // Two jobs due once a day at the same second, a few seconds from now (beyond the
    // 5 s ahead of it that a run is staged): one may start up to 15 minutes late, the
    // other only 1 second late.
    let due = chrono::Utc::now() + chrono::Duration::seconds(12);
    let staged_from = due - chrono::Duration::seconds(5);
    let cron = due.format("%-S %-M %-H * * *").to_string();
    let due_at = due.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut late = job("late");
    late["spec"]["schedules"] = json!([{"id": "daily", "cron": cron, "startingDeadlineSeconds": 900}]);
    let mut strict = job("strict");
    strict["spec"]["schedules"] = json!([{"id": "daily", "cron": cron, "startingDeadlineSeconds": 1}]);
    for j in [&late, &strict] {
        let (code, out) = s.post(JOBS, j).await;
        assert_eq!(code, StatusCode::CREATED, "{out}");
        let name = j["metadata"]["name"].as_str().unwrap_or_default();
        s.wait_for(&format!("{JOBS}/{name}"), "the job's next time", |v| v["status"]["nextRunTime"] == due_at).await;
    }
    // Down across the due time, and back three seconds after it.
    let back = tokio::time::Instant::now() + (due - chrono::Utc::now()).to_std().unwrap_or_default();
    let s = s
        .restart_after(async {
            assert!(chrono::Utc::now() < staged_from, "the control plane went down before {due_at} was staged");
            tokio::time::sleep_until(back + std::time::Duration::from_secs(3)).await;
        })
        .await;
    let runs = s
        .wait_for(RUNS, "the missed run of late", |v| {
            v["items"].as_array().is_some_and(|i| i.iter().any(|r| r["spec"]["job"] == "late"))
        })
        .await;
    let stamp: String = due_at.chars().filter(char::is_ascii_digit).collect();
    let run = format!("late-{stamp}");
    let of = |job: &str| -> Vec<Value> {
        runs["items"].as_array().into_iter().flatten().filter(|r| r["spec"]["job"] == job).cloned().collect()
    };
    assert_eq!(of("late").len(), 1, "{runs:#}");
    assert_eq!(of("late")[0]["metadata"]["name"], run.as_str(), "{runs:#}");
    assert_eq!(of("late")[0]["spec"]["trigger"]["scheduledTime"], due_at.as_str(), "{runs:#}");
    let said = s
        .wait_for(&format!("{RUNS}/{run}"), "the run to say it started late", |r| {
            r["status"]["message"].as_str().is_some_and(|m| m.contains("late"))
        })
        .await;
    assert!(said["status"]["message"].as_str().unwrap_or_default().contains(&format!("due at {due_at}")), "{said:#}");
    // Past its deadline: not run, counted as missed.
    let strict = s
        .wait_for(&format!("{JOBS}/strict"), "strict to count its missed time", |j| {
            j["status"]["schedules"][0]["missed"] == 1
        })
        .await;
    assert!(strict["status"]["lastRun"].is_null(), "{strict:#}");
    // Once, not once per restart: after another restart the time is not run again.
    let s = s.restart().await;
    // The controller has been round once it answers a job created now.
    let (code, out) = s.post(JOBS, &job("probe")).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    s.wait_for(&format!("{JOBS}/probe"), "the controller to see a new job", |j| j["status"]["nextRunTime"].is_string())
        .await;
    let job = s
        .wait_for(&format!("{JOBS}/late"), "late's status after the second restart", |j| {
            j["status"]["schedules"][0]["lastScheduleTime"] == due_at.as_str()
                && j["metadata"]["generation"] == j["status"]["observedGeneration"]
        })
        .await;
    let (_, runs) = s.get(RUNS).await;
    let kept: Vec<&Value> =
        runs["items"].as_array().into_iter().flatten().filter(|r| r["spec"]["job"] == "late").collect();
    assert_eq!(kept.len(), 1, "{runs:#} {job:#}");
    let (_, runs) = s.get(RUNS).await;
    assert!(!runs["items"].as_array().into_iter().flatten().any(|r| r["spec"]["job"] == "strict"), "{runs:#}");
}

#[tokio::test]
async fn the_example_jobs_apply_and_their_schedules_are_read() {
    let s = server().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs");
    let args = ["--server".to_string(), s.base.clone(), "--token".into(), s.token().to_string(), "apply".into()]
        .into_iter()
        .chain(["-f".to_string(), dir.display().to_string()])
        .collect::<Vec<_>>();
    let applied = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_corral")).args(&args).output().expect("corral apply")
    })
    .await
    .expect("corral apply ran");
    let out = String::from_utf8_lossy(&applied.stdout);
    assert!(applied.status.success(), "{out}{}", String::from_utf8_lossy(&applied.stderr));
    assert!(out.contains("job/hello") && out.contains("job/tick"), "{out}");
    let tick = s
        .wait_for(&format!("{JOBS}/tick"), "tick's schedules read", |j| {
            j["status"]["schedules"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|s| s["nextScheduleTime"].is_string()))
        })
        .await;
    let nightly = tick["status"]["schedules"][1]["nextScheduleTime"].as_str().unwrap_or_default();
    // 02:30 in Berlin is 00:30 or 01:30 UTC, by the season.
    assert!(nightly.ends_with("T00:30:00Z") || nightly.ends_with("T01:30:00Z"), "{tick:#}");
    let (_, hello) = s.get(&format!("{JOBS}/hello")).await;
    assert!(hello["status"]["nextRunTime"].is_null(), "a job without schedules runs only when asked: {hello:#}");
}

#[tokio::test]
async fn a_run_that_cannot_be_placed_says_why() {
    let s = server().await;
    s.register_node("small", 1.0, 1024).await;
    let mut big = job("big");
    big["spec"]["schedules"] = json!([]);
    big["spec"]["run"]["task"]["resources"] = json!({"cpus": 8, "mem": 64});
    let (code, out) = s.post(JOBS, &big).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let run = json!({"apiVersion": "corral.dev/v1", "kind": "JobRun",
        "metadata": {"name": "big-1", "namespace": "default"}, "spec": {"job": "big"}});
    let (code, out) = s.post(RUNS, &run).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let waiting = s
        .wait_for(&format!("{RUNS}/big-1"), "the run to say why it waits", |r| {
            r["status"]["waiting"]["message"].as_str().is_some_and(|m| m.contains("cpus"))
        })
        .await;
    assert_eq!(waiting["status"]["phase"], "Pending", "{waiting:#}");
    assert!(waiting["status"]["attempts"].as_array().is_none_or(Vec::is_empty), "nothing launched: {waiting:#}");
}

#[tokio::test]
async fn a_run_is_staged_on_its_node_before_its_time_and_cancelled_with_its_task_when_its_schedule_is_disabled() {
    let s = server().await;
    // A node and no agent: a staged task is placed there and never started.
    s.register_node("n1", 4.0, 4096).await;
    let schedule = |enabled: bool| json!([{"id": "tick", "cron": "*/10 * * * * *", "enabled": enabled}]);
    let mut tick = job("tick");
    tick["spec"]["schedules"] = schedule(true);
    let (code, out) = s.post(JOBS, &tick).await;
    assert_eq!(code, StatusCode::CREATED, "{out}");
    let time = |v: &Value, at: &str| {
        v.pointer(at).and_then(Value::as_str).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    // A run made ahead of its time, with a few seconds of it left to act in.
    let runs = s
        .wait_for(RUNS, "a run staged ahead of its time", |v| {
            let soon = chrono::Utc::now() + chrono::Duration::seconds(3);
            v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| time(r, "/spec/trigger/scheduledTime") > Some(soon.into()))
        })
        .await;
    let soon = chrono::Utc::now() + chrono::Duration::seconds(2);
    let run = runs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| time(r, "/spec/trigger/scheduledTime") > Some(soon.into()))
        .cloned()
        .expect("the staged run");
    let name = run["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let due = run["spec"]["trigger"]["scheduledTime"].as_str().unwrap_or_default().to_string();
    let tasks_path = format!("/apis/corral.dev/v1/namespaces/default/tasks?labelSelector=corral.dev/job-run={name}");
    let tasks = s
        .wait_for(&tasks_path, "the staged run's task, placed", |v| {
            v["items"].as_array().is_some_and(|i| i.len() == 1 && i[0]["spec"]["nodeName"] == "n1")
        })
        .await;
    let task = &tasks["items"][0];
    assert_eq!(task["spec"]["startAt"], due.as_str(), "its node starts it at its time: {task:#}");
    let job = s
        .wait_for(&format!("{JOBS}/tick"), "the job to name the staged time", |j| {
            j["status"]["nextRunTime"] == due.as_str()
        })
        .await;
    assert_ne!(job["status"]["lastRun"], name.as_str(), "a staged run is the next run, not the last: {job:#}");

    // Disabled before that time: the run and its task go, as if never made.
    // (A merge patch: the controller writes the job's status meanwhile.)
    let off = json!({"spec": {"schedules": schedule(false)}}).to_string();
    let (code, out) = s.patch(&format!("{JOBS}/tick"), "application/merge-patch+json", &off).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    // Its node's agent lets go of it (none runs here: it waits for it, being deleted).
    s.wait_for(&tasks_path, "the cancelled run's task to be deleted", |v| {
        v["items"].as_array().is_some_and(|i| i.iter().all(|t| t["metadata"]["deletionTimestamp"].is_string()))
    })
    .await;
    s.wait_for(RUNS, "the cancelled run to go", |v| {
        !v["items"].as_array().into_iter().flatten().any(|r| r["metadata"]["name"] == name.as_str())
    })
    .await;
    let job = s
        .wait_for(&format!("{JOBS}/tick"), "the schedule to go on from before its staged time", |j| {
            time(j, "/status/schedules/0/lastScheduleTime")
                .is_some_and(|t| Some(t) < time(&run, "/spec/trigger/scheduledTime"))
        })
        .await;
    assert!(job["status"]["schedules"][0]["missed"] == 0, "{job:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_a_hollow_node_end_as_their_tasks_environment_says() {
    use corral_bench::hollow::{EXIT_AFTER_ENV, HollowOptions, run_hollow};
    use corral_runtime::CancellationToken;

    // With the node lifecycle controller, which finds the node's heartbeats Ready.
    let s = TestServer::start().await;
    // A SIMULATED node: it reports its tasks running, and ends them when their
    // environment says, without a process.
    let shutdown = CancellationToken::new();
    let opts = HollowOptions { nodes: 1, heartbeat: std::time::Duration::from_secs(1), ..Default::default() };
    let hollow = tokio::spawn(run_hollow(s.api(), opts, shutdown.clone()));
    s.wait_for("/apis/corral.dev/v1/nodes/hollow-0", "the hollow node Ready", |n| n["status"]["phase"] == "Ready")
        .await;
    // Three tasks ending at the same time on one node: one timer ends them together,
    // each with its own code.
    for (name, exit) in [("ok", "0.2"), ("bad", "0.2:3"), ("ok2", "0.2")] {
        let mut j = job(name);
        j["spec"]["schedules"] = json!([]);
        j["spec"]["run"]["restartPolicy"] = json!("NEVER");
        j["spec"]["run"]["task"]["env"] = json!({ EXIT_AFTER_ENV: exit });
        let (code, out) = s.post(JOBS, &j).await;
        assert_eq!(code, StatusCode::CREATED, "{out}");
        let run = json!({"apiVersion": "corral.dev/v1", "kind": "JobRun",
            "metadata": {"name": format!("{name}-1"), "namespace": "default"}, "spec": {"job": name}});
        let (code, out) = s.post(RUNS, &run).await;
        assert_eq!(code, StatusCode::CREATED, "{out}");
    }
    for (run, phase, code) in [("ok-1", "Succeeded", 0), ("bad-1", "Failed", 3), ("ok2-1", "Succeeded", 0)] {
        let done = s
            .wait_for(&format!("{RUNS}/{run}"), "the run to end", |r| {
                matches!(r["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            })
            .await;
        assert_eq!(done["status"]["phase"], phase, "{done:#}");
        assert_eq!(done["status"]["attempts"][0]["exitCode"], code, "{done:#}");
        assert_eq!(done["status"]["attempts"][0]["node"], "hollow-0", "{done:#}");
    }
    shutdown.cancel();
    let _ = hollow.await;
}
