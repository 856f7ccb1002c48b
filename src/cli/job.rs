//! `corral job run|history|kill`: a job's runs.
//!
//! These commands write `JobRun` objects (a new run, or `spec.kill` on one); the jobs
//! controller does the rest — places the run's tasks, retries, applies the job's
//! concurrency policy — and reports it in the run's status, which `history` and
//! `run --wait` read.

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

use anyhow::{anyhow, bail};
use corral_api::kinds::job::{JOB_LABEL, Job, JobRun, JobRunSpec, RunPhase};
use corral_client::{Api, ListParams, Patch, WriteParams};
use serde_json::json;

use super::args::{HistoryFormat, JobCommand, JobHistoryArgs, JobKillArgs, JobRunArgs};
use super::follow::{Ended, follow};
use super::output::{Table, human_duration, now_unix, parse_rfc3339, to_json, to_yaml};
use super::{Ctx, name_of};

/// Names tried for a new run before a clash (two runs started in the same second
/// drawing the same letters) is an error.
const NAME_ATTEMPTS: usize = 5;

/// The longest MESSAGE cell of `job history`, in characters.
const MESSAGE_WIDTH: usize = 60;

pub(crate) async fn run(ctx: &Ctx, cmd: JobCommand) -> anyhow::Result<u8> {
    match cmd {
        JobCommand::Run(a) => start(ctx, a).await,
        JobCommand::History(a) => history(ctx, a).await,
        JobCommand::Kill(a) => kill(ctx, a).await,
    }
}

/// A client error about `word/NAME` as the user should read it.
fn explain(e: corral_client::Error, word: &str, name: &str, ns: &str, list: &str) -> anyhow::Error {
    if e.is_not_found() {
        anyhow!("{word}/{name} not found in namespace {ns:?}; list them with `{list} -n {ns}`")
    } else {
        anyhow::Error::new(e).context(format!("{word}/{name}"))
    }
}

/// A manual run's name: the job's, the time to the second (as the runs its schedules
/// start) and three letters, so that two runs in one second, or a manual run and a
/// scheduled one, do not clash.
fn manual_run_name(job: &str, now: chrono::DateTime<chrono::Utc>, random: u64) -> String {
    let letters: String = (0..3).map(|i| char::from(b'a' + (random >> (i * 8)) as u8 % 26)).collect();
    format!("{job}-{}{letters}", now.format("%Y%m%d%H%M%S"))
}

/// Fresh random bits for a name (the standard library's per-process random keys).
fn random_bits() -> u64 {
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u128(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128);
    h.finish()
}

/// `corral job run NAME`: creates a run of the job and prints its name; with `--wait`,
/// follows it to its end.
async fn start(ctx: &Ctx, args: JobRunArgs) -> anyhow::Result<u8> {
    let name = name_of::<Job>(&args.job, "job")?;
    let ns = args.ns.or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let job = jobs.get(name).await.map_err(|e| explain(e, "job", name, ns, "corral get jobs"))?;
    let runs: Api<JobRun> = Api::namespaced(ctx.client.clone(), ns);
    let mut created = None;
    for _ in 0..NAME_ATTEMPTS {
        let mut run = JobRun::new(
            manual_run_name(name, chrono::Utc::now(), random_bits()),
            JobRunSpec { job: name.to_string(), ..JobRunSpec::default() },
        );
        run.metadata.namespace = Some(ns.to_string());
        run.metadata.labels.insert(JOB_LABEL.to_string(), name.to_string());
        run.metadata.owner_references = corral_runtime::owner_reference(&job, true).into_iter().collect();
        match runs.create(&run).await {
            Ok(run) => {
                created = Some(run);
                break;
            }
            Err(e) if e.is_already_exists() => continue,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("starting a run of job/{name}"))),
        }
    }
    let Some(run) = created else {
        bail!("could not find a free name for a run of job/{name} in {NAME_ATTEMPTS} tries; try again")
    };
    let run_name = run.metadata.name.clone();
    outln!("{run_name}")?;
    if !args.wait {
        return Ok(0);
    }
    let mut shown = String::new();
    let following = follow(&runs, &run_name, run.metadata.resource_version.clone(), |r: &JobRun| {
        let line = run_line(r);
        if line != shown {
            eprintln!("{line}");
            shown = line;
        }
        let phase = r.status.as_ref().map(|s| s.phase).unwrap_or_default();
        Ok(phase.is_terminal().then_some(u8::from(phase != RunPhase::Succeeded)))
    });
    let ended = if args.timeout == 0 {
        following.await?
    } else {
        match tokio::time::timeout(Duration::from_secs(args.timeout), following).await {
            Ok(ended) => ended?,
            Err(_) => {
                eprintln!(
                    "error: jobrun/{run_name} did not end within {}s (--timeout); it goes on: `corral job history \
                     {name} -n {ns}` shows it",
                    args.timeout
                );
                return Ok(1);
            }
        }
    };
    match ended {
        Ended::Done(code) => Ok(code),
        Ended::Deleted => {
            eprintln!("error: jobrun/{run_name} was deleted before it ended (its job deleted, or pruned)");
            Ok(1)
        }
    }
}

