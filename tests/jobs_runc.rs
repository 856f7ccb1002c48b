//! Jobs end to end on real containers: the real server with its controller manager
//! (the offers controller and the built-in `jobs` framework), a real `corral agent`
//! process and busybox containers under runc. A run started by hand (`corral job
//! run`) runs and its logs show, `corral job history` lists it, `corral job kill` ends
//! a run; a seconds-cron job runs on schedule; `FORBID` refuses a manual run
//! while one is active; `REPLACE` kills the older run; `ON_FAILURE` retries until its
//! limit and its deadline; history limits prune old runs.

mod agent_support;

use std::time::Duration;

use agent_support::Cluster;
use serde_json::{Value, json};

const GRACE: Duration = Duration::from_secs(60);
const JOBS: &str = "/apis/corral.dev/v1/namespaces/default/jobs";
const RUNS: &str = "/apis/corral.dev/v1/namespaces/default/jobruns";

fn job(name: &str, script: &str, run: Value, schedules: Value) -> Value {
    let mut r = json!({"task": {"image": "busybox", "command": ["sh", "-c", script],
        "resources": {"cpus": 0.1, "mem": 32}, "killGracePeriodSeconds": 1}});
    if let (Some(into), Some(extra)) = (r.as_object_mut(), run.as_object()) {
        into.extend(extra.clone());
    }
    json!({"apiVersion": "corral.dev/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
        "spec": {"run": r, "schedules": schedules, "successfulRunsHistoryLimit": 2, "failedRunsHistoryLimit": 5}})
}

fn every_5s(policy: &str) -> Value {
    json!([{"id": "tick", "cron": "*/5 * * * * *", "concurrencyPolicy": policy, "startingDeadlineSeconds": 30}])
}

async fn run_by_hand(c: &Cluster, job: &str, run: &str) {
    let body = json!({"apiVersion": "corral.dev/v1", "kind": "JobRun",
        "metadata": {"name": run, "namespace": "default"}, "spec": {"job": job}});
    c.send(reqwest::Method::POST, RUNS, Some(&body)).await;
}

fn phase(r: &Value) -> &str {
    r.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

async fn runs_of(c: &Cluster, job: &str) -> Vec<Value> {
    let list = c.get(RUNS).await.unwrap_or(Value::Null);
    list["items"].as_array().into_iter().flatten().filter(|r| r["spec"]["job"] == job).cloned().collect()
}

/// Runs `corral ARGS` against the cluster as its admin, beside this test's runtime
/// (which serves the API the CLI asks).
async fn corral(c: &Cluster, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--server".to_string(), c.url.clone(), "--token".into(), c.admin_token()];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_corral")).args(&all).output().expect("corral runs")
    })
    .await
    .expect("corral ran")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[tokio::test]
