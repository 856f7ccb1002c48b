//! The jobs controller's decisions, pure: from a job, its runs and the clock, the
//! runs to start, admit, refuse, kill and prune and the job's status
//! ([`decide_job`]); from a run, its tasks and the clock, whether to launch an
//! attempt, which tasks to kill and the run's status ([`decide_run`]).
//!
//! A schedule's next run is **staged** up to [`STAGE_AHEAD`] before its due time
//! (longer after a slow staging: [`stage_ahead`]): the
//! run and its task are made and placed early, and the node starts the task at the
//! due time (`spec.startAt`), so that thousands of runs due at one second start on
//! time rather than as fast as the control plane can make them. One run is staged
//! per schedule at most. `REPLACE` schedules are not staged (which run replaces
//! which is decided at the due time), nor are `FORBID` ones while a run is active.
//! A staged run whose schedule is disabled, removed or no longer names its time is
//! cancelled (deleted) before it starts; one staged before a change of the job's
//! template runs with the template it was staged with, as any run made before.
//!
//! Concurrency is judged here for manual runs as for scheduled ones: a manual run
//! is created by hand (`corral job run`) and waits, unadmitted, until the job
//! decides; under `FORBID` it is refused while another run is active (DC/OS Jobs let
//! it overlap), under `REPLACE` the active runs are killed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use corral_api::kinds::job::{
    Attempt, ConcurrencyPolicy, JobRunStatus, JobSpec, JobStatus, RestartPolicy, RunPhase, RunTemplate, ScheduleStatus,
};
use corral_api::kinds::service::Condition;
use corral_api::kinds::task::TaskPhase;

use super::schedule;

/// What the job's decision reads of one of its runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunView {
    /// The run's name.
    pub name: String,
    /// Its phase (`Pending` until it is admitted or ends).
    pub phase: RunPhase,
    /// Whether the job admitted it (it has a status): scheduled runs are admitted
    /// as they are made, manual ones wait for [`decide_job`].
    pub admitted: bool,
    /// The schedule that started it; none: by hand.
    pub schedule: Option<String>,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// The time it was due, for a scheduled run.
    pub due: Option<DateTime<Utc>>,
}

impl RunView {
    fn active(&self) -> bool {
        !self.phase.is_terminal()
    }

    /// Staged ahead and not due yet at `now`.
    fn staged(&self, now: DateTime<Utc>) -> bool {
        self.schedule.is_some() && self.active() && self.due.is_some_and(|d| d > now)
    }
}

/// The observed state of a job.
#[derive(Clone, Debug)]
pub struct JobInput<'a> {
    /// Its spec.
    pub spec: &'a JobSpec,
    /// Its status as last written.
    pub status: &'a JobStatus,
    /// Its `metadata.generation`.
    pub generation: i64,
    /// When it was made: schedules count from then until they first act.
    pub created: DateTime<Utc>,
    /// Its runs.
    pub runs: Vec<RunView>,
    /// How long before a due time its run is staged ([`STAGE_AHEAD`]; zero: made at
    /// the due time).
    pub stage_ahead: Duration,
}

/// A run a schedule starts.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    /// The schedule's id.
    pub schedule: String,
    /// The time it was due.
    pub time: DateTime<Utc>,
    /// Said in the run's status when it started late or after missed times.
    pub message: Option<String>,
}

/// What to do for a job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobPlan {
    /// Runs to start, one per schedule due.
    pub start: Vec<NewRun>,
    /// Manual runs admitted: they go ahead.
    pub admit: Vec<String>,
    /// Manual runs refused under `FORBID`, with the reason.
    pub refuse: Vec<(String, String)>,
    /// Active runs to kill: replaced under `REPLACE`.
    pub kill: Vec<String>,
    /// Ended runs beyond the history limits, oldest first.
    pub delete: Vec<String>,
    /// Staged runs cancelled before their time (their schedule no longer wants
    /// them): deleted, as if never made.
    pub cancel: Vec<String>,
    /// The job's status after this plan.
    pub status: JobStatus,
    /// When the job must be decided again by the clock: its next schedule time, or
    /// the time to stage its run.
    pub wake_at: Option<DateTime<Utc>>,
}

