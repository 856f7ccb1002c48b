use corral_api::kinds::job::{JobRunStatus, JobSpec, JobStatus, RunTemplate, Schedule};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    parse_time(s).expect("a test time")
}

fn every_10s(policy: ConcurrencyPolicy) -> Schedule {
    Schedule {
        id: "tick".into(),
        cron: "*/10 * * * * *".into(),
        time_zone: "UTC".into(),
        starting_deadline_seconds: 5,
        concurrency_policy: policy,
        enabled: true,
    }
}

fn job(schedules: Vec<Schedule>) -> JobSpec {
    JobSpec { run: RunTemplate::default(), schedules, successful_runs_history_limit: 3, failed_runs_history_limit: 1 }
}

fn run(name: &str, phase: RunPhase, schedule: Option<&str>, created: &str) -> RunView {
    RunView {
        name: name.into(),
        phase,
        admitted: true,
        schedule: schedule.map(str::to_string),
        created: at(created),
        finished: phase.is_terminal().then(|| at(created) + chrono::Duration::seconds(1)),
        due: None,
    }
}

fn decide(spec: &JobSpec, status: &JobStatus, runs: Vec<RunView>, now: &str) -> JobPlan {
    decide_staging(spec, status, runs, now, Duration::ZERO)
}

fn decide_staging(spec: &JobSpec, status: &JobStatus, runs: Vec<RunView>, now: &str, ahead: Duration) -> JobPlan {
    let input = JobInput { spec, status, generation: 1, created: at("2026-12-03T12:00:00Z"), runs, stage_ahead: ahead };
    decide_job(&input, at(now))
}

#[test]
fn a_due_schedule_starts_a_run_and_says_when_it_is_due_next() {
    let spec = job(vec![every_10s(ConcurrencyPolicy::Allow)]);
    let plan = decide(&spec, &JobStatus::default(), vec![], "2026-12-03T12:00:10Z");
    assert_eq!(plan.start, [NewRun { schedule: "tick".into(), time: at("2026-12-03T12:00:10Z"), message: None }]);
    let st = &plan.status.schedules[0];
    assert_eq!(st.last_schedule_time.as_deref(), Some("2026-12-03T12:00:10Z"));
    assert_eq!(st.next_schedule_time.as_deref(), Some("2026-12-03T12:00:20Z"));
    assert_eq!(plan.wake_at, Some(at("2026-12-03T12:00:20Z")));
    assert_eq!(plan.status.conditions[0].status, "True");

    // Written back, the same time is not started twice.
    let again = decide(&spec, &plan.status, vec![], "2026-12-03T12:00:12Z");
    assert!(again.start.is_empty());
}

#[test]
fn forbid_skips_a_time_while_a_run_is_active_and_allow_overlaps() {
    let busy = vec![run("r1", RunPhase::Running, Some("tick"), "2026-12-03T12:00:00Z")];
    let forbid = decide(
        &job(vec![every_10s(ConcurrencyPolicy::Forbid)]),
        &JobStatus::default(),
        busy.clone(),
        "2026-12-03T12:00:10Z",
    );
    assert!(forbid.start.is_empty());
    assert_eq!(forbid.status.schedules[0].skipped, 1);
    assert_eq!(
        forbid.status.schedules[0].last_schedule_time.as_deref(),
        Some("2026-12-03T12:00:10Z"),
        "acted on: skipped"
    );
    let allow =
        decide(&job(vec![every_10s(ConcurrencyPolicy::Allow)]), &JobStatus::default(), busy, "2026-12-03T12:00:10Z");
    assert_eq!(allow.start.len(), 1);
    assert!(allow.kill.is_empty());
}

#[test]
fn replace_kills_the_active_run_and_starts_the_new_one() {
    let busy = vec![run("r1", RunPhase::Running, Some("tick"), "2026-12-03T12:00:00Z")];
    let plan =
        decide(&job(vec![every_10s(ConcurrencyPolicy::Replace)]), &JobStatus::default(), busy, "2026-12-03T12:00:10Z");
    assert_eq!(plan.kill, ["r1"]);
    assert_eq!(plan.start.len(), 1);
    assert!(plan.status.active.is_empty(), "the replaced run no longer counts as active");
}

