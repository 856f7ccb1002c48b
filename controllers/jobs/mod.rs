//! The jobs controller: the built-in `jobs` framework, running every [`Job`]'s runs
//! with the semantics of DC/OS Jobs (Metronome), on the offers.
//!
//! [`schedule`] reads cron expressions in a time zone; [`decide`] turns a job, its
//! runs and the clock into the runs to start, admit, refuse, kill and prune, and a
//! run, its tasks and the clock into its next attempt and status. Both are pure.
//!
//! A round, as the services framework's:
//!
//! 1. every job decides ([`decide::decide_job`]): its schedules start runs, staged
//!    [`decide::STAGE_AHEAD`] before their due times (or at them) — named after the
//!    time they are due, so that a time is never started twice, even across a
//!    restart between the run's creation and the job's status — and manual runs are
//!    admitted or refused; the jobs' writes go out many at once;
//! 2. every active run decides ([`decide::decide_run`]) from its tasks, one per
//!    attempt — the runs started or admitted in step 1 included, without waiting
//!    for the watch to bring them back;
//! 3. the attempts to launch are matched to the offers made to the `jobs` framework
//!    ([`crate::matching`], constraints included) and accepted, each task named
//!    after its run and attempt number — that of a staged run with its due time as
//!    `startAt`, at which its node starts it;
//! 4. the runs' statuses are decided, with why a run waits for a place;
//! 5. they, the old runs to prune and the jobs' statuses are handed to a writer of
//!    their own ([`bookkeeping`]) — the launches of this round did not wait for them,
//!    and those of the next round do not either.
//!
//! The next round comes soon after a change to act on, later after mere bookkeeping
//! (statuses written, tasks reported running or finished, ended runs pruned, the
//! tasks and scheduled runs the rounds made coming back: see `Jobs::rounds`), or at
//! the earliest time a deadline is due or a schedule is [`decide::LEAD`] from
//! staging or due: the framework then asks for offers and keeps them, so that the
//! time finds them there ([`decide::offers_ahead`]). Around a burst of staged runs
//! (the writer's quiet window, see [`bookkeeping`]) only a due time starts a round;
//! the rest waits for the window's end ([`decide::offers_ahead_quietly`]).
//! A framework with nothing to launch and nothing due soon is suppressed.

mod bookkeeping;
pub mod decide;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use corral_api::ApiObject;
use corral_api::kinds::framework::{DEFAULT_ROLE, Framework, Offer, OfferAccept};
use corral_api::kinds::job::{
    JOB_LABEL, JOBS_FRAMEWORK, Job, JobRun, JobRunSpec, JobRunStatus, JobStatus, RUN_LABEL, RunPhase, RunTemplate,
    Trigger,
};
use corral_api::kinds::service::Waiting;
use corral_api::kinds::task::{Task, TaskPhase, TaskSummary};
use corral_api::transaction::{Operation, Transaction};
use corral_client::{Api, Client, ListParams, TransactParams};
use corral_runtime::{Cache, CancellationToken, Recorder, Reflector, Runnable};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use self::decide::events::{job_happenings, run_happenings};
use self::decide::{AttemptView, JobInput, RunInput, RunView, earliest, parse_time};
use crate::happenings::Queue;
use crate::matching::{self, Demand, OfferView};
use crate::offers::FRAMEWORK_LABEL;
use crate::registration::{self, Registration};
use crate::rounds::{decline, kill_task};
use crate::shared_tasks::{BY_RUN, SharedTasks};

/// The controller's name, in logs and metrics.
pub const NAME: &str = "jobs";
/// The component named in its Events.
const COMPONENT: &str = "jobs-controller";

/// Index of the runs' cache: `NAMESPACE/JOB`.
const BY_JOB: &str = "job";
/// How long a declined node is refused.
const REFUSE_SECONDS: u64 = 1;
/// Most writes in flight at once.
const IN_FLIGHT: usize = 64;
/// Jobs whose plans are applied at once (each a few writes, in order).
const JOBS_IN_FLIGHT: usize = 128;
/// New runs created in one transaction.
const CREATE_BATCH: usize = 250;
/// Such transactions in flight at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// How long an attempt launched may stay unseen in the cache before it is
/// forgotten (its accept's answer lost): after that the cache is the truth again.
const UNSEEN: Duration = Duration::from_secs(30);
/// Longest wait between rounds with nothing due.
const IDLE: Duration = Duration::from_secs(5);
/// How long to gather changes before a round, at least (see [`Jobs::rounds`]).
const SETTLE: Duration = Duration::from_millis(20);
/// How many times as long as the last round took a round waits after mere
/// bookkeeping changes (see [`Jobs::rounds`]).
const LAZY: u32 = 5;
/// Longest wait after a change to act on (see [`Jobs::rounds`]): a job made while a
/// staging round ran may be due within seconds, and is staged only by the next round.
const CHANGE_WAIT_MAX: Duration = Duration::from_secs(1);
/// Longest a round woken by bookkeeping is expected to last when the rounds keep out
/// of a quiet window (see [`Jobs::rounds`]): as long as the last one, up to this (a
/// staging round takes seconds, the others a fraction of one).
const ROUND_GUARD: Duration = Duration::from_millis(1500);

/// What wakes the rounds: changes to act on, bookkeeping, and offers.
struct Wakes {
    wake: Arc<Notify>,
    nudge: Arc<Notify>,
    /// Offers changed while the framework wanted them.
    offered: Arc<Notify>,
    /// Whether the framework wants offers (it has runs to launch, or a time due
    /// soon): offers' changes wake the rounds then, and only nudge them otherwise.
    wants_offers: Arc<AtomicBool>,
}