/// How long before a schedule's due time the framework asks for offers again, so
/// that they are there when the time comes instead of being made then.
pub const LEAD: Duration = Duration::from_secs(2);

/// How long before its due time a scheduled run is staged (see the module's doc), at
/// least: long enough for the control plane to make and place ten thousand runs due
/// at one second (`corral-bench jobs`) before that second. The controller stages
/// earlier when its last staging took more than half of it (up to
/// [`MAX_STAGE_AHEAD`]).
pub const STAGE_AHEAD: Duration = Duration::from_secs(5);

/// The longest a run is staged before its due time.
pub const MAX_STAGE_AHEAD: Duration = Duration::from_secs(15);

/// How long before their due times runs are staged, when the last round that made
/// runs took `last_staging` to make and place them: [`STAGE_AHEAD`], or three times
/// that time if longer — on a busy machine, ten thousand runs due at one second take
/// longer to make and place, and longer again as their jobs' histories fill (half as
/// long again by the fourth time of `corral-bench jobs`) — but at most
/// [`MAX_STAGE_AHEAD`].
pub fn stage_ahead(last_staging: Duration) -> Duration {
    (last_staging * 3).clamp(STAGE_AHEAD, MAX_STAGE_AHEAD)
}

/// How long after a schedule's time a lead longer than [`STAGE_AHEAD`] stops: past
/// the quiet window in which the nodes report that time's runs started (the
/// bookkeeping's, 1.5 s), with a moment to spare, so that neither the staging of the
/// next time nor the round that asks for its offers ([`LEAD`] before it, held to the
/// window's end by [`offers_ahead_quietly`]) competes with those reports.
pub const AFTER_PREVIOUS: Duration = Duration::from_secs(2);

/// How long before `next` its run is staged, `ahead` asked, when the schedule's time
/// before it is `prev`: a lead longer than [`STAGE_AHEAD`] stops [`AFTER_PREVIOUS`]
/// after `prev`.
fn lead(ahead: chrono::Duration, prev: Option<DateTime<Utc>>, next: DateTime<Utc>) -> chrono::Duration {
    let least = chrono::Duration::from_std(STAGE_AHEAD).unwrap_or_default();
    let after = chrono::Duration::from_std(AFTER_PREVIOUS).unwrap_or_default();
    prev.map_or(ahead, |p| ahead.min((next - p - after).max(least)))
}

/// What the next due time of the schedules asks of the framework now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ahead {
    /// A time is due within [`LEAD`] (or past): offers are wanted and kept, not
    /// declined.
    pub soon: bool,
    /// When to look again: [`LEAD`] before the due time, or at it once that is past.
    pub wake_at: Option<DateTime<Utc>>,
}

