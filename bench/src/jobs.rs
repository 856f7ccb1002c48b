//! `corral-bench jobs`: the jobs benchmark, on hollow nodes (a SIMULATION: no process
//! runs; each task "exits" a set time after it is reported running, see
//! [`EXIT_AFTER_ENV`]). Two phases, each on a control plane of its own so that one
//! does not weigh on the other:
//!
//! 1. **Schedules.** J jobs, each with a seconds-cron firing every P seconds (default
//!    10 000 jobs, `*/10 * * * * *`). Once every job exists, a window of F due times
//!    is watched: for each job and each due time, the lag from the due time to the
//!    run's task seen `RUNNING` (p50, p99, max), and the due times that got no running
//!    task at all — **missed** — however late.
//! 2. **Manual runs.** R runs (default 10 000, of M jobs without schedules) created at
//!    once, 64 requests in flight; the time from the first create to every run seen
//!    `Succeeded`.
//!
//! # How it measures
//! Times are taken when watch events reach the bench (one watch of task summaries, one
//! of runs), never from polling. A scheduled run's due time is read from its name
//! (`JOB-YYYYmmddHHMMSS`, as the jobs controller names it) through the `corral.dev/
//! job-run` label of its task, so the lag is the wall clock at the event minus that
//! time — the control plane's delay plus the watch's. The control plane is one
//! `corral server` process started by the bench (release build beside it,
//! `--no-audit-log`); its CPU and peak memory are read from `/proc`. The hollow nodes
//! run in this process on threads of their own.
//!
//! The run stops by itself: past `--timeout` it prints what it reached and fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use corral_api::Resource as _;
use corral_api::kinds::job::{JOB_LABEL, Job, JobRun, JobRunSpec, RUN_LABEL, RunPhase};
use corral_api::kinds::node::{NodePhase, Resources};
use corral_api::kinds::task::{TaskPhase, TaskSummary};
use corral_api::kinds::{Namespace, NamespaceSpec, Node, Task};
use corral_client::{Api, Client, Config, ListParams};
use corral_runtime::CancellationToken;
use corral_runtime::watcher::{Seen, watch};
use futures::StreamExt;
use serde_json::json;

use crate::hollow::{EXIT_AFTER_ENV, HollowOptions, HollowStats, run_hollow};
use crate::procs::{Proc, start_corral_with};
use crate::services::{Background, NAMESPACE, ProcStats, Sampler, child_pid_serving, mib};

/// Creates in flight at once.
const CREATE_CONCURRENCY: usize = 64;
/// How often progress is printed (to stderr).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long after the last due time of the window its runs may still start before
/// the ones that did not are counted missed.
const GRACE: Duration = Duration::from_secs(60);

/// What `corral-bench jobs` does.
#[derive(Clone, Debug)]
pub struct JobsBenchOptions {
    /// Hollow nodes.
    pub nodes: usize,
    /// Each node's capacity.
    pub node_capacity: Resources,
    /// Jobs with a schedule (phase 1; 0 skips it).
    pub jobs: usize,
    /// Seconds between two due times of each job's schedule (a divisor of 60).
    pub every: u32,
    /// Due times measured, per job.
    pub firings: u32,
    /// Manual runs created at once (phase 2; 0 skips it).
    pub manual_runs: usize,
    /// The jobs they are runs of.
    pub manual_jobs: usize,
    /// Seconds each task runs (on paper) before it exits 0.
    pub task_seconds: f64,
    /// Resources of each task.
    pub task_resources: Resources,
    /// Bound on each phase.
    pub timeout: Duration,
    /// Further arguments of `corral server`.
    pub server_args: Vec<String>,
}

impl Default for JobsBenchOptions {
    fn default() -> Self {
        JobsBenchOptions {
            nodes: 1000,
            node_capacity: HollowOptions::default().capacity,
            jobs: 10_000,
            every: 10,
            firings: 6,
            manual_runs: 10_000,
            manual_jobs: 1000,
            task_seconds: 1.0,
            task_resources: Resources { cpus: 0.01, mem: 16, disk: 0 },
            timeout: Duration::from_secs(600),
            server_args: Vec::new(),
        }
    }
}