/// The jobs controller, for a [`corral_runtime::Manager`].
pub struct Jobs {
    counts: Arc<Counts>,
    tasks: Arc<SharedTasks>,
}

struct Counts {
    rounds: Histogram,
    /// From a schedule's due time to its run's creation.
    start_lag: Histogram,
    started: Counter,
    launched: Counter,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            rounds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            start_lag: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            started: Counter::default(),
            launched: Counter::default(),
        }
    }
}

impl Default for Jobs {
    fn default() -> Self {
        Self::new()
    }
}

impl Jobs {
    /// The controller.
    pub fn new() -> Self {
        Jobs { counts: Arc::default(), tasks: Arc::default() }
    }

    /// Shares `tasks` with the other controllers of its set.
    pub(crate) fn sharing(mut self, tasks: Arc<SharedTasks>) -> Self {
        self.tasks = tasks;
        self
    }
}

/// `NAMESPACE/RUN` of a task a job run launched (by its label).
pub(crate) fn run_of(t: &impl ApiObject) -> Option<String> {
    let meta = t.meta();
    let run = meta.labels.get(RUN_LABEL)?;
    Some(format!("{}/{run}", meta.namespace.as_deref().unwrap_or_default()))
}

struct Caches {
    jobs: Cache<Job>,
    runs: Cache<JobRun>,
    tasks: Cache<TaskSummary>,
    offers: Cache<Offer>,
}

struct Apis {
    client: Client,
    runs: Api<JobRun>,
    jobs: Api<Job>,
    tasks: Api<Task>,
    frameworks: Api<Framework>,
    /// Events about jobs (refusals, replacements, late starts) and runs (failures,
    /// retries, kills).
    job_events: Queue<Job>,
    run_events: Queue<JobRun>,
}

/// What the loop remembers between rounds.
#[derive(Default)]
struct Memory {
    /// What woke the round to come (for its debug log): a change, bookkeeping or
    /// the clock.
    woken: &'static str,
    /// Attempts launched, by run key: the task's name, until the cache has it.
    launched: HashMap<String, (String, Instant)>,
    /// Offers accepted or declined, until the cache drops them.
    used: HashMap<String, Instant>,
    registration: Registration,
    /// Writes the rounds' bookkeeping in the background.
    writer: bookkeeping::Writer,
    /// Told whether this round wanted offers (see [`Wakes`]).
    wants_offers: Arc<AtomicBool>,
    /// How long the last round whose schedules made runs took to make and place
    /// them: the next runs are staged that much earlier ([`decide::stage_ahead`]).
    staging_took: Duration,
    /// When the clock is next due for a job (a run to stage, mostly), as the last
    /// round found.
    next_schedule: Option<DateTime<Utc>>,
}

#[async_trait]
impl Runnable for Jobs {
    fn name(&self) -> &str {
        NAME
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "corral_jobs_round_duration_seconds",
            "Rounds over every job and run and how long each took",
            self.counts.rounds.clone(),
        );
        registry.register(
            "corral_jobs_schedule_start_lag_seconds",
            "From a schedule's due time to the creation of its run (0 when it was staged ahead)",
            self.counts.start_lag.clone(),
        );
        registry.register("corral_jobs_runs_started", "Runs started by schedules", self.counts.started.clone());
        registry.register("corral_jobs_attempts_launched", "Attempts launched on offers", self.counts.launched.clone());
    }

    async fn run(&self, client: Client, shutdown: CancellationToken) -> corral_runtime::Result<()> {
        let wake = Arc::new(Notify::new());
        let jobs = Reflector::new(Api::<Job>::all(client.clone()), ListParams::default());
        let runs = Reflector::new(Api::<JobRun>::all(client.clone()), ListParams::default())
            .index(BY_JOB, Arc::new(|r: &JobRun| vec![job_key_of(r)]));
        // Bookkeeping only nudges the rounds (a task reported running or finished, an
        // ended one pruned; see `on_change` for the jobs and runs); anything a round
        // must act on soon wakes them.
        let nudge = Arc::new(Notify::new());
        let offered = Arc::new(Notify::new());
        let wants_offers = Arc::new(AtomicBool::new(true));
        let on_task = {
            let (wake, nudge) = (wake.clone(), nudge.clone());
            Arc::new(move |c: corral_runtime::Change<TaskSummary>| {
                if run_of(&**c.object()).is_none() {
                    return;
                }
                let phase = c.object().status.as_ref().map(|s| s.phase);
                match c {
                    corral_runtime::Change::Applied { .. }
                        if matches!(phase, Some(TaskPhase::Running | TaskPhase::Finished)) =>
                    {
                        nudge.notify_one()
                    }
                    // A task made and not yet started: the rounds' own launch coming
                    // back (they know it already), ten thousand of them when a burst
                    // is staged.
                    corral_runtime::Change::Applied { previous: None, .. }
                        if phase.is_none_or(|p| !p.is_terminal() && p != TaskPhase::Running) =>
                    {
                        nudge.notify_one()
                    }
                    // An ended task going (its run pruned): nothing left to decide.
                    corral_runtime::Change::Deleted(_) if phase.is_some_and(TaskPhase::is_terminal) => {
                        nudge.notify_one()
                    }
                    _ => wake.notify_one(),
                }
            })
        };
        let (tasks, _subscription) = self.tasks.subscribe(&client, on_task);
        let offers = Reflector::new(
            Api::<Offer>::all(client.clone()),
            ListParams { label_selector: Some(format!("{FRAMEWORK_LABEL}={JOBS_FRAMEWORK}")), ..Default::default() },
        );
        let caches = Caches { jobs: jobs.cache(), runs: runs.cache(), tasks, offers: offers.cache() };
        let (job_events, recording_jobs) = Queue::new(Recorder::new(client.clone(), COMPONENT));
        let (run_events, recording_runs) = Queue::new(Recorder::new(client.clone(), COMPONENT));
        let apis = Arc::new(Apis {
            client: client.clone(),
            runs: Api::all(client.clone()),
            jobs: Api::all(client.clone()),
            tasks: Api::all(client.clone()),
            frameworks: Api::all(client.clone()),
            job_events,
            run_events,
        });
        let reflectors = futures::future::join3(
            jobs.run(shutdown.clone(), on_change(&wake, &nudge, |_: &Job| false, |_: &Job| false)),
            runs.run(
                shutdown.clone(),
                on_change(
                    &wake,
                    &nudge,
                    // A schedule's run is made by the rounds; a manual one, by a user.
                    |r: &JobRun| r.spec.trigger.schedule.is_some(),
                    |r: &JobRun| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()),
                ),
            ),
            offers.run(shutdown.clone(), {
                let (offered, nudge, wants) = (offered.clone(), nudge.clone(), wants_offers.clone());
                // Offers come and go as other frameworks' tasks end: they matter to
                // a round only while the framework has something to launch or due.
                move |_: corral_runtime::Change<Offer>| {
                    if wants.load(Ordering::Relaxed) { offered.notify_one() } else { nudge.notify_one() }
                }
            }),
        );
        let lease = registration::renew_lease(client.clone(), JOBS_FRAMEWORK);
        let rounds = self.rounds(apis, caches, Wakes { wake, nudge, offered, wants_offers }, shutdown.clone());
        tokio::select! {
            _ = reflectors => {}
            _ = lease => {}
            _ = rounds => {}
            _ = futures::future::join(recording_jobs, recording_runs) => {}
        }
        Ok(())
    }
}