/// One line saying where a run is, for `--wait`.
fn run_line(r: &JobRun) -> String {
    let name = &r.metadata.name;
    let Some(st) = &r.status else {
        return format!("jobrun/{name}: waiting for the jobs controller to pick it up");
    };
    let attempt = st.attempts.len();
    let mut line = format!("jobrun/{name}: {:?}", st.phase);
    match st.phase {
        RunPhase::Pending => {
            if let Some(w) = &st.waiting {
                line.push_str(&format!(" ({})", w.message));
            } else if attempt > 0 {
                line.push_str(&format!(" (attempt {} to start)", attempt + 1));
            }
        }
        RunPhase::Running => {
            if let Some(a) = st.attempts.last() {
                line.push_str(&format!(" (attempt {attempt}, task {}", a.task));
                if let Some(node) = &a.node {
                    line.push_str(&format!(" on node {node}"));
                }
                line.push(')');
            }
        }
        RunPhase::Succeeded | RunPhase::Failed | RunPhase::Killed => {
            if let Some(m) = &st.message {
                line.push_str(&format!(": {m}"));
            }
        }
    }
    line
}

/// `corral job history NAME`: the job's runs, oldest first.
async fn history(ctx: &Ctx, args: JobHistoryArgs) -> anyhow::Result<u8> {
    let name = name_of::<Job>(&args.job, "job")?;
    let ns = args.ns.or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    jobs.get(name).await.map_err(|e| explain(e, "job", name, ns, "corral get jobs"))?;
    let runs: Api<JobRun> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{JOB_LABEL}={name}");
    let mut items =
        runs.list_all(&ListParams::default().labels(&selector), corral_client::DEFAULT_PAGE_SIZE).await?.items;
    // A run created without the label is labelled by the controller; until then its
    // spec still says whose it is.
    items.retain(|r| r.spec.job == name);
    items.sort_by(|a, b| {
        let created = |r: &JobRun| r.metadata.creation_timestamp.as_deref().and_then(parse_rfc3339);
        created(a).cmp(&created(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    if items.is_empty() && args.output == HistoryFormat::Table {
        eprintln!("job/{name} has no runs kept: start one with `corral job run {name} -n {ns}`");
        return Ok(0);
    }
    let text = match args.output {
        HistoryFormat::Table => history_table(&items, now_unix()).render(),
        HistoryFormat::Yaml => to_yaml(&items)?,
        HistoryFormat::Json => to_json(&items)?,
    };
    out!("{text}")?;
    Ok(0)
}

/// RUN, TRIGGER, STARTED, DURATION, RESULT, ATTEMPTS and MESSAGE of each run.
fn history_table(runs: &[JobRun], now: i64) -> Table {
    let mut t = Table::new(["RUN", "TRIGGER", "STARTED", "DURATION", "RESULT", "ATTEMPTS", "MESSAGE"]);
    for r in runs {
        let st = r.status.clone().unwrap_or_default();
        let trigger = match &r.spec.trigger.schedule {
            Some(id) => format!("schedule {id}"),
            None => "manual".to_string(),
        };
        let started = st.start_time.as_deref().and_then(parse_rfc3339);
        let finished = st.finish_time.as_deref().and_then(parse_rfc3339);
        let duration = match (started, finished) {
            (Some(s), Some(f)) => human_duration(f - s),
            (Some(s), None) => format!("{} so far", human_duration(now - s)),
            (None, _) => "-".to_string(),
        };
        let message = st.message.clone().or_else(|| st.waiting.as_ref().map(|w| w.message.clone()));
        t.rows.push(vec![
            r.metadata.name.clone(),
            trigger,
            st.start_time.clone().unwrap_or_else(|| "-".to_string()),
            duration,
            format!("{:?}", st.phase),
            st.attempts.len().to_string(),
            truncate(message.as_deref().unwrap_or(""), MESSAGE_WIDTH),
        ]);
    }
    t
}

/// `s` cut to `width` characters, an ellipsis marking the cut.
fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `corral job kill RUN`: asks for the run to be killed (`spec.kill`); the jobs
/// controller stops its task and ends it `Killed`. A run already ended is left as it
/// is, and said so.
async fn kill(ctx: &Ctx, args: JobKillArgs) -> anyhow::Result<u8> {
    let name = name_of::<JobRun>(&args.run, "jobrun")?;
    let ns = args.ns.or_default();
    let runs: Api<JobRun> = Api::namespaced(ctx.client.clone(), ns);
    let not_found = |e| explain(e, "jobrun", name, ns, "corral get jobruns");
    let run = runs.get(name).await.map_err(not_found)?;
    let phase = run.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if phase.is_terminal() {
        eprintln!("jobrun/{name} already ended ({phase:?}): nothing to kill");
        return Ok(0);
    }
    let patch = json!({ "spec": { "kill": true } });
    runs.patch(name, Patch::Merge(&patch), &WriteParams::default()).await.map_err(not_found)?;
    outln!("jobrun/{name} killed")?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use corral_api::kinds::Task;
    use corral_api::kinds::job::{Attempt, JobRunStatus, Trigger};

    use super::*;

    #[test]
    fn manual_run_names_carry_the_second_and_three_letters() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-03T17:05:09Z").unwrap().to_utc();
        let a = manual_run_name("backup", at, 0);
        assert_eq!(a, "backup-20261203170509aaa");
        let b = manual_run_name("backup", at, 0x0001_0203);
        assert_eq!(b, "backup-20261203170509dcb");
        assert!(corral_api::names::check_dns_label(&manual_run_name(&"j".repeat(40), at, u64::MAX)).is_ok());
    }

    #[test]
    fn targets_are_names_or_kind_slash_name() {
        assert_eq!(name_of::<Job>("backup", "job").unwrap(), "backup");
        assert_eq!(name_of::<Job>("job/backup", "job").unwrap(), "backup");
        assert_eq!(name_of::<JobRun>("jobrun/backup-1", "jobrun").unwrap(), "backup-1");
        assert!(name_of::<Job>("service/web", "job").is_err());
        assert!(name_of::<Job>("job/", "job").is_err());
        // As `corral logs` takes a task, and `get -o name` prints it.
        assert_eq!(name_of::<Task>("web-1", "task").unwrap(), "web-1");
        assert_eq!(name_of::<Task>("task/web-1", "task").unwrap(), "web-1");
        assert_eq!(name_of::<Task>("tasks/web-1", "task").unwrap(), "web-1");
        assert!(name_of::<Task>("service/web", "task").is_err());
        assert!(name_of::<Task>("task/", "task").is_err());
    }

    #[test]
    fn history_rows_say_trigger_duration_result_and_why() {
        let run = |name: &str, schedule: Option<&str>, st: JobRunStatus| {
            let mut r = JobRun::new(
                name,
                JobRunSpec {
                    job: "backup".into(),
                    trigger: Trigger { schedule: schedule.map(str::to_string), scheduled_time: None },
                    ..JobRunSpec::default()
                },
            );
            r.status = Some(st);
            r
        };
        let done = JobRunStatus {
            phase: RunPhase::Succeeded,
            attempts: vec![Attempt { task: "t".into(), ..Attempt::default() }],
            start_time: Some("2026-12-03T10:00:00Z".into()),
            finish_time: Some("2026-12-03T10:02:05Z".into()),
            ..JobRunStatus::default()
        };
        let failed = JobRunStatus {
            phase: RunPhase::Failed,
            message: Some("another run is active and the job's policy is FORBID".into()),
            ..JobRunStatus::default()
        };
        let running = JobRunStatus {
            phase: RunPhase::Running,
            start_time: Some("2026-12-03T10:00:00Z".into()),
            ..JobRunStatus::default()
        };
        let now = parse_rfc3339("2026-12-03T10:00:30Z").unwrap();
        let t = history_table(&[run("a", Some("nightly"), done), run("b", None, failed), run("c", None, running)], now);
        assert_eq!(t.rows[0][1..6], ["schedule nightly", "2026-12-03T10:00:00Z", "2m5s", "Succeeded", "1"]);
        assert_eq!(t.rows[1][1..5], ["manual", "-", "-", "Failed"]);
        assert!(t.rows[1][6].contains("FORBID"), "{:?}", t.rows[1]);
        assert_eq!(t.rows[2][3], "30s so far");
    }
}