/// Runs both phases and prints their figures.
///
/// # Errors
/// A control plane could not be started, a write failed, or a phase did not finish
/// within the timeout (after printing what it reached).
pub async fn run_jobs_bench(opts: JobsBenchOptions) -> anyhow::Result<()> {
    if opts.every == 0 || 60 % opts.every != 0 {
        bail!("--every must divide 60 (a seconds-cron `*/N` fires on the minute), not {}", opts.every);
    }
    if opts.nodes == 0 || opts.firings == 0 {
        bail!("nothing to measure: --nodes and --firings must be at least 1");
    }
    println!(
        "corral-bench jobs: {} SIMULATED hollow nodes ({} cpus, {} MiB each); each task exits 0 {} s after it runs",
        opts.nodes, opts.node_capacity.cpus, opts.node_capacity.mem, opts.task_seconds
    );
    let mut outcome = Ok(());
    if opts.jobs > 0 {
        let cluster = Cluster::start(&opts).await?;
        let result = schedules_phase(&cluster, &opts).await;
        cluster.stop().await;
        outcome = outcome.and(result);
    }
    if opts.manual_runs > 0 {
        let cluster = Cluster::start(&opts).await?;
        let result = manual_phase(&cluster, &opts).await;
        cluster.stop().await;
        outcome = outcome.and(result);
    }
    outcome
}

/// A control plane started by the bench, with hollow nodes all Ready.
struct Cluster {
    _dir: tempfile::TempDir,
    proc: Option<Proc>,
    client: Client,
    stats: ProcStats,
    sampler: Sampler,
    hollow_rt: Background,
    hollow: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: CancellationToken,
}

impl Cluster {
    async fn start(opts: &JobsBenchOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let args: Vec<String> =
            ["--no-audit-log".to_string()].into_iter().chain(opts.server_args.iter().cloned()).collect();
        let proc = start_corral_with(&data, &args).await?;
        let config = Config {
            server: format!("http://{}", proc.addr),
            token: crate::procs::admin_token(),
            ca_pem: None,
            client_identity: None,
        };
        let stats = ProcStats { pid: child_pid_serving(&data).context("finding the started corral server's process")? };
        let client = Client::from_config(&config)?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(&Namespace::new(NAMESPACE, NamespaceSpec {}))
            .await
            .context("creating the bench namespace")?;
        let stop = CancellationToken::new();
        let sampler = Sampler::start(stats, stop.clone());
        let hollow_rt = Background::threads("hollow")?;
        let hollow_opts = HollowOptions {
            stats: Arc::new(HollowStats::default()),
            nodes: opts.nodes,
            capacity: opts.node_capacity,
            ..Default::default()
        };
        let hollow = hollow_rt.spawn(run_hollow(Client::from_config(&config)?, hollow_opts, stop.child_token()));
        let cluster = Cluster { _dir: dir, proc: Some(proc), client, stats, sampler, hollow_rt, hollow, stop };
        let nodes: Api<Node> = Api::all(cluster.client.clone());
        let deadline = Instant::now() + opts.timeout;
        loop {
            let list = nodes.list(&ListParams::default()).await?;
            let ready = list.items.iter().filter(|n| n.status.as_ref().is_some_and(|s| s.phase == NodePhase::Ready));
            if ready.count() >= opts.nodes {
                break;
            }
            if cluster.hollow.is_finished() || Instant::now() > deadline {
                bail!("the {} hollow nodes did not all become Ready", opts.nodes);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("  control plane: corral server (pid {}) at {}; {} nodes Ready", stats.pid, config.server, opts.nodes);
        Ok(cluster)
    }

    /// The control plane's CPU time so far.
    fn cpu(&self) -> Duration {
        self.stats.cpu().unwrap_or_default()
    }

    async fn stop(mut self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.hollow).await;
        drop(self.hollow_rt);
        drop(self.proc.take());
    }
}

/// A job whose runs' tasks exit 0 after `opts.task_seconds`; scheduled every
/// `every` seconds when given.
fn job(name: &str, opts: &JobsBenchOptions, every: Option<u32>) -> anyhow::Result<Job> {
    let schedules = match every {
        Some(n) => json!([{"id": "tick", "cron": format!("*/{n} * * * * *")}]),
        None => json!([]),
    };
    let job = json!({
        "apiVersion": "corral.dev/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "run": {"task": {
                "image": "busybox", "command": ["true"],
                "resources": opts.task_resources,
                "env": {EXIT_AFTER_ENV: opts.task_seconds.to_string()},
            }},
            "schedules": schedules,
        }
    });
    Ok(serde_json::from_value(job)?)
}

