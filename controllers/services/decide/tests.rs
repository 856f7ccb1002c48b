use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_api::kinds::service::{
    Backoff, Condition, Deployment, DeploymentPhase, KillSelection, ServiceSpec, ServiceStatus, TemplateRevision,
    UnreachableStrategy, UpgradeStrategy,
};
use corral_api::kinds::task::{TaskPhase, TaskSpec};
use proptest::prelude::*;

use super::*;

/// 2027-01-15T08:00:00Z, plus `s` seconds.
fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

fn template(command: &str) -> TaskSpec {
    TaskSpec { command: vec![command.into()], ..Default::default() }
}

fn spec(instances: u32, command: &str) -> ServiceSpec {
    ServiceSpec { instances, template: template(command), ..Default::default() }
}

fn strategy(minimum_health_capacity: f64, maximum_over_capacity: f64) -> UpgradeStrategy {
    UpgradeStrategy { minimum_health_capacity, maximum_over_capacity }
}

/// The status of a service whose revision 1 is `command`, fully deployed.
fn deployed(command: &str) -> ServiceStatus {
    ServiceStatus {
        revision: 1,
        history: vec![TemplateRevision {
            revision: 1,
            template: template(command),
            restarted_at: None,
            time: Some("2027-01-01T00:00:00Z".into()),
        }],
        deployment: Some(Deployment {
            revision: 1,
            phase: DeploymentPhase::Complete,
            start_time: Some("2027-01-01T00:00:00Z".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A task of `revision` running since `started`, without health checks.
fn running(name: &str, revision: u64, started: u64) -> TaskView {
    TaskView {
        name: name.into(),
        revision,
        node: Some("n1".into()),
        phase: TaskPhase::Running,
        healthy: None,
        has_health_checks: false,
        ready: true,
        killing: false,
        created: at(started.saturating_sub(1)),
        started: Some(at(started)),
        finished: None,
    }
}

fn staging(name: &str, revision: u64, created: u64) -> TaskView {
    TaskView { phase: TaskPhase::Staging, started: None, created: at(created), ..running(name, revision, created) }
}

fn ended(name: &str, revision: u64, phase: TaskPhase, finished: u64) -> TaskView {
    TaskView { phase, finished: Some(at(finished)), ..running(name, revision, 1) }
}

fn input<'a>(spec: &'a ServiceSpec, status: &'a ServiceStatus, tasks: Vec<TaskView>) -> Input<'a> {
    Input { spec, generation: 7, status, tasks }
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn condition_of<'a>(status: &'a ServiceStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition"))
}

fn deployment(plan: &Plan) -> &Deployment {
    plan.status.deployment.as_ref().expect("every plan writes a deployment")
}

#[test]
fn first_template_is_revision_one_with_a_deployment() {
    let spec = spec(3, "web");
    let plan = decide(&input(&spec, &ServiceStatus::default(), vec![]), at(0));
    assert_eq!((plan.revision, plan.launch), (1, 3));
    assert!(plan.kill.is_empty() && plan.delete.is_empty() && plan.wake_at.is_none());
    let s = &plan.status;
    assert_eq!((s.revision, s.instances, s.observed_generation), (1, 3, Some(7)));
    assert_eq!(s.history.len(), 1);
    assert_eq!(s.history[0].template, spec.template);
    assert_eq!(s.history[0].time.as_deref(), Some("2027-01-15T08:00:00Z"));
    let d = deployment(&plan);
    assert_eq!((d.revision, d.phase, d.updated, d.old, d.target), (1, DeploymentPhase::InProgress, 0, 0, 3));
    assert_eq!(d.start_time.as_deref(), Some("2027-01-15T08:00:00Z"));
    assert_eq!(condition_of(s, "Progressing").status, "True");
    assert_eq!(condition_of(s, "Available").status, "False", "none of the 3 is healthy yet");
}

#[test]
fn scale_up_launches_the_missing_instances() {
    let spec = spec(3, "web");
    let status = deployed("web");
    let plan = decide(&input(&spec, &status, vec![running("a", 1, 1)]), at(10));
    assert_eq!((plan.revision, plan.launch), (1, 2));
    assert!(plan.kill.is_empty());
    assert_eq!(plan.status.history, status.history, "a scale is no new revision");
}

#[test]
fn scale_down_kills_youngest_first() {
    let status = deployed("web");
    let tasks: Vec<TaskView> = (1..=4).map(|i| running(&format!("t{i}"), 1, i * 10)).collect();
    for (selection, killed) in
        [(KillSelection::YoungestFirst, ["t4", "t3"]), (KillSelection::OldestFirst, ["t1", "t2"])]
    {
        let spec = ServiceSpec { kill_selection: selection, ..spec(2, "web") };
        let plan = decide(&input(&spec, &status, tasks.clone()), at(100));
        assert_eq!(names(&plan.kill), killed, "{selection:?}");
        assert_eq!(plan.launch, 0);
    }
}

#[test]
fn scale_down_kills_tasks_not_running_or_unhealthy_before_healthy_ones() {
    let status = deployed("web");
    let checked = |name: &str, healthy: Option<bool>, started: u64| TaskView {
        has_health_checks: true,
        healthy,
        ..running(name, 1, started)
    };
    let tasks = vec![
        checked("healthy-young", Some(true), 50),
        checked("healthy-old", Some(true), 10),
        checked("unhealthy", Some(false), 5),
        checked("unreported", None, 6),
        staging("staging", 1, 3),
    ];
    let spec = spec(2, "web");
    let plan = decide(&input(&spec, &status, tasks), at(100));
    // Not running first; then running but unhealthy (youngest first among those).
    assert_eq!(names(&plan.kill), ["staging", "unreported", "unhealthy"]);
    assert_eq!(plan.status.healthy, 2);
}

#[test]
fn failed_task_is_replaced_after_backoff() {
    let spec = spec(2, "web");
    let status = deployed("web");
    let tasks = vec![running("a", 1, 1), ended("b", 1, TaskPhase::Failed, 100)];
    let plan = decide(&input(&spec, &status, tasks), at(100));
    assert_eq!(names(&plan.delete), ["b"]);
    assert_eq!(plan.launch, 0, "the default backoff is a second");
    assert_eq!(plan.wake_at, Some(at(101)));
    assert_eq!(plan.status.consecutive_failures, 1);
    assert_eq!(plan.status.last_failure_time.as_deref(), Some("2027-01-15T08:01:40Z"));
    let waiting = plan.status.waiting.as_ref().expect("waiting for the backoff");
    assert_eq!(waiting.backoff_until.as_deref(), Some("2027-01-15T08:01:41Z"));
    assert_eq!(waiting.instances, 0, "the rest of waiting is the matcher's");
    assert!(waiting.message.contains("backoff"), "{}", waiting.message);

    // b is gone; a has run since before the failure, so the count stands.
    let status = plan.status;
    let plan = decide(&input(&spec, &status, vec![running("a", 1, 1)]), at(101));
    assert_eq!(plan.launch, 1);
    assert_eq!(plan.wake_at, None);
    assert_eq!(plan.status.waiting, None);
    assert_eq!(plan.status.consecutive_failures, 1, "a healthy old instance does not hide a crash loop");
}

#[test]
fn healthy_task_started_since_the_failure_resets_the_backoff() {
    let spec = spec(2, "web");
    let status = ServiceStatus {
        consecutive_failures: 4,
        last_failure_time: Some("2027-01-15T08:01:40Z".into()),
        ..deployed("web")
    };
    let unhealthy = TaskView { has_health_checks: true, healthy: Some(false), ..running("c", 1, 120) };
    let plan = decide(&input(&spec, &status, vec![running("a", 1, 1), unhealthy.clone()]), at(130));
    assert_eq!(plan.status.consecutive_failures, 4, "c does not pass its health checks yet");
    let healthy = TaskView { healthy: Some(true), ..unhealthy };
    let plan = decide(&input(&spec, &status, vec![running("a", 1, 1), healthy]), at(130));
    assert_eq!(plan.status.consecutive_failures, 0);
    assert_eq!(plan.status.last_failure_time, None);
}

#[test]
fn backoff_grows_by_factor_and_caps() {
    let backoff = Backoff { backoff_seconds: 2.0, backoff_factor: 2.0, max_launch_delay_seconds: 10.0 };
    let spec = ServiceSpec { backoff, ..spec(1, "web") };
    // (failures before this one, seconds the next launch waits)
    for (before, delay) in [(0, 2), (1, 4), (2, 8), (3, 10), (9, 10), (u32::MAX - 1, 10)] {
        let status = ServiceStatus {
            consecutive_failures: before,
            last_failure_time: Some("2027-01-15T08:00:00Z".into()),
            ..deployed("web")
        };
        let plan = decide(&input(&spec, &status, vec![ended("x", 1, TaskPhase::Failed, 100)]), at(100));
        assert_eq!(plan.status.consecutive_failures, before + 1);
        assert_eq!((plan.launch, plan.wake_at), (0, Some(at(100 + delay))), "after {before} failures");
        let later = decide(&input(&spec, &plan.status, vec![]), at(100 + delay));
        assert_eq!(later.launch, 1, "after {before} failures the backoff ends at +{delay}s");
    }
    assert_eq!(backoff_delay(&Backoff { backoff_seconds: 0.0, ..backoff }, 5), Duration::ZERO);
    assert_eq!(backoff_delay(&Default::default(), 2), Duration::from_secs_f64(1.15));
}

#[test]
fn which_ended_tasks_count_as_failures() {
    let spec = spec(1, "web");
    // (phase, being killed, revision, counts)
    let table = [
        (TaskPhase::Failed, false, 1, true),
        (TaskPhase::Finished, false, 1, true),
        (TaskPhase::Killed, false, 1, true),
        (TaskPhase::Killed, true, 1, false),
        (TaskPhase::Failed, true, 1, false),
        (TaskPhase::Failed, false, 0, false),
    ];
    for (phase, killing, revision, counts) in table {
        let status = deployed("web");
        let t = TaskView { killing, ..ended("x", revision, phase, 50) };
        let plan = decide(&input(&spec, &status, vec![t]), at(50));
        let row = format!("{phase:?} killing={killing} revision={revision}");
        assert_eq!(names(&plan.delete), ["x"], "{row}");
        assert_eq!(plan.status.consecutive_failures, u32::from(counts), "{row}");
        assert_eq!(plan.launch, u32::from(!counts), "{row}");
    }
}

#[test]
fn a_new_revision_starts_the_backoff_afresh() {
    let status = ServiceStatus {
        consecutive_failures: 9,
        last_failure_time: Some("2027-01-15T08:00:00Z".into()),
        ..deployed("web")
    };
    let spec = spec(1, "fixed");
    let plan = decide(&input(&spec, &status, vec![]), at(1));
    assert_eq!((plan.revision, plan.launch, plan.status.consecutive_failures), (2, 1, 0));
}

#[test]
fn rolling_deploy_never_drops_below_minimum_health_capacity() {
    // 4 instances, at least 2 healthy, none on top.
    let spec = ServiceSpec { upgrade_strategy: strategy(0.5, 0.0), ..spec(4, "v2") };
    let status = deployed("v1");
    let old: Vec<TaskView> = (1..=4).map(|i| running(&format!("old{i}"), 1, i)).collect();

    let plan = decide(&input(&spec, &status, old.clone()), at(100));
    assert_eq!(plan.revision, 2);
    assert_eq!(names(&plan.kill), ["old4", "old3"], "two may go, youngest first");
    assert_eq!(plan.launch, 2);
    assert_eq!((deployment(&plan).old, deployment(&plan).updated), (4, 0));

    let status = plan.status;
    let mut tasks = vec![old[0].clone(), old[1].clone(), staging("new1", 2, 100), staging("new2", 2, 100)];
    let plan = decide(&input(&spec, &status, tasks.clone()), at(110));
    assert!(plan.kill.is_empty(), "only two are healthy: {:?}", plan.kill);
    assert_eq!(plan.launch, 0, "four is the most");

    tasks[2] = running("new1", 2, 115);
    tasks[3] = running("new2", 2, 115);
    let plan = decide(&input(&spec, &status, tasks.clone()), at(120));
    assert_eq!(names(&plan.kill), ["old2", "old1"]);
    assert_eq!(plan.launch, 2);
    assert_eq!(deployment(&plan).phase, DeploymentPhase::InProgress);

    let status = plan.status;
    let tasks = vec![tasks[2].clone(), tasks[3].clone(), running("new3", 2, 125), running("new4", 2, 125)];
    let plan = decide(&input(&spec, &status, tasks), at(130));
    let d = deployment(&plan);
    assert_eq!((d.phase, d.updated, d.old, d.target), (DeploymentPhase::Complete, 4, 0, 4));
    assert_eq!(d.start_time.as_deref(), Some("2027-01-15T08:01:40Z"), "kept from when it started");
    assert_eq!(condition_of(&plan.status, "Progressing").status, "False");
    assert!(plan.kill.is_empty() && plan.launch == 0);
}

#[test]
fn rolling_deploy_starts_new_tasks_before_stopping_old_ones_by_default() {
    let spec = spec(3, "v2");
    let status = deployed("v1");
    let old: Vec<TaskView> = (1..=3).map(|i| running(&format!("old{i}"), 1, i)).collect();
    let plan = decide(&input(&spec, &status, old), at(100));
    assert_eq!((plan.launch, plan.kill.len()), (3, 0));
}

#[test]
fn rolling_deploy_with_no_room_goes_one_over_capacity() {
    let spec = ServiceSpec { upgrade_strategy: strategy(1.0, 0.0), ..spec(2, "v2") };
    let status = deployed("v1");
    let old = vec![running("old1", 1, 1), running("old2", 1, 2)];
    let plan = decide(&input(&spec, &status, old.clone()), at(100));
    assert_eq!((plan.launch, plan.kill.len()), (1, 0));
    let message = deployment(&plan).message.clone().unwrap_or_default();
    assert!(message.contains("one task over capacity"), "{message}");

    let mut tasks = old;
    tasks.push(running("new1", 2, 105));
    let plan = decide(&input(&spec, &plan.status, tasks), at(110));
    assert_eq!(names(&plan.kill), ["old2"]);
    assert_eq!(plan.launch, 1);
}

#[test]
fn rolling_deploy_counts_new_tasks_only_once_ready() {
    let spec = spec(1, "v2");
    // The status once revision 2 was made and its task launched.
    let status = decide(&input(&spec, &deployed("v1"), vec![running("old", 1, 1)]), at(0)).status;
    let unready = TaskView { ready: false, ..running("new", 2, 50) };
    let plan = decide(&input(&spec, &status, vec![running("old", 1, 1), unready.clone()]), at(60));
    assert!(plan.kill.is_empty(), "{:?}", plan.kill);
    assert_eq!(deployment(&plan).updated, 0);
    let ready = TaskView { ready: true, ..unready };
    let plan = decide(&input(&spec, &status, vec![running("old", 1, 1), ready]), at(60));
    assert_eq!(names(&plan.kill), ["old"]);
}

#[test]
fn old_tasks_that_are_not_healthy_are_killed_at_once() {
    let spec = ServiceSpec { upgrade_strategy: strategy(1.0, 0.0), ..spec(3, "v2") };
    let status = deployed("v1");
    let sick = TaskView { has_health_checks: true, healthy: Some(false), ..running("sick", 1, 3) };
    let tasks = vec![running("old1", 1, 1), running("old2", 1, 2), sick, staging("old-staging", 1, 4)];
    let plan = decide(&input(&spec, &status, tasks), at(100));
    assert_eq!(names(&plan.kill), ["old-staging", "sick"]);
    assert_eq!(plan.launch, 2, "room was freed for two of the new revision");
}

#[test]
fn newer_spec_supersedes_running_deployment() {
    let mut status = deployed("v1");
    status.history.push(TemplateRevision { revision: 2, template: template("v2"), ..Default::default() });
    status.revision = 2;
    status.deployment = Some(Deployment {
        revision: 2,
        phase: DeploymentPhase::InProgress,
        updated: 1,
        old: 2,
        target: 3,
        start_time: Some("2027-01-01T00:00:00Z".into()),
        message: None,
    });
    let spec = ServiceSpec { upgrade_strategy: strategy(0.0, 0.0), ..spec(3, "v3") };
    let tasks = vec![running("a", 1, 1), running("b", 1, 2), running("c", 2, 3)];
    let plan = decide(&input(&spec, &status, tasks), at(100));
    assert_eq!(plan.revision, 3);
    let revisions: Vec<u64> = plan.status.history.iter().map(|h| h.revision).collect();
    assert_eq!(revisions, [1, 2, 3]);
    let d = deployment(&plan);
    assert_eq!((d.revision, d.phase, d.old, d.updated), (3, DeploymentPhase::InProgress, 3, 0));
    assert_eq!(d.start_time.as_deref(), Some("2027-01-15T08:01:40Z"), "a new deployment");
    // Nothing need stay healthy: every old task goes and three new ones start.
    assert_eq!(plan.kill.len(), 3);
    assert_eq!(plan.launch, 3);
}

#[test]
fn lost_task_is_replaced_after_inactive_and_expunged_later() {
    let unreachable_strategy = UnreachableStrategy { inactive_after_seconds: 60, expunge_after_seconds: 300 };
    let spec = ServiceSpec { unreachable_strategy, ..spec(1, "web") };
    let status = deployed("web");
    let lost = ended("lost", 1, TaskPhase::Lost, 100);
    // (now, launch, deleted, wake at)
    for (now, launch, deleted, wake) in
        [(130, 0, false, Some(160)), (160, 1, false, Some(400)), (399, 1, false, Some(400)), (400, 1, true, None)]
    {
        let plan = decide(&input(&spec, &status, vec![lost.clone()]), at(now));
        assert_eq!(plan.launch, launch, "at +{now}s");
        assert_eq!(plan.delete.len(), usize::from(deleted), "at +{now}s");
        assert_eq!(plan.wake_at, wake.map(at), "at +{now}s");
        assert_eq!(plan.status.consecutive_failures, 0, "being unreachable is no failure");
        assert!(plan.kill.is_empty());
    }
    // Never expunged before it is inactive.
    let spec = ServiceSpec {
        unreachable_strategy: UnreachableStrategy { inactive_after_seconds: 60, expunge_after_seconds: 10 },
        ..spec
    };
    let plan = decide(&input(&spec, &status, vec![lost.clone()]), at(130));
    assert!(plan.delete.is_empty());
    assert_eq!(plan.wake_at, Some(at(160)));
    let plan = decide(&input(&spec, &status, vec![lost]), at(160));
    assert_eq!((names(&plan.delete), plan.launch), (vec!["lost"], 1));
}

#[test]
fn restart_makes_a_new_revision() {
    let status = deployed("web");
    let spec = ServiceSpec { restarted_at: Some("2027-01-15T07:00:00Z".into()), ..spec(1, "web") };
    let plan = decide(&input(&spec, &status, vec![running("a", 1, 1)]), at(100));
    assert_eq!(plan.revision, 2);
    let last = plan.status.history.last().expect("a history");
    assert_eq!((last.revision, last.template.clone()), (2, template("web")));
    assert_eq!(last.restarted_at, spec.restarted_at);
    assert_eq!(plan.launch, 1, "the new task starts beside the old one");
    // Written back, the same spec keeps the same revision.
    let again = decide(&input(&spec, &plan.status, vec![running("a", 1, 1)]), at(110));
    assert_eq!((again.revision, again.status.history.len()), (2, 2));
}

#[test]
fn history_keeps_ten() {
    let status = ServiceStatus {
        revision: 10,
        history: (1..=10)
            .map(|r| TemplateRevision { revision: r, template: template(&format!("v{r}")), ..Default::default() })
            .collect(),
        ..Default::default()
    };
    let spec = spec(1, "v11");
    let plan = decide(&input(&spec, &status, vec![]), at(0));
    let revisions: Vec<u64> = plan.status.history.iter().map(|h| h.revision).collect();
    assert_eq!(revisions, (2..=11).collect::<Vec<_>>());
    assert_eq!(plan.status.history.len(), HISTORY_LIMIT);
}

#[test]
fn undo_renumbers_an_old_revision_as_the_newest() {
    let mut status = deployed("v1");
    status.history.push(TemplateRevision { revision: 2, template: template("v2"), ..Default::default() });
    status.revision = 2;
    let spec = spec(1, "v1");
    let plan = decide(&input(&spec, &status, vec![running("b", 2, 5)]), at(100));
    assert_eq!(plan.revision, 3);
    let history: Vec<(u64, TaskSpec)> = plan.status.history.iter().map(|h| (h.revision, h.template.clone())).collect();
    assert_eq!(history, [(2, template("v2")), (3, template("v1"))]);
}

#[test]
fn a_forgotten_status_never_reuses_a_task_revision() {
    let spec = spec(1, "web");
    let plan = decide(&input(&spec, &ServiceStatus::default(), vec![running("a", 4, 1)]), at(0));
    assert_eq!(plan.revision, 5, "its template cannot be known, so a is replaced");
}

#[test]
fn counts_leave_out_tasks_on_their_way_out() {
    let spec = spec(3, "web");
    let status = deployed("web");
    let checked = TaskView { has_health_checks: true, healthy: None, ..running("unreported", 1, 3) };
    let killing = TaskView { killing: true, ..running("killing", 1, 4) };
    let tasks = vec![
        running("a", 1, 1),
        checked,
        staging("s", 1, 5),
        killing,
        TaskView { killing: true, ..ended("done", 1, TaskPhase::Killed, 6) },
    ];
    let plan = decide(&input(&spec, &status, tasks), at(10));
    let s = &plan.status;
    assert_eq!((s.staged, s.running, s.healthy, s.instances), (1, 2, 1, 3));
    assert_eq!(names(&plan.delete), ["done"]);
    assert!(plan.kill.is_empty(), "a task on its way out is not killed again");
    assert_eq!(plan.launch, 0, "three count");
}

#[test]
fn conditions_keep_their_transition_time_and_placed_is_left_alone() {
    let spec = ServiceSpec { upgrade_strategy: strategy(0.5, 1.0), ..spec(2, "web") };
    let placed = Condition {
        type_: "Placed".into(),
        status: "False".into(),
        reason: Some("NoOffers".into()),
        message: None,
        last_transition_time: Some("2027-01-02T00:00:00Z".into()),
    };
    let old = |type_: &str, status: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some("2027-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    let status = ServiceStatus {
        conditions: vec![placed.clone(), old("Available", "True"), old("Progressing", "False")],
        ..deployed("web")
    };
    let plan = decide(&input(&spec, &status, vec![running("a", 1, 1)]), at(100));
    let s = &plan.status;
    let available = condition_of(s, "Available");
    assert_eq!(available.status, "True", "1 of 2 is healthy, and 1 is enough");
    assert_eq!(available.last_transition_time.as_deref(), Some("2027-01-01T00:00:00Z"));
    let progressing = condition_of(s, "Progressing");
    assert_eq!(progressing.status, "True", "an instance is missing");
    assert_eq!(progressing.last_transition_time.as_deref(), Some("2027-01-15T08:01:40Z"));
    assert_eq!(condition_of(s, "Placed"), &placed);
    assert_eq!(s.conditions.len(), 3);
}

#[test]
fn fractions_of_tenths_round_as_written() {
    // 0.7 * 10 is 7.000000000000001 in binary.
    assert_eq!(ceil_of(10, 0.7), 7);
    assert_eq!(floor_of(10, 0.7), 7);
    assert_eq!(ceil_of(3, 0.9), 3);
    assert_eq!(floor_of(3, 0.1), 0);
    assert_eq!(ceil_of(5, f64::NAN), 0);
    assert_eq!(floor_of(5, 7.0), 5);
}

#[test]
fn times_are_rfc3339_utc() {
    assert_eq!(rfc3339(at(0)), "2027-01-15T08:00:00Z");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
    assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(leap));
    assert_eq!(parse_rfc3339("2000-02-29T01:30:00.123+01:30"), Some(leap));
    for bad in ["", "2000-02-29", "2000-02-29T00:00:00", "2000-13-01T00:00:00Z", "2000-02-29T00:00:00+0100"] {
        assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
    }
}

proptest! {
    #[test]
    fn times_round_trip(secs in 0u64..10_000_000_000) {
        let t = UNIX_EPOCH + Duration::from_secs(secs);
        prop_assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
    }

    /// A deployment simulated step by step: killed tasks vanish, launched ones appear
    /// staging and run healthy from the next step.
    #[test]
    fn rolling_deploy_keeps_health_and_capacity_and_completes(
        n in 1u32..20,
        min_tenths in 0u32..=10,
        over_tenths in 0u32..=10,
        youngest_first in any::<bool>(),
    ) {
        let spec = ServiceSpec {
            upgrade_strategy: strategy(f64::from(min_tenths) / 10.0, f64::from(over_tenths) / 10.0),
            kill_selection: if youngest_first { KillSelection::YoungestFirst } else { KillSelection::OldestFirst },
            ..spec(n, "v2")
        };
        let n = n as usize;
        let min_healthy = (n * min_tenths as usize).div_ceil(10);
        let max_total = n + n * over_tenths as usize / 10;
        let bound = max_total + usize::from(min_healthy == n && max_total == n);
        let mut status = deployed("v1");
        let mut tasks: Vec<TaskView> = (0..n as u64).map(|i| running(&format!("old{i}"), 1, i)).collect();
        let mut complete_at = None;
        let limit = 2 * n + 6;
        for step in 0..limit as u64 {
            let now = 100 + step * 10;
            let plan = decide(&input(&spec, &status, tasks.clone()), at(now));
            prop_assert_eq!(plan.revision, 2);
            if deployment(&plan).phase == DeploymentPhase::Complete {
                complete_at = Some(step);
                prop_assert!(plan.kill.is_empty() && plan.launch == 0);
                break;
            }
            let gone: BTreeSet<&String> = plan.kill.iter().chain(&plan.delete).collect();
            tasks.retain(|t| !gone.contains(&t.name));
            for t in &mut tasks {
                if t.phase == TaskPhase::Staging {
                    *t = running(&t.name, t.revision, now);
                }
            }
            tasks.extend((0..plan.launch).map(|i| staging(&format!("new{step}-{i}"), 2, now)));
            status = plan.status;
            let healthy = tasks.iter().filter(|t| t.phase == TaskPhase::Running).count();
            prop_assert!(healthy >= min_healthy, "step {}: {} healthy, at least {} wanted", step, healthy, min_healthy);
            prop_assert!(tasks.len() <= bound, "step {}: {} tasks, at most {}", step, tasks.len(), bound);
        }
        prop_assert!(complete_at.is_some(), "not complete after {} steps", limit);
        prop_assert_eq!(tasks.len(), n);
        prop_assert!(tasks.iter().all(|t| t.revision == 2 && t.phase == TaskPhase::Running));
    }

    /// Whatever the tasks, a plan names only them, never one twice, and never kills one
    /// already on its way out.
    #[test]
    fn plans_name_only_their_tasks_and_never_twice(
        instances in 0u32..6,
        tasks in proptest::collection::vec((0usize..7, 0u64..3, any::<bool>(), proptest::option::of(any::<bool>()), 0u64..200), 0..12),
        min_tenths in 0u32..=10,
        over_tenths in 0u32..=10,
    ) {
        const PHASES: [TaskPhase; 7] = [
            TaskPhase::Staging, TaskPhase::Starting, TaskPhase::Running, TaskPhase::Finished,
            TaskPhase::Failed, TaskPhase::Killed, TaskPhase::Lost,
        ];
        let spec = ServiceSpec {
            upgrade_strategy: strategy(f64::from(min_tenths) / 10.0, f64::from(over_tenths) / 10.0),
            unreachable_strategy: UnreachableStrategy { inactive_after_seconds: 50, expunge_after_seconds: 100 },
            ..spec(instances, "v2")
        };
        let mut status = deployed("v1");
        status.history.push(TemplateRevision { revision: 2, template: template("v2"), ..Default::default() });
        status.revision = 2;
        let tasks: Vec<TaskView> = tasks
            .into_iter()
            .enumerate()
            .map(|(i, (phase, revision, killing, healthy, t))| TaskView {
                phase: PHASES[phase],
                killing,
                healthy,
                has_health_checks: healthy.is_some(),
                finished: PHASES[phase].is_terminal().then(|| at(t)),
                ..running(&format!("t{i}"), revision, t)
            })
            .collect();
        let plan = decide(&input(&spec, &status, tasks.clone()), at(150));
        let mut seen = BTreeSet::new();
        for name in plan.kill.iter().chain(&plan.delete) {
            prop_assert!(seen.insert(name), "{} named twice", name);
            let t = tasks.iter().find(|t| &t.name == name);
            prop_assert!(t.is_some(), "{} is not a task", name);
        }
        for name in &plan.kill {
            let t = tasks.iter().find(|t| &t.name == name).expect("checked above");
            prop_assert!(!t.killing && !matches!(t.phase, TaskPhase::Finished | TaskPhase::Failed | TaskPhase::Killed));
        }
        let new_left = tasks
            .iter()
            .filter(|t| t.revision == 2 && !t.killing && !plan.kill.contains(&t.name))
            // Lost tasks count until they are inactive.
            .filter(|t| !t.phase.is_terminal() || (t.phase == TaskPhase::Lost && t.finished > Some(at(100))))
            .count();
        prop_assert!(new_left + plan.launch as usize <= instances as usize);
        prop_assert_eq!(plan.status.observed_generation, Some(7));
        prop_assert!(plan.wake_at.is_none_or(|w| w > at(150)));
    }
}

#[test]
fn placement_says_which_constraint_turned_the_offers_down_and_keeps_the_transition_time() {
    use corral_api::kinds::service::Refusal;
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let refusals = vec![Refusal { reason: "hostname UNIQUE".into(), offers: 2, nodes: 2 }];
    let short = Shortfall { instances: 1, offers_examined: 2, refusals: &refusals, offers_in_round: 2 };
    let mut status = ServiceStatus::default();
    placement(&mut status, 1, Some(short), t0);
    let w = status.waiting.clone().expect("waiting");
    assert_eq!((w.instances, w.offers_examined), (1, 2));
    assert!(w.message.contains("hostname UNIQUE (turned down 2 offer(s) on 2 node(s))"), "{}", w.message);
    let placed = status.conditions.iter().find(|c| c.type_ == "Placed").cloned().expect("Placed");
    assert_eq!((placed.status.as_str(), placed.reason.as_deref()), ("False", Some("NotPlaced")));

    placement(&mut status, 1, Some(short), t0 + Duration::from_secs(60));
    let again = status.conditions.iter().find(|c| c.type_ == "Placed").cloned().expect("Placed");
    assert_eq!(again.last_transition_time, placed.last_transition_time, "still not placed: same transition");

    let none = Shortfall { instances: 2, offers_examined: 0, refusals: &[], offers_in_round: 0 };
    let mut fresh = ServiceStatus::default();
    placement(&mut fresh, 2, Some(none), t0);
    assert!(fresh.waiting.expect("waiting").message.contains("no node has free resources"));

    let mut done = ServiceStatus::default();
    placement(&mut done, 0, None, t0);
    assert_eq!(done.conditions[0].status, "True");
    assert_eq!(done.conditions[0].reason.as_deref(), Some("Placed"));
}