impl Jobs {
    async fn rounds(&self, apis: Arc<Apis>, caches: Caches, wakes: Wakes, shutdown: CancellationToken) {
        let Wakes { wake, nudge, offered, wants_offers } = wakes;
        caches.jobs.wait_synced().await;
        caches.runs.wait_synced().await;
        caches.tasks.wait_synced().await;
        caches.offers.wait_synced().await;
        let mut memory = Memory { wants_offers, ..Memory::default() };
        loop {
            let started = Instant::now();
            let next = round(&apis, &caches, &mut memory, &self.counts).await;
            let took = started.elapsed();
            self.counts.rounds.observe(took.as_secs_f64());
            let sleep = sleep_before(next, Utc::now());
            let due = tokio::time::Instant::now() + sleep;
            // A round goes over every job, and changes come by the thousand when
            // thousands of runs are due at once: the rounds wait before the next as
            // [`wait_after`] says, leaving the rest to the reports themselves — but
            // never past the next due time. Nor is one started in a quiet window —
            // or, for bookkeeping, just before one (as long before as the last round
            // took, up to [`ROUND_GUARD`]) — while the nodes report the starts of a
            // burst (see `bookkeeping`): a round over every job would compete with
            // those reports, and its writes wait for the window's end anyway. Only a
            // due time starts one there.
            let quiet = &memory.writer.quiet;
            let settle = |woken: Woken| {
                // A change may be a job whose run is due within the window: only
                // a round that would start in it waits for its end.
                let lasting = match woken {
                    Woken::Change => Duration::ZERO,
                    Woken::Bookkeeping => took.min(ROUND_GUARD),
                };
                let wait = quiet.past_windows(Utc::now(), wait_after(woken, took), lasting);
                tokio::time::sleep_until(due.min(tokio::time::Instant::now() + wait))
            };
            memory.woken = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => {
                    settle(Woken::Change).await;
                    "change"
                }
                // Offers that came while a round launched everything it had (its
                // own accepts' echoes, mostly) are no longer wanted once it ended:
                // bookkeeping then, not a round a second after a staging one.
                _ = offered.notified(), if memory.wants_offers.load(Ordering::Relaxed) => {
                    settle(Woken::Change).await;
                    "offers"
                }
                _ = nudge.notified() => {
                    // Bookkeeping waits long (its rounds are lazy); a change, or offers
                    // that runs waiting to launch asked for, end that wait as they
                    // would have without it.
                    tokio::select! {
                        _ = settle(Woken::Bookkeeping) => "bookkeeping",
                        _ = wake.notified() => {
                            settle(Woken::Change).await;
                            "change"
                        }
                        _ = offered.notified(), if memory.wants_offers.load(Ordering::Relaxed) => {
                            settle(Woken::Change).await;
                            "offers"
                        }
                    }
                }
                _ = tokio::time::sleep_until(due) => "clock",
            };
        }
    }
}

/// How long the rounds sleep before the time `next` the last one asked for: at most
/// [`IDLE`], and a moment when that time came while the round ran — it is due now.
fn sleep_before(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    next.map(|at| (at - now).to_std().unwrap_or_default()).map_or(IDLE, |d| d.min(IDLE)).max(Duration::from_millis(1))
}

/// What woke the rounds.
#[derive(Clone, Copy, Debug)]
enum Woken {
    /// A change to act on: a job, or a run's or task's end.
    Change,
    /// Mere bookkeeping: statuses written, mostly by the rounds themselves.
    Bookkeeping,
}

/// How long the rounds gather changes before the next, after the last took `took`:
/// as long as it took after a change (so that the rounds keep to half a core while
/// changes come by the thousand), but never more than [`CHANGE_WAIT_MAX`], since a
/// job made during a long round may be due soon; [`LAZY`] times as long after mere
/// bookkeeping. Never past the next due time (the caller's bound).
fn wait_after(woken: Woken, took: Duration) -> Duration {
    match woken {
        Woken::Change => SETTLE.max(took).min(CHANGE_WAIT_MAX),
        Woken::Bookkeeping => SETTLE.max(took * LAZY),
    }
}