/// What the earliest due time of the schedules, `due`, asks for at `now`.
pub fn offers_ahead(due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Ahead {
    let lead = chrono::Duration::from_std(LEAD).unwrap_or_default();
    match due {
        None => Ahead { soon: false, wake_at: None },
        Some(at) if at - now > lead => Ahead { soon: false, wake_at: Some(at - lead) },
        Some(at) => Ahead { soon: true, wake_at: Some(at) },
    }
}

/// [`offers_ahead`], kept out of a quiet window: getting ready for the next due time
/// (asking for offers, then staging its runs) waits until the nodes have reported
/// the starts of a burst due just before, when it would only compete with those
/// reports — unless the window lasts past that due time itself. `quiet_end(t)` is
/// the end of the quiet window `t` falls in, if any.
pub fn offers_ahead_quietly(
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    quiet_end: impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>>,
) -> Ahead {
    let ahead = offers_ahead(due, now);
    let (Some(at), Some(wake)) = (due, ahead.wake_at) else { return ahead };
    let ready = if ahead.soon { now } else { wake };
    match quiet_end(ready) {
        Some(end) if end < at => Ahead { soon: false, wake_at: Some(end) },
        _ => ahead,
    }
}

/// Whether a round must ask for offers before it decides the jobs: the time a job is
/// next due by the clock, `next` (a run to stage, mostly), has come. The round that
/// would have asked for them [`LEAD`] before may have been held to the end of a
/// burst's quiet window and run past that time; asked for first, the offers come
/// while the round makes the runs, and it launches them itself rather than leaving
/// them to a later round, seconds closer to the due time.
pub fn offers_first(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    next.is_some_and(|t| t <= now)
}

/// The policy manual runs follow: the strictest of the enabled schedules'
/// (`FORBID` over `REPLACE` over `ALLOW`); `ALLOW` for a job without schedules.
pub fn manual_policy(spec: &JobSpec) -> ConcurrencyPolicy {
    let policies: Vec<ConcurrencyPolicy> =
        spec.schedules.iter().filter(|s| s.enabled).map(|s| s.concurrency_policy).collect();
    if policies.contains(&ConcurrencyPolicy::Forbid) {
        ConcurrencyPolicy::Forbid
    } else if policies.contains(&ConcurrencyPolicy::Replace) {
        ConcurrencyPolicy::Replace
    } else {
        ConcurrencyPolicy::Allow
    }
}

/// Decides for a job at `now`.
pub fn decide_job(input: &JobInput<'_>, now: DateTime<Utc>) -> JobPlan {
    let mut plan = JobPlan::default();
    // 0. Staged runs their schedule no longer wants: cancelled, and the schedule's
    // time goes back to now, so that what it names next is not passed over.
    let mut rewind: Vec<&str> = Vec::new();
    for r in input.runs.iter().filter(|r| r.staged(now)) {
        let (Some(id), Some(due)) = (r.schedule.as_deref(), r.due) else { continue };
        let wanted = input
            .spec
            .schedules
            .iter()
            .find(|s| s.id == id && s.enabled)
            .and_then(|s| schedule::compile(s).ok())
            .is_some_and(|c| c.next_after(due - chrono::Duration::seconds(1)) == Some(due));
        if !wanted {
            plan.cancel.push(r.name.clone());
            rewind.push(id);
        }
    }
    // Runs that count as active for concurrency: admitted ones not ended or killed.
    let mut active: Vec<String> = input
        .runs
        .iter()
        .filter(|r| r.active() && (r.admitted || r.schedule.is_some()) && !plan.cancel.contains(&r.name))
        .map(|r| r.name.clone())
        .collect();

    // 1. Manual runs waiting for admission, oldest first.
    let mut waiting: Vec<&RunView> =
        input.runs.iter().filter(|r| r.schedule.is_none() && !r.admitted && r.active()).collect();
    waiting.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let manual = manual_policy(input.spec);
    for r in waiting {
        match manual {
            ConcurrencyPolicy::Forbid if !active.is_empty() => plan.refuse.push((
                r.name.clone(),
                format!("refused: the job's concurrencyPolicy is FORBID and run {} is active", active.join(", ")),
            )),
            ConcurrencyPolicy::Replace => {
                plan.kill.append(&mut active);
                plan.admit.push(r.name.clone());
                active.push(r.name.clone());
            }
            _ => {
                plan.admit.push(r.name.clone());
                active.push(r.name.clone());
            }
        }
    }

    // 2. Schedules.
    let mut scheduled_ok = true;
    let mut errors = Vec::new();
    for s in &input.spec.schedules {
        let before = input.status.schedules.iter().find(|st| st.id == s.id);
        let mut st = ScheduleStatus {
            id: s.id.clone(),
            last_schedule_time: before.and_then(|b| b.last_schedule_time.clone()),
            missed: before.map_or(0, |b| b.missed),
            skipped: before.map_or(0, |b| b.skipped),
            ..Default::default()
        };
        let mut recorded = st.last_schedule_time.as_deref().and_then(parse_time);
        if rewind.contains(&s.id.as_str()) && recorded.is_some_and(|t| t > now) {
            recorded = Some(now);
            st.last_schedule_time = Some(rfc3339(now));
        }
        let compiled = match schedule::compile(s) {
            Ok(c) => c,
            Err(e) => {
                scheduled_ok = false;
                errors.push(format!("schedule {:?}: {e}", s.id));
                st.error = Some(e);
                plan.status.schedules.push(st);
                continue;
            }
        };
        if !s.enabled {
            plan.status.schedules.push(st);
            continue;
        }
        // Staged already: the staged run's time is the schedule's last, ahead of now.
        let staged = recorded.filter(|t| *t > now);
        let since = recorded.unwrap_or(input.created);
        let pass = schedule::pass(&compiled, since, now, Duration::from_secs(s.starting_deadline_seconds));
        st.missed += pass.missed;
        if let Some(last) = pass.last {
            st.last_schedule_time = Some(rfc3339(last));
        }
        st.next_schedule_time = staged.or(pass.next).map(rfc3339);
        if let Some(time) = pass.run {
            match s.concurrency_policy {
                ConcurrencyPolicy::Forbid if !active.is_empty() => st.skipped += 1,
                policy => {
                    if policy == ConcurrencyPolicy::Replace {
                        plan.kill.append(&mut active);
                    }
                    let late = (now - time).to_std().unwrap_or_default();
                    let message = (late >= Duration::from_secs(1) || pass.missed > 0).then(|| {
                        let mut m = format!("started {}s late (due at {})", late.as_secs(), rfc3339(time));
                        if pass.missed > 0 {
                            m.push_str(&format!("; {} earlier time(s) missed", pass.missed));
                        }
                        m
                    });
                    plan.start.push(NewRun { schedule: s.id.clone(), time, message });
                    // Not yet named: a placeholder keeps a later schedule's FORBID honest.
                    active.push(format!("(new run of schedule {})", s.id));
                }
            }
        }
        // Staging the next time: at most one run ahead per schedule.
        let stages = !input.stage_ahead.is_zero() && s.concurrency_policy != ConcurrencyPolicy::Replace;
        let ahead = chrono::Duration::from_std(input.stage_ahead).unwrap_or_default();
        let lead = |prev: Option<DateTime<Utc>>, next: DateTime<Utc>| lead(ahead, prev, next);
        // When the time after a staged one is to be staged: the staged run itself
        // starts on its node with nothing to decide here.
        let after_staged =
            |at: DateTime<Utc>| Some(compiled.next_after(at).map_or(at, |n| (n - lead(Some(at), n)).max(at)));
        let wake = match (staged, pass.next) {
            (Some(at), _) => after_staged(at),
            (None, Some(next)) if stages && next - now > lead(recorded, next) => Some(next - lead(recorded, next)),
            (None, Some(next)) if stages => {
                if s.concurrency_policy == ConcurrencyPolicy::Forbid && !active.is_empty() {
                    // Held by an active run: its end wakes the job; else the due time
                    // judges it, as without staging.
                    Some(next)
                } else {
                    plan.start.push(NewRun { schedule: s.id.clone(), time: next, message: None });
                    active.push(format!("(staged run of schedule {})", s.id));
                    st.last_schedule_time = Some(rfc3339(next));
                    st.next_schedule_time = Some(rfc3339(next));
                    after_staged(next)
                }
            }
            (None, next) => next,
        };
        plan.wake_at = earliest(plan.wake_at, wake);
        plan.status.schedules.push(st);
    }

    // 3. History: the newest ended runs within the limits stay.
    let mut ended: Vec<&RunView> = input.runs.iter().filter(|r| r.phase.is_terminal()).collect();
    ended.sort_by(|a, b| (b.finished.unwrap_or(b.created), &b.name).cmp(&(a.finished.unwrap_or(a.created), &a.name)));
    let (mut good, mut bad) = (0u32, 0u32);
    let mut doomed = Vec::new();
    for r in ended {
        let (count, limit) = if r.phase == RunPhase::Succeeded {
            (&mut good, input.spec.successful_runs_history_limit)
        } else {
            (&mut bad, input.spec.failed_runs_history_limit)
        };
        *count += 1;
        if *count > limit {
            doomed.push(r.name.clone());
        }
    }
    doomed.reverse();
    plan.delete = doomed;

    // 4. Status.
    let status = &mut plan.status;
    status.observed_generation = Some(input.generation);
    status.next_run_time =
        status.schedules.iter().filter_map(|s| s.next_schedule_time.as_deref().and_then(parse_time)).min().map(rfc3339);
    let refused: Vec<&str> = plan.refuse.iter().map(|(n, _)| n.as_str()).collect();
    let mut live: Vec<&RunView> = input
        .runs
        .iter()
        .filter(|r| {
            r.active()
                && !refused.contains(&r.name.as_str())
                && !plan.kill.contains(&r.name)
                && !plan.cancel.contains(&r.name)
        })
        .collect();
    live.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    status.active = live.iter().map(|r| r.name.clone()).collect();
    // A run staged ahead is the next run, not the last.
    let started = input.runs.iter().filter(|r| !r.staged(now));
    if let Some(last) = started.max_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name))) {
        status.last_run = Some(last.name.clone());
        status.last_result = Some(if refused.contains(&last.name.as_str()) { RunPhase::Failed } else { last.phase });
    }
    let previous = input.status.conditions.iter().find(|c| c.type_ == "Scheduled");
    let (truth, reason, message) = if scheduled_ok {
        ("True", "Valid", "every schedule is valid".to_string())
    } else {
        ("False", "InvalidSchedule", errors.join("; "))
    };
    let since = match previous {
        Some(p) if p.status == truth => p.last_transition_time.clone(),
        _ => Some(rfc3339(now)),
    };
    status.conditions = vec![Condition {
        type_: "Scheduled".into(),
        status: truth.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: since,
    }];
    plan
}