/// Creates `objects` at most [`CREATE_CONCURRENCY`] at once.
async fn create_all<K: corral_client::ObjectType>(api: &Api<K>, objects: Vec<K>) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(objects)
        .map(|o| async move {
            api.create(&o).await.with_context(|| format!("creating {}", corral_api::ApiObject::name(&o)))?;
            Ok(())
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// The due time in a scheduled run's name (`JOB-YYYYmmddHHMMSS`).
fn due_time(run: &str) -> Option<DateTime<Utc>> {
    let stamp = run.get(run.len().checked_sub(14)?..)?;
    NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S").ok().map(|t| t.and_utc())
}

/// What the watch of tasks saw, phase 1.
#[derive(Default)]
struct Lags {
    /// Run → seconds from its due time to its task seen RUNNING.
    running: HashMap<String, f64>,
    /// Run → seconds from its due time to the `startTime` its node reported: the
    /// part of the lag before the report's write and the watch.
    reported: HashMap<String, f64>,
    /// Runs due outside the window (before it: warming up; after it: the grace
    /// period), seen running.
    outside: usize,
    /// The window: its first and last due times.
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    lists: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn schedules_phase(cluster: &Cluster, opts: &JobsBenchOptions) -> anyhow::Result<()> {
    println!(
        "\nphase 1 — schedules: {} jobs, each `*/{} * * * * *`; {} due times measured per job",
        opts.jobs, opts.every, opts.firings
    );
    let lags = Arc::new(Mutex::new(Lags::default()));
    let tasks: Api<TaskSummary> = Api::for_kind(cluster.client.clone(), Task::shared_kind_info(), None);
    let l = lags.clone();
    tokio::spawn(watch(tasks, ListParams::default(), cluster.stop.clone(), None, move |seen| {
        let l = l.clone();
        async move {
            let now = Utc::now();
            let mut lags = lock(&l);
            let mut saw = |t: &TaskSummary| {
                let running = t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Running);
                let Some(run) = t.metadata.labels.get(RUN_LABEL).filter(|_| running) else { return };
                let Some(due) = due_time(run) else { return };
                match lags.window {
                    Some((first, last)) if due >= first && due <= last => {
                        let lag = (now - due).num_milliseconds() as f64 / 1000.0;
                        lags.running.entry(run.clone()).or_insert(lag);
                        let started = t.status.as_ref().and_then(|s| s.start_time.as_deref());
                        if let Some(at) = started.and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
                            let lag = (at.with_timezone(&Utc) - due).num_milliseconds() as f64 / 1000.0;
                            lags.reported.entry(run.clone()).or_insert(lag);
                        }
                    }
                    _ => lags.outside += 1,
                }
            };
            match seen {
                Seen::Listed { objects, .. } => {
                    objects.iter().for_each(&mut saw);
                    lags.lists += 1;
                }
                Seen::Applied(t) => saw(&t),
                Seen::Deleted(_) | Seen::Bookmark(_) => {}
            }
        }
    }));

    let started = Instant::now();
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let all =
        (0..opts.jobs).map(|i| job(&format!("cron-{i}"), opts, Some(opts.every))).collect::<anyhow::Result<_>>()?;
    create_all(&jobs, all).await?;
    let created = started.elapsed();
    // The window starts at the first due time after every job exists (and a moment
    // for the controller to have read the last of them).
    let every = i64::from(opts.every);
    let after = Utc::now() + chrono::Duration::seconds(2);
    let first = DateTime::from_timestamp((after.timestamp() / every + 1) * every, 0).unwrap_or(after);
    let last = first + chrono::Duration::seconds(every * (i64::from(opts.firings) - 1));
    lock(&lags).window = Some((first, last));
    println!(
        "  {} jobs created in {:.1} s; window: due times {} … {}",
        opts.jobs,
        created.as_secs_f64(),
        first.format("%H:%M:%S"),
        last.format("%H:%M:%S")
    );
    let expected = opts.jobs * opts.firings as usize;
    let cpu_at_window = cluster.cpu();
    let window_started = Instant::now();
    let until = (last - Utc::now()).to_std().unwrap_or_default() + GRACE;
    let deadline = Instant::now() + until.min(opts.timeout);
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    loop {
        let seen = lock(&lags).running.len();
        if seen >= expected || Instant::now() >= deadline {
            break;
        }
        if Instant::now() >= next_progress {
            eprintln!(
                "  … {seen}/{expected} due runs seen RUNNING ({} outside the window); server RSS {:.0} MiB",
                lock(&lags).outside,
                mib(cluster.stats.memory().map_or(0, |m| m.rss))
            );
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = cluster.cpu().saturating_sub(cpu_at_window);
    let wall = window_started.elapsed();
    let (mut values, lists) = {
        let l = lock(&lags);
        (l.running.values().copied().collect::<Vec<f64>>(), l.lists)
    };
    let mut reported: Vec<f64> = lock(&lags).reported.values().copied().collect();
    reported.sort_by(f64::total_cmp);
    let pick_reported = |q: f64| quantile(&reported, q);
    values.sort_by(f64::total_cmp);
    let pick = |q: f64| quantile(&values, q);
    let missed = expected - values.len().min(expected);
    let late = values.iter().filter(|v| **v >= 1.0).count();
    // The controller's own count of due times it skipped.
    let listed = jobs.list(&ListParams::default()).await?;
    let skipped: u64 =
        listed.items.iter().flat_map(|j| j.status.iter()).flat_map(|s| &s.schedules).map(|s| s.missed).sum();
    println!("  due runs in the window: {expected} ({} jobs × {})", opts.jobs, opts.firings);
    println!("  seen RUNNING:           {}", values.len());
    println!("  missed:                 {missed}   (no task RUNNING within {} s of its due time)", GRACE.as_secs());
    println!(
        "  lag due → RUNNING:      p50 {} · p99 {} · max {}   ({late} of {} at 1 s or more)",
        secs(pick(0.50)),
        secs(pick(0.99)),
        secs(values.last().copied()),
        values.len()
    );
    println!(
        "    of which before the node's report (its startTime): p50 {} · p99 {}   (the rest: the report's write and \
         the watch)",
        secs(pick_reported(0.50)),
        secs(pick_reported(0.99))
    );
    // Each due time apart: a tail that comes from one late time, or from every one.
    let mut by_due: BTreeMap<DateTime<Utc>, Vec<f64>> = BTreeMap::new();
    for (run, lag) in lock(&lags).running.iter() {
        if let Some(due) = due_time(run) {
            by_due.entry(due).or_default().push(*lag);
        }
    }
    for (due, mut of_due) in by_due {
        of_due.sort_by(f64::total_cmp);
        println!(
            "    due {}: {} runs, p50 {} · p99 {} · max {}",
            due.format("%H:%M:%S"),
            of_due.len(),
            secs(quantile(&of_due, 0.50)),
            secs(quantile(&of_due, 0.99)),
            secs(of_due.last().copied())
        );
    }
    println!(
        "  due times the controller counted missed: {skipped}   (a later time was already due when it looked — only the \
         latest runs, as a CronJob's — or past the starting deadline)"
    );
    println!(
        "  control plane: CPU {:.1} s over {:.1} s ({:.2} cores); peak RSS {:.0} MiB; task watch listed {} time(s)",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        cpu.as_secs_f64() / wall.as_secs_f64().max(0.001),
        mib(cluster.sampler.peak.load(Ordering::Relaxed)),
        lists
    );
    println!(
        "SUMMARY jobs-schedules jobs={} every={}s due={expected} running={} missed={missed} lag_p50_s={:.3} lag_p99_s={:.3} \
         lag_max_s={:.3}",
        opts.jobs,
        opts.every,
        values.len(),
        pick(0.50).unwrap_or(f64::NAN),
        pick(0.99).unwrap_or(f64::NAN),
        values.last().copied().unwrap_or(f64::NAN)
    );
    if missed > 0 && Instant::now() >= deadline && until > opts.timeout {
        bail!("phase 1 stopped at --timeout with {missed} due runs not seen running");
    }
    Ok(())
}

/// The `q` quantile of `sorted` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    sorted.get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied()
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.3} s"))
}

/// What the watch of runs saw, phase 2.
#[derive(Default)]
struct Ends {
    succeeded: HashSet<String>,
    failed: HashSet<String>,
    last: Option<Instant>,
}

async fn manual_phase(cluster: &Cluster, opts: &JobsBenchOptions) -> anyhow::Result<()> {
    let per_job = opts.manual_runs.div_ceil(opts.manual_jobs.max(1));
    let job_count = opts.manual_runs.div_ceil(per_job.max(1));
    println!(
        "\nphase 2 — manual runs: {} runs of {job_count} jobs ({per_job} each), created at once",
        opts.manual_runs
    );
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let all = (0..job_count).map(|i| job(&format!("batch-{i}"), opts, None)).collect::<anyhow::Result<_>>()?;
    create_all(&jobs, all).await?;

    let ends = Arc::new(Mutex::new(Ends::default()));
    let runs: Api<JobRun> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let e = ends.clone();
    tokio::spawn(watch(runs.clone(), ListParams::default(), cluster.stop.clone(), None, move |seen| {
        let e = e.clone();
        async move {
            let mut ends = lock(&e);
            let mut saw = |r: &JobRun| {
                let new = match r.status.as_ref().map(|s| s.phase) {
                    Some(RunPhase::Succeeded) => ends.succeeded.insert(r.metadata.name.clone()),
                    Some(RunPhase::Failed | RunPhase::Killed) => ends.failed.insert(r.metadata.name.clone()),
                    _ => false,
                };
                if new {
                    ends.last = Some(Instant::now());
                }
            };
            match seen {
                Seen::Listed { objects, .. } => objects.iter().for_each(&mut saw),
                Seen::Applied(r) => saw(&r),
                Seen::Deleted(_) | Seen::Bookmark(_) => {}
            }
        }
    }));
    let all: Vec<JobRun> = (0..opts.manual_runs)
        .map(|i| {
            let job = format!("batch-{}", i % job_count);
            let mut run = JobRun::namespaced(
                NAMESPACE,
                format!("{job}-run-{}", i / job_count),
                JobRunSpec { job: job.clone(), ..JobRunSpec::default() },
            );
            run.metadata.labels.insert(JOB_LABEL.to_string(), job);
            run
        })
        .collect();
    let cpu_at_start = cluster.cpu();
    let started = Instant::now();
    create_all(&runs, all).await?;
    let submitted = started.elapsed();
    println!("  {} runs created in {:.1} s", opts.manual_runs, submitted.as_secs_f64());
    let deadline = started + opts.timeout;
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    loop {
        let done = {
            let e = lock(&ends);
            e.succeeded.len() + e.failed.len()
        };
        if done >= opts.manual_runs || Instant::now() >= deadline {
            break;
        }
        if Instant::now() >= next_progress {
            eprintln!(
                "  … {done}/{} runs ended; server RSS {:.0} MiB",
                opts.manual_runs,
                mib(cluster.stats.memory().map_or(0, |m| m.rss))
            );
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = cluster.cpu().saturating_sub(cpu_at_start);
    let e = lock(&ends);
    let ended = e.succeeded.len() + e.failed.len();
    let all_done = e.last.filter(|_| ended >= opts.manual_runs).map(|t| t - started);
    println!("  succeeded: {} · failed or killed: {}", e.succeeded.len(), e.failed.len());
    match all_done {
        Some(d) => println!(
            "  time to all ended: {:.1} s from the first create ({:.0} runs/s; each task runs {} s)",
            d.as_secs_f64(),
            opts.manual_runs as f64 / d.as_secs_f64().max(0.001),
            opts.task_seconds
        ),
        None => {
            println!("  NOT all ended within {} s (--timeout): {ended} of {}", opts.timeout.as_secs(), opts.manual_runs)
        }
    }
    println!(
        "  control plane: CPU {:.1} s; peak RSS {:.0} MiB",
        cpu.as_secs_f64(),
        mib(cluster.sampler.peak.load(Ordering::Relaxed))
    );
    println!(
        "SUMMARY jobs-manual runs={} succeeded={} failed={} all_ended_s={:.2}",
        opts.manual_runs,
        e.succeeded.len(),
        e.failed.len(),
        all_done.map_or(f64::NAN, |d| d.as_secs_f64())
    );
    if all_done.is_none() {
        bail!("phase 2 stopped at --timeout with {} of {} runs ended", ended, opts.manual_runs);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_runs_due_time_is_read_from_its_name() {
        let due = due_time("cron-17-20261203172010").map(|t| t.to_rfc3339());
        assert_eq!(due.as_deref(), Some("2026-12-03T17:20:10+00:00"));
        assert_eq!(due_time("hello-20261203172010abc"), None, "a manual run's name has letters after the time");
        assert_eq!(due_time("short"), None);
    }
}