/// A reflector's callback that wakes the rounds on a change to act on and only
/// nudges them on bookkeeping: the same spec as before (a status written, mostly by
/// the rounds themselves), an object the rounds made (`made_here`) coming back, or
/// an object that had `ended` going (pruned).
fn on_change<K: ApiObject>(
    wake: &Arc<Notify>,
    nudge: &Arc<Notify>,
    made_here: fn(&K) -> bool,
    ended: fn(&K) -> bool,
) -> impl Fn(corral_runtime::Change<K>) + Send + Sync + use<K> {
    let (wake, nudge) = (wake.clone(), nudge.clone());
    move |c| match &c {
        corral_runtime::Change::Applied { object, previous: Some(before) }
            if object.meta().generation == before.meta().generation
                && object.meta().deletion_timestamp == before.meta().deletion_timestamp =>
        {
            nudge.notify_one()
        }
        corral_runtime::Change::Applied { object, previous: None } if made_here(object) => nudge.notify_one(),
        corral_runtime::Change::Deleted(gone) if ended(gone) => nudge.notify_one(),
        _ => wake.notify_one(),
    }
}

/// What one active run decided, until the offers are matched.
struct RunDecision {
    /// The run, with a template (runs without one are not decided).
    run: Arc<JobRun>,
    plan: decide::RunPlan,
}