/// What the run's decision reads of one of its tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptView {
    /// The task's name.
    pub task: String,
    /// Its node, once placed.
    pub node: Option<String>,
    /// Its phase.
    pub phase: TaskPhase,
    /// Asked to die, or being deleted.
    pub killing: bool,
    /// When it was made: attempts are ordered by it.
    pub created: DateTime<Utc>,
    /// When it started running.
    pub started: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// Its exit code, if its process exited.
    pub exit_code: Option<i32>,
    /// Why it ended, in a few words.
    pub message: Option<String>,
}

/// The observed state of a run.
#[derive(Clone, Debug)]
pub struct RunInput<'a> {
    /// How it is carried out.
    pub template: &'a RunTemplate,
    /// Whether a kill was asked for (`spec.kill`).
    pub kill: bool,
    /// When it was made: its deadline counts from then, or from `start_at` if later.
    pub created: DateTime<Utc>,
    /// When a run staged ahead starts: its scheduled time.
    pub start_at: Option<DateTime<Utc>>,
    /// Its status as last written.
    pub status: &'a JobRunStatus,
    /// Its tasks, one per attempt, as the cache shows them.
    pub tasks: Vec<AttemptView>,
}

/// What to do for a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunPlan {
    /// Launch a new attempt.
    pub launch: bool,
    /// Tasks to kill.
    pub kill: Vec<String>,
    /// The run's status after this plan.
    pub status: JobRunStatus,
    /// When the run must be decided again by the clock: its deadline.
    pub wake_at: Option<DateTime<Utc>>,
    /// Placed ahead of its time and not started yet, before or after that time: a
    /// run without a status yet has nothing to write until it starts
    /// (`spec.trigger.scheduledTime` says when).
    pub staged: bool,
}