#[test]
fn forbid_refuses_a_manual_run_while_another_is_active_and_admits_it_otherwise() {
    let spec = job(vec![every_10s(ConcurrencyPolicy::Forbid)]);
    let mut manual = run("by-hand", RunPhase::Pending, None, "2026-12-03T12:00:03Z");
    manual.admitted = false;
    let busy = vec![run("r1", RunPhase::Running, Some("tick"), "2026-12-03T12:00:00Z"), manual.clone()];
    let plan = decide(&spec, &JobStatus::default(), busy, "2026-12-03T12:00:04Z");
    assert_eq!(plan.refuse.len(), 1);
    assert_eq!(plan.refuse[0].0, "by-hand");
    assert!(plan.refuse[0].1.contains("FORBID") && plan.refuse[0].1.contains("r1"), "{}", plan.refuse[0].1);
    assert!(plan.admit.is_empty());

    let idle = vec![run("r1", RunPhase::Succeeded, Some("tick"), "2026-12-03T12:00:00Z"), manual];
    let plan = decide(&spec, &JobStatus::default(), idle, "2026-12-03T12:00:04Z");
    assert_eq!(plan.admit, ["by-hand"]);
    // And the admitted manual run makes the next scheduled time wait under FORBID.
    assert_eq!(plan.status.active, ["by-hand"]);
}

#[test]
fn a_manual_run_admitted_under_forbid_makes_a_due_time_skip() {
    let spec = job(vec![every_10s(ConcurrencyPolicy::Forbid)]);
    let mut manual = run("by-hand", RunPhase::Pending, None, "2026-12-03T12:00:09Z");
    manual.admitted = false;
    let plan = decide(&spec, &JobStatus::default(), vec![manual], "2026-12-03T12:00:10Z");
    assert_eq!(plan.admit, ["by-hand"]);
    assert!(plan.start.is_empty(), "the manual run is active: the scheduled time is skipped");
    assert_eq!(plan.status.schedules[0].skipped, 1);
}