/// One round over every job and run. Returns when the next is due by the clock.
async fn round(apis: &Arc<Apis>, caches: &Caches, memory: &mut Memory, counts: &Counts) -> Option<DateTime<Utc>> {
    let now = Utc::now();
    let clock = Instant::now();
    let mut due: Option<DateTime<Utc>> = None;

    // 1. Jobs: schedules and manual runs. Decided one by one (pure), applied many at
    // once: a round over ten thousand jobs must not wait for each one's writes.
    let mut schedules_due: Option<DateTime<Utc>> = None;
    let mut roles_due: BTreeSet<String> = BTreeSet::new();
    let mut jobs_due_soon = 0usize;
    let mut plans = Vec::new();
    if decide::offers_first(memory.next_schedule, now) {
        memory.registration.unsuppress(&apis.frameworks, JOBS_FRAMEWORK, DEFAULT_ROLE).await;
    }
    let idle = memory.writer.idle().await;
    for job in caches.jobs.list() {
        if job.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let key = key_of(&*job);
        let runs = caches.runs.by_index(BY_JOB, &key);
        let none = JobStatus::default();
        let status = memory
            .writer
            .jobs
            .current(&key, bookkeeping::uid_of(&*job), job.status.as_ref())
            .or(job.status.as_ref())
            .unwrap_or(&none);
        let input = JobInput {
            spec: &job.spec,
            status,
            generation: job.metadata.generation.unwrap_or(0),
            created: job.metadata.creation_timestamp.as_deref().and_then(parse_time).unwrap_or(now),
            runs: runs.iter().map(|r| run_view(r, bookkeeping::status_of(&mut memory.writer.runs, r))).collect(),
            stage_ahead: decide::stage_ahead(memory.staging_took),
        };
        let plan = decide::decide_job(&input, now);
        let write_status = memory.writer.jobs.decided(
            key.clone(),
            bookkeeping::uid_of(&*job),
            &plan.status,
            job.status.as_ref(),
            idle,
        );
        schedules_due = earliest(schedules_due, plan.wake_at);
        if decide::offers_ahead(plan.wake_at, now).soon {
            roles_due.insert(job.spec.run.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_string()));
            jobs_due_soon += 1;
        }
        // A staged run cancelled goes with its task now, before the node starts it.
        let cancel_tasks = plan
            .cancel
            .iter()
            .flat_map(|run| {
                caches
                    .tasks
                    .by_index(BY_RUN, &format!("{}/{run}", job.metadata.namespace.as_deref().unwrap_or_default()))
            })
            .map(|t| t.metadata.name.clone())
            .collect();
        plans.push(JobDecision { job, runs, plan, write_status, made: Vec::new(), cancel_tasks });
    }
    // The new runs of every job, created many to a write.
    let new_runs: Vec<JobRun> =
        plans.iter().flat_map(|d| d.plan.start.iter().map(|start| new_run(&d.job, start))).collect();
    // Runs staged for a time to come: the bookkeeping keeps quiet around a burst.
    let mut staged: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for t in plans.iter().flat_map(|d| d.plan.start.iter().map(|start| start.time)).filter(|t| *t > now) {
        *staged.entry(t).or_default() += 1;
    }
    staged.into_iter().for_each(|(t, runs)| memory.writer.quiet.around(t, runs));
    let mut created: HashMap<String, Vec<JobRun>> = HashMap::new();
    for run in create_runs(apis, new_runs).await {
        created.entry(job_key_of(&run)).or_default().push(run);
    }
    for d in &mut plans {
        d.made = created.remove(&key_of(&*d.job)).unwrap_or_default();
    }
    let applied: Vec<(Vec<JobRun>, Later)> = futures::stream::iter(plans)
        .map(|d| async move { apply_job(apis, d, now, counts).await })
        .buffer_unordered(JOBS_IN_FLIGHT)
        .collect()
        .await;
    let (started, later): (Vec<Vec<JobRun>>, Vec<Later>) = applied.into_iter().unzip();
    let jobs_ms = clock.elapsed().as_millis() as u64;
    let started_now: usize = started.iter().map(Vec::len).sum();
    // Runs its schedules made (not manual runs admitted): what staging costs.
    let made_now = started.iter().flatten().any(|r| r.spec.trigger.schedule.is_some());
    // Runs started or admitted just now are launched in this round, not once the
    // watch brings them back: the lag from the due time is the round's, not two.
    let mut fresh: HashMap<String, Arc<JobRun>> =
        started.into_iter().flatten().map(|r| (key_of(&r), Arc::new(r))).collect();
    let mut runs: Vec<Arc<JobRun>> = caches
        .runs
        .list()
        .into_iter()
        .map(|r| {
            let written = fresh.remove(&key_of(&*r));
            fresher(r, written)
        })
        .collect();
    runs.extend(fresh.into_values());
    // A schedule due soon: offers are asked for now, and kept rather than declined.
    let quiet = &memory.writer.quiet;
    memory.next_schedule = schedules_due;
    let ahead = decide::offers_ahead_quietly(schedules_due, now, |t| quiet.end_of_window_at(t));
    let due_soon = ahead.soon;
    due = earliest(due, ahead.wake_at);

    // 2. Runs: attempts.
    let mut decisions: Vec<RunDecision> = Vec::new();
    memory.launched.retain(|_, (_, at)| at.elapsed() < UNSEEN);
    for run in runs {
        // Ended as stored, not only as decided: a run whose end is decided but not
        // written yet is decided again, so that the writer is handed its status.
        if run.metadata.deletion_timestamp.is_some() || run.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
            continue;
        }
        let current = bookkeeping::status_of(&mut memory.writer.runs, &run);
        // A manual run goes ahead once its job admitted it (gave it a status).
        if current.is_none() && run.spec.trigger.schedule.is_none() {
            continue;
        }
        let Some(template) = run.spec.run.as_ref() else { continue };
        let key = key_of(&*run);
        let mut tasks: Vec<AttemptView> = caches.tasks.by_index(BY_RUN, &key).iter().map(|t| attempt_view(t)).collect();
        if let Some((name, _)) = memory.launched.get(&key) {
            if tasks.iter().any(|t| t.task == *name) {
                memory.launched.remove(&key);
            } else {
                // Launched, not yet seen: it counts as the attempt in flight.
                tasks.push(AttemptView {
                    task: name.clone(),
                    node: None,
                    phase: TaskPhase::Staging,
                    killing: false,
                    created: now,
                    started: None,
                    finished: None,
                    exit_code: None,
                    message: None,
                });
            }
        }
        let none = JobRunStatus::default();
        let input = RunInput {
            template,
            kill: run.spec.kill,
            created: run.metadata.creation_timestamp.as_deref().and_then(parse_time).unwrap_or(now),
            start_at: run.spec.trigger.scheduled_time.as_deref().and_then(parse_time),
            status: current.unwrap_or(&none),
            tasks,
        };
        let plan = decide::decide_run(&input, now);
        due = earliest(due, plan.wake_at);
        decisions.push(RunDecision { run, plan });
    }

    // Kills first: a deadline or a kill request does not wait for the offers.
    let kills: Vec<(String, String)> = decisions
        .iter()
        .flat_map(|d| {
            let ns = d.run.metadata.namespace.clone().unwrap_or_default();
            d.plan.kill.iter().map(move |t| (ns.clone(), t.clone()))
        })
        .collect();
    futures::stream::iter(kills)
        .for_each_concurrent(IN_FLIGHT, |(ns, name)| async move {
            let meta = corral_api::meta::ObjectMeta { name: name.clone(), namespace: Some(ns), ..Default::default() };
            if let Err(e) = kill_task(&apis.tasks, &meta).await {
                tracing::debug!(error = %e, task = %name, "cannot kill a run's task");
            }
        })
        .await;

    // 3. Attempts matched to the offers.
    // The index of each run launching, and its template (borrowed from its decision).
    let launching: Vec<(usize, &RunTemplate)> = decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.plan.launch)
        .filter_map(|(i, d)| Some((i, d.run.spec.run.as_ref()?)))
        .collect();
    let demands: Vec<Demand> = launching
        .iter()
        .map(|&(i, template)| Demand {
            key: key_of(&*decisions[i].run),
            count: 1,
            resources: template.task.resources,
            ports: template.task.ports.clone(),
            role: template.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_string()),
            constraints: template.constraints.clone(),
            placed: Vec::new(),
            node: None,
        })
        .collect();
    let mut roles: BTreeSet<String> = demands.iter().map(|d| d.role.clone()).collect();
    if due_soon {
        roles.extend(roles_due);
    }
    if roles.is_empty() {
        roles.insert(DEFAULT_ROLE.to_string());
    }
    let wants_offers = !demands.is_empty() || due_soon;
    memory.wants_offers.store(wants_offers, Ordering::Relaxed);
    memory.registration.ensure(&apis.frameworks, JOBS_FRAMEWORK, wants_offers, &roles).await;
    memory.used.retain(|_, at| at.elapsed() < UNSEEN);
    let offers: Vec<OfferView> = matching::open_offers(&caches.offers.list(), &memory.used);
    let matching = matching::match_offers(&offers, &demands);
    let mut accepts: Vec<(String, Vec<(String, Task)>)> = Vec::new();
    for a in &matching.accepts {
        memory.used.insert(a.offer.clone(), Instant::now());
        let tasks = a
            .launches
            .iter()
            .map(|l| {
                let (i, template) = launching[l.demand];
                let d = &decisions[i];
                let attempt = d.plan.status.attempts.len() + 1;
                let name = format!("{}-{attempt}", d.run.metadata.name);
                (key_of(&*d.run), new_task(&d.run, template, &l.host_ports, &name, now))
            })
            .collect();
        accepts.push((a.offer.clone(), tasks));
    }
    // The templates are no longer needed: the borrows of the decisions end here, as
    // the statuses below are written into them.
    let launching: Vec<usize> = launching.into_iter().map(|(i, _)| i).collect();
    // Offers kept for the schedules due soon — one per job due at most, so that an
    // every-second schedule does not hold every node from other frameworks — are
    // neither declined (a declined node would be refused at the very time) nor
    // forgotten: the next round may take them.
    let keep = if due_soon { jobs_due_soon } else { 0 };
    let unused: Vec<String> = matching.unused.iter().skip(keep).cloned().collect();
    for name in &unused {
        memory.used.insert(name.clone(), Instant::now());
    }
    let client = &apis.client;
    let accepted: Vec<Vec<(String, String)>> = futures::stream::iter(accepts)
        .map(|(offer, tasks)| async move {
            let names: Vec<(String, String)> =
                tasks.iter().map(|(k, t)| (k.clone(), t.metadata.name.clone())).collect();
            let accept = OfferAccept {
                framework: JOBS_FRAMEWORK.to_string(),
                tasks: tasks.into_iter().map(|(_, t)| t).collect(),
            };
            // The tasks made are known by name already: the answer is read, not kept.
            match client.accept_offer_as::<serde::de::IgnoredAny>(&offer, &accept).await {
                Ok(_) => names,
                Err(e) => {
                    tracing::debug!(error = %e, %offer, "an accept was refused; the attempts wait for the next offer");
                    Vec::new()
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let launch_ms = clock.elapsed().as_millis() as u64;
    if made_now {
        memory.staging_took = clock.elapsed();
    }
    let mut launched_now = std::collections::HashSet::new();
    for (run, task) in accepted.into_iter().flatten() {
        counts.launched.inc();
        launched_now.insert(run.clone());
        memory.launched.insert(run, (task, Instant::now()));
    }
    // Everything launched, and nothing due soon: offers that come now (this round's
    // accepts taking them, mostly) are nothing to wake the rounds for.
    if launched_now.len() == launching.len() && !due_soon {
        memory.wants_offers.store(false, Ordering::Relaxed);
    }
    futures::stream::iter(unused)
        .for_each_concurrent(IN_FLIGHT, |offer| async move {
            decline(client, JOBS_FRAMEWORK, &offer, REFUSE_SECONDS).await;
        })
        .await;

    // 4. Run statuses, with why an attempt waits.
    for u in &matching.waiting {
        let d = &mut decisions[launching[u.demand]];
        let short = matching::Shortfall {
            instances: u.instances,
            offers_examined: u.offers_examined,
            refusals: &u.refusals,
            offers_in_round: offers.len(),
        };
        d.plan.status.waiting = Some(Waiting {
            instances: u.instances,
            offers_examined: u.offers_examined,
            refusals: u.refusals.clone(),
            backoff_until: None,
            message: matching::why(&short),
        });
    }
    // 5. The runs' statuses, old runs pruned and the jobs' statuses: handed to the
    // writer, which the next round does not wait for. A busy writer is handed
    // nothing; the first round that finds it idle writes what was decided since.
    // A scheduled run launched as soon as it was started, or staged and waiting for
    // its time, has nothing to say until its task runs: its first status waits for
    // that (one write fewer a run).
    let writer = &mut memory.writer;
    let writes: Vec<JobRun> = decisions
        .into_iter()
        .filter(|d| d.run.status.is_some() || !(d.plan.staged || launched_now.contains(&key_of(&*d.run))))
        .filter(|d| {
            writer.runs.decided(
                key_of(&*d.run),
                bookkeeping::uid_of(&*d.run),
                &d.plan.status,
                d.run.status.as_ref(),
                idle,
            )
        })
        .map(|d| {
            apis.run_events.push(&d.run, run_happenings(d.run.status.as_ref(), &d.plan.status));
            let mut run = (*d.run).clone();
            run.status = Some(d.plan.status);
            run
        })
        .collect();
    let run_writes = writes.len();
    if idle {
        writer.hand_over(apis, writes, later);
    }
    tracing::debug!(
        started = started_now,
        launched = launched_now.len(),
        run_statuses = run_writes,
        writer_was_idle = idle,
        jobs_ms,
        launch_ms,
        took_ms = clock.elapsed().as_millis() as u64,
        woken = memory.woken,
        "jobs round"
    );
    due
}

/// What one job decided, and the runs its schedules started.
struct JobDecision {
    job: Arc<Job>,
    runs: Vec<Arc<JobRun>>,
    plan: decide::JobPlan,
    /// Whether to write its status now ([`bookkeeping::Statuses::decided`]).
    write_status: bool,
    /// Its new runs, as created.
    made: Vec<JobRun>,
    /// The tasks of the staged runs it cancels.
    cancel_tasks: Vec<String>,
}

/// What of a job's plan waits for the end of the round: the launches of its new runs
/// do not wait for it.
pub(crate) struct Later {
    job: Arc<Job>,
    /// Ended runs to prune.
    delete: Vec<String>,
    /// The status to write, if it changed.
    status: Option<JobStatus>,
}

/// Makes the urgent part of a job's plan: new runs, admissions and refusals, kills.
/// Returns the runs started and admitted, as written, and the rest of the plan.
async fn apply_job(apis: &Apis, decision: JobDecision, now: DateTime<Utc>, counts: &Counts) -> (Vec<JobRun>, Later) {
    let JobDecision { job, runs, plan, write_status, mut made, cancel_tasks } = decision;
    let job = &job;
    apis.job_events.push(job, job_happenings(&plan));
    let mut going = Vec::new();
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let runs_api = apis.runs.in_namespace(&ns);
    let by_name = |name: &str| runs.iter().find(|r| r.metadata.name == name);
    for start in &plan.start {
        let name = run_name(job, start);
        // Not created: started before (a restart between the run and the job's
        // status), or refused (logged where it was created).
        let Some(at) = made.iter().position(|r| r.metadata.name == name) else { continue };
        let mut created = made.swap_remove(at);
        counts.started.inc();
        counts.start_lag.observe((now - start.time).to_std().unwrap_or_default().as_secs_f64());
        // A scheduled run goes ahead without a status; one is written only to say it
        // started late.
        if start.message.is_some() {
            created.status = Some(JobRunStatus { message: start.message.clone(), ..Default::default() });
            match runs_api.update_status(&created).await {
                Ok(written) => created = written,
                Err(e) => tracing::debug!(error = %e, run = %name, "cannot write a new run's status"),
            }
        }
        going.push(created);
    }
    for name in &plan.admit {
        let Some(run) = by_name(name) else { continue };
        let mut admitted = (**run).clone();
        if admitted.spec.run.is_none() || !admitted.metadata.labels.contains_key(JOB_LABEL) {
            admitted.spec.run.get_or_insert_with(|| job.spec.run.clone());
            admitted.metadata.labels.insert(JOB_LABEL.to_string(), job.metadata.name.clone());
            if admitted.metadata.owner_references.is_empty() {
                admitted.metadata.owner_references =
                    corral_runtime::owner_reference(&**job, true).into_iter().collect();
            }
            match runs_api.update(&admitted).await {
                Ok(updated) => admitted = updated,
                Err(e) => {
                    tracing::debug!(error = %e, run = %name, "cannot admit a manual run");
                    continue;
                }
            }
        }
        admitted.status = Some(JobRunStatus { message: Some("started by hand".into()), ..Default::default() });
        match runs_api.update_status(&admitted).await {
            Ok(written) => going.push(written),
            Err(e) => tracing::debug!(error = %e, run = %name, "cannot admit a manual run"),
        }
    }
    for (name, why) in &plan.refuse {
        let Some(run) = by_name(name) else { continue };
        let mut refused = (**run).clone();
        refused.status = Some(JobRunStatus {
            phase: RunPhase::Failed,
            message: Some(why.clone()),
            finish_time: Some(decide::rfc3339(now)),
            ..Default::default()
        });
        if let Err(e) = runs_api.update_status(&refused).await {
            tracing::debug!(error = %e, run = %name, "cannot refuse a manual run");
        }
    }
    for name in &plan.kill {
        let Some(run) = by_name(name) else { continue };
        let mut killed = (**run).clone();
        killed.spec.kill = true;
        if let Err(e) = runs_api.update(&killed).await {
            tracing::debug!(error = %e, run = %name, "cannot kill a replaced run");
        }
    }
    // Cancelled before they start: the tasks first, so that no node starts one whose
    // run is gone.
    let tasks_api = apis.tasks.in_namespace(&ns);
    for name in &cancel_tasks {
        if let Err(e) = tasks_api.delete(name, &corral_client::DeleteParams::default()).await
            && !e.is_not_found()
        {
            tracing::debug!(error = %e, task = %name, "cannot delete a cancelled run's task");
        }
    }
    for name in &plan.cancel {
        match runs_api.delete(name, &corral_client::DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(job = %job.metadata.name, run = %name, "a staged run its schedule no longer wants is cancelled")
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::debug!(error = %e, run = %name, "cannot cancel a staged run"),
        }
    }
    let status = write_status.then_some(plan.status);
    (going, Later { job: job.clone(), delete: plan.delete, status })
}

/// The name of the run a schedule starts: the time it was due, so that a time is
/// never started twice.
fn run_name(job: &Job, start: &decide::NewRun) -> String {
    if job.spec.schedules.len() > 1 {
        format!("{}-{}-{}", job.metadata.name, start.schedule, start.time.format("%Y%m%d%H%M%S"))
    } else {
        format!("{}-{}", job.metadata.name, start.time.format("%Y%m%d%H%M%S"))
    }
}

/// The run a schedule starts, owned by its job.
fn new_run(job: &Job, start: &decide::NewRun) -> JobRun {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let spec = JobRunSpec {
        job: job.metadata.name.clone(),
        trigger: Trigger { schedule: Some(start.schedule.clone()), scheduled_time: Some(decide::rfc3339(start.time)) },
        run: Some(job.spec.run.clone()),
        kill: false,
    };
    let mut run = JobRun::namespaced(&ns, run_name(job, start), spec);
    run.metadata.labels.insert(JOB_LABEL.to_string(), job.metadata.name.clone());
    run.metadata.owner_references = corral_runtime::owner_reference(job, true).into_iter().collect();
    run
}

/// Creates `runs`, [`CREATE_BATCH`] to a transaction: ten thousand jobs due at once
/// are ten thousand runs, and one request each would be most of a round. A
/// transaction refused (one of its runs exists: started before a restart) is created
/// again one run at a time, so that each gets its own answer. Returns the runs
/// created, as stored.
async fn create_runs(apis: &Apis, runs: Vec<JobRun>) -> Vec<JobRun> {
    let batches: Vec<Vec<JobRun>> = runs.chunks(CREATE_BATCH).map(<[JobRun]>::to_vec).collect();
    let created: Vec<Vec<JobRun>> = futures::stream::iter(batches)
        .map(|batch| async move {
            if batch.len() > 1 {
                match create_together(&apis.client, &batch).await {
                    Ok(created) => return created,
                    Err(e) => tracing::debug!(error = %e, runs = batch.len(), "runs created one by one"),
                }
            }
            futures::stream::iter(batch)
                .map(|run| async move {
                    let api = apis.runs.in_namespace(run.metadata.namespace.as_deref().unwrap_or_default());
                    match api.create(&run).await {
                        Ok(created) => Some(created),
                        Err(e) if e.is_conflict() || e.is_already_exists() => None,
                        Err(e) => {
                            tracing::warn!(error = %e, run = %run.metadata.name, "cannot start a scheduled run");
                            None
                        }
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .filter_map(futures::future::ready)
                .collect()
                .await
        })
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .collect()
        .await;
    created.into_iter().flatten().collect()
}

/// Creates every run of `batch` in one transaction, or none.
async fn create_together(client: &Client, batch: &[JobRun]) -> corral_client::Result<Vec<JobRun>> {
    let decode =
        |what: &str, e: serde_json::Error| corral_client::Error::Decode { what: what.into(), message: e.to_string() };
    let operations = batch
        .iter()
        .map(|r| serde_json::to_value(r).map(Operation::create))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| decode("a new run", e))?;
    let answer = client.transact(&Transaction { operations }, &TransactParams::default()).await?;
    answer
        .results
        .into_iter()
        .filter_map(|r| r.object)
        .map(|o| serde_json::from_value(o).map_err(|e| decode("a run created", e)))
        .collect()
}

/// The newer of a cached run and the one this round wrote, by revision.
fn fresher(cached: Arc<JobRun>, written: Option<Arc<JobRun>>) -> Arc<JobRun> {
    match written {
        Some(w) if w.revision() > cached.revision() => w,
        _ => cached,
    }
}

/// A run as its job decides on it, with `status` as stored or handed to the writer.
fn run_view(r: &JobRun, status: Option<&JobRunStatus>) -> RunView {
    RunView {
        name: r.metadata.name.clone(),
        phase: status.map(|s| s.phase).unwrap_or_default(),
        admitted: status.is_some(),
        schedule: r.spec.trigger.schedule.clone(),
        created: r.metadata.creation_timestamp.as_deref().and_then(parse_time).unwrap_or_default(),
        finished: status.and_then(|s| s.finish_time.as_deref()).and_then(parse_time),
        // Read only where it can matter (a run not ended may be staged): a round views
        // every run of every job, history included.
        due: status
            .is_none_or(|s| !s.phase.is_terminal())
            .then(|| r.spec.trigger.scheduled_time.as_deref().and_then(parse_time))
            .flatten(),
    }
}

fn attempt_view(t: &TaskSummary) -> AttemptView {
    let status = t.status.as_ref();
    let time = |s: Option<&String>| s.and_then(|s| parse_time(s));
    AttemptView {
        task: t.metadata.name.clone(),
        node: t.spec.node_name.clone(),
        phase: status.map(|s| s.phase).unwrap_or_default(),
        killing: t.spec.kill || t.metadata.deletion_timestamp.is_some(),
        created: time(t.metadata.creation_timestamp.as_ref()).unwrap_or_default(),
        started: time(status.and_then(|s| s.start_time.as_ref())),
        finished: time(status.and_then(|s| s.finish_time.as_ref())),
        exit_code: status.and_then(|s| s.exit_code),
        message: status.and_then(|s| match (&s.reason, s.exit_code) {
            (Some(r), Some(code)) => Some(format!("{r}: exited with code {code}")),
            (Some(r), None) => Some(r.clone()),
            (None, Some(code)) => Some(format!("exited with code {code}")),
            (None, None) => None,
        }),
    }
}

/// The task of a run's attempt `name`; that of a run staged ahead of its time (at
/// `now`) starts at that time.
fn new_task(run: &JobRun, template: &RunTemplate, host_ports: &[u16], name: &str, now: DateTime<Utc>) -> Task {
    let ns = run.metadata.namespace.clone().unwrap_or_default();
    let mut spec = template.task.clone();
    for (p, hp) in spec.ports.iter_mut().zip(host_ports) {
        p.host_port = Some(*hp);
    }
    let due = run.spec.trigger.scheduled_time.as_deref().and_then(parse_time);
    spec.start_at = due.filter(|d| *d > now).map(decide::rfc3339);
    let mut task = Task::namespaced(ns, name.to_string(), spec);
    task.metadata.labels.insert(JOB_LABEL.to_string(), run.spec.job.clone());
    task.metadata.labels.insert(RUN_LABEL.to_string(), run.metadata.name.clone());
    task.metadata.owner_references = corral_runtime::owner_reference(run, true).into_iter().collect();
    task
}

/// `NAMESPACE/JOB` of a run's job: the key of the runs' index and of the jobs.
fn job_key_of(run: &JobRun) -> String {
    format!("{}/{}", run.metadata.namespace.as_deref().unwrap_or_default(), run.spec.job)
}

fn key_of(o: &impl ApiObject) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_that_came_while_the_round_ran_is_due_at_once() {
        let now = parse_time("2026-12-07T02:45:55.236Z").unwrap_or_default();
        let ms = |ms: i64| Some(now + chrono::Duration::milliseconds(ms));
        // The round began just before its staging time and ended just after it.
        assert_eq!(sleep_before(ms(-236), now), Duration::from_millis(1));
        assert_eq!(sleep_before(ms(2000), now), Duration::from_secs(2));
        assert_eq!(sleep_before(ms(60_000), now), IDLE);
        assert_eq!(sleep_before(None, now), IDLE);
    }

    #[test]
    fn a_change_waits_as_long_as_the_last_round_took_but_at_most_a_second() {
        let ms = Duration::from_millis;
        let cases = [
            (Woken::Change, ms(0), SETTLE),
            (Woken::Change, ms(300), ms(300)),
            // A staging round of four seconds: a job made meanwhile may be due soon.
            (Woken::Change, ms(4000), CHANGE_WAIT_MAX),
            (Woken::Bookkeeping, ms(0), SETTLE),
            (Woken::Bookkeeping, ms(300), ms(1500)),
            (Woken::Bookkeeping, ms(4000), ms(20_000)),
        ];
        for (woken, took, want) in cases {
            assert_eq!(wait_after(woken, took), want, "{woken:?} after a round of {took:?}");
        }
    }
}