async fn a_run_by_hand_runs_and_its_logs_show_and_on_failure_retries_until_its_limit() {
    let c = Cluster::start("jobs-hand", GRACE).await;
    c.send(reqwest::Method::POST, JOBS, Some(&job("hello", "echo hello from a job", json!({}), json!([])))).await;
    // `corral job run --wait` prints the run's name, follows it, and exits 0 once it succeeded.
    let started = corral(&c, &["job", "run", "hello", "--wait", "--timeout", "120"]).await;
    let (out, err) = (text(&started.stdout), text(&started.stderr));
    assert_eq!(started.status.code(), Some(0), "{out}{err}");
    let run = out.trim().to_string();
    assert!(run.starts_with("hello-") && !run.contains('\n'), "the run's name alone: {out:?}");
    assert!(err.contains(&format!("jobrun/{run}: Succeeded")), "{err}");
    let done = c.get(&format!("{RUNS}/{run}")).await.expect("the run");
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    assert_eq!(done.pointer("/metadata/labels/corral.dev~1job"), Some(&json!("hello")), "{done:#}");
    let attempts = done.pointer("/status/attempts").and_then(Value::as_array).cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 1, "{done:#}");
    assert_eq!(attempts[0]["node"], "jobs-hand", "{done:#}");
    assert!(attempts[0]["startTime"].is_string() && attempts[0]["finishTime"].is_string(), "{done:#}");
    let task = attempts[0]["task"].as_str().expect("the attempt's task").to_string();
    let logs = corral(&c, &["logs", &task]).await;
    let out = text(&logs.stdout);
    assert!(out.contains("hello from a job"), "logs of {task}: {out} {}", text(&logs.stderr));
    // Its history lists the run, how it was started and how it ended.
    let history = corral(&c, &["job", "history", "hello"]).await;
    let out = text(&history.stdout);
    assert_eq!(history.status.code(), Some(0), "{out}{}", text(&history.stderr));
    let row = out.lines().find(|l| l.starts_with(&run)).unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(out.starts_with("RUN "), "{out}");
    assert_eq!(cells.get(1..2), Some(&["manual"][..]), "{out}");
    assert!(cells.contains(&"Succeeded"), "{out}");

    // ON_FAILURE: three attempts, each a task of its own, then the run fails saying so
    // (and `--wait` exits 1).
    let flaky =
        job("flaky", "echo attempt; exit 3", json!({"restartPolicy": "ON_FAILURE", "retryLimit": 3}), json!([]));
    c.send(reqwest::Method::POST, JOBS, Some(&flaky)).await;
    let started = corral(&c, &["job", "run", "job/flaky", "--wait", "--timeout", "120"]).await;
    assert_eq!(started.status.code(), Some(1), "{}{}", text(&started.stdout), text(&started.stderr));
    let run = text(&started.stdout).trim().to_string();
    let failed = c.get(&format!("{RUNS}/{run}")).await.expect("the run");
    assert_eq!(phase(&failed), "Failed", "{failed:#}");
    let attempts = failed.pointer("/status/attempts").and_then(Value::as_array).cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 3, "{failed:#}");
    assert!(attempts.iter().all(|a| a["exitCode"] == 3), "{failed:#}");
    let message = failed.pointer("/status/message").and_then(Value::as_str).unwrap_or_default();
    assert!(message.contains("gave up after 3"), "{failed:#}");
    // Its Events tell each retry and the failure, as `corral describe` shows them.
    let events = format!("/apis/corral.dev/v1/namespaces/default/events?fieldSelector=spec.involvedObject.name={run}");
    c.wait_for(&events, "the run's Events: two retries and the failure", |l| {
        let reasons: Vec<&str> = l["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.pointer("/spec/reason").and_then(Value::as_str))
            .collect();
        reasons.iter().filter(|r| **r == "Retrying").count() == 2 && reasons.contains(&"RunFailed")
    })
    .await;
    let described = corral(&c, &["describe", "jobrun", &run]).await;
    let out = text(&described.stdout);
    assert!(out.contains("RunFailed") && out.contains("attempt 3 launched: attempt 2 ended with exit 3"), "{out}");

    // `corral job kill` ends a run that would go on, and its task with it.
    c.send(reqwest::Method::POST, JOBS, Some(&job("forever", "sleep 600", json!({}), json!([])))).await;
    let started = corral(&c, &["job", "run", "forever"]).await;
    let run = text(&started.stdout).trim().to_string();
    let running = c.wait_for(&format!("{RUNS}/{run}"), "run forever to be running", |r| phase(r) == "Running").await;
    let task = running.pointer("/status/attempts/0/task").and_then(Value::as_str).unwrap_or_default().to_string();
    let killed = corral(&c, &["job", "kill", &run]).await;
    assert_eq!(killed.status.code(), Some(0), "{}", text(&killed.stderr));
    assert_eq!(text(&killed.stdout).trim(), format!("jobrun/{run} killed"));
    c.wait_for(&format!("{RUNS}/{run}"), "the run to end killed", |r| phase(r) == "Killed").await;
    c.wait_for(&Cluster::task_path(&task), "its task to be killed", |t| {
        t.pointer("/status/phase").and_then(Value::as_str) == Some("KILLED")
    })
    .await;
    let again = corral(&c, &["job", "kill", &format!("jobrun/{run}")]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("already ended (Killed)"), "{}", text(&again.stderr));
    let missing = corral(&c, &["job", "run", "no-such-job"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("job/no-such-job not found"), "{}", text(&missing.stderr));

    // A deadline ends a run that would go on.
    let slow = job("slow", "sleep 600", json!({"activeDeadlineSeconds": 3}), json!([]));
    c.send(reqwest::Method::POST, JOBS, Some(&slow)).await;
    run_by_hand(&c, "slow", "slow-1").await;
    let late = c.wait_for(&format!("{RUNS}/slow-1"), "run slow-1 to pass its deadline", |r| phase(r) == "Failed").await;
    let message = late.pointer("/status/message").and_then(Value::as_str).unwrap_or_default();
    assert!(message.starts_with("DeadlineExceeded"), "{late:#}");
    let task = late.pointer("/status/attempts/0/task").and_then(Value::as_str).unwrap_or_default().to_string();
    c.wait_for(&Cluster::task_path(&task), "the overdue attempt to be killed", |t| {
        t.pointer("/status/phase").and_then(Value::as_str) == Some("KILLED")
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_seconds_cron_job_runs_on_schedule_forbid_refuses_a_manual_run_and_replace_kills_the_older() {
    let c = Cluster::start("jobs-cron", GRACE).await;
    // Quick runs every five seconds; two successes kept.
    c.send(reqwest::Method::POST, JOBS, Some(&job("tick", "echo tick", json!({}), every_5s("ALLOW")))).await;
    let first = std::sync::Mutex::new(String::new());
    c.until_async("a first run of tick", || async {
        let runs = runs_of(&c, "tick").await;
        let name = runs.iter().map(|r| r["metadata"]["name"].as_str().unwrap_or_default().to_string()).min()?;
        *first.lock().unwrap_or_else(|e| e.into_inner()) = name;
        Some(())
    })
    .await;
    let first = first.into_inner().unwrap_or_else(|e| e.into_inner());
    c.wait_for(&format!("{RUNS}/{first}"), "the first run to succeed", |r| phase(r) == "Succeeded").await;
    // Two successes are kept: the first goes once two more succeeded.
    c.wait_gone(&format!("{RUNS}/{first}")).await;
    let runs = runs_of(&c, "tick").await;
    let times: Vec<chrono::DateTime<chrono::Utc>> = runs
        .iter()
        .filter_map(|r| r.pointer("/spec/trigger/scheduledTime").and_then(Value::as_str))
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .collect();
    assert!(times.len() >= 2, "{runs:#?}");
    for t in &times {
        assert_eq!(t.timestamp() % 5, 0, "runs start at the times the cron names: {runs:#?}");
    }
    let mut distinct = times.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), times.len(), "no time runs twice: {runs:#?}");
    // Staged ahead (made and placed before their time), and started by the agent no
    // earlier than it.
    let time = |r: &Value, at: &str| {
        r.pointer(at).and_then(Value::as_str).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let staged =
        runs.iter().filter(|r| time(r, "/metadata/creationTimestamp") < time(r, "/spec/trigger/scheduledTime")).count();
    assert!(staged > 0, "runs are made ahead of their time: {runs:#?}");
    for r in runs.iter().filter(|r| phase(r) == "Succeeded") {
        let (due, started) = (time(r, "/spec/trigger/scheduledTime"), time(r, "/status/startTime"));
        assert!(started.is_some() && started >= due, "a run starts at its time, not before: {r:#}");
    }
    let kept: Vec<String> = runs.iter().filter_map(|r| r["metadata"]["name"].as_str()).map(str::to_string).collect();
    let deleted = c.send(reqwest::Method::DELETE, &format!("{JOBS}/tick"), None).await;
    assert!(deleted.is_object(), "{deleted}");
    // Its runs are its own: they go with it.
    for run in &kept {
        c.wait_gone(&format!("{RUNS}/{run}")).await;
    }

    // FORBID: a long run holds the job; a manual run is refused while it is active.
    c.send(reqwest::Method::POST, JOBS, Some(&job("hold", "sleep 600", json!({}), every_5s("FORBID")))).await;
    c.until_async("a run of hold running", || async {
        runs_of(&c, "hold").await.iter().any(|r| phase(r) == "Running").then_some(())
    })
    .await;
    let by_hand = corral(&c, &["job", "run", "hold", "--wait", "--timeout", "120"]).await;
    assert_eq!(by_hand.status.code(), Some(1), "{}{}", text(&by_hand.stdout), text(&by_hand.stderr));
    assert!(text(&by_hand.stderr).contains("FORBID"), "{}", text(&by_hand.stderr));
    let run = text(&by_hand.stdout).trim().to_string();
    let refused = c.get(&format!("{RUNS}/{run}")).await.expect("the refused run");
    assert_eq!(phase(&refused), "Failed", "{refused:#}");
    let message = refused.pointer("/status/message").and_then(Value::as_str).unwrap_or_default();
    assert!(message.contains("FORBID"), "{refused:#}");
    let active = runs_of(&c, "hold").await.into_iter().filter(|r| phase(r) == "Running" || phase(r) == "Pending");
    assert_eq!(active.count(), 1, "FORBID: one run at a time");
    c.send(reqwest::Method::DELETE, &format!("{JOBS}/hold"), None).await;

    // REPLACE: each time kills the run before.
    c.send(reqwest::Method::POST, JOBS, Some(&job("swap", "sleep 600", json!({}), every_5s("REPLACE")))).await;
    c.until_async("a run of swap killed by the next one", || async {
        let runs = runs_of(&c, "swap").await;
        (runs.iter().any(|r| phase(r) == "Killed") && runs.iter().any(|r| phase(r) == "Running")).then_some(())
    })
    .await;
    c.stop().await;
}