#[test]
fn a_time_missed_while_down_starts_once_and_says_so() {
    let spec = job(vec![Schedule { starting_deadline_seconds: 60, ..every_10s(ConcurrencyPolicy::Allow) }]);
    let status = JobStatus {
        schedules: vec![ScheduleStatus {
            id: "tick".into(),
            last_schedule_time: Some("2026-12-03T12:00:00Z".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    // Down from 12:00:05 to 12:01:03: six times passed, the latest 3 s ago.
    let plan = decide(&spec, &status, vec![], "2026-12-03T12:01:03Z");
    assert_eq!(plan.start.len(), 1, "one run, not one per missed time");
    assert_eq!(plan.start[0].time, at("2026-12-03T12:01:00Z"));
    let message = plan.start[0].message.as_deref().unwrap_or_default();
    assert!(message.contains("3s late") && message.contains("5 earlier time(s) missed"), "{message}");
    assert_eq!(plan.status.schedules[0].missed, 5);
}

#[test]
fn history_limits_keep_the_newest_ended_runs() {
    let runs = vec![
        run("ok1", RunPhase::Succeeded, None, "2026-12-03T12:00:01Z"),
        run("ok2", RunPhase::Succeeded, None, "2026-12-03T12:00:02Z"),
        run("ok3", RunPhase::Succeeded, None, "2026-12-03T12:00:03Z"),
        run("ok4", RunPhase::Succeeded, None, "2026-12-03T12:00:04Z"),
        run("bad1", RunPhase::Failed, None, "2026-12-03T12:00:05Z"),
        run("bad2", RunPhase::Killed, None, "2026-12-03T12:00:06Z"),
        run("live", RunPhase::Running, None, "2026-12-03T12:00:00Z"),
    ];
    let plan = decide(&job(vec![]), &JobStatus::default(), runs, "2026-12-03T12:00:09Z");
    assert_eq!(plan.delete, ["ok1", "bad1"]);
    assert_eq!(plan.status.last_run.as_deref(), Some("bad2"));
    assert_eq!(plan.status.last_result, Some(RunPhase::Killed));
    assert_eq!(plan.status.active, ["live"]);
    assert_eq!(plan.wake_at, None, "no schedule: nothing to wake for");
}

#[test]
fn a_bad_schedule_is_said_in_the_status_and_the_others_still_run() {
    let bad = Schedule { id: "bad".into(), time_zone: "Nowhere/Else".into(), ..every_10s(ConcurrencyPolicy::Allow) };
    let plan = decide(
        &job(vec![bad, every_10s(ConcurrencyPolicy::Allow)]),
        &JobStatus::default(),
        vec![],
        "2026-12-03T12:00:10Z",
    );
    assert_eq!(plan.start.len(), 1);
    assert!(plan.status.schedules[0].error.as_deref().unwrap_or_default().contains("Nowhere/Else"));
    assert_eq!(plan.status.conditions[0].status, "False");
    assert_eq!(plan.status.conditions[0].reason.as_deref(), Some("InvalidSchedule"));
}

#[test]
fn a_disabled_schedule_starts_nothing() {
    let off = Schedule { enabled: false, ..every_10s(ConcurrencyPolicy::Allow) };
    let plan = decide(&job(vec![off]), &JobStatus::default(), vec![], "2026-12-03T12:00:10Z");
    assert!(plan.start.is_empty());
    assert_eq!(plan.status.schedules[0].next_schedule_time, None);
}

fn attempt(task: &str, phase: TaskPhase, created: &str) -> AttemptView {
    AttemptView {
        task: task.into(),
        node: Some("n1".into()),
        phase,
        killing: false,
        created: at(created),
        started: Some(at(created)),
        finished: phase.is_terminal().then(|| at(created) + chrono::Duration::seconds(2)),
        exit_code: (phase == TaskPhase::Failed).then_some(3),
        message: (phase == TaskPhase::Failed).then(|| "exited with code 3".into()),
    }
}

fn decide_r(template: &RunTemplate, status: &JobRunStatus, tasks: Vec<AttemptView>, kill: bool, now: &str) -> RunPlan {
    let input = RunInput { template, kill, created: at("2026-12-03T12:00:00Z"), start_at: None, status, tasks };
    decide_run(&input, at(now))
}

#[test]
fn a_new_run_launches_its_first_attempt_and_succeeds_with_it() {
    let t = RunTemplate::default();
    let plan = decide_r(&t, &JobRunStatus::default(), vec![], false, "2026-12-03T12:00:01Z");
    assert!(plan.launch);
    assert_eq!(plan.status.phase, RunPhase::Pending);
    let running = decide_r(
        &t,
        &plan.status,
        vec![attempt("a1", TaskPhase::Running, "2026-12-03T12:00:01Z")],
        false,
        "2026-12-03T12:00:02Z",
    );
    assert!(!running.launch);
    assert_eq!(running.status.phase, RunPhase::Running);
    assert_eq!(running.status.start_time.as_deref(), Some("2026-12-03T12:00:01Z"));
    let done = decide_r(
        &t,
        &running.status,
        vec![attempt("a1", TaskPhase::Finished, "2026-12-03T12:00:01Z")],
        false,
        "2026-12-03T12:00:05Z",
    );
    assert_eq!(done.status.phase, RunPhase::Succeeded);
    assert_eq!(done.status.attempts.len(), 1);
    assert_eq!(done.status.attempts[0].finish_time.as_deref(), Some("2026-12-03T12:00:03Z"));
}

#[test]
fn a_run_placed_stays_pending_until_its_node_reports_it_started() {
    let t = RunTemplate::default();
    let placed = AttemptView { started: None, ..attempt("a1", TaskPhase::Staging, "2026-12-03T12:00:01Z") };
    let plan = decide_r(&t, &JobRunStatus::default(), vec![placed], false, "2026-12-03T12:00:02Z");
    assert!(!plan.launch);
    assert_eq!(plan.status.phase, RunPhase::Pending);
    assert!(!plan.staged, "a run made to start now has its status written: {plan:?}");
    assert_eq!(plan.status.attempts[0].node.as_deref(), Some("n1"));
}

#[test]
fn never_fails_with_its_only_attempt() {
    let t = RunTemplate::default();
    let plan = decide_r(
        &t,
        &JobRunStatus::default(),
        vec![attempt("a1", TaskPhase::Failed, "2026-12-03T12:00:01Z")],
        false,
        "2026-12-03T12:00:05Z",
    );
    assert!(!plan.launch);
    assert_eq!(plan.status.phase, RunPhase::Failed);
    assert_eq!(plan.status.attempts[0].exit_code, Some(3));
    assert!(plan.status.message.as_deref().unwrap_or_default().contains("exited with code 3"));
}

#[test]
fn on_failure_retries_until_the_limit_keeping_every_attempt() {
    let t = RunTemplate { restart_policy: RestartPolicy::OnFailure, retry_limit: 2, ..Default::default() };
    let first = decide_r(
        &t,
        &JobRunStatus::default(),
        vec![attempt("a1", TaskPhase::Failed, "2026-12-03T12:00:01Z")],
        false,
        "2026-12-03T12:00:05Z",
    );
    assert!(first.launch, "a second attempt");
    assert_eq!(first.status.phase, RunPhase::Pending);
    // The first task is gone (deleted), the second failed too: the limit is reached.
    let second = decide_r(
        &t,
        &first.status,
        vec![attempt("a2", TaskPhase::Failed, "2026-12-03T12:00:06Z")],
        false,
        "2026-12-03T12:00:09Z",
    );
    assert!(!second.launch);
    assert_eq!(second.status.phase, RunPhase::Failed);
    assert_eq!(second.status.attempts.iter().map(|a| a.task.as_str()).collect::<Vec<_>>(), ["a1", "a2"]);
    assert!(second.status.message.as_deref().unwrap_or_default().contains("gave up after 2"));
}

#[test]
fn on_failure_stops_at_the_deadline_and_kills_the_attempt() {
    let t = RunTemplate {
        restart_policy: RestartPolicy::OnFailure,
        retry_limit: 100,
        active_deadline_seconds: Some(30),
        ..Default::default()
    };
    let before = decide_r(
        &t,
        &JobRunStatus::default(),
        vec![attempt("a7", TaskPhase::Running, "2026-12-03T12:00:20Z")],
        false,
        "2026-12-03T12:00:25Z",
    );
    assert_eq!(before.wake_at, Some(at("2026-12-03T12:00:30Z")));
    let after = decide_r(
        &t,
        &before.status,
        vec![attempt("a7", TaskPhase::Running, "2026-12-03T12:00:20Z")],
        false,
        "2026-12-03T12:00:30Z",
    );
    assert_eq!(after.kill, ["a7"]);
    assert!(!after.launch);
    assert_eq!(after.status.phase, RunPhase::Failed);
    assert!(after.status.message.as_deref().unwrap_or_default().starts_with("DeadlineExceeded"));
}

#[test]
fn a_kill_request_kills_the_attempt_and_ends_the_run() {
    let t = RunTemplate::default();
    let plan = decide_r(
        &t,
        &JobRunStatus::default(),
        vec![attempt("a1", TaskPhase::Running, "2026-12-03T12:00:01Z")],
        true,
        "2026-12-03T12:00:05Z",
    );
    assert_eq!(plan.kill, ["a1"]);
    assert_eq!(plan.status.phase, RunPhase::Killed);
    // Ended, it decides nothing more.
    let later = decide_r(&t, &plan.status, vec![], true, "2026-12-03T12:00:09Z");
    assert_eq!(later, RunPlan { status: plan.status.clone(), ..Default::default() });
}

#[test]
fn offers_are_asked_for_two_seconds_before_a_due_time_and_kept_until_it() {
    let due = at("2026-12-03T12:00:10Z");
    let far = offers_ahead(Some(due), at("2026-12-03T12:00:00Z"));
    assert_eq!(far, Ahead { soon: false, wake_at: Some(at("2026-12-03T12:00:08Z")) });
    let near = offers_ahead(Some(due), at("2026-12-03T12:00:08Z"));
    assert_eq!(near, Ahead { soon: true, wake_at: Some(due) });
    let late = offers_ahead(Some(due), at("2026-12-03T12:00:11Z"));
    assert_eq!(late, Ahead { soon: true, wake_at: Some(due) });
    assert_eq!(offers_ahead(None, due), Ahead { soon: false, wake_at: None });
}

#[test]
fn getting_ready_for_the_next_time_waits_out_the_quiet_window_of_a_burst_but_never_past_that_time() {
    let due = at("2026-12-03T12:00:13Z");
    // A burst was due at 12:00:10: quiet from 09.75 to 11.5.
    let quiet = |t: DateTime<Utc>| {
        (t >= at("2026-12-03T12:00:09.750Z") && t < at("2026-12-03T12:00:11.500Z"))
            .then(|| at("2026-12-03T12:00:11.500Z"))
    };
    let end = at("2026-12-03T12:00:11.500Z");
    // Its wake (two seconds before, at 11) falls in the window: moved to its end.
    let far = offers_ahead_quietly(Some(due), at("2026-12-03T12:00:05Z"), quiet);
    assert_eq!(far, Ahead { soon: false, wake_at: Some(end) });
    // Woken in the window for another reason: not soon yet.
    let inside = offers_ahead_quietly(Some(due), at("2026-12-03T12:00:11Z"), quiet);
    assert_eq!(inside, Ahead { soon: false, wake_at: Some(end) });
    // After it, as without a window.
    let after = offers_ahead_quietly(Some(due), at("2026-12-03T12:00:11.600Z"), quiet);
    assert_eq!(after, offers_ahead(Some(due), at("2026-12-03T12:00:11.600Z")));
    // A due time inside the window itself is not put off.
    let in_window = at("2026-12-03T12:00:11Z");
    let own = offers_ahead_quietly(Some(in_window), at("2026-12-03T12:00:10Z"), quiet);
    assert_eq!(own, Ahead { soon: true, wake_at: Some(in_window) });
    // No window: the same as offers_ahead.
    let none = offers_ahead_quietly(Some(due), at("2026-12-03T12:00:05Z"), |_| None);
    assert_eq!(none, offers_ahead(Some(due), at("2026-12-03T12:00:05Z")));
}

#[test]
fn offers_are_asked_for_first_once_a_jobs_clock_time_has_come() {
    let now = at("2026-12-03T12:00:12Z");
    let cases = [
        (None, false, "nothing scheduled"),
        (Some("2026-12-03T12:00:13Z"), false, "the time to stage is still ahead"),
        (Some("2026-12-03T12:00:12Z"), true, "it is now"),
        (Some("2026-12-03T12:00:11.500Z"), true, "it passed while the last round ran"),
    ];
    for (next, first, why) in cases {
        assert_eq!(offers_first(next.map(at), now), first, "{why}");
    }
}

/// A run of schedule `tick` staged for `due`, made at `created`.
fn staged(name: &str, phase: RunPhase, created: &str, due: &str) -> RunView {
    RunView { due: Some(at(due)), ..run(name, phase, Some("tick"), created) }
}

fn staged_at(status: &JobStatus, time: &str) -> bool {
    status.schedules[0].last_schedule_time.as_deref() == Some(time)
        && status.schedules[0].next_schedule_time.as_deref() == Some(time)
        && status.next_run_time.as_deref() == Some(time)
}

#[test]
fn a_schedule_stages_its_next_run_ahead_once_and_the_due_time_does_not_start_it_again() {
    let spec = job(vec![every_10s(ConcurrencyPolicy::Allow)]);
    let ahead = Duration::from_secs(5);
    let done = vec![run("tick-1", RunPhase::Succeeded, Some("tick"), "2026-12-03T12:00:10Z")];
    let first = decide(&spec, &JobStatus::default(), vec![], "2026-12-03T12:00:10Z").status;
    // Six seconds before: nothing yet, but a look when the time is five away.
    let early = decide_staging(&spec, &first, done.clone(), "2026-12-03T12:00:14Z", ahead);
    assert!(early.start.is_empty(), "{early:?}");
    assert_eq!(early.wake_at, Some(at("2026-12-03T12:00:15Z")));
    // Five before: staged, and the schedule's times say so.
    let plan = decide_staging(&spec, &first, done.clone(), "2026-12-03T12:00:15Z", ahead);
    assert_eq!(plan.start, [NewRun { schedule: "tick".into(), time: at("2026-12-03T12:00:20Z"), message: None }]);
    assert!(staged_at(&plan.status, "2026-12-03T12:00:20Z"), "{:?}", plan.status);
    assert_eq!(plan.wake_at, Some(at("2026-12-03T12:00:25Z")), "when the time after it is staged");
    // Written back with its run: staged once, and it is the next run, not the last.
    let mut runs = done.clone();
    runs.push(staged("tick-20", RunPhase::Pending, "2026-12-03T12:00:15Z", "2026-12-03T12:00:20Z"));
    let waiting = decide_staging(&spec, &plan.status, runs.clone(), "2026-12-03T12:00:17Z", ahead);
    assert!(waiting.start.is_empty() && waiting.cancel.is_empty(), "{waiting:?}");
    assert!(staged_at(&waiting.status, "2026-12-03T12:00:20Z"), "{:?}", waiting.status);
    assert_eq!(waiting.status.last_run.as_deref(), Some("tick-1"));
    assert_eq!(waiting.status.active, ["tick-20"]);
    // At the due time it is not started again; the next is staged five seconds before.
    runs[1].phase = RunPhase::Running;
    let due = decide_staging(&spec, &waiting.status, runs.clone(), "2026-12-03T12:00:20Z", ahead);
    assert!(due.start.is_empty(), "{due:?}");
    assert_eq!(due.status.last_run.as_deref(), Some("tick-20"));
    assert_eq!(due.status.schedules[0].next_schedule_time.as_deref(), Some("2026-12-03T12:00:30Z"));
    assert_eq!(due.status.schedules[0].missed, 0);
    assert_eq!(due.wake_at, Some(at("2026-12-03T12:00:25Z")));
    // Under ALLOW the next is staged while this one still runs.
    let next = decide_staging(&spec, &due.status, runs, "2026-12-03T12:00:25Z", ahead);
    assert_eq!(next.start.iter().map(|n| n.time).collect::<Vec<_>>(), [at("2026-12-03T12:00:30Z")]);
}

#[test]
fn forbid_stages_only_while_no_run_is_active_and_replace_waits_for_the_due_time() {
    let ahead = Duration::from_secs(5);
    let last =
        decide(&job(vec![every_10s(ConcurrencyPolicy::Allow)]), &JobStatus::default(), vec![], "2026-12-03T12:00:10Z")
            .status;
    let busy = vec![run("tick-1", RunPhase::Running, Some("tick"), "2026-12-03T12:00:10Z")];
    let forbid = job(vec![every_10s(ConcurrencyPolicy::Forbid)]);
    let held = decide_staging(&forbid, &last, busy, "2026-12-03T12:00:15Z", ahead);
    assert!(held.start.is_empty(), "{held:?}");
    assert_eq!(held.wake_at, Some(at("2026-12-03T12:00:20Z")), "the due time judges it, or the run's end");
    let ended = vec![run("tick-1", RunPhase::Succeeded, Some("tick"), "2026-12-03T12:00:10Z")];
    let free = decide_staging(&forbid, &last, ended, "2026-12-03T12:00:16Z", ahead);
    assert_eq!(free.start.len(), 1, "{free:?}");
    // A staged run is active: a manual run is refused under FORBID.
    let mut runs = vec![staged("tick-20", RunPhase::Pending, "2026-12-03T12:00:16Z", "2026-12-03T12:00:20Z")];
    runs.push(RunView { admitted: false, ..run("by-hand", RunPhase::Pending, None, "2026-12-03T12:00:17Z") });
    let manual = decide_staging(&forbid, &free.status, runs, "2026-12-03T12:00:17Z", ahead);
    assert_eq!(manual.refuse.len(), 1, "{manual:?}");
    assert!(manual.refuse[0].1.contains("tick-20"), "{manual:?}");

    let replace = job(vec![every_10s(ConcurrencyPolicy::Replace)]);
    let plan = decide_staging(&replace, &last, vec![], "2026-12-03T12:00:16Z", ahead);
    assert!(plan.start.is_empty(), "REPLACE is not staged: {plan:?}");
    assert_eq!(plan.wake_at, Some(at("2026-12-03T12:00:20Z")));
}

#[test]
fn a_staged_run_its_schedule_no_longer_wants_is_cancelled_and_the_schedule_goes_on_from_now() {
    let ahead = Duration::from_secs(5);
    let allow = job(vec![every_10s(ConcurrencyPolicy::Allow)]);
    let last = decide(&allow, &JobStatus::default(), vec![], "2026-12-03T12:00:10Z").status;
    let plan = decide_staging(&allow, &last, vec![], "2026-12-03T12:00:15Z", ahead);
    let runs = vec![staged("tick-20", RunPhase::Pending, "2026-12-03T12:00:15Z", "2026-12-03T12:00:20Z")];

    // Disabled: cancelled; its time goes back to now, so that enabling it again
    // before 12:00:20 still runs 12:00:20.
    let mut off = allow.clone();
    off.schedules[0].enabled = false;
    let cancelled = decide_staging(&off, &plan.status, runs.clone(), "2026-12-03T12:00:17Z", ahead);
    assert_eq!(cancelled.cancel, ["tick-20"]);
    assert!(cancelled.status.active.is_empty(), "{:?}", cancelled.status);
    assert_eq!(cancelled.status.schedules[0].last_schedule_time.as_deref(), Some("2026-12-03T12:00:17Z"));
    let again = decide_staging(&allow, &cancelled.status, vec![], "2026-12-03T12:00:18Z", ahead);
    assert_eq!(again.start.iter().map(|n| n.time).collect::<Vec<_>>(), [at("2026-12-03T12:00:20Z")]);

    // Its cron no longer names the time: cancelled, and the new cron's next is staged.
    let mut other = allow.clone();
    other.schedules[0].cron = "*/7 * * * * *".into();
    let moved = decide_staging(&other, &plan.status, runs.clone(), "2026-12-03T12:00:17Z", ahead);
    assert_eq!(moved.cancel, ["tick-20"]);
    assert_eq!(moved.start.iter().map(|n| n.time).collect::<Vec<_>>(), [at("2026-12-03T12:00:21Z")]);

    // Still wanted (another field changed): kept.
    let mut deadline = allow.clone();
    deadline.schedules[0].starting_deadline_seconds = 60;
    let kept = decide_staging(&deadline, &plan.status, runs, "2026-12-03T12:00:17Z", ahead);
    assert!(kept.cancel.is_empty() && kept.start.is_empty(), "{kept:?}");
}

#[test]
fn a_staged_run_waits_placed_until_its_time_and_its_deadline_counts_from_then() {
    let template = RunTemplate { active_deadline_seconds: Some(3), ..Default::default() };
    let status = JobRunStatus::default();
    let decide_at = |tasks: Vec<AttemptView>, now: &str| {
        let input = RunInput {
            template: &template,
            kill: false,
            created: at("2026-12-03T12:00:15Z"),
            start_at: Some(at("2026-12-03T12:00:20Z")),
            status: &status,
            tasks,
        };
        decide_run(&input, at(now))
    };
    let first = decide_at(vec![], "2026-12-03T12:00:15Z");
    assert!(first.launch, "its attempt is launched at once: {first:?}");
    let placed = AttemptView { started: None, ..attempt("tick-20-1", TaskPhase::Staging, "2026-12-03T12:00:15Z") };
    // Past 3 s from its making but before its time: waiting, not failed.
    let waits = decide_at(vec![placed.clone()], "2026-12-03T12:00:19Z");
    assert_eq!(waits.status.phase, RunPhase::Pending, "{waits:?}");
    assert_eq!(waits.status.message.as_deref(), Some("staged on node n1; starts at 2026-12-03T12:00:20Z"));
    assert_eq!(waits.wake_at, Some(at("2026-12-03T12:00:23Z")), "its deadline; its start is its node's");
    // Its time come, its node's report not seen yet: still Pending, nothing to write.
    let due = decide_at(vec![placed.clone()], "2026-12-03T12:00:20Z");
    assert_eq!(due.status.phase, RunPhase::Pending, "{due:?}");
    assert!(due.staged, "{due:?}");
    let running = AttemptView {
        started: Some(at("2026-12-03T12:00:20Z")),
        ..attempt("tick-20-1", TaskPhase::Running, "2026-12-03T12:00:15Z")
    };
    let runs = decide_at(vec![running.clone()], "2026-12-03T12:00:21Z");
    assert_eq!(runs.status.phase, RunPhase::Running, "{runs:?}");
    assert_eq!(runs.status.message, None);
    // Its deadline: three seconds from its time.
    let late = decide_at(vec![running], "2026-12-03T12:00:23Z");
    assert_eq!(late.status.phase, RunPhase::Failed, "{late:?}");
}

#[test]
fn runs_are_staged_earlier_after_a_slow_staging_within_bounds() {
    assert_eq!(stage_ahead(Duration::ZERO), STAGE_AHEAD);
    assert_eq!(stage_ahead(Duration::from_millis(1600)), STAGE_AHEAD, "placed in a third of the time: as usual");
    assert_eq!(stage_ahead(Duration::from_millis(3600)), Duration::from_millis(10800));
    assert_eq!(stage_ahead(Duration::from_secs(60)), MAX_STAGE_AHEAD);
}

#[test]
fn a_longer_lead_never_stages_within_two_seconds_of_the_time_before() {
    let spec = job(vec![every_10s(ConcurrencyPolicy::Allow)]);
    let first = decide(&spec, &JobStatus::default(), vec![], "2026-12-03T12:00:10Z").status;
    let done = vec![run("tick-1", RunPhase::Succeeded, Some("tick"), "2026-12-03T12:00:10Z")];
    let ahead = MAX_STAGE_AHEAD;
    // After :10, :20 is staged at :12 (past the nodes' reports of :10), not at once.
    let early = decide_staging(&spec, &first, done.clone(), "2026-12-03T12:00:11Z", ahead);
    assert!(early.start.is_empty(), "{early:?}");
    assert_eq!(early.wake_at, Some(at("2026-12-03T12:00:12Z")));
    let plan = decide_staging(&spec, &first, done.clone(), "2026-12-03T12:00:12Z", ahead);
    assert_eq!(plan.start.iter().map(|n| n.time).collect::<Vec<_>>(), [at("2026-12-03T12:00:20Z")]);
    assert_eq!(plan.wake_at, Some(at("2026-12-03T12:00:22Z")), "the time after it: two seconds after :20");
    // The default lead is kept however close the times are.
    let short = decide_staging(&spec, &first, done, "2026-12-03T12:00:15Z", STAGE_AHEAD);
    assert_eq!(short.start.iter().map(|n| n.time).collect::<Vec<_>>(), [at("2026-12-03T12:00:20Z")]);
}