/// Decides for a run at `now`.
pub fn decide_run(input: &RunInput<'_>, now: DateTime<Utc>) -> RunPlan {
    let mut plan = RunPlan { status: input.status.clone(), ..Default::default() };
    let st = &mut plan.status;
    if st.phase.is_terminal() {
        return plan;
    }
    // Every attempt ever made stays listed, also once its task is gone.
    let mut tasks = input.tasks.clone();
    tasks.sort_by(|a, b| (a.created, &a.task).cmp(&(b.created, &b.task)));
    for t in &tasks {
        let attempt = Attempt {
            task: t.task.clone(),
            node: t.node.clone(),
            start_time: t.started.map(rfc3339),
            finish_time: t.finished.map(rfc3339),
            exit_code: t.exit_code,
            reason: t.phase.is_terminal().then(|| t.message.clone().unwrap_or_else(|| format!("{:?}", t.phase))),
        };
        match st.attempts.iter_mut().find(|a| a.task == t.task) {
            Some(a) => *a = attempt,
            None => st.attempts.push(attempt),
        }
    }
    if st.start_time.is_none() {
        st.start_time = tasks.iter().filter_map(|t| t.started).min().map(rfc3339);
    }
    let alive: Vec<&AttemptView> = tasks.iter().filter(|t| !t.phase.is_terminal()).collect();
    let to_kill = |alive: &[&AttemptView]| alive.iter().filter(|t| !t.killing).map(|t| t.task.clone()).collect();
    // A run staged ahead is not late for waiting until its time.
    let begins = input.start_at.map_or(input.created, |s| s.max(input.created));
    let deadline = input.template.active_deadline_seconds.map(|s| begins + chrono::Duration::seconds(s as i64));
    let end = |st: &mut JobRunStatus, phase: RunPhase, message: String| {
        st.phase = phase;
        st.message = Some(message);
        st.finish_time = Some(rfc3339(now));
        st.waiting = None;
    };

    if input.kill {
        plan.kill = to_kill(&alive);
        end(st, RunPhase::Killed, "killed on request".into());
        return plan;
    }
    if let Some(d) = deadline.filter(|d| now >= *d) {
        plan.kill = to_kill(&alive);
        let secs = input.template.active_deadline_seconds.unwrap_or_default();
        end(
            st,
            RunPhase::Failed,
            format!("DeadlineExceeded: the run passed its activeDeadlineSeconds ({secs}s) at {}", rfc3339(d)),
        );
        return plan;
    }
    plan.wake_at = deadline;
    if let Some(done) = tasks.iter().find(|t| t.phase == TaskPhase::Finished) {
        end(st, RunPhase::Succeeded, format!("attempt {} succeeded", done.task));
        return plan;
    }
    if !alive.is_empty() {
        let placed = alive.iter().find_map(|t| t.node.as_deref());
        let started = alive.iter().any(|t| t.started.is_some() || t.phase == TaskPhase::Running);
        match (placed, input.start_at.filter(|at| *at > now)) {
            (Some(node), Some(at)) if !started => {
                st.phase = RunPhase::Pending;
                // Its node starts it and says so: the report, not the clock, brings
                // the run's next decision.
                st.message = Some(format!("staged on node {node}; starts at {}", rfc3339(at)));
                plan.staged = true;
            }
            // Placed, and its time come, but not reported started yet: Pending until
            // its node says it runs (as a pod is until its containers do). Nothing
            // changes at its time by the clock alone — ten thousand runs due at one
            // second would otherwise write ten thousand statuses just as their nodes
            // report their tasks.
            (Some(_), _) if !started => {
                st.phase = RunPhase::Pending;
                plan.staged = input.start_at.is_some();
            }
            (Some(_), _) => {
                st.phase = RunPhase::Running;
                if st.message.as_deref().is_some_and(|m| m.starts_with("staged on node")) {
                    st.message = None;
                }
            }
            (None, _) => st.phase = RunPhase::Pending,
        }
        return plan;
    }
    // No attempt alive: the first one, another one, or the end.
    let made = tasks.len().max(st.attempts.len());
    let last_failure = st.attempts.last().and_then(|a| a.reason.clone());
    match (made, input.template.restart_policy) {
        (0, _) => {
            plan.launch = true;
            st.phase = RunPhase::Pending;
        }
        (n, RestartPolicy::OnFailure) if n < input.template.retry_limit as usize => {
            plan.launch = true;
            st.phase = RunPhase::Pending;
            st.message = Some(format!(
                "attempt {n} failed ({}); attempt {} of {} starts",
                last_failure.unwrap_or_default(),
                n + 1,
                input.template.retry_limit
            ));
        }
        (n, RestartPolicy::OnFailure) => end(
            st,
            RunPhase::Failed,
            format!("gave up after {n} attempt(s) (retryLimit); the last: {}", last_failure.unwrap_or_default()),
        ),
        (_, RestartPolicy::Never) => {
            end(st, RunPhase::Failed, format!("the attempt failed: {}", last_failure.unwrap_or_default()))
        }
    }
    plan
}

/// The earlier of two times, either of which may be missing.
pub(crate) fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// RFC 3339 in UTC, to the second, as every status time.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Reads a status time.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

pub mod events;

#[cfg(test)]
mod tests;
